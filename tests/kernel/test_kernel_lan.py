"""Kernel-stack nodes on an embedded LAN, with the system's tools as the oracles: ping,
arping, UDP sockets, iperf3, tcpdump, udhcpc and dnsmasq in the nodes' namespaces, mixed with
vnet-stack nodes on the same switch. Every traffic test is bounded in time and count."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys

import pytest

from vnet.lan import Lan, LanError, poll_until

from .conftest import MISSING, ip_link_stats

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages) as the oracle")


async def read_until(stream, needle: bytes, timeout: float = 15.0) -> bytes:
    """Lines from a program's output until one holds ``needle`` (its ready line)."""
    seen = b""

    async def scan() -> bytes:
        nonlocal seen
        while True:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"output ended before {needle!r}: {seen!r}")
            seen += line
            if needle in line:
                return line

    return await asyncio.wait_for(scan(), timeout)


@pytest.fixture
async def mixed():
    """node1, node2: kernel stack; node3: vnet's stack."""
    async with Lan(3, "10.31.0.0/24", stacks=["kernel", "kernel", "vnet"]) as lan:
        yield lan


async def test_ping_and_arping_between_kernel_and_vnet_nodes(mixed):
    need("ping", "arping")
    k1, k2, v3 = mixed.nodes
    assert (k1.stack, k2.stack, v3.stack) == ("kernel", "kernel", "vnet")
    for dst in (k2.ip, v3.ip):  # kernel -> kernel, kernel -> vnet: the system's ping
        r = await k1.run(["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", dst], timeout=20)
        assert r.returncode == 0 and b"3 received" in r.stdout, r.stdout
    res = await v3.ping(k1.ip, count=3)  # vnet -> kernel: vnet's own ping
    assert res.ok, res.replies
    r = await k2.run(["arping", "-c", "2", "-w", "3", "-i", "vnet0", v3.ip], timeout=20)
    assert r.returncode == 0 and v3.mac.lower().encode() in r.stdout.lower(), r.stdout
    got = await v3.arping(k2.ip)
    assert got["status"] == "reply" and got["mac"] == k2.mac
    # a kernel node's ping/arping control commands run the same tools in its namespace
    assert (await k1.ping(v3.ip, count=2)).ok
    assert (await k1.arping(k2.ip))["mac"] == k2.mac
    assert any(n["ip"] == v3.ip for n in await k1.neigh())


