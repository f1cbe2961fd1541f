"""Scheduling for the driver model: the subset of asyncio's event loop the driver uses.

The driver never reads a clock or sleeps. It is handed a loop object with ``time()``,
``call_soon(cb, *args)`` and ``call_later(delay, cb, *args)`` (each returning a handle with
``cancel()``), which is exactly what ``asyncio.AbstractEventLoop`` offers, so the node daemon
passes its running loop. Callbacks scheduled with ``call_soon`` play the role of the kernel's
softirq context (NAPI polls, TX completion); ``call_later`` is the timer wheel (coalescing
timers, the TX watchdog).

``ManualLoop`` is the same interface with a clock that moves only when a test says so.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any, Callable


class ManualHandle:
    """A scheduled callback; ``cancel()`` stops it from running (asyncio.Handle's contract)."""

    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """An event loop stand-in whose time advances only through ``advance()``.

    ``run_ready()`` runs every callback that is due now, including the ones those callbacks
    schedule for now, and returns how many ran; ``advance(dt)`` moves the clock forward in
    timer order, running what falls due on the way.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._ready: deque[ManualHandle] = deque()
        self._timers: list[tuple[float, int, ManualHandle]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._now

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> ManualHandle:
        handle = ManualHandle(self._now, callback, args)
        self._ready.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> ManualHandle:
        return self.call_at(self._now + max(0.0, delay), callback, *args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> ManualHandle:
        handle = ManualHandle(when, callback, args)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        return handle

    def pending(self) -> int:
        """Callbacks and timers not yet run or cancelled."""
        live = sum(1 for h in self._ready if not h.cancelled)
        return live + sum(1 for _, _, h in self._timers if not h.cancelled)

    def run_ready(self, limit: int = 1_000_000) -> int:
        """Run due callbacks until none is left; raise if more than ``limit`` run (a livelock)."""
        ran = 0
        while True:
            while self._timers and self._timers[0][0] <= self._now:
                _, _, handle = heapq.heappop(self._timers)
                self._ready.append(handle)
            if not self._ready:
                return ran
            handle = self._ready.popleft()
            if handle.cancelled:
                continue
            ran += 1
            if ran > limit:
                raise RuntimeError(f"ManualLoop.run_ready: more than {limit} callbacks, livelock?")
            handle.callback(*handle.args)

    def advance(self, dt: float) -> int:
        """Move the clock forward by ``dt`` seconds, firing timers in order on the way."""
        if dt < 0:
            raise ValueError(f"ManualLoop.advance: time does not go backwards (dt={dt})")
        target = self._now + dt
        ran = self.run_ready()
        while self._timers and self._timers[0][0] <= target:
            self._now = max(self._now, self._timers[0][0])
            ran += self.run_ready()
        self._now = target
        return ran + self.run_ready()
