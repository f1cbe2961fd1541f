"""Routing end to end with real switch and node processes on one switch: hosts in different
subnets reach each other through router nodes (--forwarding, --gateway, --route), the TTL a
host sees is decremented (checked in a capture, parsed by scapy), traceroute lists the
routers, and 802.1Q sub-interfaces made with the CLI route like any device.

Every node also has an address on 10.99.0.0/24 (the embedded LAN gives each node one); the
routed subnets are 10.0.x.0/24."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vnet.lan import Lan


def vnet(lan, *args: str, node: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, VNET_RUNTIME_DIR=lan.runtime_dir, VNET_SWITCH_CONTROL=lan.switch.control)
    env.pop("VNET_NODE", None)
    cmd = [sys.executable, "-m", "vnet.cli", *args]
    if node:
        cmd[3:3] = ["--node", node]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


@pytest.fixture
async def lan():
    async with Lan(nodes=1, subnet="10.99.0.0/24") as lan:
        yield lan


async def test_ping_through_a_router_decrements_ttl(lan):
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    r = await lan.add_node("r1", extra_args=["--address", "10.0.1.1/24", "--address", "10.0.2.1/24",
                                             "--forwarding"])
    a = await lan.add_node("a", extra_args=["--address", "10.0.1.2/24", "--gateway", "10.0.1.1"])
    b = await lan.add_node("b", extra_args=["--address", "10.0.2.2/24", "--gateway", "10.0.2.1"])
    routes = await a.call("route_show")
    assert {"dst": "default", "via": "10.0.1.1", "dev": "vnet0", "proto": "boot", "scope": "global",
            "metric": 0, "src": None} in routes
    async with await b.capture("icmp") as cap:
        res = await a.ping("10.0.2.2", count=2)
        assert res.ok, res.replies
        assert [x["ttl"] for x in res.replies] == [63, 63]  # b's reply came back through r
        frames = [Ether(f["frame"]) for f in await cap.read_until(4)]
    requests = [p for p in frames if p[ICMP].type == 8]
    assert requests and all(p[IP].src == "10.0.1.2" and p[IP].ttl == 63 for p in requests)
    assert all(p.src == r.mac for p in requests)  # delivered by the router
    ip_stats = (await r.stats())["stack"]["ip"]
    assert ip_stats["forw_datagrams"] >= 4
    # forwarding off: the router drops what is not for it, and counts it
    assert (await r.call("forwarding_set", on=False)) == {"forwarding": False}
    res = await a.ping("10.0.2.2", timeout=0.5)
    assert res.received == 0
    assert (await r.stats())["stack"]["ip"]["in_addr_errors"] >= 1


async def test_traceroute_through_two_routers(lan):
    await lan.add_node("r1", extra_args=["--address", "10.0.1.1/24", "--address", "10.0.2.1/24", "--forwarding",
                                         "--route", "10.0.3.0/24=10.0.2.2"])
    await lan.add_node("r2", extra_args=["--address", "10.0.2.2/24", "--address", "10.0.3.1/24", "--forwarding",
                                         "--route", "10.0.1.0/24=10.0.2.1"])
    a = await lan.add_node("a", extra_args=["--address", "10.0.1.2/24", "--gateway", "10.0.1.1"])
    await lan.add_node("c", extra_args=["--address", "10.0.3.2/24", "--gateway", "10.0.3.1"])
    result = await a.call("traceroute", wait=30, dst="10.0.3.2", max_hops=8, timeout=2.0)
    assert [h["ip"] for h in result["hops"]] == ["10.0.1.1", "10.0.2.2", "10.0.3.2"]
    assert result["reached"] and all(h["rtt_ms"] > 0 for h in result["hops"])
    out = ok(vnet(lan, "traceroute", "-m", "8", "-w", "2", "10.0.3.2", node="a"))
    lines = out.splitlines()
    assert lines[0].startswith("traceroute to 10.0.3.2 (10.0.3.2), 8 hops max")
    assert [line.split()[:2] for line in lines[1:]] == [["1", "10.0.1.1"], ["2", "10.0.2.2"], ["3", "10.0.3.2"]]
    # a network nobody routes: r1 answers net unreachable (!N), traceroute stops there
    out = vnet(lan, "traceroute", "-m", "4", "-w", "2", "192.168.50.1", node="a")
    assert out.returncode == 1, out.stdout + out.stderr
    [hop] = out.stdout.splitlines()[1:]
    assert hop.split()[:2] == ["1", "10.0.1.1"] and hop.endswith("!N")
    res = await a.ping("192.168.50.1")
    assert res.replies[0]["status"] == "unreachable" and res.replies[0]["from"] == "10.0.1.1"
    assert res.replies[0]["error"] == "Destination Net Unreachable"


async def test_cli_routes_and_vlan_subinterfaces(lan):
    r = await lan.add_node("r1")
    a = await lan.add_node("a")
    b = await lan.add_node("b")
    for node, vid, cidr in ((r, 10, "10.0.10.1/24"), (r, 20, "10.0.20.1/24"), (a, 10, "10.0.10.2/24"),
                            (b, 20, "10.0.20.2/24")):
        name = f"vnet0.{vid}"
        ok(vnet(lan, "ip", "link", "add", "link", "vnet0", "name", name, "type", "vlan", "id", str(vid), node=node.name))
        ok(vnet(lan, "ip", "link", "set", name, "up", node=node.name))
        ok(vnet(lan, "ip", "addr", "add", cidr, "dev", name, node=node.name))
    ok(vnet(lan, "ip", "route", "add", "default", "via", "10.0.10.1", node="a"))
    ok(vnet(lan, "ip", "route", "add", "10.0.10.0/24", "via", "10.0.20.1", "dev", "vnet0.20", node="b"))
    assert ok(vnet(lan, "sysctl", "-w", "net.ipv4.ip_forward=1", node="r1")).strip() == "net.ipv4.ip_forward = 1"
    out = ok(vnet(lan, "ip", "link", node="r1"))
    assert "vnet0.10@vnet0: <BROADCAST,MULTICAST,UP,LOWER_UP>" in out
    for node in (r, a, b):
        await node.wait_ready()  # the new addresses passed DAD
    out = ok(vnet(lan, "ip", "route", node="a"))
    assert "default via 10.0.10.1 dev vnet0.10 proto static" in out.splitlines()
    assert "10.0.10.0/24 dev vnet0.10 proto kernel scope link src 10.0.10.2" in out.splitlines()
    assert "10.0.10.0/24 via 10.0.20.1 dev vnet0.20 proto static" in ok(vnet(lan, "ip", "route", node="b"))
    res = await a.ping("10.0.20.2", count=2)
    assert res.ok and res.replies[0]["ttl"] == 63, res.replies
    out = ok(vnet(lan, "traceroute", "-w", "2", "10.0.20.2", node="a"))
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["10.0.10.1", "10.0.20.2"]
    links = {link["name"]: link for link in await r.call("link_show")}
    sub = links["vnet0.10"]
    assert sub["link"] == "vnet0" and sub["vlan"] == 10
    assert sub["stats64"]["rx_packets"] > 0 and sub["stats64"]["tx_packets"] > 0
    # the switch saw the tagged frames on their VLANs
    vlans = {e["vlan"] for e in await lan.switch.fdb()}
    assert {10, 20} <= vlans
    ok(vnet(lan, "ip", "route", "del", "default", node="a"))
    assert "default" not in ok(vnet(lan, "ip", "route", node="a"))
    bad = vnet(lan, "ip", "route", "add", "10.5.0.0/16", "via", "10.7.7.7", node="a")
    assert bad.returncode == 2 and "not on-link" in bad.stderr
    ok(vnet(lan, "ip", "link", "del", "vnet0.20", node="b"))
    assert "vnet0.20" not in ok(vnet(lan, "ip", "link", node="b"))
    assert all(x["dev"] != "vnet0.20" for x in await b.call("route_show"))


@pytest.mark.parametrize("kwargs, message", [
    ({"gateway": "10.0.2.1"}, "not inside the network of any address"),
    ({"gateway": "10.0.1.300"}, "not an IPv4 address"),
    ({"routes": (("10.0.3.1/24", "10.0.1.1"),)}, "host bits set"),
    ({"routes": (("10.0.3.0/24", "10.9.9.9"),)}, "must be on-link"),
    ({"gateway": "10.0.1.1", "dhcp": True, "addresses": ()}, "static addresses"),
])
def test_bad_routing_config_is_refused_before_start(kwargs, message):
    from vnet.node.config import NodeConfig

    with pytest.raises(ValueError, match=message):
        NodeConfig(name="n", **{"addresses": ("10.0.1.2/24",), **kwargs})


def test_bad_route_flag_exits_2(tmp_path):
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "vnet.cli", "node", "--name", "n", "--address", "10.0.1.2/24",
                           "--route", "10.0.3.0/24"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "expected CIDR=GW" in proc.stderr