async def test_udp_both_ways_between_kernel_and_vnet_nodes(mixed):
    k1, _, v3 = mixed.nodes
    recv = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',7001));"
            "print('bound',flush=True); s.settimeout(10); d,a=s.recvfrom(2048); print(d.decode(), a[0], flush=True)")
    server = await k1.popen([sys.executable, "-c", recv], stdout=asyncio.subprocess.PIPE)
    assert (await asyncio.wait_for(server.stdout.readline(), 10)).strip() == b"bound"
    await v3.udp_send(k1.ip, 7001, b"hello kernel", sport=7002)
    line = (await asyncio.wait_for(server.stdout.readline(), 15)).decode().split()
    assert line == ["hello", "kernel", v3.ip]
    await v3.udp_bind(7003)
    send = (f"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            f"s.sendto(b'hello vnet',('{v3.ip}',7003))")
    assert (await k1.run([sys.executable, "-c", send], timeout=10)).returncode == 0
    got = await v3.udp_recv(7003, timeout=5)
    assert [(g["data"], g["src"]) for g in got] == [(b"hello vnet", k1.ip)]


async def test_vnet_stack_nodes_have_no_namespace_to_run_in(mixed):
    with pytest.raises(LanError, match="runs vnet's own stack"):
        await mixed.nodes[2].run(["true"])
    with pytest.raises(Exception, match="runs the kernel's stack: UDP sockets"):
        await mixed.nodes[0].udp_bind(9)


async def test_tcpdump_in_a_namespace_sees_the_lans_frames(mixed):
    need("tcpdump", "ip")
    _, k2, v3 = mixed.nodes
    await v3.neigh_flush()  # so the ping below starts with ARP
    assert (await k2.run(["ip", "neigh", "flush", "dev", "vnet0"], timeout=10)).returncode == 0
    dump = await k2.popen(["tcpdump", "-i", "vnet0", "-n", "-l", "-c", "6", "arp or icmp"],
                          stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await read_until(dump.stderr, b"listening on vnet0")
    assert (await v3.ping(k2.ip, count=2)).ok  # ARP request in, reply out; 2 echo requests in, 2 replies out
    out, _ = await asyncio.wait_for(dump.communicate(), 15)
    lines = out.decode().splitlines()
    assert len(lines) == 6, lines
    assert sum(" ARP, Request who-has " + k2.ip in x for x in lines) == 1, lines
    assert sum(" ARP, Reply " + k2.ip in x for x in lines) == 1, lines
    assert sum("ICMP echo request" in x for x in lines) == 2 and sum("ICMP echo reply" in x for x in lines) == 2


async def iperf(client, server, *extra: str, seconds: int = 2) -> dict:
    srv = await server.popen(["iperf3", "-s", "-1", "--forceflush", "-B", server.ip], stdout=asyncio.subprocess.PIPE)
    await read_until(srv.stdout, b"Server listening")
    r = await client.run(["iperf3", "-c", server.ip, "-t", str(seconds), "-J", *extra], timeout=seconds + 60)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    await asyncio.wait_for(srv.wait(), 15)
    return json.loads(r.stdout)


async def test_iperf3_tcp_and_udp_across_the_lan(mixed):
    need("iperf3")
    k1, k2, _ = mixed.nodes
    tcp = await iperf(k1, k2)
    assert tcp["end"]["sum_received"]["bytes"] > 100_000
    udp = await iperf(k2, k1, "-u", "-b", "5M")
    assert udp["end"]["sum"]["packets"] > 100 and udp["end"]["sum"]["lost_percent"] < 5


async def stable(node):
    """A snapshot of the node's and the kernel's counters that two reads in a row agree on
    (the kernel sends on its own now and then: IPv6 router solicitations, MLD reports)."""

    async def snap():
        a, ka = await node.stats(), ip_link_stats(node.netns)
        b, kb = await node.stats(), ip_link_stats(node.netns)
        if a["tap"] == b["tap"] and a["stats64"] == b["stats64"] and ka == kb:
            return b, kb
        return None

    return await poll_until(snap, f"{node.name}: counters stopped moving", timeout=30, every=0.1)


async def test_counters_agree_with_the_kernels_frame_for_frame(mixed):
    need("ping")
    k1, k2, v3 = mixed.nodes
    r = await k1.run(["ping", "-n", "-c", "5", "-i", "0.05", "-W", "2", k2.ip], timeout=20)
    assert r.returncode == 0
    await v3.ping(k2.ip, count=3)
    for node in (k1, k2):
        st, kernel = await stable(node)
        tap, model = st["tap"], st["stats64"]
        qdisc = (await node.link())["qdisc_stats"]
        # the kernel's TX: every frame it sent was read from the TAP and offered to the model
        assert kernel["tx"]["packets"] == tap["tap_read_frames"] > 5
        assert kernel["tx"]["bytes"] == tap["tap_read_bytes"]
        assert tap["tap_read_frames"] == (model["tx_packets"] + model["tx_dropped"] + qdisc["drops"]
                                          + tap["tap_tx_oversize"] + tap["tap_tx_runts"])
        # the model's RX: every frame NAPI delivered was handed up and written to the TAP
        assert model["rx_packets"] == tap["tap_handed_up"] > 5
        assert tap["tap_handed_up"] == tap["tap_write_frames"] + tap["tap_write_errors"] + tap["tap_short_writes"]
        assert kernel["rx"]["packets"] == tap["tap_write_frames"]
        assert kernel["rx"]["bytes"] == tap["tap_write_bytes"] == model["rx_bytes"]
        # the daemon's own view of the kernel agrees with ip -s -j link, and ethtool -S has the TAP's
        assert st["kernel"]["stats64"]["tx_packets"] == kernel["tx"]["packets"]
        assert st["ethtool"]["tap_read_frames"] == tap["tap_read_frames"]


@pytest.mark.vnet_lan(nodes=2, subnet="10.39.0.0/24", stack="kernel")
async def test_the_vnet_lan_marker_makes_kernel_stack_nodes(vnet_lan):
    a, b = vnet_lan.nodes
    assert a.stack == b.stack == "kernel"
    r = await a.run(["ping", "-n", "-c", "1", "-W", "2", b.ip], timeout=10)
    assert r.returncode == 0, r.stdout


async def test_mtu_and_mac_changes_on_the_model_reach_the_kernels_vnet0(mixed):
    k1, k2, _ = mixed.nodes

    async def kernel_link() -> dict:
        r = await k1.run(["ip", "-j", "link", "show", "vnet0"], timeout=10)
        return json.loads(r.stdout)[0]

    await k1.link_set(mtu=1400)
    await poll_until(lambda: _has(kernel_link, "mtu", 1400), "the kernel's vnet0 at mtu 1400", timeout=10)
    await k1.link_set(state="down")
    await k1.link_set(address="02:00:00:00:77:01", state="up")
    await poll_until(lambda: _has(kernel_link, "address", "02:00:00:00:77:01"), "the kernel's vnet0 at the new MAC",
                     timeout=10)
    await k1.wait_ready()
    r = await k1.run(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-s", "1372", "-M", "do", k2.ip], timeout=20)
    assert r.returncode == 0, r.stdout  # the largest unfragmented packet at the new MTU, from the new MAC


async def _has(get, key, value) -> bool:
    return (await get()).get(key) == value
