"""DHCP on one interface, the layer that binds the codec, the server and the client to the
stack (like ``Udp``/``Icmp``): UDP port 67 (server) and 68 (client) handlers, decode and
count, send from 0.0.0.0 or our address, timers."""

from __future__ import annotations

from typing import Callable

from ..ipv4 import LIMITED_BROADCAST
from .client import DhcpClient, DhcpState
from .codec import (
    BOOTREPLY, BOOTREQUEST, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpDecodeError, DhcpMessage,
    decode_dhcp, encode_dhcp,
)
from .counters import DhcpCounters
from .server import DhcpServer

_S = DhcpState


class Dhcp:
    """DHCP on one interface: the UDP port 67/68 handlers (``server_rcv``/``client_rcv``),
    sending with an explicit source (0.0.0.0 before we have an address), and the address
    operations the client needs. host.py binds it; ``server``/``client`` are None when not
    running."""

    def __init__(self, dev, addrs, arp, udp, emit: Callable, rng=None) -> None:
        self.dev = dev
        self.addrs = addrs
        self.arp = arp
        self.udp = udp
        self.emit = emit
        self.rng = rng
        self.c = DhcpCounters()
        self.server: DhcpServer | None = None
        self.client: DhcpClient | None = None

    @property
    def mac(self) -> bytes:
        return self.dev.mac

    # -- what the client needs from the stack ----------------------------------------------

    def send(self, msg: DhcpMessage, src: bytes, dst: bytes, now: float) -> list[bytes]:
        self.c.count(msg.msg_type, "sent")
        sport, dport = (DHCP_SERVER_PORT, DHCP_CLIENT_PORT) if msg.op == BOOTREPLY \
            else (DHCP_CLIENT_PORT, DHCP_SERVER_PORT)
        return self.udp.output(src, sport, dst, dport, encode_dhcp(msg),
                               dst == LIMITED_BROADCAST, now)

    def add_address(self, ip: bytes, prefixlen: int, now: float) -> list[bytes]:
        ifa = self.addrs.add(ip, prefixlen)
        return self.arp.start_dad(ifa, now)

    def del_address(self, ip: bytes) -> None:
        self.addrs.remove(ip)

    def address_state(self, ip: bytes) -> str | None:
        ifa = self.addrs.find(ip)
        return None if ifa is None else ifa.state

    # -- the wire --------------------------------------------------------------------------

    def _decode(self, payload: bytes, op: int) -> DhcpMessage | None:
        try:
            msg = decode_dhcp(payload)
        except DhcpDecodeError as e:
            self.c.bad(e.reason)
            return None
        if msg.op != op:
            self.c.bad("bad_op")
            return None
        return msg

    def server_rcv(self, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes,
                   now: float) -> list[bytes]:
        server = self.server
        msg = self._decode(payload, BOOTREQUEST)
        if msg is None or server is None:
            return []
        if server.ip not in self.addrs.local:
            self.c.count(msg.msg_type, "received")
            self.c.ignored += 1  # our address is tentative or in conflict: not serving
            return []
        out = server.handle(msg, now)
        if out is None:
            return []
        reply, to = out
        return self.send(reply, server.ip, to, now)

    def client_rcv(self, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes,
                   now: float) -> list[bytes]:
        client = self.client
        msg = self._decode(payload, BOOTREPLY)
        if msg is None or client is None:
            return []
        return client.receive(msg, src, now)

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[bytes]:
        return self.client.tick(now) if self.client is not None else []

    def poll(self, now: float) -> list[bytes]:
        """After ARP ran (a received frame, a tick): the client's DAD check."""
        client = self.client
        if client is not None and client.state == _S.CHECKING:
            return client.check(now)
        return []

    def next_deadline(self) -> float | None:
        return self.client.next_deadline() if self.client is not None else None

    def link_up(self, now: float) -> list[bytes]:
        return self.client.link_up(now) if self.client is not None else []
