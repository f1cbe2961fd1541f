"""The compose LAN with CURVE on (docker-compose.yml + compose/curve.yml): encrypted links,
only allowed keys attach, the switch's control open to the LAN's keys; and without the
override, a switch control that no other container reaches. Real containers; skipped only
without a Docker engine."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil

import pytest

from vnet.proto.auth import keygen
from vnet.proto.control import ControlError
from vnet.lan import poll_until

pytestmark = pytest.mark.docker

VNET_UID = VNET_GID = 10001  # the image's vnet user
KEY_NAMES = ["node1", "node2", "node3", "dhcp", "node"]


def _chown_tree(path) -> None:
    os.chown(path, VNET_UID, VNET_GID)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), VNET_UID, VNET_GID)


async def _exec(container: str, *argv: str, timeout: float = 60) -> tuple[int, str, str]:
    """``docker exec CONTAINER ARGV...``: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec("docker", "exec", container, *argv,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def _ask(fn):
    """``fn()``, or None while the node's daemon cannot answer yet (its container restarting)."""
    try:
        return await fn()
    except ControlError:
        return None


async def _port_names(lan) -> set[str]:
    return {p["name"] for p in await lan.switch.ports()}


@pytest.fixture
def lan_keys(tmp_path):
    keys = tmp_path / "keys"
    keygen(str(keys), KEY_NAMES)
    _chown_tree(keys)
    return keys


async def test_curve_lan_attaches_allowed_keys_only(docker_lan_factory, vnet_compose_file, lan_keys):
    lan = await docker_lan_factory(overrides=(vnet_compose_file.parent / "compose" / "curve.yml",),
                                   env={"VNET_KEYS": str(lan_keys)})
    # started means every container of the project is healthy (DockerLan polls Docker for it)
    containers = await lan._containers()
    assert {c["service"] for c in containers} == {"switch", "node1", "node2", "node3", "dhcp"}
    assert all(c["health"] == "healthy" for c in containers), containers
    n1, n2, n3 = (lan.node(n) for n in ("node1", "node2", "node3"))
    for x, y in itertools.permutations((n1, n2, n3), 2):
        res = await x.ping(y.ip, count=2)
        assert res.ok, f"{x.name} -> {y.name} with CURVE: {res.replies}"

    auth = (await lan.switch.stats())["auth"]
    assert auth["accepted"] >= 4 and auth["denied"] == 0, auth
    assert auth["allowed_keys"] >= len(KEY_NAMES), auth

    # the override opens the switch's control to the LAN's keys: a node container drives it
    rc, out, err = await _exec(n1.container, "vnet", "switch", "ports", "--json")
    assert rc == 0, f"vnet switch ports in {n1.container}: {err}"
    assert {p["name"] for p in json.loads(out)} >= {"node1", "node2", "node3", "dhcp"}

    # An intruder: node3's key leaves the allowed list. Its attached link stays up ...
    (lan_keys / "allowed" / "node3.key").unlink()
    assert (await n3.ping(n1.ip)).ok
    # ... but once its container restarts, it cannot attach again
    proc = await asyncio.create_subprocess_exec("docker", "restart", "-t", "5", n3.container,
                                                stdout=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0

    async def refused() -> bool:
        denied = (await lan.switch.stats())["auth"]["denied"]
        link = await _ask(n3.stats)
        return denied >= 1 and link is not None and link["link"]["auth_failures"] >= 1

    await poll_until(refused, "the switch denies node3's key and node3 counts the refusal", timeout=30, every=0.5)
    assert "node3" not in await _port_names(lan)
    health = await n3.health()
    assert not health["carrier"] and not health["attached"], health
    try:  # nothing crosses: the ping is refused (its address never got past DAD) or unanswered
        assert not (await n3.ping(n1.ip)).ok
    except ControlError:
        pass
    res = await n1.ping(n2.ip, count=2)
    assert res.ok and (await n2.ping(n1.ip)).ok, res.replies

    # the key back in the list: node3's retries get through, no restart needed
    shutil.copyfile(lan_keys / "node3.key", lan_keys / "allowed" / "node3.key")
    _chown_tree(lan_keys)

    async def back() -> bool:
        return "node3" in await _port_names(lan) and (await n3.health())["carrier"]

    await poll_until(back, "node3 attaches once its key is allowed again", timeout=30, every=0.5)
    await n3.wait_ready(30)  # back on the LAN, its address passes duplicate address detection again
    res = await n3.ping(n1.ip, count=2)
    assert res.ok, f"node3 -> node1 after its key is back: {res.replies}"
    assert (await n1.ping(n3.ip)).ok


async def test_plain_lan_switch_control_is_not_reachable_from_a_node(docker_lan):
    n1 = docker_lan.node("node1")
    switch = [c["name"] for c in await docker_lan._containers() if c["service"] == "switch"][0]
    # the control endpoint answers on the switch container's loopback ...
    rc, out, err = await _exec(switch, "vnet", "switch", "stats", "--switch-control", "tcp://127.0.0.1:5541",
                               "--timeout", "2")
    assert rc == 0, f"vnet switch stats in {switch}: {err}"
    # ... and the switch is reachable from node1 (its data port: node1 is attached) ...
    assert "node1" in {p["name"] for p in await docker_lan.switch.ports()}
    # ... but its control port is not
    rc, out, err = await _exec(n1.container, "vnet", "switch", "stats", "--switch-control", "tcp://switch:5541",
                               "--timeout", "2")
    assert rc != 0, f"the switch's control answered node1: {out}"
    assert "no answer" in err, err
