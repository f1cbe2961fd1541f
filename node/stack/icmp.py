"""ICMP (RFC 792): echo request/reply, destination unreachable, and ping(8)'s statistics.

The stack answers echo requests to its addresses (not broadcast ones, like Linux's default
icmp_echo_ignore_broadcasts=1), delivers echo replies as EchoReply events (the application
matches ident/seq: there are no ping sockets), sends destination unreachable for closed UDP
ports and unknown protocols, and reports ones it receives as DestUnreachable events.

Errors we send obey RFC 1122 3.2.2 (never about an ICMP error, a broadcast, a fragment or a
non-unicast source) and Linux's per-destination rate limit (icmp_ratelimit): a token bucket
of ``burst`` (6) messages refilled at one per ``ratelimit`` (1 s); 0 disables it.

``PingStats`` and the ``format_*`` helpers reproduce iputils ping output for the CLI.
"""

from __future__ import annotations

import math
import struct
from typing import Callable

from .common import Counters, StackError
from .events import DestUnreachable, EchoReply
from .ipv4 import (
    IP_HDR, IP_HLEN, IPPROTO_ICMP, IPPROTO_UDP, ZERO_IP, Ipv4, inet_checksum, ip_str,
    is_martian_src,
)

ICMP_FMT = "!BBHHH"  # type, code, checksum, then id/seq (echo) or unused/mtu (errors)
ICMP_HDR = struct.Struct(ICMP_FMT)
ICMP_HLEN = 8
ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO = 8
ICMP_NET_UNREACH = 0
ICMP_HOST_UNREACH = 1
ICMP_PROT_UNREACH = 2
ICMP_PORT_UNREACH = 3
# Types that are errors (never answered with an error): unreach, quench, redirect,
# time exceeded, parameter problem.
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
# RFC 1812 4.3.2.3: an error quotes as much of the datagram as fits in 576 bytes.
ICMP_ERROR_MAX = 576 - IP_HLEN - ICMP_HLEN

_PATTERN = bytes(i & 0xFF for i in range(65536))


def icmp_message(typ: int, code: int, rest_hi: int, rest_lo: int, data: bytes) -> bytes:
    """An ICMP message with its checksum."""
    check = inet_checksum(ICMP_HDR.pack(typ, code, 0, rest_hi, rest_lo) + data)
    return ICMP_HDR.pack(typ, code, check, rest_hi, rest_lo) + data


def echo_data(size: int) -> bytes:
    """ping(8)'s fill pattern: byte i is i mod 256."""
    return _PATTERN[:size]


class IcmpCounters(Counters):
    """The ICMP MIB in snake_case. in_errors: too short, bad checksum (also
    in_csum_errors, as Linux counts), or an unparsable quoted packet in an error.
    in_bcast_ignored: echo requests to a broadcast address (icmp_echo_ignore_broadcasts).
    out_rate_limit_host: errors not sent because of the per-destination rate limit.
    rcvbuf_errors: echo replies dropped because the application is not draining events.
    """

    __slots__ = (
        "in_msgs", "in_errors", "in_csum_errors", "in_dest_unreachs", "in_echos",
        "in_echo_reps", "in_other_types", "in_bcast_ignored", "out_msgs", "out_echos",
        "out_echo_reps", "out_dest_unreachs", "out_rate_limit_host", "rcvbuf_errors",
    )


