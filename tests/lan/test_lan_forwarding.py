"""The LAN end to end: ARP, ping, UDP, and what the learning switch does with frames."""

from __future__ import annotations

import pytest

from tests.lan.helpers import fdb_macs, frame, poll_until, port_counters, stats64

BROADCAST = "ff:ff:ff:ff:ff:ff"


async def test_arp_resolution_across_three_nodes(vnet_lan):
    nodes = vnet_lan.nodes
    for a in nodes:
        for b in nodes:
            if a is not b:
                assert (await a.ping(b.ip, count=1)).ok, f"{a.name} -> {b.name}"
    for a in nodes:
        table = {e["ip"]: e for e in await a.neigh()}
        for b in nodes:
            if a is not b:
                assert table[b.ip]["mac"] == b.mac
                assert table[b.ip]["state"] in ("REACHABLE", "STALE", "DELAY", "PROBE")


async def test_broadcast_reaches_every_node_but_the_sender(vnet_lan):
    sender, *others = vnet_lan.nodes
    before = {n.name: await stats64(n) for n in vnet_lan.nodes}
    ports_before = await port_counters(vnet_lan)
    await sender.inject(frame(BROADCAST, sender.mac))
    for n in others:
        await poll_until(lambda n=n: _grew(n, before[n.name], "rx_dropped"), f"{n.name} gets the broadcast")
    ports = await port_counters(vnet_lan)
    for n in others:
        assert ports[n.name]["tx_packets"] - ports_before[n.name]["tx_packets"] >= 1
    assert ports[sender.name]["tx_packets"] == ports_before[sender.name]["tx_packets"]
    assert (await stats64(sender))["rx_dropped"] == before[sender.name]["rx_dropped"]


async def _grew(node, before: dict, field: str, by: int = 1) -> bool:
    return (await stats64(node))[field] >= before[field] + by


async def test_learned_unicast_reaches_only_its_target(vnet_lan):
    a, b, c = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok  # both MACs are learned now
    macs = await fdb_macs(vnet_lan)
    assert macs[a.mac] == a.name and macs[b.mac] == b.name
    ports_before = await port_counters(vnet_lan)
    b_before = await stats64(b)
    n = 50
    await a.inject([frame(b.mac, a.mac, payload=i.to_bytes(4, "big")) for i in range(n)])
    await poll_until(lambda: _grew(b, b_before, "rx_dropped", n), "b receives every unicast frame")
    ports = await port_counters(vnet_lan)
    assert ports[b.name]["tx_packets"] - ports_before[b.name]["tx_packets"] == n
    assert ports[c.name]["tx_packets"] == ports_before[c.name]["tx_packets"], "unicast leaked to c's port"


@pytest.mark.vnet_lan(nodes=3, ageing_time=300.0)
async def test_aged_out_mac_is_flooded_again(vnet_lan):
    a, b, c = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok
    await vnet_lan.switch.set_ageing(0.3)
    await poll_until(lambda: _absent(vnet_lan, b.mac), "b's MAC ages out of the FDB", timeout=10)
    ports_before = await port_counters(vnet_lan)
    await a.inject(frame(b.mac, a.mac))
    await poll_until(lambda: _port_tx_grew(vnet_lan, c.name, ports_before), "unknown unicast flooded to c")
    # c's NIC filters a frame for another MAC, and counts it
    stats = await c.ethtool("stats")
    assert stats["rx_filtered"] >= 1


async def _absent(lan, mac: str) -> bool:
    return mac not in await fdb_macs(lan)


async def _port_tx_grew(lan, name: str, before: dict) -> bool:
    return (await port_counters(lan))[name]["tx_packets"] > before[name]["tx_packets"]


async def test_departed_node_macs_are_flushed(vnet_lan):
    a, b, c = vnet_lan.nodes
    assert (await c.ping(a.ip)).ok
    assert c.mac in await fdb_macs(vnet_lan)
    await vnet_lan.stop_node(c.name)  # SIGTERM: the node says BYE
    await poll_until(lambda: _absent(vnet_lan, c.mac), "c's MAC flushed after BYE", timeout=5)
    assert c.name not in {p["name"] for p in await vnet_lan.switch.ports()}


@pytest.mark.vnet_lan(nodes=2, heartbeat_interval=0.2, heartbeat_timeout=1.0)
async def test_killed_node_is_removed_after_heartbeat_timeout(vnet_lan):
    import signal

    a, b = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok
    await vnet_lan.stop_node(b.name, sig=signal.SIGKILL)  # no BYE: only silence tells
    await poll_until(lambda: _absent(vnet_lan, b.mac), "b's MAC flushed after the heartbeat timeout", timeout=5)


