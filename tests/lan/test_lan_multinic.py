"""A node with two NICs on two switches (vnet's own stack): vnet0 on switch A, vnet1 on
switch B, each a driver instance of its own attached under its own port name; pings leave by
the NIC whose segment the peer is on, and the per-NIC counters say so."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from vnet.lan import Lan
from vnet.node.config import NicConfig, NodeConfig

ROUTER_B = "10.1.0.254"


@pytest.fixture
async def two_segments(tmp_path):
    """Segment A (10.0.0.0/24, node1 and router) and segment B (10.1.0.0/24, node1 there):
    two LANs, each with its own switch; the router's vnet1 is on B's switch."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with Lan(nodes=1, subnet="10.1.0.0/24", runtime_dir=str(tmp_path / "b"), start_timeout=30) as lan_b:
        async with Lan(nodes=1, subnet="10.0.0.0/24", runtime_dir=str(tmp_path / "a"), start_timeout=30) as lan_a:
            router = await lan_a.add_node("router", extra_args=[
                "--nic", f"switch={lan_b.switch.data},address={ROUTER_B}/24"])
            yield lan_a, lan_b, router


def _tx_packets(stats: dict, dev: str) -> int:
    return stats["nics"][dev]["stats64"]["tx_packets"]


async def test_two_nics_on_two_switches(two_segments):
    lan_a, lan_b, router = two_segments
    health = await router.health()
    assert health["carrier"] and [n["dev"] for n in health["nics"]] == ["vnet0", "vnet1"]
    assert all(n["carrier"] for n in health["nics"])
    assert [n["port"] for n in health["nics"]] == ["router", "router:vnet1"]
    # each NIC attached to its own switch, under its own port name
    assert "router" in {p["name"] for p in await lan_a.switch.ports()}
    assert "router:vnet1" in {p["name"] for p in await lan_b.switch.ports()}
    assert "router" not in {p["name"] for p in await lan_b.switch.ports()}

    links = await router.call("link_show")
    assert [link["name"] for link in links] == ["vnet0", "vnet1"]
    assert links[0]["address"] != links[1]["address"]
    assert links[0]["switch"] == lan_a.switch.data and links[1]["switch"] == lan_b.switch.data

    addrs = (await router.call("addr_show"))["addresses"]
    assert {(a["address"], a["dev"]) for a in addrs} == {("10.0.0.2", "vnet0"), (ROUTER_B, "vnet1")}
    assert [a["address"] for a in (await router.call("addr_show", dev="vnet1"))["addresses"]] == [ROUTER_B]

    before = await router.call("stats")
    # node1 of segment B: out of vnet1 only
    result = await router.ping(lan_b.nodes[0].ip, count=3)
    assert result.received == 3
    mid = await router.call("stats")
    assert _tx_packets(mid, "vnet1") - _tx_packets(before, "vnet1") >= 3
    assert _tx_packets(mid, "vnet0") == _tx_packets(before, "vnet0")
    # node1 of segment A: out of vnet0 only
    result = await router.ping(lan_a.nodes[0].ip, count=3)
    assert result.received == 3
    after = await router.call("stats")
    assert _tx_packets(after, "vnet0") - _tx_packets(mid, "vnet0") >= 3
    assert _tx_packets(after, "vnet1") == _tx_packets(mid, "vnet1")

    # per-device stats and ethtool
    vnet1 = await router.call("stats", dev="vnet1")
    assert vnet1["dev"] == "vnet1"
    assert vnet1["stats64"]["tx_packets"] >= after["nics"]["vnet1"]["stats64"]["tx_packets"] >= 3
    assert (await router.call("stats"))["dev"] == "vnet0"
    drv = await router.ethtool("drvinfo", dev="vnet1")
    assert drv["bus_info"] == "vnet:router:vnet1"
    et = await router.ethtool("stats", dev="vnet1")
    assert et and isinstance(et, dict)
    neigh = await router.call("neigh_show")
    assert {(n["ip"], n["dev"]) for n in neigh if n["mac"]} >= {(lan_a.nodes[0].ip, "vnet0"),
                                                                 (lan_b.nodes[0].ip, "vnet1")}


