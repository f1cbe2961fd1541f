"""The switch server's limits on what a peer can make it read or hold, over loopback."""

from __future__ import annotations

import asyncio
import time

import zmq
import zmq.asyncio

from vnet.proto import wire
from vnet.switch.server import MAX_BATCH_FRAMES, SwitchConfig, SwitchServer, max_message_size

MAC_A = bytes([2, 0, 0, 0, 0, 1])
MAC_B = bytes([2, 0, 0, 0, 0, 2])


def eth(dst: bytes, src: bytes, size: int) -> bytes:
    return dst + src + b"\x88\xb5" + bytes(size - 14)


async def eventually(pred, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


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
