"""The node's receive path from the wire up, fuzzed: whatever the switch (or an impostor on its
socket) sends, the link decodes it, the NIC filters and DMAs it, NAPI delivers it, and nothing
raises, hangs or goes uncounted.

The messages go through ``ZmqLink._handle`` (the link's per-message entry, as ``_drain`` calls
it) into a real vnet NIC (vnic_probe on a ManualLoop), whose NAPI poll then runs to the end.
The account that must hold after every example: each frame of a well-formed FRAMES message
is a link ``rx_frames`` (or ``rx_not_attached`` when the link is not attached), and each of
those is received (rx_packets), a length error, filtered by address, missed, or still held by
the link because the ring paused it; every other message that is not a known kind with the
right shape is one ``rx_malformed``.
"""

from __future__ import annotations

import msgpack
from hypothesis import HealthCheck, given, settings, strategies as st

from vnet.node.zmqlink import ZmqLink
from vnet.proto import wire

KINDS = [wire.MSG_FRAMES, wire.MSG_HEARTBEAT, wire.MSG_WELCOME, wire.MSG_BYE, wire.MSG_NOT_ATTACHED,
         wire.MSG_CARRIER, wire.MSG_REFUSE, wire.MSG_HELLO, b"", b"Z", b"FF"]


def frames_st(mac: bytes):
    dst = st.sampled_from([mac, b"\xff" * 6, b"\x01\x00\x5e\x00\x00\x01", b"\x02" * 6])
    good = st.builds(lambda d, body: d + b"\x02\x00\x00\x00\x00\x09" + b"\x88\xb5" + body,
                     dst, st.binary(max_size=1600))
    return st.lists(st.one_of(good, st.binary(max_size=40)), max_size=40)


def payload_st(mac: bytes):
    packed = frames_st(mac).map(wire.pack_frames)
    # mutations of a good payload: a byte flipped, cut short, random garbage
    mutated = st.tuples(packed, st.integers(0, 1 << 16), st.integers(0, 255)).map(
        lambda t: t[0][: t[1] % (len(t[0]) + 1)] + bytes([t[2]]) + t[0][t[1] % (len(t[0]) + 1) + 1:])
    return st.one_of(packed, mutated, st.binary(max_size=200))


def message_st(mac: bytes):
    maps = st.dictionaries(st.sampled_from(["port", "carrier", "reason", "x", "mtu"]),
                           st.one_of(st.integers(-(2**63), 2**64 - 1), st.booleans(), st.text(max_size=5),
                                     st.binary(max_size=5)),
                           max_size=4).map(lambda d: msgpack.packb(d, use_bin_type=True))
    part = st.one_of(payload_st(mac), maps, st.binary(max_size=20))
    return st.one_of(
        st.tuples(st.just(wire.MSG_FRAMES), payload_st(mac)).map(list),
        st.tuples(st.sampled_from(KINDS), st.lists(part, max_size=3)).map(lambda t: [t[0], *t[1]]),
    )


def _expected_frames(parts: list[bytes]) -> int | None:
    if parts[0] != wire.MSG_FRAMES or len(parts) != 2:
        return None
    try:
        return len(wire.unpack_frames(parts[1]))
    except wire.WireError:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_message_from_the_switch_is_received_or_counted(bench, data):
    b = bench(rx_ring_size=16).up()
    link = ZmqLink(None, "tcp://switch.invalid:5540", lambda: ("dut", [b.mac], 1500),
                   heartbeat_interval=1.0, heartbeat_timeout=3.0)
    link._rx = b.hw._link_rx  # as open() wires it: the NIC's receive entry
    link.attached = True
    messages = data.draw(st.lists(message_st(b.mac), min_size=1, max_size=12))
    expect_frames = malformed_min = 0
    for parts in messages:
        k = _expected_frames(parts)
        if k is not None:
            expect_frames += k
        elif parts[0] == wire.MSG_FRAMES or parts[0] not in KINDS[:7]:
            malformed_min += 1
        link._handle(parts)
        for _ in range(1000):  # NAPI drains the ring; the link offers what the ring paused
            b.loop.run_ready()
            if link._held is None:
                break
            link._paused = False
            link._offer_held()
    hw, priv = b.hw, b.dev.priv
    assert link._held is None and not hw.rx_ring
    assert link.rx_frames + link.rx_not_attached == expect_frames
    assert link.rx_frames == priv.rx_packets + hw.rx_runts + hw.rx_giants + hw.rx_filtered + hw.rx_missed
    assert link.rx_malformed >= malformed_min