async def test_capture_per_device(two_segments):
    lan_a, lan_b, router = two_segments
    async with await router.capture("icmp", dev="vnet1") as cap:
        assert (await router.ping(lan_a.nodes[0].ip)).received == 1
        assert (await router.ping(lan_b.nodes[0].ip)).received == 1
        await cap.read_until(2, timeout=10)
    frames = cap.frames  # stop() drained the rest
    # the request to B's node and its reply, none of A's
    b_ip = ipaddress.IPv4Address(lan_b.nodes[0].ip).packed
    pairs = {(bytes(f["frame"])[26:30], bytes(f["frame"])[30:34], f["dir"]) for f in frames}
    router_b = ipaddress.IPv4Address(ROUTER_B).packed
    assert pairs == {(router_b, b_ip, "out"), (b_ip, router_b, "in")}


def _cli(lan, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, VNET_RUNTIME_DIR=lan.runtime_dir)
    return subprocess.run([sys.executable, "-m", "vnet.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


async def test_cli_lists_every_nic(two_segments):
    lan_a, _, _ = two_segments
    proc = _cli(lan_a, "--node", "router", "ip", "-s", "link")
    assert proc.returncode == 0, proc.stderr
    assert "vnet0:" in proc.stdout and "vnet1:" in proc.stdout
    proc = _cli(lan_a, "--node", "router", "ip", "addr")
    assert proc.returncode == 0, proc.stderr
    vnet1_part = proc.stdout[proc.stdout.index("vnet1:"):]
    assert f"inet {ROUTER_B}/24" in vnet1_part and "10.0.0.2/24" not in vnet1_part
    proc = _cli(lan_a, "--node", "router", "ethtool", "-S", "vnet1")
    assert proc.returncode == 0, proc.stderr
    proc = _cli(lan_a, "--node", "router", "ip", "link", "--json")
    assert [link["name"] for link in json.loads(proc.stdout)] == ["vnet0", "vnet1"]


@pytest.mark.parametrize("spec, message", [
    ("address=10.1.0.1/24", "no switch"),
    ("switch=tcp://127.0.0.1:5999,bogus=1", "unknown key 'bogus'"),
    ("switch=tcp://127.0.0.1:5999,address=10.1.0.300/24", "vnet1"),
    ("switch=tcp://127.0.0.1:5999,mac=01:00:00:00:00:01", "unicast"),
    ("switch=tcp://127.0.0.1:5999,address", "not KEY=VALUE"),
])
def test_bad_nic_is_a_clear_cli_error(tmp_path, spec, message):
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "vnet.cli", "node", "--name", "n", "--address", "10.0.0.1/24",
                           "--nic", spec], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--nic" in proc.stderr and message in proc.stderr and "Traceback" not in proc.stderr


def test_nic_config_values():
    cfg = NodeConfig(name="r", addresses=("10.0.0.1/24",),
                     nics=("switch=tcp://127.0.0.1:1,address=10.1.0.1/24,address=10.2.0.1/24",),
                     gateway="10.0.0.254", routes=(("10.9.0.0/16", "10.1.0.2"),), forwarding=True)
    assert cfg.nics == (NicConfig("tcp://127.0.0.1:1", ("10.1.0.1/24", "10.2.0.1/24"), spec=cfg.nics[0].spec),)
    assert cfg.nic_names() == ["vnet0", "vnet1"]
    with pytest.raises(ValueError, match="already given"):
        NodeConfig(name="r", addresses=("10.0.0.1/24",), nics=("switch=tcp://h:1,address=10.0.0.1/24",))
    with pytest.raises(ValueError, match="gateway"):
        NodeConfig(name="r", gateway="not-an-ip")
    with pytest.raises(ValueError, match="--route"):
        NodeConfig(name="r", routes=(("10.9.0.1/16", "10.1.0.2"),))


async def test_ready_only_when_every_nic_has_carrier(tmp_path):
    """vnet1's switch is not there: vnet0 has carrier, the node is not ready."""
    async with Lan(nodes=1, subnet="10.0.0.0/24", runtime_dir=str(tmp_path), start_timeout=30) as lan:
        half = await lan.add_node("half", wait=False, extra_args=[
            "--nic", f"switch=ipc://{tmp_path}/no-switch.data,address=10.9.0.1/24"])

        async def vnet0_up(node):
            h = await node.health()
            return h if h["nics"][0]["carrier"] else None

        health = await half.wait_for(vnet0_up, "vnet0 carrier")
        assert [n["carrier"] for n in health["nics"]] == [True, False]
        assert health["carrier"] is False
        with pytest.raises(TimeoutError, match="carrier"):
            await half.wait_ready(1.0)
