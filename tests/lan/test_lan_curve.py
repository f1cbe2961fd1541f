"""CURVE on the node-switch link and the switch's control: who may attach, and who may not."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys

import zmq.asyncio

from tests.lan.helpers import frame, poll_until, pytest
from vnet.proto.auth import CurveClient, keygen
from vnet.proto.control import AsyncControlClient, ControlError


async def _link(node) -> dict:
    return (await node.stats())["link"]


@pytest.mark.vnet_lan(nodes=2, curve=True, heartbeat_interval=0.2, heartbeat_timeout=1.0)
async def test_curve_lan_works_and_an_unknown_key_cannot_attach(vnet_lan):
    lan = vnet_lan
    a, b = lan.nodes
    assert (await a.ping(b.ip, count=3)).ok
    auth = (await lan.switch.stats())["auth"]
    assert auth["accepted"] >= 2 and auth["denied"] == 0

    intruder = await lan.add_node("intruder", wait=False, allowed=False)
    await poll_until(lambda: _failed(intruder), "the intruder's handshake to be refused", timeout=10)
    assert (await lan.switch.stats())["auth"]["denied"] >= 1
    assert "intruder" not in [p["name"] for p in await lan.switch.ports()]
    health = await intruder.health()
    assert health["carrier"] is False and health["attached"] is False

    # nothing it sends reaches anyone: the frames stop at its own NIC, counted
    async with await a.capture(f"ether src host {intruder.mac}") as cap:
        before = (await intruder.stats())["stats64"]
        await intruder.inject([frame("ff:ff:ff:ff:ff:ff", intruder.mac) for _ in range(50)]
                              + [frame(a.mac, intruder.mac) for _ in range(50)])
        after = (await intruder.stats())["stats64"]
        assert after["tx_carrier_errors"] - before["tx_carrier_errors"] == 100
        assert after["tx_packets"] == before["tx_packets"]
        with pytest.raises(ControlError, match="link is down"):
            await intruder.ping(a.ip, timeout=0.5)
        assert await cap.read(timeout=0.5) == []
    assert (await lan.switch.stats())["totals"]["not_attached"] == 0  # not even a HELLO got in

    # allowing its key later lets it in, with no restart: the switch re-reads the list
    shutil.copyfile(os.path.join(lan.runtime_dir, "keys-not-allowed", "intruder.key"),
                    os.path.join(lan.keys_dir, "allowed", "intruder.key"))
    await intruder.wait_ready(15)
    assert (await intruder.ping(a.ip, count=2)).ok


async def _failed(node) -> bool:
    return (await _link(node))["auth_failures"] >= 1


@pytest.mark.vnet_lan(nodes=1, curve=True)
async def test_curve_switch_control_needs_an_allowed_key(vnet_lan, tmp_path):
    lan = vnet_lan
    assert (await lan.switch.call("ping"))  # the LAN's own key is allowed
    ctx = zmq.asyncio.Context()
    stranger_dir = str(tmp_path / "stranger")
    keygen(stranger_dir, ["stranger"])
    clients = [
        AsyncControlClient(ctx, lan.switch.control, timeout=1.0),  # no CURVE at all
        AsyncControlClient(ctx, lan.switch.control, timeout=1.0, curve=CurveClient.from_files(
            os.path.join(stranger_dir, "stranger.key_secret"), os.path.join(lan.keys_dir, "switch.key"))),
    ]
    try:
        for client in clients:
            with pytest.raises(TimeoutError):
                await client.call("stats")
        # a node's key from the allowed list may ask
        node_key = CurveClient.from_files(os.path.join(lan.keys_dir, "node1.key_secret"),
                                          os.path.join(lan.keys_dir, "switch.key"))
        member = AsyncControlClient(ctx, lan.switch.control, timeout=5.0, curve=node_key)
        clients.append(member)
        assert (await member.call("ports"))[0]["name"] == "node1"
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        ctx.destroy(linger=0)
    assert (await lan.switch.stats())["auth"]["denied"] >= 1


@pytest.mark.vnet_lan(nodes=1, curve=True, heartbeat_interval=0.2, heartbeat_timeout=1.0)
async def test_a_node_without_curve_cannot_attach_to_a_curve_switch(vnet_lan):
    lan = vnet_lan
    lan.curve = False  # this one node starts without keys
    plain = await lan.add_node("plain", wait=False)
    lan.curve = True
    # a negative: for several reconnect intervals it never attaches, and the switch never lists it
    with pytest.raises(TimeoutError):
        await poll_until(lambda: _attached(plain), "the plain node to attach", timeout=3)
    assert [p["name"] for p in await lan.switch.ports()] == ["node1"]


async def _attached(node) -> bool:
    return (await node.health())["attached"]


def _vnet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vnet.cli", *args], capture_output=True, text=True, timeout=30)


def test_an_exposed_control_endpoint_needs_curve(tmp_path):
    r = _vnet("switch", "--bind", "tcp://127.0.0.1:0", "--switch-control", "tcp://0.0.0.0:0")
    assert r.returncode == 2 and "without authentication" in r.stderr and "127.0.0.1" in r.stderr
    r = _vnet("node", "--name", "n1", "--control", "tcp://0.0.0.0:5999")
    assert r.returncode == 2 and "own host or container" in r.stderr
    r = _vnet("switch", "--bind", "tcp://127.0.0.1:0", "--curve-allowed", str(tmp_path))
    assert r.returncode == 2 and "needs both" in r.stderr
    r = _vnet("node", "--name", "n1", "--curve-secret", str(tmp_path / "none.key_secret"),
              "--curve-server-key", str(tmp_path / "switch.key"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "vnet keygen" in r.stderr


def test_keygen_writes_a_lan_and_keeps_existing_keys(tmp_path):
    d = str(tmp_path / "keys")
    r = _vnet("keygen", d, "node1", "node2")
    assert r.returncode == 0, r.stderr
    names = sorted(os.listdir(d))
    assert names == ["allowed", "node1.key", "node1.key_secret", "node2.key", "node2.key_secret",
                     "switch.key", "switch.key_secret"]
    assert sorted(os.listdir(os.path.join(d, "allowed"))) == ["node1.key", "node2.key"]
    assert oct(os.stat(os.path.join(d, "node1.key_secret")).st_mode & 0o777) == "0o600"
    before = open(os.path.join(d, "switch.key_secret")).read()
    r = _vnet("keygen", d, "node3")
    assert r.returncode == 0 and r.stdout.split() == [f"{d}/node3.key", f"{d}/node3.key_secret", f"{d}/allowed/node3.key"]
    assert open(os.path.join(d, "switch.key_secret")).read() == before


def test_lan_demo_with_curve():
    r = subprocess.run([sys.executable, "-m", "vnet.cli", "lan", "demo", "--nodes", "2", "--count", "1", "--curve",
                        "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and len(doc["pairs"]) == 2
