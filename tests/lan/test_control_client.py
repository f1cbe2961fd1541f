"""Control clients keep their deadline when there is nobody to talk to: a DEALER with no
connection (no server, or a CURVE handshake refused) does not take a message, so the send
itself must be inside the deadline, or the caller waits for ever."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import zmq
import zmq.asyncio

from vnet.proto.control import AsyncControlClient, ControlClient


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def curve_server():
    """A CURVE ROUTER that a plain client's handshake fails against (and ZeroMQ gives up)."""
    ctx = zmq.Context()
    public, secret = zmq.curve_keypair()
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = public, secret
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield f"tcp://127.0.0.1:{port}"
    sock.close(linger=0)
    ctx.destroy(linger=0)


@pytest.mark.parametrize("where", ["no server", "refused handshake"])
async def test_async_client_keeps_its_deadline(where, curve_server):
    endpoint = f"tcp://127.0.0.1:{_unused_port()}" if where == "no server" else curve_server
    ctx = zmq.asyncio.Context()
    client = AsyncControlClient(ctx, endpoint, timeout=0.3)
    try:
        for _ in range(3):  # the first send may be queued; later ones find no connection
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="no answer"):
                await asyncio.wait_for(client.call("stats"), 10)  # the outer bound only guards the test
            assert time.monotonic() - t0 < 5
    finally:
        await client.close()
        ctx.destroy(linger=0)


@pytest.mark.parametrize("where", ["no server", "refused handshake"])
def test_blocking_client_keeps_its_deadline(where, curve_server):
    endpoint = f"tcp://127.0.0.1:{_unused_port()}" if where == "no server" else curve_server
    ctx = zmq.Context()
    client = ControlClient(endpoint, timeout=0.3, ctx=ctx)
    try:
        for _ in range(3):
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="no (answer|connection)"):
                client.call("stats")
            assert time.monotonic() - t0 < 5
    finally:
        client.close()
        ctx.destroy(linger=0)
