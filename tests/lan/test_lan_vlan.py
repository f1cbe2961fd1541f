"""802.1Q port VLANs through the real switch daemon and real nodes: isolation between access
ports, a trunk node that sends and receives tagged frames, the ingress drop counters, the
native VLAN, configuration by port name before a node attaches, and ``vnet switch vlan``."""

from __future__ import annotations

import struct
import subprocess
import sys

from tests.lan.helpers import EXPERIMENTAL_ETHERTYPE, frame, poll_until, port_counters, pytest, stats64

BCAST = "ff:ff:ff:ff:ff:ff"
# node1, node2: VLAN 10; node3: VLAN 20; node4: a trunk of both, no native VLAN
ACCESS_AND_TRUNK = ["--vlan", "node1=access:10", "--vlan", "node2=access:10", "--vlan", "node3=access:20",
                    "--vlan", "node4=trunk:10,20"]


def tagged(dst: str, src: str, vid: int, payload: bytes = b"vnet-vlan-test") -> bytes:
    """A frame with an 802.1Q tag for ``vid``, padded to 64 bytes."""
    raw = frame(dst, src, payload)
    return (raw[:12] + struct.pack("!HH", 0x8100, vid) + raw[12:]).ljust(64, b"\0")


def vid_of(raw: bytes) -> int | None:
    return struct.unpack("!H", raw[14:16])[0] & 0x0FFF if raw[12:14] == b"\x81\x00" else None


def switch_cli(lan, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vnet.cli", "switch", *args, "--switch-control", lan.switch.control],
                          capture_output=True, text=True, timeout=30)


async def counted(lan, name: str, counter: str, at_least: int) -> dict | None:
    c = (await port_counters(lan))[name]
    return c if c[counter] >= at_least else None


@pytest.mark.vnet_lan(nodes=4, switch_args=ACCESS_AND_TRUNK)
async def test_access_ports_are_isolated_by_vlan_and_the_trunk_sees_tagged_copies(vnet_lan):
    lan = vnet_lan
    a, b, c, d = lan.nodes
    async with await d.capture("vlan and arp") as trunk_cap:
        assert (await a.ping(b.ip)).ok  # same VLAN
        assert not (await a.ping(c.ip, timeout=1.0)).ok  # VLAN 20: a's ARP never reaches c
        assert not (await c.ping(a.ip, timeout=1.0)).ok
        seen: set = set()

        async def both_seen() -> bool:
            seen.update((f["frame"][6:12].hex(":"), vid_of(f["frame"])) for f in await trunk_cap.read(timeout=0.2))
            return {(a.mac, 10), (c.mac, 20)} <= seen

        # the trunk got a's ARP requests tagged with VLAN 10, c's with VLAN 20
        await poll_until(both_seen, "a's and c's ARP requests at the trunk, tagged")
    assert {vid for _, vid in seen} == {10, 20}
    ports = await port_counters(lan)
    # a and c flooded their ARP requests, but no copy of a VLAN 10 frame went to c's port and none
    # of VLAN 20 to a's or b's: c's port only ever sent what c's own VLAN held (nothing but d's)
    assert ports["node1"]["flooded"] >= 1 and ports["node3"]["flooded"] >= 1
    assert ports["node3"]["tx_packets"] == 0
    assert ports["node1"]["tx_packets"] == ports["node2"]["rx_packets"]  # all from b: none from c
    assert (await stats64(c))["rx_packets"] == 0  # the node agrees: nothing arrived at all
    fdb = {(e["mac"], e["vlan"]) for e in await lan.switch.fdb()}
    assert {(a.mac, 10), (b.mac, 10), (c.mac, 20)} <= fdb