@pytest.mark.vnet_lan(nodes=2)
async def test_thousand_pings_without_loss(vnet_lan):
    a, b = vnet_lan.nodes
    res = await a.ping(b.ip, count=1000, timeout=2.0)
    assert res.transmitted == 1000
    assert res.received == 1000, f"lost {1000 - res.received}: {[r for r in res.replies if r['status'] != 'reply'][:5]}"


async def test_udp_exchange(vnet_lan):
    a, b, _ = vnet_lan.nodes
    await b.udp_bind(9000)
    await a.udp_bind(9001)
    await a.udp_send(b.ip, 9000, b"hello from a", sport=9001)
    got = await b.udp_recv(9000, timeout=5)
    assert [(d["src"], d["sport"], d["data"]) for d in got] == [(a.ip, 9001, b"hello from a")]
    await b.udp_send(a.ip, 9001, b"hello back", sport=9000)
    back = await a.udp_recv(9001, timeout=5)
    assert [(d["src"], d["sport"], d["data"]) for d in back] == [(b.ip, 9000, b"hello back")]


async def test_oversize_frames_are_dropped_and_counted_by_the_switch(vnet_lan):
    a, b, _ = vnet_lan.nodes
    await a.link_set(mtu=9000)  # the node may send jumbo frames; the switch's MTU is 1500
    before = await port_counters(vnet_lan)
    b_before = await stats64(b)
    await a.inject(frame(b.mac, a.mac, size=3000))
    await poll_until(lambda: _drop_grew(vnet_lan, a.name, before, "oversize"), "the switch counts the oversize frame")
    assert (await stats64(b))["rx_packets"] == b_before["rx_packets"]


async def _drop_grew(lan, name: str, before: dict, reason: str) -> bool:
    return (await port_counters(lan))[name][reason] > before[name][reason]


async def test_absent_ip_ends_failed_and_ping_says_unreachable(vnet_lan):
    a = vnet_lan.nodes[0]
    res = await a.ping("10.0.0.200", count=1, timeout=10.0)
    assert res.received == 0 and res.unreachable == 1
    assert res.replies[0]["error"] == "Destination Host Unreachable"
    table = {e["ip"]: e for e in await a.neigh()}
    assert table["10.0.0.200"]["state"] == "FAILED"
    counters = (await a.stats())["stack"]["arp"]
    assert counters["requests_sent"] >= 3


async def test_gratuitous_arp_updates_peer_tables(vnet_lan):
    a, b, c = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok and (await c.ping(b.ip)).ok
    new_mac = "02:00:00:00:0b:0b"
    await b.link_set(address=new_mac)  # announces itself with a gratuitous ARP

    async def learned(node):
        table = {e["ip"]: e for e in await node.neigh()}
        return table.get(b.ip, {}).get("mac") == new_mac

    await poll_until(lambda: learned(a), "a learns b's new MAC")
    await poll_until(lambda: learned(c), "c learns b's new MAC")
    assert (await a.ping(b.ip)).ok


async def test_duplicate_address_is_detected(vnet_lan):
    a, b, _ = vnet_lan.nodes
    newcomer = await vnet_lan.add_node("dup")
    await newcomer.addr_add(f"{b.ip}/24")

    async def conflicted():
        info = await newcomer.call("addr_show")
        return [c for c in info["conflicts"] if c["address"] == b.ip]

    found = await poll_until(conflicted, "the newcomer detects that b's address is taken")
    assert found[0]["mac"] == b.mac
    assert (await a.ping(b.ip)).ok  # b keeps its address


@pytest.mark.vnet_lan(nodes=2, heartbeat_interval=0.2, heartbeat_timeout=1.0)
async def test_nodes_reconnect_after_a_switch_restart(vnet_lan):
    a, b = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok
    await vnet_lan.kill_switch()

    async def carrier(node, up):
        return (await node.health())["carrier"] == up

    await poll_until(lambda: carrier(a, False), "a loses carrier when the switch dies", timeout=5)
    await vnet_lan.start_switch()
    await poll_until(lambda: carrier(a, True), "a reattaches", timeout=10)
    await poll_until(lambda: carrier(b, True), "b reattaches", timeout=10)
    assert (await a.ping(b.ip, count=3)).ok
