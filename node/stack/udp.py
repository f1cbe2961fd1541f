"""UDP (RFC 768): the datagram codec with the pseudo-header checksum, and the port table.

A bound port is a name in a set, not a socket: datagrams for it come out as UdpDatagram
events. The stack's own services (DHCP on 67/68) attach a handler to a port instead:
datagrams for it go to the handler, which returns frames, and the application cannot bind
it. ``output`` sends with an explicit source address and no route lookup, for DHCP, which
must send from 0.0.0.0 to 255.255.255.255 before it has an address (RFC 2131 4.1).
Datagrams for other ports count as no_ports and get an ICMP port unreachable (unicast only;
unanswered broadcasts count as ignored_multi, as in Linux). A zero checksum
means "none" on receive (legal in IPv4); on send a computed zero goes out as 0xFFFF.
Counter names are Linux's /proc/net/snmp "Udp:" in snake_case; as in Linux a bad checksum
counts in both in_csum_errors and in_errors.
"""

from __future__ import annotations

import struct
from typing import Callable

from .common import Counters, StackError
from .events import UdpDatagram
from .icmp import ICMP_PORT_UNREACH, Icmp
from .ipv4 import IPPROTO_UDP, Ipv4, inet_checksum

UDP_FMT = "!HHHH"  # source port, destination port, length, checksum
UDP_HDR = struct.Struct(UDP_FMT)
UDP_HLEN = 8
EPHEMERAL_PORTS = range(32768, 61000)  # Linux ip_local_port_range


def udp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    """The checksum over the pseudo-header and ``segment`` (its checksum field zero, or
    filled in: then a valid one gives 0)."""
    pseudo = src + dst + b"\0\x11" + len(segment).to_bytes(2, "big")
    return inet_checksum(pseudo + segment)


def udp_segment(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header and payload, checksum included."""
    length = UDP_HLEN + len(payload)
    check = udp_checksum(src, dst, UDP_HDR.pack(sport, dport, length, 0) + payload) or 0xFFFF
    return UDP_HDR.pack(sport, dport, length, check) + payload


class UdpCounters(Counters):
    """in_errors: shorter than a header, a length field that does not fit, or a bad
    checksum (also in_csum_errors). no_ports: unicast to a port nobody bound.
    ignored_multi: the same for broadcasts (no ICMP). rcvbuf_errors: datagrams dropped
    because the application is not draining events."""

    __slots__ = ("in_datagrams", "no_ports", "in_errors", "out_datagrams", "rcvbuf_errors",
                 "in_csum_errors", "ignored_multi")


class Udp:
    def __init__(self, ip: Ipv4, icmp: Icmp, emit: Callable, rng=None) -> None:
        self.ip = ip
        self.icmp = icmp
        self.emit = emit
        self.rng = rng
        self.c = UdpCounters()
        self.ports: set[int] = set()
        # port -> (src, sport, dst, dport, payload, now) -> frames: the stack's services
        self.handlers: dict[int, Callable] = {}
        self._next_ephemeral = EPHEMERAL_PORTS.start

    # -- the port table --------------------------------------------------------------------

    def bind(self, port: int) -> int:
        """Bind ``port`` (0: pick a free ephemeral one). Returns the port bound."""
        _check_port(port, "port", allow_zero=True)
        if port == 0:
            return self._bind_ephemeral()
        if port in self.handlers:
            raise StackError(
                f"UDP port {port} is in use by the stack's DHCP client or server "
                "(EADDRINUSE); stop it first or pick another port")
        if port in self.ports:
            raise StackError(
                f"UDP port {port} is already bound (EADDRINUSE); unbind it first or pick "
                "another port (0 picks a free one)")
        self.ports.add(port)
        return port

    def attach(self, port: int, handler: Callable) -> None:
        """Deliver datagrams for ``port`` to ``handler`` (a service of the stack)."""
        if port in self.ports or port in self.handlers:
            raise StackError(
                f"UDP port {port} is already bound (EADDRINUSE); unbind it before "
                "starting the service that needs it")
        self.handlers[port] = handler

    def detach(self, port: int) -> None:
        self.handlers.pop(port, None)

    def _bind_ephemeral(self) -> int:
        r = EPHEMERAL_PORTS
        start = self.rng.randrange(r.start, r.stop) if self.rng is not None \
            else self._next_ephemeral
        for i in range(len(r)):
            port = r.start + (start - r.start + i) % len(r)
            if port not in self.ports and port not in self.handlers:
                self.ports.add(port)
                self._next_ephemeral = port + 1 if port + 1 < r.stop else r.start
                return port
        raise StackError("no free ephemeral UDP port (EADDRNOTAVAIL): unbind some")

    def unbind(self, port: int) -> None:
        if port not in self.ports:
            raise StackError(f"UDP port {port!r} is not bound")
        self.ports.discard(port)

    # -- sending ---------------------------------------------------------------------------

    def send(self, src_port: int, dst: bytes, dst_port: int, payload: bytes,
             now: float, ttl: int | None = None) -> list[bytes]:
        _check_port(src_port, "source port", allow_zero=False)
        _check_port(dst_port, "destination port", allow_zero=False)
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise StackError(f"UDP payload must be bytes, not {type(payload).__name__}")
        payload = bytes(payload)
        self.ip.check_size(len(payload), UDP_HLEN, "UDP payload")
        src, bcast = self.ip.route(dst)
        return self.output(src, src_port, dst, dst_port, payload, bcast, now, ttl)

    def output(self, src: bytes, src_port: int, dst: bytes, dst_port: int, payload: bytes,
               bcast: bool, now: float, ttl: int | None = None) -> list[bytes]:
        """Send from ``src`` with no route lookup (DHCP: from 0.0.0.0, or to a server that
        ARP resolves). ``bcast``: an Ethernet broadcast. Sizes are the caller's to check."""
        segment = udp_segment(src, dst, src_port, dst_port, payload)
        frames = self.ip.output(src, dst, IPPROTO_UDP, segment, bcast, now, ttl)
        self.c.out_datagrams += 1
        return frames

    # -- receiving -------------------------------------------------------------------------

    def rcv(self, packet: bytes, ihl: int, src: bytes, dst: bytes, ttl: int, bcast: bool,
            now: float) -> list[bytes]:
        c = self.c
        n = len(packet) - ihl
        if n < UDP_HLEN:
            c.in_errors += 1
            return []
        sport, dport, length, check = UDP_HDR.unpack_from(packet, ihl)
        if length < UDP_HLEN or length > n:
            c.in_errors += 1
            return []
        segment = packet[ihl:ihl + length]  # trims anything past the UDP length
        if check and udp_checksum(src, dst, segment):
            c.in_csum_errors += 1
            c.in_errors += 1
            return []
        handler = self.handlers.get(dport)
        if handler is not None:
            c.in_datagrams += 1
            return handler(src, sport, dst, dport, segment[UDP_HLEN:], now)
        if dport not in self.ports:
            if bcast:
                c.ignored_multi += 1
                return []
            c.no_ports += 1
            return self.icmp.unreach(packet, ihl, ICMP_PORT_UNREACH, now)
        c.in_datagrams += 1
        if not self.emit(UdpDatagram(src, sport, dst, dport,
                                     segment[UDP_HLEN:])):
            c.rcvbuf_errors += 1
        return []


def _check_port(port, what: str, *, allow_zero: bool) -> None:
    lo = 0 if allow_zero else 1
    if not isinstance(port, int) or isinstance(port, bool) or not lo <= port <= 65535:
        raise StackError(f"UDP {what} {port!r} must be an integer {lo}..65535")
