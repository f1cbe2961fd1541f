"""A kernel-stack router: one node with two NICs (a TAP each, vnet0 on switch A, vnet1 on
switch B, each with vnet's driver in its path) and --forwarding; kernel-stack hosts on each
segment reach each other through it with the system's ping, by --gateway on one side and
--route on the other. iproute2 is the oracle for the interfaces and routes."""

from __future__ import annotations

import subprocess

import pytest

from vnet.lan import Lan

from .conftest import MISSING
from .test_kernel_lan import need

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

ROUTER_A, ROUTER_B = "10.40.0.2", "10.41.0.254"


def ip_n(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
async def routed(tmp_path):
    """Segment B: hostb (10.41.0.1, --route 10.40.0.0/24 via the router). Segment A: a vnet-stack
    node1, the router (10.40.0.2 on vnet0, 10.41.0.254 on vnet1, --forwarding) and hosta
    (10.40.0.3, --gateway 10.40.0.2)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with Lan(1, "10.41.0.0/24", stack="kernel", runtime_dir=str(tmp_path / "b"),
                   node_args=["--route", f"10.40.0.0/24={ROUTER_B}"]) as lan_b:
        async with Lan(1, "10.40.0.0/24", stacks=["vnet"], runtime_dir=str(tmp_path / "a")) as lan_a:
            router = await lan_a.add_node("router", stack="kernel", extra_args=[
                "--nic", f"switch={lan_b.switch.data},address={ROUTER_B}/24", "--forwarding"])
            hosta = await lan_a.add_node("hosta", stack="kernel", extra_args=["--gateway", ROUTER_A])
            yield lan_a, lan_b, router, hosta, lan_b.nodes[0]


async def test_kernel_router_forwards_between_two_segments(routed):
    need("ping")
    lan_a, lan_b, router, hosta, hostb = routed
    assert router.ip == ROUTER_A and hosta.ip == "10.40.0.3"
    links = ip_n(router.netns, "-o", "link")
    assert " vnet0:" in links and " vnet1:" in links
    assert f"inet {ROUTER_B}/24" in ip_n(router.netns, "-o", "addr", "show", "dev", "vnet1")
    assert "default via 10.40.0.2 dev vnet0" in ip_n(hosta.netns, "route")
    assert f"10.40.0.0/24 via {ROUTER_B} dev vnet0" in ip_n(hostb.netns, "route")
    with open(f"/proc/sys/net/ipv4/ip_forward") as fh:
        host_forwarding = fh.read()  # the host's own is not the router's business
    r = subprocess.run(["ip", "netns", "exec", router.netns, "cat", "/proc/sys/net/ipv4/ip_forward",
                        "/proc/sys/net/ipv4/conf/all/send_redirects", "/proc/sys/net/ipv4/conf/vnet0/send_redirects"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["1", "0", "0"]

    health = await router.health()
    assert health["carrier"] and [n["dev"] for n in health["nics"]] == ["vnet0", "vnet1"]
    assert {(a["address"], a["dev"]) for a in health["addresses"]} == {(ROUTER_A, "vnet0"), (ROUTER_B, "vnet1")}
    assert "router:vnet1" in {p["name"] for p in await lan_b.switch.ports()}

    before = (await router.call("stats"))["nics"]
    r = await hosta.run(["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", hostb.ip], timeout=30)
    assert r.returncode == 0 and b"3 received" in r.stdout, r.stdout
    assert b"ttl=63" in r.stdout  # one router on the way
    r = await hostb.run(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", hosta.ip], timeout=30)
    assert r.returncode == 0 and b"2 received" in r.stdout, r.stdout
    after = (await router.call("stats"))["nics"]
    for dev in ("vnet0", "vnet1"):  # both ways through both NICs' driver instances
        assert after[dev]["stats64"]["rx_packets"] - before[dev]["stats64"]["rx_packets"] >= 5
        assert after[dev]["stats64"]["tx_packets"] - before[dev]["stats64"]["tx_packets"] >= 5
    arp = await router.call("arping", dst=hostb.ip, timeout=3.0)  # out of vnet1, the segment hostb is on
    assert arp["status"] == "reply" and arp["mac"] == hostb.mac, arp
    vnet1 = await router.call("stats", dev="vnet1")
    assert vnet1["dev"] == "vnet1" and vnet1["kernel"]["stats64"]["rx_packets"] >= 5
    assert (await router.ethtool("stats", dev="vnet1"))["tap_handed_up"] >= 5
    with open(f"/proc/sys/net/ipv4/ip_forward") as fh:
        assert fh.read() == host_forwarding

    # SIGTERM: both TAPs leave the namespace with the daemon
    assert await lan_a.stop_node("router") == 0
    links = ip_n(router.netns, "-o", "link")
    assert "vnet0" not in links and "vnet1" not in links


async def test_unreachable_gateway_is_a_clear_start_error(tmp_path):
    async with Lan(1, "10.42.0.0/24", stack="kernel", runtime_dir=str(tmp_path)) as lan:
        with pytest.raises(Exception) as info:
            await lan.add_node("lost", stack="kernel", extra_args=["--gateway", "192.168.99.1"])
        assert "192.168.99.1" in str(info.value)
