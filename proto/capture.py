"""Packet capture: capture filters and a bounded capture buffer (sans-I/O), shared by both
daemons and ``vnet capture -r``.

The node daemon feeds every frame its vnet0 sees, both directions, from an ETH_P_ALL tap
(the way AF_PACKET sockets see frames in Linux: transmitted ones as PACKET_OUTGOING); the
switch feeds the frames crossing a mirrored port (``vnet switch mirror``: "in" from the node,
"out" to it). Each ``Capture`` keeps the frames its filter accepts, cut to its snap length, in
a bounded buffer; when the reader falls behind, the oldest wait and new ones are dropped and
counted (``dropped``), as a full AF_PACKET ring drops and reports in ``tcpdump``'s "dropped by
kernel" line.

Filters are pcap-filter(7), compiled by libpcap itself (``vnet.proto.bpf``), so they mean
what they mean to tcpdump. Where libpcap is not installed, vnet's own matcher of a subset
(``vnet.proto.pcapfilter``) stands in and refuses what it does not know. ``filter_engine()``
says which one runs.

Limits (``check_limits``): a buffer of 1..CAPTURE_BUFFER_MAX frames, a count of at least 1,
a snap length of 1..MAXIMUM_SNAPLEN bytes. Bad values are the caller's mistake: a
CaptureLimitError that names the limit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Callable

from vnet.proto.bpf import MAXIMUM_SNAPLEN, BpfCompileError, libpcap
from vnet.proto.pcapfilter import FilterError, compile_python

Predicate = Callable[..., bool]  # (frame, wirelen=None) -> bool

DEFAULT_BUFFER = 4096  # frames a capture holds for its reader
CAPTURE_BUFFER_MAX = 65536  # frames: 64 Ki frames of up to 64 KiB bound a capture's memory
DEFAULT_SNAPLEN = MAXIMUM_SNAPLEN  # tcpdump's default: whole frames

__all__ = ["Capture", "CaptureLimitError", "CaptureSession", "Captured", "FilterError", "check_limits",
           "compile_filter", "filter_engine"]


class CaptureLimitError(ValueError):
    """A capture's buffer, count or snap length out of its bounds; the message names them."""


def check_limits(buffer: object = DEFAULT_BUFFER, count: object = None, snaplen: object = DEFAULT_SNAPLEN
                 ) -> tuple[int, int | None, int]:
    """(buffer, count, snaplen) as ints, or CaptureLimitError naming the bound broken."""
    def whole(name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CaptureLimitError(f"capture {name} {value!r}: must be a whole number")
        return value

    buffer = whole("buffer", buffer)
    if not 1 <= buffer <= CAPTURE_BUFFER_MAX:
        raise CaptureLimitError(f"capture buffer {buffer}: must hold 1 to {CAPTURE_BUFFER_MAX} frames")
    if count is not None:
        count = whole("count", count)
        if count < 1:
            raise CaptureLimitError(f"capture count {count}: must be at least 1 (or none, to run until stopped)")
    snaplen = whole("snaplen", snaplen)
    if not 1 <= snaplen <= MAXIMUM_SNAPLEN:
        raise CaptureLimitError(f"capture snaplen {snaplen}: must be 1 to {MAXIMUM_SNAPLEN} bytes")
    return buffer, count, snaplen


def filter_engine() -> str:
    """Which compiler filters go to: "libpcap VERSION", or the fallback's name."""
    lib = libpcap()
    return lib.version if lib is not None else "vnet's pcap-filter subset (libpcap not found)"


def compile_filter(expr: str | None, engine: str | None = None) -> Predicate:
    """Compile a filter to ``match(frame, wirelen=None) -> bool`` (``wirelen``: the frame's
    length on the wire when ``frame`` was cut short, as pcap's ``len``); an empty one accepts everything. Raises FilterError (with libpcap's
    sentence when libpcap refused it). ``engine`` forces "libpcap" or "python"; by default
    libpcap where it is installed."""
    if expr is not None and not isinstance(expr, str):
        raise FilterError(f"capture filter {expr!r}: must be text, as tcpdump's")
    if not (expr or "").strip():
        return lambda frame, wirelen=None: True
    if engine not in (None, "libpcap", "python"):
        raise ValueError(f"filter engine {engine!r}: libpcap or python")
    lib = libpcap() if engine != "python" else None
    if lib is None:
        if engine == "libpcap":
            raise FilterError("capture filter: libpcap is not installed")
        return compile_python(expr)
    try:
        return lib.compile(expr)
    except BpfCompileError as exc:
        raise FilterError(str(exc)) from None


# -- the buffer ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Captured:
    """One captured frame: wall-clock time, direction ("in" or "out"), the bytes (cut to the
    snap length) and the frame's length on the wire (pcap's caplen and len)."""

    ts: float
    direction: str
    frame: bytes
    wirelen: int


class Capture:
    """One capture session: a filter and a bounded buffer of what it accepted.

    ``offer()`` is called for every frame; ``take()`` hands the reader what has accumulated.
    Counters: ``seen`` (offered), ``matched`` (accepted by the filter), ``dropped`` (accepted
    but the buffer was full). ``match`` is a filter compiled beforehand (the daemons compile
    off their event loop); by default ``expr`` is compiled here.
    """

    def __init__(self, expr: str | None = None, buffer: int = DEFAULT_BUFFER, count: int | None = None,
                 snaplen: int = DEFAULT_SNAPLEN, match: Predicate | None = None) -> None:
        self.buffer, self.count, self.snaplen = check_limits(buffer, count, snaplen)
        self.expr = expr or ""
        self._match = match if match is not None else compile_filter(expr)
        self._buf: deque[Captured] = deque()
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
        self._buf.append(Captured(ts, direction, bytes(frame[:self.snaplen]), len(frame)))

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
        """The reply of a read: frames (ts, dir, frame, len: on the wire), ``done`` (-c reached and drained),
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
        return {"frames": [{"ts": c.ts, "dir": c.direction, "frame": c.frame, "len": c.wirelen} for c in frames],
                "done": capture.done and not capture.pending(), **capture.stats()}