class Icmp:
    def __init__(self, ip: Ipv4, emit: Callable, *, ratelimit: float = 1.0, burst: int = 6,
                 echo_ignore_broadcasts: bool = True) -> None:
        self.ip = ip
        self.emit = emit
        self.ratelimit = ratelimit
        self.burst = burst
        self.echo_ignore_broadcasts = echo_ignore_broadcasts
        self.c = IcmpCounters()
        self._buckets: dict[bytes, tuple[float, float]] = {}  # dst -> (tokens, last)

    # -- sending ---------------------------------------------------------------------------

    def send_echo(self, dst: bytes, ident: int, seq: int, data: bytes, now: float) -> list:
        for name, v in (("ident", ident), ("seq", seq)):
            if not isinstance(v, int) or not 0 <= v <= 0xFFFF:
                raise StackError(f"echo {name} {v!r} must be an integer 0..65535")
        self.ip.check_size(len(data), ICMP_HLEN, "ICMP echo data")
        msg = icmp_message(ICMP_ECHO, 0, ident, seq, data)
        frames = self.ip.send(dst, IPPROTO_ICMP, msg, now)
        self.c.out_msgs += 1
        self.c.out_echos += 1
        return frames

    def _allow(self, dst: bytes, now: float) -> bool:
        """Linux's inet_peer_xrlim_allow: tokens are seconds, capped at burst * ratelimit."""
        if self.ratelimit <= 0:
            return True
        cap = self.burst * self.ratelimit
        b = self._buckets.get(dst)
        if b is None:
            if len(self._buckets) >= 1024:
                self._buckets.clear()
            tokens = cap
        else:
            tokens = min(cap, b[0] + max(0.0, now - b[1]))
        ok = tokens >= self.ratelimit
        if ok:
            tokens -= self.ratelimit
        self._buckets[dst] = (tokens, now)
        return ok

    def unreach(self, packet: bytes, ihl: int, code: int, now: float) -> list[bytes]:
        """A destination unreachable about received ``packet`` (icmp_send). Never raises."""
        src = packet[12:16]
        dst = packet[16:20]
        if src == ZERO_IP or is_martian_src(src) or self.ip.is_broadcast(src):
            return []
        if packet[6] & 0x1F or packet[7]:
            return []  # a non-first fragment
        if packet[9] == IPPROTO_ICMP and len(packet) > ihl and packet[ihl] in ICMP_ERROR_TYPES:
            return []
        if not self._allow(src, now):
            self.c.out_rate_limit_host += 1
            return []
        room = min(ICMP_ERROR_MAX, self.ip.max_payload() - ICMP_HLEN)
        msg = icmp_message(ICMP_DEST_UNREACH, code, 0, 0, packet[:room])
        self.c.out_msgs += 1
        self.c.out_dest_unreachs += 1
        return self.ip.reply(src, IPPROTO_ICMP, msg, now, src=dst)

    # -- receiving -------------------------------------------------------------------------

    def rcv(self, packet: bytes, ihl: int, src: bytes, dst: bytes, ttl: int, bcast: bool,
            now: float) -> list[bytes]:
        c = self.c
        c.in_msgs += 1
        if len(packet) - ihl < ICMP_HLEN:
            c.in_errors += 1
            return []
        if inet_checksum(packet[ihl:]):
            c.in_csum_errors += 1
            c.in_errors += 1
            return []
        typ, code, _, ident, seq = ICMP_HDR.unpack_from(packet, ihl)
        if typ == ICMP_ECHO:
            c.in_echos += 1
            if bcast and self.echo_ignore_broadcasts:
                c.in_bcast_ignored += 1
                return []
            msg = icmp_message(ICMP_ECHOREPLY, 0, ident, seq, packet[ihl + ICMP_HLEN:])
            c.out_msgs += 1
            c.out_echo_reps += 1
            return self.ip.reply(src, IPPROTO_ICMP, msg, now, src=dst)
        if typ == ICMP_ECHOREPLY:
            c.in_echo_reps += 1
            ev = EchoReply(src, ident, seq, ttl, len(packet) - ihl,
                           packet[ihl + ICMP_HLEN:])
            if not self.emit(ev):
                c.rcvbuf_errors += 1
            return []
        if typ == ICMP_DEST_UNREACH:
            c.in_dest_unreachs += 1
            self._rcv_unreach(packet, ihl + ICMP_HLEN, src, code)
            return []
        c.in_other_types += 1
        return []

    def _rcv_unreach(self, packet: bytes, off: int, src: bytes, code: int) -> None:
        """Report the packet quoted in an ICMP error, if it parses."""
        if len(packet) < off + IP_HLEN:
            self.c.in_errors += 1
            return
        vihl, _, _, _, _, _, proto, _, _, qdst = IP_HDR.unpack_from(packet, off)
        qihl = (vihl & 15) * 4
        if vihl >> 4 != 4 or qihl < IP_HLEN or len(packet) < off + qihl + 8:
            self.c.in_errors += 1
            return
        a = b = 0
        if proto == IPPROTO_UDP:
            a, b = struct.unpack_from("!HH", packet, off + qihl)
        elif proto == IPPROTO_ICMP:
            a, b = struct.unpack_from("!HH", packet, off + qihl + 4)
        self.emit(DestUnreachable(src, code, qdst, proto, a, b))


