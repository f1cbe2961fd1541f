"""The /metrics endpoints of a live embedded LAN, scraped over HTTP as Prometheus does and
parsed with prometheus-client's own parser; the options and their errors through the real
`vnet` command."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vnet.lan import Lan, poll_until


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


async def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}, fetched off the test's loop."""
    text = await asyncio.to_thread(fetch, url)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def names(samples) -> set[str]:
    return {name for name, _ in samples}


def tcp_listeners(pid: int) -> int:
    """How many listening TCP sockets process ``pid`` holds (its fds against /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":  # TCP_LISTEN
                    listening.add(cols[9])
    return len(inodes & listening)


def vnet_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "vnet.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60)


async def test_node_and_switch_endpoints_follow_the_traffic():
    async with Lan(2) as lan:
        a, b = lan.nodes
        # the URL is the ready line's (the handle has it from there) and the health answer's
        assert a.metrics_url.startswith("http://127.0.0.1:") and a.metrics_url.endswith("/metrics")
        assert (await a.health())["metrics"] == a.metrics_url
        assert (await lan.switch.call("ping"))["metrics"] == lan.switch.metrics_url
        vnet0 = (("device", "vnet0"),)
        node_before = await scrape(a.metrics_url)
        switch_before = await scrape(lan.switch.metrics_url)
        for name in ("receive_packets", "receive_bytes", "receive_errs", "receive_drop", "transmit_packets",
                     "transmit_bytes", "transmit_errs", "transmit_drop", "carrier_changes"):
            assert (f"node_network_{name}_total", vnet0) in node_before, name
        assert node_before[("node_network_up", vnet0)] == 1
        assert node_before[("node_network_mtu_bytes", vnet0)] == 1500
        assert ("vnet_ethtool_tx_queue_0_packets", vnet0) in node_before
        port_a = (("port", "node1"),)
        assert ("vnet_switch_port_rx_packets_total", port_a) in switch_before
        assert ("vnet_switch_port_drops_total", (("port", "node1"), ("reason", "runt"))) in switch_before
        assert {"vnet_switch_fdb_entries", "vnet_switch_fdb_learned_total", "vnet_switch_fdb_moves_total",
                "vnet_switch_fdb_evictions_total", "vnet_switch_ports"} <= names(switch_before)

        res = await a.ping(b.ip, count=3)
        assert res.received == 3
        node_after = await scrape(a.metrics_url)
        switch_after = await scrape(lan.switch.metrics_url)
        tx = ("node_network_transmit_packets_total", vnet0)
        rx = ("node_network_receive_packets_total", vnet0)
        assert node_after[tx] >= node_before[tx] + 3 and node_after[rx] >= node_before[rx] + 3
        # the node's counters are its stats answer, read live
        assert node_after[tx] == (await a.stats())["stats64"]["tx_packets"]
        key = ("vnet_switch_port_rx_packets_total", port_a)
        assert switch_after[key] >= switch_before[key] + 3
        assert node_after[("vnet_neigh_entries", (("device", "vnet0"), ("state", "reachable")))] >= 1
        # the daemons hold one listening TCP socket each: the metrics endpoint
        for pid in lan.pids().values():
            assert tcp_listeners(pid) == 1


async def test_metrics_off_means_no_listener():
    async with Lan(1, node_args=["--metrics", "off"], switch_args=["--metrics", "off"]) as lan:
        node = lan.nodes[0]
        assert node.metrics_url is None and lan.switch.metrics_url is None
        assert (await node.health())["metrics"] is None
        assert "metrics" not in await lan.switch.call("ping")
        for pid in lan.pids().values():
            assert tcp_listeners(pid) == 0


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.1", "127.0.0.1:70000", "example.com:9100"])
@pytest.mark.parametrize("daemon", ["node", "switch"])
def test_bad_metrics_value_is_a_clear_cli_error(tmp_path, daemon, value):
    proc = vnet_cli(tmp_path, daemon, "--metrics", value)
    assert proc.returncode == 2
    assert "vnet: error:" in proc.stderr and "metrics" in proc.stderr and "HOST:PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_metrics_port_in_use_is_a_clear_start_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = vnet_cli(tmp_path, "node", "--name", "m1", "--switch", f"ipc://{tmp_path}/none.data",
                        "--metrics", f"127.0.0.1:{port}")
    assert proc.returncode == 2, proc.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


async def test_explicit_port_in_the_ready_line(tmp_path):
    with socket.socket() as probe:  # a port free a moment ago (the daemon binds it next)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with Lan(1, switch_args=["--metrics", f"127.0.0.1:{port}"]) as lan:
        assert lan.switch.metrics_url == f"http://127.0.0.1:{port}/metrics"
        samples = await scrape(lan.switch.metrics_url)
        await poll_until(lambda: _attached(lan), "the node's port in the switch's metrics")
        assert samples[("vnet_switch_attached_total", ())] >= 1


async def _attached(lan) -> bool:
    return ("vnet_switch_port_admin_up", (("port", "node1"),)) in await scrape(lan.switch.metrics_url)


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                    reason="a kernel-stack node needs root and /dev/net/tun")
async def test_kernel_stack_node_exports_its_driver_devices():
    async with Lan(2, stacks=["kernel", "vnet"]) as lan:
        k, v = lan.nodes
        assert (await k.health())["metrics"] == k.metrics_url
        res = await v.ping(k.ip, count=2)
        assert res.received == 2
        samples = await scrape(k.metrics_url)
        vnet0 = (("device", "vnet0"),)
        assert samples[("node_network_receive_packets_total", vnet0)] == (await k.stats())["stats64"]["rx_packets"]
        assert samples[("node_network_up", vnet0)] == 1
        tap = {name for name, _ in samples if name.startswith("vnet_ethtool_")}
        edge = (await k.ethtool("stats")).keys()  # the driver's and the TAP edge's, as `vnet ethtool -S`
        assert {f"vnet_ethtool_{n}" for n in edge} <= tap
        assert "vnet_neigh_entries" not in tap and not any(n == "vnet_neigh_entries" for n, _ in samples)
