"""The compose LAN survives a pulled cable: a node container taken off the Docker network is
timed out and flushed by the switch, loses carrier itself, and re-attaches by itself when it
is plugged back in. Real containers; skipped only without a Docker engine."""

from __future__ import annotations

import pytest

from vnet.lan import poll_until

pytestmark = pytest.mark.docker

# docker-compose.yml runs the daemons with the defaults: a heartbeat every 1 s, timeout 3 s
HB_TIMEOUT = 3.0
MARGIN = 4.0  # each poll is a `docker exec` round trip (node or switch), a fraction of a second


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