# -- ping(8) presentation ------------------------------------------------------------------


def _ms3(us: int) -> str:
    return f"{us // 1000}.{us % 1000:03d}"


def format_rtt(rtt: float) -> str:
    """A round-trip time as ping prints it: "0.321", "12.35", "123.4"... (milliseconds)."""
    t = int(round(rtt * 1e6))
    if t >= 100000 - 50:
        return f"{(t + 500) // 1000}"
    if t >= 10000 - 5:
        return f"{(t + 50) // 1000}.{((t + 50) % 1000) // 100}"
    if t >= 1000:
        return f"{(t + 5) // 1000}.{((t + 5) % 1000) // 10:02d}"
    return _ms3(t)


def format_echo_reply(ev: EchoReply, rtt: float | None = None) -> str:
    """"64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.321 ms"."""
    src = ev.src if isinstance(ev.src, str) else ip_str(ev.src)
    line = f"{ev.size} bytes from {src}: icmp_seq={ev.seq} ttl={ev.ttl}"
    return line if rtt is None else f"{line} time={format_rtt(rtt)} ms"


def format_unreachable(local_ip: str | bytes, seq: int) -> str:
    """What ping prints for a packet lost to a failed ARP resolution (NeighFailed)."""
    if isinstance(local_ip, bytes):
        local_ip = ip_str(local_ip)
    return f"From {local_ip} icmp_seq={seq} Destination Host Unreachable"


class PingStats:
    """ping(8)'s running statistics and summary (iputils ping_common.c), pure.

    RTTs are kept in whole microseconds and reduced with iputils' integer arithmetic, so the
    summary matches ping's digit for digit.
    """

    def __init__(self) -> None:
        self.transmitted = 0
        self.received = 0
        self.duplicates = 0
        self.errors = 0
        self._tsum = 0
        self._tsum2 = 0
        self._tmin: int | None = None
        self._tmax = 0

    def on_transmit(self) -> None:
        self.transmitted += 1

    def on_reply(self, rtt: float, duplicate: bool = False) -> None:
        """A reply after ``rtt`` seconds; duplicates count in the RTTs but not as received."""
        t = max(0, int(round(rtt * 1e6)))
        self._tsum += t
        self._tsum2 += t * t
        self._tmin = t if self._tmin is None else min(self._tmin, t)
        self._tmax = max(self._tmax, t)
        if duplicate:
            self.duplicates += 1
        else:
            self.received += 1

    def on_error(self) -> None:
        """An error reported for a probe (e.g. Destination Host Unreachable)."""
        self.errors += 1

    @property
    def loss_percent(self) -> float:
        if not self.transmitted:
            return 0.0
        return (self.transmitted - self.received) * 100.0 / self.transmitted

    def rtt_us(self) -> tuple[int, int, int, int] | None:
        """(min, avg, max, mdev) in microseconds, or None before the first reply."""
        total = self.received + self.duplicates
        if not total or self._tmin is None:
            return None
        avg = self._tsum // total
        var = (self._tsum2 - (self._tsum * self._tsum) // total) // total
        return self._tmin, avg, self._tmax, math.isqrt(max(0, var))

    def summary_lines(self, elapsed: float) -> list[str]:
        """The two summary lines; ``elapsed`` is the run time in seconds."""
        line = f"{self.transmitted} packets transmitted, {self.received} received"
        if self.duplicates:
            line += f", +{self.duplicates} duplicates"
        if self.errors:
            line += f", +{self.errors} errors"
        if self.transmitted:
            line += f", {self.loss_percent:g}% packet loss, time {int(elapsed * 1000 + 0.5)}ms"
        lines = [line]
        rtt = self.rtt_us()
        if rtt is not None and self.received:
            lines.append("rtt min/avg/max/mdev = " + "/".join(_ms3(v) for v in rtt) + " ms")
        return lines

    def format(self, dest: str, elapsed: float) -> str:
        """The whole block ping prints at the end."""
        return "\n".join([f"--- {dest} ping statistics ---", *self.summary_lines(elapsed)])
