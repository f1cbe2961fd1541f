"""The switch's limits against a peer that asks for too much: how many ports, how fast new
ports may attach, the work an attach costs, and how much of a peer's text comes back."""

from __future__ import annotations

import logging

import msgpack
import pytest

from vnet.proto import wire
from vnet.switch.core import CLIP, SwitchCore, TokenBucket
from vnet.switch.impair import parse_params
from vnet.switch.pipeline import PortTools


def hello(name: str, i: int = 1) -> list[bytes]:
    return wire.hello(name, [bytes([2, 0, 0, 0, i >> 8 & 0xFF, i & 0xFF])], 1500)


def reason(out) -> str:
    return wire.decode_map(out[0][1][1], "REFUSE")["reason"]


def kind(out) -> list[bytes]:
    return [parts[0] for _, parts in out]


def test_max_ports_refuses_a_new_port_with_a_sentence_and_counts_it():
    core = SwitchCore(max_ports=2)
    assert kind(core.handle(b"pa", hello("a", 1), 0.0)) == [wire.MSG_WELCOME]
    assert kind(core.handle(b"pb", hello("b", 2), 0.0)) == [wire.MSG_WELCOME]
    out = core.handle(b"pc", hello("c", 3), 0.0)
    assert kind(out) == [wire.MSG_REFUSE]
    assert "maximum of 2 ports" in reason(out) and "--max-ports" in reason(out)
    assert core.totals.max_ports == 1 and core.totals.refused == 1 and len(core.ports) == 2
    # a full switch still lets its ports re-attach, and a restarted node take its name back
    assert kind(core.handle(b"pa", hello("a", 1), 1.0)) == [wire.MSG_WELCOME]
    assert kind(core.handle(b"pb2", hello("b", 2), 2.5)) == [wire.MSG_WELCOME]  # b silent 2.5 s: restarted
    assert core.totals.max_ports == 1 and {p.name for p in core.ports} == {"a", "b"}
    core.handle(b"pa", wire.BYE, 2.0)
    assert kind(core.handle(b"pc", hello("c", 3), 2.0)) == [wire.MSG_WELCOME]


def test_hello_rate_limit_drops_new_peers_over_the_bucket_unanswered():
    core = SwitchCore(hello_rate=10.0, hello_burst=3)
    outs = [core.handle(f"p{i}".encode(), hello(f"n{i}", i), 0.0) for i in range(5)]
    assert [kind(o) for o in outs] == [[wire.MSG_WELCOME]] * 3 + [[], []]
    assert core.totals.hello_ratelimited == 2 and len(core.ports) == 3
    # an attached peer's HELLO (a re-attach) is not a new port: not limited
    assert kind(core.handle(b"p0", hello("n0", 0), 0.0)) == [wire.MSG_WELCOME]
    # tokens come back at the rate: one per 0.1 s
    assert kind(core.handle(b"p3", hello("n3", 3), 0.05)) == []
    assert kind(core.handle(b"p3", hello("n3", 3), 0.1)) == [wire.MSG_WELCOME]
    assert kind(core.handle(b"p4", hello("n4", 4), 0.1)) == []
    assert core.totals.hello_ratelimited == 4
    # never more than the burst saved up, however long it was quiet
    outs = [core.handle(f"q{i}".encode(), hello(f"m{i}", 100 + i), 1000.0) for i in range(5)]
    assert sum(1 for o in outs if o) == 3


def test_token_bucket_rate_zero_is_unlimited_and_time_going_back_is_harmless():
    bucket = TokenBucket(0.0, 1)
    assert all(bucket.take(0.0) for _ in range(10_000))
    bucket = TokenBucket(1.0, 1)
    assert bucket.take(5.0) and not bucket.take(4.0) and not bucket.take(5.5) and bucket.take(6.0)


class _CountingList(list):
    """The core's port list, counting every walk over it."""

    walks = 0

    def __iter__(self):
        type(self).walks += 1
        return super().__iter__()


def test_an_attach_does_not_walk_the_other_ports():
    """The server syncs the tools' hooks after every WELCOME: with 3000 nodes attaching in a
    burst, each sync must cost the tools', not the ports' count (else 4.5 M steps)."""
    core = SwitchCore(max_ports=4096, hello_rate=0.0)
    core.handle(b"p-first", hello("first", 0), 0.0)
    tools = PortTools(core)
    tools.impair("first", 0.0, dir="out", delay="1ms")  # tools set: the hooks matter
    core.port_list = _CountingList(core.port_list)
    for i in range(1, 3000):
        out = core.handle(f"p{i}".encode(), hello(f"n{i}", i), 1.0)
        assert kind(out) == [wire.MSG_WELCOME]
        tools.sync()
    assert _CountingList.walks == 0
    assert len(core.ports) == 3000
    assert set(tools.hooks_out) == {b"p-first"}


def test_a_huge_hello_name_gets_a_short_refuse_and_log_line(caplog):
    core = SwitchCore()
    caplog.set_level(logging.INFO, logger="vnet.switch")
    out = core.handle(b"px", wire.hello("x" * 1_000_000, [], 1500), 0.0)
    assert kind(out) == [wire.MSG_REFUSE]
    text = reason(out)
    assert "HELLO name must be" in text and len(text) < CLIP + 50
    assert caplog.records and all(len(r.getMessage()) < CLIP + 100 for r in caplog.records)


def test_a_huge_version_keeps_the_advice_at_the_end_of_the_refuse():
    core = SwitchCore()
    body = msgpack.packb({"version": "9" * 500_000, "name": "a", "macs": [], "mtu": 1500})
    out = core.handle(b"px", [wire.MSG_HELLO, body], 0.0)
    text = reason(out)
    assert text.startswith("protocol version mismatch") and text.endswith("of the same release")
    assert len(text) < CLIP + 50


def test_an_unknown_port_name_is_echoed_short():
    core = SwitchCore()
    for i in range(500):
        core.handle(f"p{i}".encode(), hello(f"node-with-a-long-name-{i}", i), 0.0)
    try:
        core.port_by_name("y" * 100_000)
    except KeyError as exc:
        assert len(str(exc)) < 2 * CLIP + 100
    else:
        raise AssertionError("port_by_name accepted a name that is not attached")


def test_impairment_errors_echo_a_huge_value_short():
    for raw in ({"delay": "9" * 100_000}, {"x" * 100_000: "1ms"}, {"seed": "z" * 100_000}):
        with pytest.raises(ValueError) as info:
            parse_params(raw)
        assert len(str(info.value)) < CLIP + 100
