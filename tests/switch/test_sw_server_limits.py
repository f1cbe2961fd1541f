"""The switch server's limits on what a peer can make it read or hold, over loopback."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from vnet.proto import wire
from vnet.switch.server import (
    MAX_SEND_BYTES,
    MAX_BATCH_FRAMES,
    SwitchConfig,
    SwitchServer,
    max_message_size,
    port_sndhwm,
    split_records,
)
from tests.lan.helpers import eventually

MAC_A = bytes([2, 0, 0, 0, 0, 1])
MAC_B = bytes([2, 0, 0, 0, 0, 2])


def eth(dst: bytes, src: bytes, size: int) -> bytes:
    return dst + src + b"\x88\xb5" + bytes(size - 14)




def test_the_largest_legal_batch_fits_exactly():
    biggest = wire.pack_frames([eth(MAC_B, MAC_A, 1500 + 18)] * MAX_BATCH_FRAMES)
    assert len(biggest) == max_message_size(1500)


async def test_a_message_over_the_largest_legal_batch_is_not_read():
    ctx = zmq.asyncio.Context()
    server = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0", control=None, heartbeat_interval=5.0,
                                       heartbeat_timeout=60.0), ctx=ctx)
    await server.start()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, b"node-a")  # the same port after a reconnect
    sock.connect(server.data_endpoint)
    try:
        await sock.send_multipart(wire.hello("a", [MAC_A], 1500))
        assert (await asyncio.wait_for(sock.recv_multipart(), 5))[0] == wire.MSG_WELCOME
        over = MAX_BATCH_FRAMES + 100
        await sock.send_multipart(wire.frames_msg([eth(MAC_B, MAC_A, 1514)] * over))
        totals = server.core.totals

        async def small_one_counted():
            await sock.send_multipart(wire.frames_msg([eth(MAC_B, MAC_A, 60)]))
            return totals.rx_packets > 0

        # ZeroMQ keeps a connection's order: had the big batch been read, it would count first
        await eventually(small_one_counted, what="a small batch after the big one to be forwarded")
        assert totals.rx_packets < over and totals.malformed == 0
        assert server.core.port_by_name("a").peer == b"node-a"
    finally:
        sock.close(linger=0)
        await server.close()
        ctx.destroy(linger=0)


def test_split_records_cuts_at_record_boundaries_within_the_limit():
    frames = [eth(MAC_B, MAC_A, 60 + (i * 37) % 1400) for i in range(500)]
    payload = wire.pack_frames(frames)
    pieces = split_records(payload, 4096)
    assert b"".join(pieces) == payload and len(pieces) > 1
    assert all(len(p) <= 4096 for p in pieces)
    assert [bytes(f) for p in pieces for f in wire.unpack_frames(p)] == frames
    assert split_records(payload, len(payload)) == [payload]


def test_the_output_queue_bound_in_bytes_sets_the_message_limit():
    assert port_sndhwm(1000, 64 * 1024 * 1024) == 64  # 64 messages of at most 1 MiB
    assert port_sndhwm(1000, 2 * 1024 * 1024 * 1024) == 1000  # port_hwm, when it is the lower
    assert port_sndhwm(1000, MAX_SEND_BYTES) == 1


async def test_a_port_that_does_not_read_holds_at_most_its_queue_bytes():
    """40 MB for a node that reads nothing: the switch queues about port_queue_bytes of it
    (plus the kernel's socket buffers), counts the rest ``hwm``, and goes on."""
    ctx = zmq.asyncio.Context()
    server = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0", control=None, heartbeat_interval=5.0,
                                       heartbeat_timeout=60.0, port_queue_bytes=1024 * 1024), ctx=ctx)
    await server.start()
    socks = []
    try:
        for name, mac, rcvhwm in (("a", MAC_A, 1000), ("b", MAC_B, 1)):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, rcvhwm)
            s.setsockopt(zmq.RCVBUF, 64 * 1024)
            s.connect(server.data_endpoint)
            socks.append(s)
            await s.send_multipart(wire.hello(name, [mac], 1500))
            assert (await asyncio.wait_for(s.recv_multipart(), 5))[0] == wire.MSG_WELCOME
        a = socks[0]
        msg = wire.frames_msg([eth(MAC_B, MAC_A, 1514)] * 40)  # about 60 kB
        count = 40 * 1024 * 1024 // len(msg[1])
        for _ in range(count):
            await a.send_multipart(msg)
        t = server.core.totals
        await eventually(lambda: t.forwarded == 40 * count, timeout=30, what="every frame to be forwarded")
        slow = server.core.port_by_name("b").counters
        assert slow.hwm > 0 and slow.hwm + slow.tx_packets == 40 * count
        assert slow.tx_bytes < 16 * 1024 * 1024  # 1 MiB queued, the rest in kernel buffers
    finally:
        for s in socks:
            s.close(linger=0)
        await server.close()
        ctx.destroy(linger=0)