@pytest.mark.vnet_lan(nodes=4, switch_args=ACCESS_AND_TRUNK)
async def test_a_trunk_node_injects_tagged_frames_that_reach_the_vlans_access_ports_untagged(vnet_lan):
    lan = vnet_lan
    a, b, c, d = lan.nodes
    async with await c.capture(f"ether src host {d.mac}") as c_cap, \
            await a.capture(f"ether src host {d.mac}") as a_cap:
        await d.inject([tagged(c.mac, d.mac, 20, b"to-c"), tagged(BCAST, d.mac, 10, b"to-ten")])
        [to_c] = await c_cap.read_until(1)
        [to_ten] = await a_cap.read_until(1)
        assert await c_cap.read(timeout=0.3) == []  # the VLAN 10 broadcast never came to c
    assert vid_of(to_c["frame"]) is None and to_c["frame"][12:14] == EXPERIMENTAL_ETHERTYPE.to_bytes(2, "big")
    assert to_c["frame"][14:18] == b"to-c"
    assert vid_of(to_ten["frame"]) is None and to_ten["frame"][14:20] == b"to-ten"
    ports = await port_counters(lan)
    assert ports["node4"]["rx_packets"] >= 2
    # frames out of the trunk are tagged: b's broadcast arrives at d with VLAN 10's tag
    async with await d.capture(f"ether src host {b.mac}") as d_cap:
        await b.inject([frame(BCAST, b.mac, b"from-b")])
        [from_b] = await d_cap.read_until(1)
    assert vid_of(from_b["frame"]) == 10 and from_b["frame"][16:18] == EXPERIMENTAL_ETHERTYPE.to_bytes(2, "big")


@pytest.mark.vnet_lan(nodes=4, switch_args=ACCESS_AND_TRUNK)
async def test_frames_a_port_may_not_send_are_dropped_and_counted_by_reason(vnet_lan):
    lan = vnet_lan
    a, b, c, d = lan.nodes
    async with await b.capture(f"ether src host {a.mac} or ether src host {d.mac}") as cap:
        await a.inject([tagged(BCAST, a.mac, 10)] * 3)  # tagged on an access port
        await d.inject([tagged(BCAST, d.mac, 30)] * 2)  # a VID the trunk does not carry
        await d.inject([frame(BCAST, d.mac)])  # untagged on a trunk without a native VLAN
        await poll_until(lambda: counted(lan, "node1", "vlan_tagged", 3), "3 frames counted vlan_tagged")
        await poll_until(lambda: counted(lan, "node4", "vlan_disallowed", 2), "2 frames counted vlan_disallowed")
        await poll_until(lambda: counted(lan, "node4", "vlan_untagged", 1), "1 frame counted vlan_untagged")
        assert await cap.read(timeout=0.3) == []
    ports = await port_counters(lan)
    assert ports["node1"]["vlan_tagged"] == 3 and ports["node4"]["vlan_disallowed"] == 2
    assert ports["node4"]["vlan_untagged"] >= 1  # d's stack may send untagged frames of its own
    totals = (await lan.switch.stats())["totals"]
    assert totals["vlan_tagged"] == 3 and totals["vlan_disallowed"] == 2
    assert totals["vlan_untagged"] == ports["node4"]["vlan_untagged"]


@pytest.mark.vnet_lan(nodes=2, switch_args=["--vlan", "node1=access:10"])
async def test_the_native_vlan_is_untagged_unless_native_tagged(vnet_lan):
    lan = vnet_lan
    a, d = lan.nodes
    row = await lan.switch.call("vlan_set", port="node2", mode="trunk", allowed=[20], native=10)
    assert row["attached"] and row["allowed"] == [10, 20] and row["native"] == 10
    assert (await d.ping(a.ip)).ok  # d's untagged frames join VLAN 10 and come back untagged
    await lan.switch.call("vlan_set", port="node2", mode="trunk", allowed=[20], native=10, native_tagged=True)
    async with await d.capture(f"ether src host {a.mac}") as cap:
        await a.inject([frame(BCAST, a.mac, b"native")])
        [got] = await cap.read_until(1)
    assert vid_of(got["frame"]) == 10  # now the native VLAN leaves tagged
    async with await a.capture(f"ether src host {d.mac}") as cap:
        await d.inject([frame(BCAST, d.mac, b"untagged-in")])  # untagged still joins the native VLAN
        [got] = await cap.read_until(1)
    assert vid_of(got["frame"]) is None and got["frame"][14:25] == b"untagged-in"


