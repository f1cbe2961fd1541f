"""The TAP upper edge on its own (no daemon, no switch): two kernel stacks in two namespaces,
each on a model vnet0, the two model NICs back to back on an in-memory cable. The system's
ping is the traffic and `ip -s -j link` the oracle for the counter equations."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from vnet.node import ethtool
from vnet.node.link import wire_pair
from vnet.node.netdevice import DeviceNamespace, dev_get_stats, dev_open, qdisc_get_stats
from vnet.node.tap import TapConfig, TapError, tap_create
from vnet.node.tapedge import TapEdge
from vnet.node.vnic import vnic_probe, vnic_remove

from .conftest import NO_NET_CAPS, in_netns, ip_link_stats, needs_kernel

pytestmark = needs_kernel

MAC_A = bytes.fromhex("020000000a01")
MAC_B = bytes.fromhex("020000000b01")


def link_names(netns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], capture_output=True, text=True, check=True)
    return [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()]


class Side:
    """One node without its daemon: a kernel vnet0 (TAP) in ``netns`` over a model vnet0."""

    def __init__(self, loop, link, netns: str, mac: bytes, cidr: str) -> None:
        self.netns = netns
        self.ns = DeviceNamespace()
        self.dev = vnic_probe(self.ns, loop, link, mac=mac)
        self.tap = tap_create(TapConfig(netns=netns, mac=mac, addresses=[cidr]))
        self.edge = TapEdge(self.tap, self.dev, loop)
        self.edge.start()
        dev_open(self.dev)

    def close(self) -> None:
        self.edge.stop()
        vnic_remove(self.dev)
        self.tap.close()


async def quiesce(sides, rounds: int = 3) -> None:
    """Let in-flight frames land: loop until no counter moved, the kernel's included, for a few
    iterations (the kernel sends on its own now and then: IPv6 solicitations, MLD reports)."""
    last = None
    same = 0
    for _ in range(2000):
        now = [(s.edge.counters(), dev_get_stats(s.dev).tx_packets, dev_get_stats(s.dev).rx_packets,
                await asyncio.to_thread(ip_link_stats, s.netns)) for s in sides]
        same = same + 1 if now == last else 0
        if same >= rounds:
            return
        last = now
        await asyncio.sleep(0.005)
    raise AssertionError("the counters never settled")


async def test_ping_across_two_kernel_stacks_and_counters_agree(netns_factory):
    loop = asyncio.get_running_loop()
    na, nb = netns_factory(), netns_factory()
    la, lb = wire_pair(loop)
    a = await asyncio.to_thread(Side, loop, la, na, MAC_A, "10.77.0.1/24")
    b = await asyncio.to_thread(Side, loop, lb, nb, MAC_B, "10.77.0.2/24")
    try:
        proc = await asyncio.create_subprocess_exec(
            *in_netns(na, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.2"]),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, out.decode()
        assert "3 received" in out.decode()
        await quiesce([a, b])
        for side in (a, b):
            kernel = ip_link_stats(side.netns)
            model = dev_get_stats(side.dev)
            tap = side.edge.counters()
            qdisc = qdisc_get_stats(side.dev)
            # kernel TX == frames read from the TAP == what the model was offered
            assert kernel["tx"]["packets"] == tap["tap_read_frames"] > 0
            assert kernel["tx"]["bytes"] == tap["tap_read_bytes"]
            offered = model.tx_packets + model.tx_dropped + qdisc.drops
            assert tap["tap_read_frames"] == offered + tap["tap_tx_oversize"] + tap["tap_tx_runts"]
            # model RX handed up == written to the TAP == kernel RX
            assert model.rx_packets == tap["tap_handed_up"]
            assert tap["tap_handed_up"] == tap["tap_write_frames"] + tap["tap_write_errors"] + tap["tap_short_writes"]
            assert tap["tap_write_frames"] == kernel["rx"]["packets"]
            assert kernel["rx"]["bytes"] == tap["tap_write_bytes"] == model.rx_bytes
            assert ethtool.ethtool_get_stats(side.dev)["rx_queue_0_packets"] == model.rx_packets
        # ping's frames crossed: each side sent and received at least ARP + 3 ICMP
        assert ip_link_stats(nb)["rx"]["packets"] >= 4
    finally:
        a.close()
        b.close()
    assert "vnet0" not in link_names(na)  # closing the fd removed the interface


async def test_cable_cut_is_no_carrier_for_the_kernel(netns_factory):
    loop = asyncio.get_running_loop()
    na = netns_factory()
    la, lb = wire_pair(loop)
    a = await asyncio.to_thread(Side, loop, la, na, MAC_A, "10.77.1.1/24")
    try:
        def flags() -> str:
            return subprocess.run(["ip", "-n", na, "-o", "link", "show", "vnet0"], capture_output=True,
                                  text=True, check=True).stdout

        async def until(pred) -> None:
            for _ in range(400):
                if pred():
                    return
                await asyncio.sleep(0.005)
            raise AssertionError(flags())

        lb.open(lambda batch: None, lambda up: None)  # the far end plugged in: carrier
        await until(lambda: "LOWER_UP" in flags())
        la.unplug()
        await until(lambda: "NO-CARRIER" in flags())
        la.plug()
        await until(lambda: "LOWER_UP" in flags() and "NO-CARRIER" not in flags())
    finally:
        a.close()


def test_name_taken_is_refused_and_nothing_is_left(netns_factory):
    ns = netns_factory()
    subprocess.run(["ip", "-n", ns, "link", "add", "vnet0", "type", "veth", "peer", "name", "vnet0p"], check=True)
    with pytest.raises(TapError, match=r"vnet0 already exists in network namespace .*ip link del vnet0"):
        tap_create(TapConfig(netns=ns, addresses=["10.77.2.1/24"]))
    assert link_names(ns).count("vnet0") == 1


def test_second_tap_of_the_same_name_is_refused(netns_factory):
    ns = netns_factory()
    first = tap_create(TapConfig(netns=ns))
    try:
        with pytest.raises(TapError, match="already exists"):
            tap_create(TapConfig(netns=ns))
    finally:
        first.close()
    assert "vnet0" not in link_names(ns)


def test_no_tun_device_says_what_to_do(netns_factory, monkeypatch):
    ns = netns_factory()
    monkeypatch.setattr("vnet.node.tap.TUN_PATH", "/nonexistent/net/tun")
    with pytest.raises(TapError, match=r"no /nonexistent/net/tun: load the tun module .*--device /dev/net/tun"):
        tap_create(TapConfig(netns=ns))
    assert "vnet0" not in link_names(ns)


def test_bad_address_leaves_nothing(netns_factory):
    ns = netns_factory()
    with pytest.raises(TapError, match="expected A.B.C.D/PREFIX"):
        tap_create(TapConfig(netns=ns, addresses=["10.1.2.300/24"]))
    assert "vnet0" not in link_names(ns)


def test_unknown_namespace_says_what_to_do():
    with pytest.raises(TapError, match=r"no network namespace vt-none-here: create it \(ip netns add"):
        tap_create(TapConfig(netns="vt-none-here"))


def test_without_cap_net_admin_says_so(tmp_path):
    """A process without CAP_NET_ADMIN gets the CAP_NET_ADMIN sentence."""
    code = ("from vnet.node.tap import TapConfig, TapError, tap_create\n"
            "try:\n tap_create(TapConfig(name='vtnopriv0'))\n"
            "except TapError as e:\n print(e)\n")
    import sys
    r = subprocess.run([*NO_NET_CAPS, sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "HOME": str(tmp_path)})
    assert "CAP_NET_ADMIN" in r.stdout + r.stderr, r.stdout + r.stderr
