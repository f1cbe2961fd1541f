"""The switch's tools pipeline (switch/pipeline.py) wired to a real core, with a manual clock:
mirrors and impairments both ways, the delay line, and the counters staying true."""

from __future__ import annotations

import pytest

from vnet.node.loop import ManualLoop
from vnet.proto import wire
from vnet.proto.capture import FilterError
from vnet.switch.core import SwitchCore, UnknownPort
from vnet.switch.pipeline import MIRROR_IDLE_TIMEOUT, PortTools

MAC = {n: bytes([2, 0, 0, 0, 0, i]) for i, n in enumerate("abc", 1)}
PEER = {n: f"peer-{n}".encode() for n in "abc"}
T0 = 1000.0


def eth(dst: bytes, src: bytes, i: int = 0) -> bytes:
    return dst + src + b"\x88\xb5" + i.to_bytes(4, "big") + b"x" * 42


@pytest.fixture
def tools() -> PortTools:
    core = SwitchCore()
    for n in "abc":
        core.handle(PEER[n], wire.hello(n, [MAC[n]], 1500), T0)
    t = PortTools(core, epoch=5000.0)
    t.sync()
    return t


def frames_of(messages, peer: bytes) -> list[bytes]:
    return [bytes(f) for p, parts in messages if p == peer and parts[0] == wire.MSG_FRAMES
            for f in wire.unpack_frames(parts[1])]


def rx(tools: PortTools, sender: str, frames: list[bytes], now: float):
    """The server's ingress path: hooked ports go through the tools, the others to the core."""
    parts = wire.frames_msg(frames)
    if PEER[sender] in tools.hooks_in:
        return tools.ingress(PEER[sender], parts, now)
    return tools.core.handle(PEER[sender], parts, now)


def test_no_tools_no_hooks(tools):
    assert tools.hooks_in == {} and tools.hooks_out == {} and tools.next_at() is None
    tools.impair("a", T0, dir="in", loss="0%")  # a plain cable: still no hook
    assert tools.hooks_in == {}


def test_ingress_delay_holds_frames_until_due_then_forwards_them(tools):
    tools.impair("a", T0, dir="in", delay="10ms")
    assert set(tools.hooks_in) == {PEER["a"]} and tools.hooks_out == {}
    batch = [eth(MAC["b"], MAC["a"], i) for i in range(3)]
    assert rx(tools, "a", batch, T0) == []  # held; the message still refreshed the port
    core = tools.core
    assert core.port_by_name("a").counters.rx_packets == 0
    assert tools.next_at() == pytest.approx(T0 + 0.010)
    assert tools.release(T0 + 0.009) == ([], [])
    forwarded, txs = tools.release(T0 + 0.010)
    assert txs == [] and frames_of(forwarded, PEER["b"]) == batch
    assert core.port_by_name("a").counters.rx_packets == 3
    assert tools.next_at() is None
    assert tools.impairs["a"]["in"].counters["impair_delayed"] == 3


def test_egress_loss_takes_the_frames_out_of_tx(tools):
    tools.impair("b", T0, dir="out", loss="100%")
    core = tools.core
    out = rx(tools, "a", [eth(MAC["b"], MAC["a"])] * 4, T0)
    assert [p for p, _ in out] == [PEER["b"]]
    assert tools.egress(PEER["b"], out[0][1][1], T0) is None
    assert core.port_by_name("b").counters.tx_packets == 0 and core.totals.tx_packets == 0
    assert core.totals.forwarded == 4 and tools.impairs["b"]["out"].counters["impair_loss"] == 4


def test_egress_delay_driven_by_a_manual_loop(tools):
    """The server's timer, played by ManualLoop: frames leave when their time comes."""
    loop = ManualLoop(start=T0)
    sent: list = []

    def release() -> None:
        forwarded, txs = tools.release(loop.time())
        assert forwarded == []
        sent.extend(txs)

    tools.impair("b", loop.time(), dir="out", delay="20ms")
    out = rx(tools, "a", [eth(MAC["b"], MAC["a"], i) for i in range(2)], loop.time())
    assert tools.egress(PEER["b"], out[0][1][1], loop.time()) is None  # all held
    loop.call_at(tools.next_at(), release)
    loop.advance(0.019)
    assert sent == []
    loop.advance(0.001)
    assert len(sent) == 1
    peer, parts, mirror = sent[0]
    assert peer == PEER["b"] and mirror == []  # no mirror on b
    assert [bytes(f) for f in wire.unpack_frames(parts[1])] == [eth(MAC["b"], MAC["a"], i) for i in range(2)]
    assert tools.core.port_by_name("b").counters.tx_packets == 2  # counted once, when held


