"""The node's receive path from the wire up, fuzzed: whatever the switch (or an impostor on its
socket) sends, the link decodes it, the NIC filters and DMAs it, NAPI delivers it, and nothing
raises, hangs or goes uncounted.

A real ZmqLink (its DEALER connected nowhere) is opened by a real vnet NIC (vnic_probe on a
ManualLoop); the messages go in through ``ZmqLink.handle_message``, the entry the socket
reader calls for each message, after a WELCOME has attached the link. NAPI then runs to the
end, and the link's own loop runs its rx_resume drains. The account that must hold after
every example: each frame of a well-formed FRAMES message is a link ``rx_frames`` (or
``rx_not_attached`` when the link is not attached), and each of those is received
(rx_packets), a length error, filtered by address or missed; each message that does not
decode is one ``rx_malformed``.
"""

from __future__ import annotations

import asyncio

import msgpack
import pytest
import zmq.asyncio
from hypothesis import HealthCheck, given, settings, strategies as st

from vnet.node.loop import ManualLoop
from vnet.node.netdevice import DeviceNamespace, dev_open
from vnet.node.vnic import vnic_probe
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


MAC = bytes.fromhex("020000000042")


async def _run(ctx, messages) -> None:
    loop = asyncio.get_running_loop()
    manual = ManualLoop()
    link = ZmqLink(ctx, "tcp://127.0.0.1:1", lambda: ("dut", [MAC], 1500),
                   heartbeat_interval=1.0, heartbeat_timeout=3.0)
    dev = vnic_probe(DeviceNamespace("dut"), manual, link, mac=MAC, node_name="dut", rx_ring_size=16)
    dev_open(dev)
    try:
        manual.run_ready()
        link.handle_message(wire.welcome(1, 1.0, 3.0, 1500), loop.time())
        assert link.attached
        expect_frames = malformed = 0
        hw, priv = dev.priv.hw, dev.priv

        def delivered() -> int:
            return priv.rx_packets + hw.rx_runts + hw.rx_giants + hw.rx_filtered + hw.rx_missed

        for parts in messages:
            k = _expected_frames(parts)
            if k is not None:
                expect_frames += k
            try:
                wire.decode(parts)
            except wire.WireError:
                malformed += 1
            link.handle_message(parts, loop.time())
            for _ in range(1000):  # NAPI drains the ring; the link offers what the ring paused
                manual.run_ready()
                await asyncio.sleep(0)
                if delivered() == link.rx_frames and not manual.pending():
                    break
        assert not hw.rx_ring
        assert link.rx_frames + link.rx_not_attached == expect_frames
        assert link.rx_frames == delivered()
        assert link.rx_malformed == malformed
    finally:
        await link.aclose()


@pytest.fixture(scope="module")
def ctx():
    c = zmq.asyncio.Context()
    yield c
    c.term()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_message_from_the_switch_is_received_or_counted(ctx, data):
    asyncio.run(_run(ctx, data.draw(st.lists(message_st(MAC), min_size=1, max_size=12))))
