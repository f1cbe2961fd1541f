"""Rate-limited logging of offences, as the kernel's ``net_ratelimit()``.

Bad input is counted every time, by reason, at the counter that names it; the log line that
explains it is not worth a line per frame when a peer sends garbage at line rate. A
``RateLimit`` lets ``burst`` messages through per ``interval`` seconds (the kernel's
``net_ratelimit`` allows 10 per 5 s) and remembers how many it held back, so the next line
that passes can say so. Sans-I/O: the clock is injected (``time.monotonic`` by default).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

NET_MSG_BURST = 10  # messages per interval (net.core.message_burst)
NET_MSG_COST = 5.0  # the interval, in seconds (net.core.message_cost)


class RateLimit:
    """``allow()`` is True for at most ``burst`` calls per ``interval`` seconds."""

    def __init__(self, burst: int = NET_MSG_BURST, interval: float = NET_MSG_COST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or interval <= 0:
            raise ValueError(f"rate limit needs burst >= 1 and interval > 0, got {burst}, {interval}")
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._start = float("-inf")
        self._passed = 0
        self.suppressed = 0  # held back since the last one that passed

    def allow(self, now: float | None = None) -> bool:
        """``now`` overrides the clock (a sans-I/O caller passes its own time)."""
        if now is None:
            now = self._clock()
        if now - self._start >= self.interval:
            self._start = now
            self._passed = 0
        if self._passed < self.burst:
            self._passed += 1
            return True
        self.suppressed += 1
        return False

    def log(self, logger: logging.Logger, level: int, msg: str, *args: Any, now: float | None = None) -> bool:
        """Log ``msg % args`` if allowed, noting how many were held back before it."""
        if not self.allow(now):
            return False
        if self.suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        logger.log(level, msg, *args)
        return True
