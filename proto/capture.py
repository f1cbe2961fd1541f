"""Packet capture: a filter language and a bounded capture buffer (sans-I/O), shared by both
daemons.

The node daemon feeds every frame its vnet0 sees, both directions, from an ETH_P_ALL tap
(the way AF_PACKET sockets see frames in Linux: transmitted ones as PACKET_OUTGOING); the
switch feeds the frames crossing a mirrored port (``vnet switch mirror``: "in" from the node,
"out" to it). Each ``Capture`` keeps the frames its filter accepts in a bounded buffer; when
the reader falls behind, the oldest wait and new ones are dropped and counted (``dropped``),
as a full AF_PACKET ring drops and reports in ``tcpdump``'s "dropped by kernel" line.

The filter is a small subset of pcap-filter(7), compiled once to a predicate over the raw
frame bytes:

    primitive := [src|dst] host A.B.C.D | ether [src|dst] host MAC | ether proto (N|arp|ip)
               | arp | ip | icmp | udp | tcp | vlan | [src|dst] port N
    expr      := primitive | not expr | expr and expr | expr or expr | ( expr )

``host`` matches the IPv4 source/destination and, for ARP, the sender/target protocol
addresses. ``port`` matches UDP and TCP. Frames are looked at through one 802.1Q tag.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections import deque
from dataclasses import dataclass
from typing import Callable

Predicate = Callable[[bytes], bool]

from vnet.proto.ether import ETH_P_8021Q, ETH_P_ARP, ETH_P_IP
IPPROTO = {"icmp": 1, "tcp": 6, "udp": 17}

DEFAULT_BUFFER = 4096  # frames a capture holds for its reader


class FilterError(ValueError):
    """A capture filter that does not parse, with the offending word and what was expected."""


# -- frame field access (never raise on short frames: a field that is not there does not match)


def _l3(frame: bytes) -> tuple[int, int]:
    """(ethertype, offset of the L3 header), looking through one VLAN tag."""
    if len(frame) < 14:
        return -1, len(frame)
    etype = (frame[12] << 8) | frame[13]
    if etype == ETH_P_8021Q and len(frame) >= 18:
        return (frame[16] << 8) | frame[17], 18
    return etype, 14


def _ip_addrs(frame: bytes) -> tuple[bytes, bytes] | None:
    etype, off = _l3(frame)
    if etype == ETH_P_IP and len(frame) >= off + 20:
        return frame[off + 12:off + 16], frame[off + 16:off + 20]
    if etype == ETH_P_ARP and len(frame) >= off + 28:
        return frame[off + 14:off + 18], frame[off + 24:off + 28]
    return None


def _ip_proto(frame: bytes) -> tuple[int, int] | None:
    """(protocol, offset of the L4 header) of an unfragmented-first IPv4 packet."""
    etype, off = _l3(frame)
    if etype != ETH_P_IP or len(frame) < off + 20:
        return None
    ihl = (frame[off] & 0x0F) * 4
    return frame[off + 9], off + ihl


def _ports(frame: bytes) -> tuple[int, int] | None:
    got = _ip_proto(frame)
    if got is None or got[0] not in (6, 17) or len(frame) < got[1] + 4:
        return None
    return struct.unpack_from("!HH", frame, got[1])


# -- the parser ---------------------------------------------------------------------------------


def compile_filter(expr: str | None) -> Predicate:
    """Compile a filter; an empty one accepts everything. Raises FilterError."""
    tokens = (expr or "").replace("(", " ( ").replace(")", " ) ").split()
    if not tokens:
        return lambda frame: True
    parser = _Parser(tokens)
    pred = parser.expr()
    if parser.pos != len(tokens):
        raise FilterError(f"capture filter: unexpected {tokens[parser.pos]!r} at word {parser.pos + 1}")
    return pred


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, what: str = "a word") -> str:
        tok = self.peek()
        if tok is None:
            raise FilterError(f"capture filter: ends where {what} was expected")
        self.pos += 1
        return tok

    def expr(self) -> Predicate:
        left = self.term()
        while self.peek() in ("or", "||"):
            self.take()
            right = self.term()
            left = (lambda a, b: lambda f: a(f) or b(f))(left, right)
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while self.peek() in ("and", "&&"):
            self.take()
            right = self.factor()
            left = (lambda a, b: lambda f: a(f) and b(f))(left, right)
        return left

    def factor(self) -> Predicate:
        tok = self.take("a filter primitive")
        if tok in ("not", "!"):
            inner = self.factor()
            return lambda f: not inner(f)
        if tok == "(":
            inner = self.expr()
            if self.take("')'") != ")":
                raise FilterError("capture filter: missing ')'")
            return inner
        direction = None
        if tok in ("src", "dst"):
            direction, tok = tok, self.take("host or port after " + tok)
        if tok == "host":
            return self._host(direction, self.take("an IPv4 address after host"))
        if tok == "port":
            return self._port(direction, self.take("a port number after port"))
        if direction is not None:
            raise FilterError(f"capture filter: {direction} must be followed by host or port, not {tok!r}")
        if tok == "ether":
            return self._ether()
        if tok in IPPROTO:
            proto = IPPROTO[tok]
            return lambda f: (_ip_proto(f) or (None,))[0] == proto
        if tok == "ip":
            return lambda f: _l3(f)[0] == ETH_P_IP
        if tok == "arp":
            return lambda f: _l3(f)[0] == ETH_P_ARP
        if tok == "vlan":
            return lambda f: len(f) >= 14 and f[12:14] == b"\x81\x00"
        raise FilterError(
            f"capture filter: unknown word {tok!r} (host, port, ether host, ether proto, arp, ip, "
            "icmp, udp, tcp, vlan, and, or, not)")

    @staticmethod
    def _host(direction: str | None, text: str) -> Predicate:
        try:
            ip = ipaddress.IPv4Address(text).packed
        except ValueError:
            raise FilterError(f"capture filter: {text!r} is not an IPv4 address") from None

        def match(f: bytes) -> bool:
            addrs = _ip_addrs(f)
            if addrs is None:
                return False
            src, dst = addrs
            return (direction != "dst" and src == ip) or (direction != "src" and dst == ip)
        return match

    @staticmethod
    def _port(direction: str | None, text: str) -> Predicate:
        # isdigit() alone passes "²" and other Unicode digits that int() refuses, and
        # int() refuses more than 4300 digits: both must be this sentence, not a ValueError.
        if not (text.isascii() and text.isdigit() and len(text.lstrip("0")) <= 5) \
                or not 0 <= int(text) <= 65535:
            raise FilterError(f"capture filter: port {text!r} is not a number from 0 to 65535")
        port = int(text)

        def match(f: bytes) -> bool:
            ports = _ports(f)
            if ports is None:
                return False
            return (direction != "dst" and ports[0] == port) or (direction != "src" and ports[1] == port)
        return match

    def _ether(self) -> Predicate:
        tok = self.take("host, src, dst or proto after ether")
        direction = None
        if tok in ("src", "dst"):
            direction, tok = tok, self.take("host after ether " + tok)
        if tok == "host":
            text = self.take("a MAC address")
            try:
                mac = bytes.fromhex(text.replace(":", "").replace("-", ""))
                if len(mac) != 6:
                    raise ValueError
            except ValueError:
                raise FilterError(f"capture filter: {text!r} is not a MAC address") from None
            return lambda f: (direction != "src" and f[0:6] == mac) or (direction != "dst" and f[6:12] == mac)
        if tok == "proto" and direction is None:
            text = self.take("an ethertype")
            named = {"ip": ETH_P_IP, "arp": ETH_P_ARP}
            try:
                etype = named[text] if text in named else int(text, 0)
            except ValueError:
                raise FilterError(f"capture filter: ether proto {text!r}: a number (0x88b5) or ip/arp") from None
            return lambda f: _l3(f)[0] == etype
        raise FilterError(f"capture filter: ether {tok!r}: expected ether [src|dst] host MAC or ether proto N")


# -- the buffer ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Captured:
    """One captured frame: wall-clock time, direction ("in" or "out") and the bytes."""

    ts: float
    direction: str
    frame: bytes


class Capture:
    """One capture session: a filter and a bounded buffer of what it accepted.

    ``offer()`` is called for every frame; ``take()`` hands the reader what has accumulated.
    Counters: ``seen`` (offered), ``matched`` (accepted by the filter), ``dropped`` (accepted
    but the buffer was full).
    """

    def __init__(self, expr: str | None = None, buffer: int = DEFAULT_BUFFER, count: int | None = None) -> None:
        if buffer < 1:
            raise ValueError(f"capture buffer {buffer}: must hold at least one frame")
        self.expr = expr or ""
        self._match = compile_filter(expr)
        self._buf: deque[Captured] = deque()
        self.buffer = buffer
        self.count = count  # stop accepting after this many (tcpdump -c)
        self.seen = 0
        self.matched = 0
        self.dropped = 0

    @property
    def done(self) -> bool:
        return self.count is not None and self.matched >= self.count

    def offer(self, ts: float, direction: str, frame: bytes) -> None:
        self.seen += 1
        if self.done or not self._match(frame):
            return
        self.matched += 1
        if len(self._buf) >= self.buffer:
            self.dropped += 1
            return
        self._buf.append(Captured(ts, direction, bytes(frame)))

    def take(self, limit: int = 1024) -> list[Captured]:
        out = []
        while self._buf and len(out) < limit:
            out.append(self._buf.popleft())
        return out

    def pending(self) -> int:
        return len(self._buf)

    def stats(self) -> dict:
        return {"filter": self.expr, "seen": self.seen, "matched": self.matched, "dropped": self.dropped,
                "pending": len(self._buf)}


class CaptureSession:
    """A ``Capture`` read from another process: the long poll behind the node's
    ``capture_read`` and the switch's ``mirror_read``, the one piece here that waits.

    ``offer`` feeds frames and wakes a waiting reader; ``read`` hands over what is buffered,
    waiting up to ``timeout`` for the first frame; ``last_read`` lets the daemon stop a
    session whose reader has gone. ``port`` names the switch port a mirror records.
    """

    def __init__(self, capture: Capture, now: float, port: str | None = None) -> None:
        self.capture = capture
        self.port = port
        self.last_read = now
        self._ready = asyncio.Event()

    def offer(self, ts: float, direction: str, frames) -> None:
        offer = self.capture.offer
        for frame in frames:
            offer(ts, direction, frame)
        self._ready.set()

    def idle_for(self, now: float) -> float:
        return now - self.last_read

    async def read(self, clock, timeout: float, limit: int) -> dict:
        """The reply of a read: frames (ts, dir, frame), ``done`` (-c reached and drained),
        and the capture's counters. ``clock()`` is the daemon's loop time."""
        self.last_read = clock()
        capture = self.capture
        if not capture.pending() and not capture.done:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), float(timeout))
            except asyncio.TimeoutError:
                pass
        self.last_read = clock()
        frames = capture.take(int(limit))
        return {"frames": [{"ts": c.ts, "dir": c.direction, "frame": c.frame} for c in frames],
                "done": capture.done and not capture.pending(), **capture.stats()}
