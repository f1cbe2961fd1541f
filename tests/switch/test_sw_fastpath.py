"""The one-flow fast path (forward_uniform) against the general path (forward_general):
on the same batch and the same switch state, the same messages, counters and FDB.

Random batches almost never reach the fast path (it needs 8 or more records alike in length
and header), so this test builds such batches on purpose, over states that matter to the
decision: known and unknown destinations, a destination learned on the ingress port, moved
sources, bad sources, a port down, and port security in both modes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vnet.proto import wire
from vnet.switch import forward
from vnet.switch.core import SwitchCore

NAMES = ("a", "b", "c", "d")
MAC = {n: bytes([2, 0, 0, 0, 0, i]) for i, n in enumerate(NAMES, 1)}
PEER = {n: f"peer-{n}".encode() for n in NAMES}
OTHER = bytes([2, 0, 0, 0, 1, 1])  # a unicast address nobody declared
MTU = 200
NOW = 10.0

dst_st = st.sampled_from([*MAC.values(), OTHER, b"\xff" * 6, b"\x01\x00\x5e\x00\x00\x01", b"\x33\x33\x00\x00\x00\x01"])
src_st = st.sampled_from([*MAC.values(), OTHER, bytes([2, 0, 0, 0, 1, 2]), b"\x00" * 6, b"\x01\x02\x03\x04\x05\x06"])
# anything but 0x8100 (a tagged batch is not the fast path's)
type_st = st.sampled_from([b"\x08\x00", b"\x08\x06", b"\x88\xb5", b"\x86\xdd", b"\x81\x01", b"\x00\x2e"])
# a pre-state step: (what, port name, mac)
step_st = st.tuples(st.sampled_from(["learn", "down", "bye"]), st.sampled_from(NAMES), st.sampled_from([*MAC.values(), OTHER]))


def flow_st():
    return st.builds(
        lambda dst, src, etype, body, k: (dst + src + etype + body, k),
        dst_st, src_st, type_st, st.binary(min_size=0, max_size=MTU + 4), st.integers(8, 40),
    )


def build(max_macs: int, violation: str, steps: list) -> SwitchCore:
    core = SwitchCore(mtu=MTU, max_macs=max_macs, violation=violation)
    for n in NAMES:
        core.handle(PEER[n], wire.hello(n, [MAC[n]], MTU), 0.0)
    for what, name, mac in steps:
        port = core.port_by_peer(PEER[name])
        if port is None:
            continue
        if what == "learn":
            core.fdb.learn(mac, 0, port, 1.0, core.max_macs)
        elif what == "down":
            core.set_admin(name, False)
        else:
            core.handle(PEER[name], wire.BYE, 1.0)
    return core


def state(core: SwitchCore, out) -> tuple:
    messages = [(peer, [bytes(p) for p in parts]) for peer, parts in out]
    ports = {p.name: (p.admin_up, p.counters.as_dict()) for p in core.ports}
    fdb = sorted((e.mac, e.vlan, e.port.name, e.created, e.updated) for e in core.fdb.entries(NOW))
    return messages, ports, core.totals.as_dict(), fdb, core.fdb.counters()


@settings(max_examples=300, deadline=None)
@given(
    flows=st.lists(flow_st(), min_size=1, max_size=3),
    ingress=st.sampled_from(NAMES),
    max_macs=st.sampled_from([0, 0, 1, 2]),
    violation=st.sampled_from(["drop", "shutdown"]),
    steps=st.lists(step_st, max_size=4),
)
def test_fast_path_matches_general_path(flows, ingress, max_macs, violation, steps):
    fast = build(max_macs, violation, steps)
    slow = build(max_macs, violation, steps)
    for frame, k in flows:
        port_f = fast.port_by_peer(PEER[ingress])
        port_s = slow.port_by_peer(PEER[ingress])
        if port_f is None or not port_f.admin_up:
            break  # forward_batch stops before either path for a port that is down or gone
        payload = wire.pack_frames([frame] * k)
        if len(frame) > fast.max_frame:
            assert forward.forward_uniform(fast, port_f, payload, len(payload), NOW) is None
            break
        out_f = forward.forward_uniform(fast, port_f, payload, len(payload), NOW)
        assert out_f is not None  # this batch is the fast path's
        out_s = forward.forward_general(slow, port_s, payload, NOW)
        assert state(fast, out_f) == state(slow, out_s)


def test_forward_batch_takes_the_fast_path_only_for_one_flow():
    core = build(0, "drop", [])
    port = core.port_by_peer(PEER["a"])
    frame = MAC["b"] + MAC["a"] + b"\x88\xb5" + bytes(46)
    one_flow = wire.pack_frames([frame] * 8)
    assert forward.forward_uniform(core, port, one_flow, len(one_flow), NOW) is not None
    for batch in (
        [frame] * 7 + [frame[:-1]],  # one length differs
        [frame] * 7 + [MAC["c"] + frame[6:]],  # one destination differs
        [frame[:12] + b"\x81\x00\x00\x05" + frame[12:]] * 8,  # tagged: the VID is not compared
        [frame] * 7,  # too few
    ):
        payload = wire.pack_frames(batch)
        assert forward.forward_uniform(core, port, payload, len(payload), NOW) is None