@pytest.mark.vnet_lan(nodes=2)
async def test_a_vlan_set_before_the_node_attaches_applies_and_survives_reattach(vnet_lan):
    lan = vnet_lan
    a, b = lan.nodes
    await lan.switch.call("vlan_set", port="node1", mode="access", vlan=10)
    row = await lan.switch.call("vlan_set", port="late", mode="access", vlan=10)
    assert row["attached"] is False
    late = await lan.add_node("late")
    assert (await late.ping(a.ip)).ok  # both in VLAN 10
    assert not (await late.ping(b.ip, timeout=1.0)).ok  # b is VLAN-transparent: untagged is VLAN 0
    fdb = {e["mac"]: e["vlan"] for e in await lan.switch.fdb()}
    assert fdb[late.mac] == 10 and fdb[a.mac] == 10 and fdb[b.mac] == 0
    await lan.stop_node("late")
    await poll_until(lambda: _detached(lan, "late"), "the late node's port to go")
    again = await lan.add_node("late")
    assert (await again.ping(a.ip)).ok
    rows = await lan.switch.call("vlan_show")
    assert {"port": "late", "mode": "access", "vlan": 10, "attached": True} in rows


async def _detached(lan, name: str) -> bool:
    return name not in {p["name"] for p in await lan.switch.ports()}


@pytest.mark.vnet_lan(nodes=2)
async def test_vnet_switch_vlan_sets_shows_and_clears(vnet_lan):
    lan = vnet_lan
    a, b = lan.nodes
    assert (await a.ping(b.ip)).ok
    r = switch_cli(lan, "vlan", "node1", "access", "10")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("port node1: vlan access 10") and "flushed" in r.stdout
    r = switch_cli(lan, "vlan", "node2", "trunk", "10,20-21", "--native", "10", "--native-tagged")
    assert r.returncode == 0 and "vlan trunk 10,20-21 native 10 tagged" in r.stdout, r.stderr
    r = switch_cli(lan, "vlan", "ghost", "access", "30")
    assert r.returncode == 0 and "not attached: applies when it attaches" in r.stdout
    table = switch_cli(lan, "vlan").stdout.splitlines()
    assert table[0].split() == ["port", "mode", "vlans", "native", "attached"]
    assert table[1].split() == ["ghost", "access", "30", "-", "no"]
    assert table[2].split() == ["node1", "access", "10", "-", "yes"]
    assert table[3].split() == ["node2", "trunk", "10,20-21", "10", "tagged", "yes"]
    out = switch_cli(lan, "fdb").stdout  # a's HELLO MAC, learned again in its new VLAN
    assert f"{a.mac} dev node1 vlan 10" in out
    assert f"{a.mac} dev node1 vlan 10" in switch_cli(lan, "fdb", "--vlan", "10").stdout
    assert a.mac not in switch_cli(lan, "fdb", "--vlan", "0").stdout
    assert "vlan access 10" in switch_cli(lan, "ports").stdout
    r = switch_cli(lan, "vlan", "node2", "clear")
    assert r.returncode == 0 and r.stdout.startswith("port node2: vlan-transparent")
    assert "node2" not in switch_cli(lan, "vlan").stdout
    # bad input: a clear sentence, the CLI's usage exit code, nothing changed
    for args, words in ((("node1", "trunk", "10,abc"), "'abc' is not a VLAN id"),
                        (("node1", "access", "4095"), "1 to 4094"),
                        (("node1", "hybrid", "10"), "usage: vnet switch vlan"),
                        (("node1", "access", "10", "--native", "3"), "--native and --native-tagged go with")):
        r = switch_cli(lan, "vlan", *args)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
    assert ["node1", "access", "10", "-", "yes"] in [line.split() for line in switch_cli(lan, "vlan").stdout.splitlines()]
    assert switch_cli(lan, "vlan", "node1", "clear").returncode == 0
    assert (await a.ping(b.ip)).ok  # both VLAN-transparent again


def test_a_bad_vlan_option_stops_the_switch_with_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vnet.cli", "switch", "--bind", f"ipc://{tmp_path}/d",
                        "--switch-control", f"ipc://{tmp_path}/c", "--vlan", "node1=trunk:10:native=x"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "bad VLAN spec 'trunk:10:native=x'" in r.stderr and "access:VID or trunk:" in r.stderr
