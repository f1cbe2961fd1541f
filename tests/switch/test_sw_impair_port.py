"""The sans-I/O core's side of the tools: a port's admin state (a cable cut) and the
accounting hooks the server's impairments use. Wired by hand, no clock."""

from __future__ import annotations

import pytest

from vnet.proto import wire
from vnet.switch.core import SwitchCore, UnknownPort

MAC = {n: bytes([2, 0, 0, 0, 0, i]) for i, n in enumerate("abc", 1)}
PEER = {n: f"peer-{n}".encode() for n in "abc"}
BCAST = b"\xff" * 6


def eth(dst: bytes, src: bytes) -> bytes:
    return dst + src + b"\x88\xb5" + b"x" * 46


@pytest.fixture
def core() -> SwitchCore:
    c = SwitchCore()
    for n in "abc":
        c.handle(PEER[n], wire.hello(n, [MAC[n]], 1500), 0.0)
    return c


def counters(core: SwitchCore, name: str) -> dict:
    return core.port_by_name(name).counters.as_dict()


def test_port_down_sends_carrier_off_and_drops_both_ways_counting_port_down(core):
    row, out = core.set_admin("b", False)
    assert row == {"name": "b", "admin": "down", "attached": True}
    assert out == [(PEER["b"], wire.carrier(False))]
    assert wire.parse_carrier(out[0][1]) is False
    assert core.set_admin("b", False)[1] == []  # no change, nothing to say

    # to the down port: dropped; a flood still reaches the others
    assert core.handle(PEER["a"], wire.frames_msg([eth(MAC["b"], MAC["a"])] * 2), 1.0) == []
    flood = core.handle(PEER["a"], wire.frames_msg([eth(BCAST, MAC["a"])]), 1.0)
    assert [p for p, _ in flood] == [PEER["c"]]
    # from the down port: dropped before learning
    assert core.handle(PEER["b"], wire.frames_msg([eth(MAC["a"], MAC["b"])] * 3), 1.0) == []
    assert counters(core, "b")["port_down"] == 2 + 1 + 3
    assert core.totals.port_down == 6
    # a batch of one flow (the core's one-flow fast path) is dropped the same way
    assert core.handle(PEER["a"], wire.frames_msg([eth(MAC["b"], MAC["a"])] * 10), 1.0) == []
    assert core.handle(PEER["b"], wire.frames_msg([eth(MAC["a"], MAC["b"])] * 10), 1.0) == []
    assert counters(core, "b")["port_down"] == 26 and core.totals.port_down == 26
    assert counters(core, "b")["tx_packets"] == 0 and counters(core, "b")["rx_packets"] == 0
    # heartbeats still answered: the node stays attached
    assert core.handle(PEER["b"], wire.HEARTBEAT, 1.0) == [(PEER["b"], wire.HEARTBEAT)]
    assert [r["admin"] for r in core.ports_view(1.0)] == ["up", "down", "up"]

    row, out = core.set_admin("b", True)
    assert row["admin"] == "up" and out == [(PEER["b"], wire.carrier(True))]
    assert core.handle(PEER["a"], wire.frames_msg([eth(MAC["b"], MAC["a"])]), 2.0)[0][0] == PEER["b"]


def test_a_port_down_stays_down_when_its_node_attaches_again(core):
    core.set_admin("b", False)
    core.handle(PEER["b"], wire.BYE, 1.0)
    row, out = core.set_admin("b", False)  # a detached name that is down may still be named
    assert row["attached"] is False and out == []
    out = core.handle(PEER["b"], wire.hello("b", [MAC["b"]], 1500), 2.0)
    assert [parts[0] for _, parts in out] == [wire.MSG_WELCOME, wire.MSG_CARRIER]
    assert wire.decode_map(out[0][1][1], "WELCOME")["carrier"] is False
    assert wire.parse_carrier(out[1][1]) is False
    assert core.port_by_name("b").admin_up is False
    # up again while detached: the next WELCOME is a plain one
    core.handle(PEER["b"], wire.BYE, 3.0)
    core.set_admin("b", True)
    out = core.handle(PEER["b"], wire.hello("b", [MAC["b"]], 1500), 4.0)
    assert len(out) == 1 and "carrier" not in wire.decode_map(out[0][1][1], "WELCOME")
    with pytest.raises(UnknownPort, match="nosuch"):
        core.set_admin("nosuch", False)


def test_generation_changes_on_attach_and_detach(core):
    g = core.generation
    core.handle(PEER["c"], wire.BYE, 1.0)
    assert core.generation == g + 1
    core.handle(PEER["c"], wire.hello("c", [], 1500), 1.0)
    assert core.generation == g + 2


def test_forward_and_tx_uncount_keep_the_counters_true(core):
    port_a = core.port_by_name("a")
    out = core.forward(port_a, wire.pack_frames([eth(MAC["b"], MAC["a"])] * 4), 1.0)
    assert [p for p, _ in out] == [PEER["b"]]
    assert counters(core, "b")["tx_packets"] == 4 and counters(core, "a")["rx_packets"] == 4
    # an egress impairment lost one and duplicated two: one more frame went than counted
    core.tx_uncount(core.port_by_name("b"), -1, -60)
    assert counters(core, "b")["tx_packets"] == 5 and counters(core, "b")["tx_bytes"] == 300
    core.tx_uncount(core.port_by_name("b"), 2, 120, "port_down")
    assert counters(core, "b")["tx_packets"] == 3 and counters(core, "b")["port_down"] == 2
    assert core.totals.tx_packets == 3


def test_carrier_message_must_be_one_byte_of_zero_or_one():
    assert wire.parse_carrier([wire.MSG_CARRIER, b"\x01"]) is True
    for bad in ([wire.MSG_CARRIER], [wire.MSG_CARRIER, b"\x02"], [wire.MSG_CARRIER, b"\x00\x00"]):
        with pytest.raises(wire.WireError):
            wire.parse_carrier(bad)
