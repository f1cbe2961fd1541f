"""Whatever arrives from the wire, the core neither raises nor loses count of it."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vnet.proto import wire
from vnet.switch.core import SwitchCore

MACS = [bytes([2, 0, 0, 0, 0, i]) for i in range(1, 4)]
PEERS = [b"pa", b"pb", b"pc"]
DROPS = ("runt", "oversize", "bad_src")


def fresh_core() -> SwitchCore:
    core = SwitchCore(mtu=200)
    for i, peer in enumerate(PEERS):
        core.handle(peer, wire.hello(f"n{i}", [MACS[i]], 200), 0.0)
    return core


frame_st = st.one_of(
    st.binary(max_size=260),
    st.builds(lambda d, s, rest: d + s + rest,
              st.sampled_from(MACS + [b"\xff" * 6, b"\x01\x00\x5e\x00\x00\x01"]),
              st.sampled_from(MACS + [b"\x00" * 6, b"\x03" * 6]),
              st.binary(max_size=230)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_frames_payload_never_raises(payload):
    core = fresh_core()
    out = core.handle(PEERS[0], [wire.MSG_FRAMES, payload], 1.0)
    t = core.totals
    try:
        n = len(wire.unpack_frames(payload))
    except wire.WireError:
        assert out == [] and t.malformed == 1 and t.rx_packets == 0
        return
    assert t.malformed == 0
    assert t.rx_packets + sum(getattr(t, d) for d in DROPS) == n
    for peer, parts in out:
        assert peer in PEERS[1:] and parts[0] == wire.MSG_FRAMES
        wire.unpack_frames(parts[1])


@settings(max_examples=200, deadline=None)
@given(st.lists(frame_st, max_size=20), st.sampled_from(range(3)))
def test_random_frames_are_all_accounted_for(batch, ingress):
    core = fresh_core()
    out = core.handle(PEERS[ingress], wire.frames_msg(batch), 1.0)
    t = core.totals
    assert t.rx_packets + sum(getattr(t, d) for d in DROPS) == len(batch)
    assert all(peer != PEERS[ingress] for peer, _ in out)  # never back out the ingress
    assert len({peer for peer, _ in out}) == len(out)  # one message per output port
    sent = sum(len(wire.unpack_frames(parts[1])) for _, parts in out)
    assert sent == t.tx_packets
    assert t.rx_packets >= t.same_port


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PEERS + [b"stranger"]),
       st.lists(st.sampled_from([b"H", b"F", b"K", b"B", b"N", b"W", b"R"]) | st.binary(max_size=40), max_size=4))
def test_random_messages_never_raise_and_are_counted(peer, parts):
    core = fresh_core()
    before = core.totals.as_dict()
    out = core.handle(peer, parts, 1.0)
    changed = {k for k, v in core.totals.as_dict().items() if v != before[k]}
    assert all(isinstance(p, bytes) and isinstance(m, list) for p, m in out)
    # Every message leaves a trace: a counter moved, or it was answered (heartbeat), or it
    # was a batch of nothing.
    empty_batch = parts == [wire.MSG_FRAMES, b""]
    answered = out == [(peer, wire.HEARTBEAT)]
    assert changed or answered or empty_batch, (peer, parts, out)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PEERS + [b"x"]),
                          st.lists(st.sampled_from([b"H", b"F", b"K", b"B", b"N", b"W"]) | st.binary(max_size=30),
                                   max_size=3),
                          st.floats(0, 10)),
                max_size=30))
def test_random_message_sequences_never_raise(seq):
    core = fresh_core()
    now = 0.0
    for peer, parts, dt in seq:
        now += dt
        core.handle(peer, parts, now)
        core.tick(now)
    core.shutdown()
    assert core.ports == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_wire_decoders_raise_only_wire_errors(data):
    for decode in (wire.unpack_frames, lambda d: wire.decode_map(d, "HELLO"),
                   lambda d: wire.parse_carrier([wire.MSG_CARRIER, d])):
        try:
            decode(data)
        except wire.WireError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(frame_st, max_size=30))
def test_frames_from_a_stranger_are_counted_by_frame(batch):
    core = fresh_core()
    out = core.handle(b"stranger", wire.frames_msg(batch), 1.0)
    assert out == [(b"stranger", wire.NOT_ATTACHED)]
    t = core.totals
    assert (t.unknown_peer, t.not_attached, t.rx_packets, t.tx_packets) == (len(batch), 1, 0, 0)
