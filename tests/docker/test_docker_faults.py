"""The compose LAN survives a pulled cable: a node container taken off the Docker network is
timed out and flushed by the switch, loses carrier itself, and re-attaches by itself when it
is plugged back in. Real containers; skipped only without a Docker engine."""

from __future__ import annotations

import ipaddress
import json

import pytest

from vnet.docker_lan import _run
from vnet.lan import poll_until

pytestmark = pytest.mark.docker

# docker-compose.yml runs the daemons with the defaults: a heartbeat every 1 s, timeout 3 s
HB_TIMEOUT = 3.0
MARGIN = 4.0  # each poll is a `docker exec` round trip (node or switch), a fraction of a second
# Off the network, a lookup of the switch's name hangs on Docker's DNS for glibc's 2 x 5 s
# (libzmq resolves in its I/O thread, which is still in it when the cable is plugged back)
RESOLVER_STALL = 10.0


async def _fdb_macs(lan) -> dict[str, str]:
    return {e["mac"]: e["port"] for e in await lan.switch.fdb()}


async def _port_names(lan) -> set[str]:
    return {p["name"] for p in await lan.switch.ports()}


async def test_disconnected_node_container_is_flushed_and_reattaches_when_reconnected(docker_lan):
    lan = docker_lan
    a, b, c = lan.nodes[:3]
    assert (await a.ping(c.ip)).ok and (await c.ping(b.ip)).ok
    assert (await _fdb_macs(lan))[c.mac] == c.name
    totals_before = (await lan.switch.stats())["totals"]
    c_link_before = (await c.stats())["link"]

    await lan.disconnect_node(c.name)  # `docker network disconnect`: the cable is pulled
    try:
        async def gone() -> bool:
            return c.name not in await _port_names(lan) and c.mac not in await _fdb_macs(lan)

        await poll_until(gone, "the switch removes the disconnected node's port and flushes its MAC",
                         timeout=HB_TIMEOUT + MARGIN, every=0.2)
        totals = (await lan.switch.stats())["totals"]
        assert totals["timeouts"] - totals_before["timeouts"] == 1
        assert totals["byes"] == totals_before["byes"]  # silence, not a goodbye
        assert c.name not in await _port_names(lan)

        # The node is still running and reachable through docker exec: it has no carrier.
        async def no_carrier():
            h = await c.health()
            return h if not h["carrier"] and not h["attached"] else None

        await poll_until(no_carrier, "the disconnected node drops carrier", timeout=HB_TIMEOUT + MARGIN, every=0.2)
        assert (await c.stats())["link"]["carrier_losses"] - c_link_before["carrier_losses"] == 1
        # the others carry on
        assert (await a.ping(b.ip)).ok
    finally:
        await lan.connect_node(c.name)  # `docker network connect`: plugged back in

    async def back() -> bool:
        return c.name in await _port_names(lan) and (await c.health())["carrier"]

    await poll_until(back, "the reconnected node re-attaches by itself", timeout=30, every=0.5)
    c_link = (await c.stats())["link"]
    assert c_link["attaches"] - c_link_before["attaches"] == 1, f"{c_link_before} -> {c_link}"
    for x, y in ((a, c), (c, a), (b, c), (c, b)):
        res = await x.ping(y.ip, count=2)
        assert res.ok, f"{x.name} -> {y.name} after the reconnect: {res.replies}"
    assert (await _fdb_macs(lan))[c.mac] == c.name



async def _container_addresses(container: str) -> dict[str, str]:
    """Docker network name -> ``container``'s IPv4 address on it."""
    info = json.loads(await _run("docker", "inspect", container))[0]
    return {net: cfg["IPAddress"] for net, cfg in (info["NetworkSettings"]["Networks"] or {}).items()}


async def _network_addresses(net: str) -> set[str]:
    info = json.loads(await _run("docker", "network", "inspect", net))[0]
    return {c["IPv4Address"].split("/")[0] for c in (info.get("Containers") or {}).values()}


async def test_node_reconnected_with_a_new_address_reattaches_by_itself(docker_lan):
    lan = docker_lan
    a, b, c = lan.nodes[:3]
    assert (await a.ping(c.ip)).ok and (await c.ping(b.ip)).ok
    c_link_before = (await c.stats())["link"]
    (net, old_ip), = (await _container_addresses(c.container)).items()
    subnet = ipaddress.IPv4Network(lan._env["VNET_DOCKER_SUBNET"])
    taken = await _network_addresses(net)
    new_ip = next(ip for ip in (str(subnet.network_address + i) for i in range(200, 250)) if ip not in taken)
    assert new_ip != old_ip

    await lan.disconnect_node(c.name)  # the cable is pulled ...
    try:
        # ... long enough for the silence to be noticed (the switch's view: the node's own
        # control may stall meanwhile, see RESOLVER_STALL)
        async def gone() -> bool:
            return c.name not in await _port_names(lan)

        await poll_until(gone, "the switch times out the disconnected node",
                         timeout=HB_TIMEOUT + MARGIN, every=0.2)
    finally:
        await lan.connect_node(c.name, ip=new_ip)  # plugged back in, with another address
    assert await _container_addresses(c.container) == {net: new_ip}

    async def back() -> bool:
        return c.name in await _port_names(lan) and (await c.health())["carrier"]

    # the old connection is dead for good (its address is gone): the link must make a new
    # one, within a heartbeat timeout of the plug, after any name lookup still pending
    await poll_until(back, f"the node, now at {new_ip}, re-attaches by itself",
                     timeout=2 * HB_TIMEOUT + RESOLVER_STALL + MARGIN, every=0.5)
    c_link = (await c.stats())["link"]
    assert c_link["carrier_losses"] - c_link_before["carrier_losses"] == 1, f"{c_link_before} -> {c_link}"
    assert c_link["reconnects"] > c_link_before["reconnects"], f"{c_link_before} -> {c_link}"
    assert c_link["attaches"] - c_link_before["attaches"] == 1, f"{c_link_before} -> {c_link}"
    for x, y in ((a, c), (c, a), (b, c), (c, b)):
        res = await x.ping(y.ip, count=2)
        assert res.ok, f"{x.name} -> {y.name} after the reconnect from {new_ip}: {res.replies}"
    assert (await _fdb_macs(lan))[c.mac] == c.name