def test_frames_held_for_a_port_that_leaves_are_flushed_and_counted(tools):
    core = tools.core
    tools.impair("b", T0, dir="out", delay="1s")
    out = rx(tools, "a", [eth(MAC["b"], MAC["a"])] * 5, T0)
    assert tools.egress(PEER["b"], out[0][1][1], T0) is None
    assert core.totals.tx_packets == 5  # held frames stay counted as sent...
    core.handle(PEER["b"], wire.BYE, T0 + 0.1)
    tools.sync()
    assert tools.next_at() is None
    assert tools.impairs["b"]["out"].counters["impair_flushed"] == 5
    assert core.totals.tx_packets == 0  # ...until they are flushed


def test_held_egress_frames_of_a_port_cut_meanwhile_count_port_down(tools):
    core = tools.core
    tools.impair("b", T0, dir="out", delay="5ms")
    out = rx(tools, "a", [eth(MAC["b"], MAC["a"])] * 2, T0)
    tools.egress(PEER["b"], out[0][1][1], T0)
    core.set_admin("b", False)
    assert tools.release(T0 + 0.005) == ([], [])
    c = core.port_by_name("b").counters
    assert c.port_down == 2 and c.tx_packets == 0


def test_mirror_records_in_and_out_with_wall_clock_timestamps(tools):
    row = tools.mirror_start("a", T0)
    session = tools.mirrors[row["id"]]
    assert set(tools.hooks_in) == {PEER["a"]} == set(tools.hooks_out)
    rx(tools, "a", [eth(MAC["b"], MAC["a"], 1)], T0 + 1.0)
    back = tools.core.handle(PEER["b"], wire.frames_msg([eth(MAC["a"], MAC["b"], 2)]), T0 + 2.0)
    peer, parts, mirror = tools.egress(PEER["a"], back[0][1][1], T0 + 2.0)
    assert peer == PEER["a"] and session.capture.pending() == 1  # not yet sent: not mirrored
    tools.mirror_out(peer, mirror, T0 + 2.0)
    got = session.capture.take(10)
    assert [(c.ts, c.direction, c.frame) for c in got] == [
        (T0 + 1.0 + 5000.0, "in", eth(MAC["b"], MAC["a"], 1)),
        (T0 + 2.0 + 5000.0, "out", eth(MAC["a"], MAC["b"], 2)),
    ]
    assert tools.mirror_stop(row["id"])["port"] == "a"
    assert tools.mirror_stop(row["id"]) is None
    assert tools.hooks_in == {} and tools.hooks_out == {}


def test_unread_mirrors_expire(tools):
    row = tools.mirror_start("c", T0)
    assert tools.expire_mirrors(T0 + MIRROR_IDLE_TIMEOUT) == []
    assert [mid for mid, _ in tools.expire_mirrors(T0 + MIRROR_IDLE_TIMEOUT + 1)] == [row["id"]]
    assert tools.mirrors == {} and tools.hooks_in == {}


def test_bad_requests_raise_before_anything_changes(tools):
    with pytest.raises(UnknownPort):
        tools.impair("nope", T0, delay="1ms")
    with pytest.raises(ValueError, match="direction"):
        tools.impair("a", T0, dir="sideways", delay="1ms")
    with pytest.raises(FilterError):
        tools.mirror_start("a", T0, filter="not a ( filter")
    assert tools.mirrors == {} and tools.hooks_in == {}


def test_close_flushes_everything_held(tools):
    tools.impair("a", T0, dir="in", delay="1s")
    rx(tools, "a", [eth(MAC["b"], MAC["a"])] * 3, T0)
    tools.close()
    assert tools.next_at() is None and tools.impairs["a"]["in"].counters["impair_flushed"] == 3


def test_a_mirror_that_raises_never_stops_forwarding_and_is_counted_and_logged_rate_limited(tools, caplog):
    """Any bug in a mirror (here its filter raising) costs the mirror the frame, never the
    switch its forwarding: counted in mirror_errors, logged at most net_ratelimit's burst."""
    row = tools.mirror_start("a", T0)
    good = tools.mirror_start("a", T0)

    def broken(frame, wirelen=None):
        raise RuntimeError("a bug in a filter")
    tools.mirrors[row["id"]].capture._match = broken
    sent = 0
    with caplog.at_level("ERROR", logger="vnet.switch.pipeline"):
        for i in range(30):
            out = rx(tools, "a", [eth(MAC["b"], MAC["a"], i)], T0 + i * 0.01)
            sent += len(frames_of(out, PEER["b"]))
    assert sent == 30  # every frame forwarded
    assert tools.mirror_errors == 30
    assert tools.mirrors[good["id"]].capture.matched == 30  # the other mirror of the port still records
    assert 1 <= len([r for r in caplog.records if "a bug in a filter" in r.getMessage()]) <= 10


def test_mirror_limits_name_the_bounds(tools):
    from vnet.proto.capture import CaptureLimitError

    for args, words in [({"buffer": 10**15}, "1 to 65536 frames"), ({"count": -1}, "at least 1"),
                        ({"snaplen": 10**6}, "1 to 262144 bytes"), ({"buffer": True}, "whole number")]:
        with pytest.raises(CaptureLimitError, match=words):
            tools.mirror_start("a", T0, **args)
    assert tools.mirrors == {} and tools.hooks_in == {}
