"""Bad input is counted every time and logged at most net_ratelimit's burst per interval."""

from __future__ import annotations

import logging

import pytest

from vnet.proto import wire
from vnet.switch.core import SwitchCore
from vnet.proto.ratelimit import RateLimit

MAC = bytes([2, 0, 0, 0, 0, 1])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_lets_a_burst_through_per_interval_and_counts_the_rest():
    clock = Clock()
    rl = RateLimit(burst=3, interval=5.0, clock=clock)
    assert [rl.allow() for _ in range(5)] == [True, True, True, False, False]
    assert rl.suppressed == 2
    clock.now = 4.9
    assert not rl.allow()
    clock.now = 5.0
    assert rl.allow() and rl.allow()
    with pytest.raises(ValueError, match="burst >= 1"):
        RateLimit(burst=0)


def test_rate_limited_log_says_how_many_it_held_back(caplog):
    clock = Clock()
    rl = RateLimit(burst=1, interval=1.0, clock=clock)
    log = logging.getLogger("vnet.test")
    with caplog.at_level(logging.WARNING, "vnet.test"):
        for i in range(4):
            rl.log(log, logging.WARNING, "bad thing %d", i)
        clock.now = 1.0
        rl.log(log, logging.WARNING, "bad thing %d", 9)
    assert [r.getMessage() for r in caplog.records] == ["bad thing 0", "bad thing 9 (3 similar messages suppressed)"]


def test_a_port_sending_garbage_is_counted_fully_and_logged_sparingly(caplog):
    core = SwitchCore()
    core.handle(b"p", wire.hello("n1", [MAC], 1500), 0.0)
    with caplog.at_level(logging.WARNING, "vnet.switch.core"):
        for i in range(1000):  # within one 5 s interval: runts, bad sources, garbage payloads
            core.handle(b"p", wire.frames_msg([b"\x00" * 10]), 1.0 + i / 1000)
            core.handle(b"p", wire.frames_msg([b"\xff" * 6 + b"\x01" * 6 + b"\x88\xb5"]), 1.0 + i / 1000)
            core.handle(b"p", [wire.MSG_FRAMES, b"\x00\xff" + b"x" * 3], 1.0 + i / 1000)
        core.handle(b"p", wire.frames_msg([b"\x00" * 10]), 7.0)  # the next interval
    t = core.totals
    assert (t.runt, t.bad_src, t.malformed) == (1001, 1000, 1000)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 11
    assert lines[0] == "port 1 'n1': dropped 1 runt"
    assert lines[-1] == "port 1 'n1': dropped 1 runt (2990 similar messages suppressed)"
