"""CURVE on a control socket with the ZAP handler (proto/auth.py, pyzmq's authenticator): the
allowed-keys directory decides, is read again when it changes, and every answer is counted;
and which endpoints count as local."""

import asyncio
import logging
import os
import shutil

import pytest
import zmq
import zmq.asyncio

from vnet.proto import auth
from vnet.proto.control import AsyncControlClient, ControlServer
from vnet.proto.policy import Policy


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5541", True),
    ("tcp://127.1.2.3:5541", True),
    ("tcp://[::1]:5541", True),
    ("tcp://localhost:5541", True),
    ("ipc:///tmp/x.ctl", True),
    ("inproc://x", True),
    ("tcp://127.evil.example:1", False),
    ("tcp://127.0.0.1.evil.example:1", False),
    ("tcp://localhost.evil.example:1", False),
    ("tcp://0.0.0.0:5541", False),
    ("tcp://10.0.0.1:5541", False),
    ("tcp://[::]:5541", False),
    ("tcp://*:5541", False),
    ("udp://127.0.0.1:1", False),
])
def test_only_loopback_addresses_ipc_and_inproc_are_local(endpoint, local):
    assert auth.is_loopback_or_local(endpoint) is local


@pytest.fixture
async def curve_server(tmp_path):
    keys = tmp_path / "keys"
    auth.keygen(str(keys), ["good", "late"])
    os.unlink(keys / "allowed" / "late.key")
    ctx = zmq.asyncio.Context()
    lan = auth.load_secret(str(keys / "switch.key_secret"))
    zap = auth.ZapHandler(ctx, auth.AllowedKeys(str(keys / "allowed")))
    zap.start()
    server = ControlServer(ctx, f"ipc://{tmp_path}/sw.ctl", {"ping": lambda: "pong"}, curve=lan,
                           policy={"ping": Policy()})
    server.start()
    clients = []

    def client(name: str) -> AsyncControlClient:
        c = AsyncControlClient(ctx, server.endpoint, timeout=1.0, curve=auth.CurveClient.from_files(
            str(keys / f"{name}.key_secret"), str(keys / "switch.key")))
        clients.append(c)
        return c

    yield keys, zap, client
    for c in clients:
        await c.close()
    await server.close()
    await zap.close()
    ctx.term()


async def test_an_allowed_key_gets_in_and_another_is_denied_counted_and_logged(curve_server, caplog):
    keys, zap, client = curve_server
    assert await client("good").call("ping") == "pong"
    with caplog.at_level(logging.WARNING, logger="vnet.proto.auth"):
        with pytest.raises(TimeoutError):
            await client("late").call("ping", wait=0.5)
    assert zap.accepted >= 1 and zap.denied >= 1
    assert any("CURVE: refused a connection" in r.getMessage() and "is not in" in r.getMessage()
               for r in caplog.records)


async def test_a_key_added_to_the_directory_gets_in_without_a_restart(curve_server):
    keys, zap, client = curve_server
    late = client("late")
    with pytest.raises(TimeoutError):
        await late.call("ping", wait=0.5)
    shutil.copyfile(keys / "late.key", keys / "allowed" / "late.key")
    await late.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:  # the client reconnects on its own; a fresh one asks at once
        try:
            assert await client("late").call("ping", wait=0.5) == "pong"
            break
        except TimeoutError:
            if loop.time() > deadline:
                raise
    assert zap.counters()["allowed_keys"] == 2
