"""The topology guide's campus (docs/topology.md), through the vnet_lab marker: VLANs across
three switches, a redundant trunk that spanning tree blocks, a router between VLANs for both
stacks, and a DHCP client whose default route comes from its lease."""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ping") is None,
    reason="the campus has a kernel-stack node: root, /dev/net/tun and the system's ping")

CAMPUS = "../../examples/labs/campus.yml"


@pytest.mark.vnet_lab(CAMPUS)
async def test_a1_reaches_b1_through_r1(vnet_lab):
    hops = await vnet_lab.node("a1").call("traceroute", dst="10.0.20.1", probes=3, wait=60.0)
    assert hops["reached"] and [h["ip"] for h in hops["hops"]] == ["10.0.10.254", "10.0.20.1"], hops


@pytest.mark.vnet_lab(CAMPUS)
async def test_campus_loop_blocks_one_trunk_and_vlans_stay_apart(vnet_lab):
    # the three trunks make a loop: exactly one trunk port in the lab is discarding
    states = {}
    for name in ("core", "edge1", "edge2"):
        for p in (await vnet_lab.switch(name).call("stp_show"))["ports"]:
            if not p["edge"]:
                states[(name, p["port"])] = p["state"]
    assert sorted(states.values()).count("discarding") == 1, states
    # a2 (VLAN 10, by DHCP) reaches a1 across the edge switches and b1 (VLAN 20) through r1
    a2 = vnet_lab.node("a2")
    assert (await a2.ping("10.0.10.1", count=3, timeout=5.0)).received  # the lossy trunk may be in the path
    assert (await a2.ping("10.0.20.1", count=3, timeout=5.0)).received
    routes = [r for r in await a2.call("route_show") if r["dst"] == "default"]
    assert [(r["via"], r["proto"]) for r in routes] == [("10.0.10.254", "dhcp")]
    # the kernel-stack node b1 answers and pings with the system's tools through r1
    done = await vnet_lab.node("b1").run(["ping", "-c", "3", "-i", "0.2", "-W", "5", "10.0.10.1"])
    assert done.returncode == 0, done
