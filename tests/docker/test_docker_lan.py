"""The compose LAN with real containers: health, ARP and ping across containers, accounting,
scaling, node loss, switch restart, and a clean teardown. Skipped only without a Docker engine."""

from __future__ import annotations

import asyncio

import itertools

import pytest

from vnet.lan import poll_until

pytestmark = pytest.mark.docker


async def test_every_node_is_healthy_and_every_pair_pings(docker_lan):
    names = [n.name for n in docker_lan.nodes]
    assert names[:3] == ["node1", "node2", "node3"]
    for a, b in itertools.permutations(docker_lan.nodes, 2):
        res = await a.ping(b.ip, count=2)
        assert res.ok, f"{a.name} -> {b.name}: {res.replies}"
    for a in docker_lan.nodes:
        table = {e["ip"]: e["mac"] for e in await a.neigh()}
        for b in docker_lan.nodes:
            if b is not a:
                assert table.get(b.ip) == b.mac, f"{a.name} resolved {b.name}"


async def _accounts_close(lan) -> list[str]:
    """Every frame a node sent reached the switch, and every frame the switch sent a node
    is in that node's RX counters (delivered, filtered or dropped by name)."""
    ports = {p["name"]: p["counters"] for p in await lan.switch.ports()}
    problems = []
    for node in lan.nodes:
        s = (await node.link())["stats64"]
        e = await node.ethtool("stats")
        p = ports[node.name]
        if p["rx_packets"] + p["runt"] + p["oversize"] + p["bad_src"] != s["tx_packets"]:
            problems.append(f"{node.name}: sent {s['tx_packets']}, switch got {p['rx_packets']}")
        arrived = s["rx_packets"] + e["rx_filtered"] + s["rx_missed_errors"] + s["rx_length_errors"]
        if p["tx_packets"] != arrived:
            problems.append(f"{node.name}: switch sent {p['tx_packets']}, node accounts for {arrived}")
    return problems


async def test_per_node_stats_add_up_with_the_switch(docker_lan):
    a, b, c = docker_lan.nodes[:3]
    assert (await a.ping(b.ip, count=5)).ok
    assert (await c.ping(a.ip, count=5)).ok
    # traffic may still be in flight between two reads: poll until the books balance
    await poll_until(lambda: _balanced(docker_lan), "node and switch counters to agree", timeout=20, every=0.5)


async def _balanced(lan) -> bool:
    return not await _accounts_close(lan)


async def test_killed_node_container_is_flushed_from_the_switch(docker_lan):
    a, b, c = docker_lan.nodes[:3]
    assert (await c.ping(a.ip)).ok
    assert c.mac in {e["mac"] for e in await docker_lan.switch.fdb()}
    await docker_lan.kill_node(c.name)

    async def flushed() -> bool:
        return c.mac not in {e["mac"] for e in await docker_lan.switch.fdb()} and \
            c.name not in {p["name"] for p in await docker_lan.switch.ports()}

    await poll_until(flushed, "the switch flushes the dead node's MAC", timeout=15, every=0.5)
    assert (await a.ping(b.ip)).ok


async def test_nodes_reconnect_after_the_switch_container_restarts(docker_lan):
    a, b = docker_lan.nodes[:2]
    assert (await a.ping(b.ip)).ok
    await docker_lan.restart_switch()

    async def everyone_attached() -> bool:
        # the restarted switch's own view: every node has said HELLO to it
        ports = {p["name"] for p in await docker_lan.switch.ports()}
        return ports >= {n.name for n in docker_lan.nodes} and all(
            [(await n.health())["carrier"] for n in docker_lan.nodes])

    await poll_until(everyone_attached, "every node reattaches to the new switch", timeout=30, every=0.5)
    res = await a.ping(b.ip, count=3)
    assert res.ok, res.replies


@pytest.mark.docker_lan(scale=6)
async def test_scale_gives_distinct_mutually_reachable_nodes(docker_lan):
    scaled = [n for n in docker_lan.nodes if n.service == "node"]
    assert len(scaled) == 6
    assert len({n.mac for n in scaled}) == 6 and len({n.ip for n in scaled}) == 6
    assert not {n.ip for n in scaled} & {n.ip for n in docker_lan.nodes if n.service != "node"}
    for a, b in itertools.permutations(scaled, 2):
        assert (await a.ping(b.ip)).ok, f"{a.name} ({a.ip}) -> {b.name} ({b.ip})"


@pytest.mark.docker_lan(scale=2)
async def test_a_restarted_scaled_node_keeps_its_address(docker_lan):
    from vnet.docker_lan import _run

    node = [n for n in docker_lan.nodes if n.service == "node"][0]
    before = node.ip
    channel = docker_lan.channel(node.container)
    assert channel.channels_opened == 1  # every request so far went over one channel
    await _run("docker", "restart", "-t", "5", node.container)
    await docker_lan.refresh()
    again = docker_lan.node(node.name)
    assert again.ip == before
    # the restart ended the container's relay; the handle's next requests opened a new one
    assert channel.channels_opened == 2
    assert (await again.link())["operstate"] == "UP"


async def test_control_channel_carries_concurrent_requests(docker_lan):
    """One channel per container: a long poll does not hold up other requests on it."""
    a, b, c = docker_lan.nodes[:3]
    await b.udp_bind(9200)
    recv = asyncio.create_task(b.udp_recv(9200, timeout=20.0))
    to_a, link, stats, neigh = await asyncio.gather(b.ping(a.ip), b.link(), b.stats(), c.neigh())
    assert to_a.ok and link["operstate"] == "UP" and stats and isinstance(neigh, list)
    assert not recv.done()
    await a.udp_send(b.ip, 9200, b"over the channel")
    got = await asyncio.wait_for(recv, 30)
    assert got[0]["data"] == b"over the channel"
    assert docker_lan.channel(b.container).channels_opened == 1


async def test_teardown_leaves_nothing_behind(docker_lan_factory):
    lan = await docker_lan_factory(scale=1)
    project_resources = await lan.resources()
    assert project_resources["containers"] and project_resources["networks"]
    await lan.close()
    assert await lan.resources() == {"containers": [], "networks": [], "volumes": []}
