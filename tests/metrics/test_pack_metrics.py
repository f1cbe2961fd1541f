"""One Prometheus endpoint per process of packed nodes (``vnet nodes``): every node of the
process under node_exporter's names with a ``node`` label, one family per name, scraped over
HTTP and parsed with prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import urllib.request
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from vnet.lan import Lan, vnet_command
from vnet.node.metrics import PackCollector
from vnet.node.pack import PackConfig


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return resp.read().decode()


async def scrape(url: str) -> list:
    return list(text_string_to_metric_families(await asyncio.to_thread(fetch, url)))


def value(families, sample: str, **labels) -> float:
    for fam in families:
        for s in fam.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError(f"{sample}{labels}")


async def test_a_packed_lan_serves_one_endpoint_per_process_with_every_node():
    async with Lan(30, nodes_per_process=10) as lan:
        assert len(lan.packs) == 3
        urls = {}
        for pack, nodes in lan.packs.items():
            got = {lan.node(n).metrics_url for n in nodes}
            assert len(got) == 1 and None not in got, got
            urls[pack] = got.pop()
        assert len(set(urls.values())) == 3

        seen = set()
        for pack, url in urls.items():
            families = await scrape(url)
            count = Counter(f.name for f in families)
            assert all(n == 1 for n in count.values()), [n for n, c in count.items() if c > 1]  # one family a name
            rx = next(f for f in families if f.name == "node_network_receive_bytes")
            assert rx.type == "counter"
            nodes = {s.labels["node"] for s in rx.samples}
            assert nodes == set(lan.packs[pack])
            assert {(s.labels["node"], s.labels["device"]) for s in rx.samples} == {(n, "vnet0") for n in nodes}
            up = next(f for f in families if f.name == "node_network_up")
            assert {s.labels["node"]: s.value for s in up.samples} == {n: 1.0 for n in nodes}
            assert any(f.name.startswith("vnet_ethtool_") and {s.labels["node"] for s in f.samples} == nodes
                       for f in families)
            seen |= nodes
        assert seen == {n.name for n in lan.nodes}

        a, b = lan.node("node3"), lan.node("node27")  # pack1 and pack3
        before_a = await scrape(a.metrics_url)
        before_b = await scrape(b.metrics_url)
        assert (await a.ping(b.ip, count=3, timeout=5.0)).received == 3
        after_a = await scrape(a.metrics_url)
        after_b = await scrape(b.metrics_url)
        tx = "node_network_transmit_packets_total"
        rx = "node_network_receive_packets_total"
        assert value(after_a, tx, node="node3", device="vnet0") >= value(before_a, tx, node="node3", device="vnet0") + 3
        assert value(after_b, rx, node="node27", device="vnet0") >= value(before_b, rx, node="node27", device="vnet0") + 3
        assert value(after_b, tx, node="node27", device="vnet0") >= value(before_b, tx, node="node27", device="vnet0") + 3


async def test_pack_metrics_off():
    async with Lan(4, nodes_per_process=2, pack_metrics=None) as lan:
        assert [n.metrics_url for n in lan.nodes] == [None] * 4


def test_pack_config_metrics_option():
    node = {"name": "n1", "switch": "ipc:///tmp/x.data", "addresses": ["10.0.0.1/24"]}
    assert PackConfig.from_dict({"nodes": [node]}).metrics == "127.0.0.1:0"
    assert PackConfig.from_dict({"nodes": [node], "metrics": "off"}).metrics is None
    assert PackConfig.from_dict({"nodes": [node], "metrics": None}).metrics is None
    assert PackConfig.from_dict({"nodes": [node], "metrics": "0.0.0.0:9100"}).metrics == "0.0.0.0:9100"
    with pytest.raises(ValueError, match="pack: metrics 'nine'"):
        PackConfig.from_dict({"nodes": [node], "metrics": "nine"})


def test_a_pack_whose_metrics_port_is_taken_exits_2(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "pack.json"
        cfg.write_text(json.dumps({"nodes": [{"name": "n1", "switch": f"ipc://{tmp_path}/s.data",
                                              "addresses": ["10.0.0.1/24"], "control": f"ipc://{tmp_path}/n1.ctl"}],
                                   "metrics": f"127.0.0.1:{port}"}))
        done = subprocess.run([*vnet_command(), "nodes", "--config", str(cfg)], capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path)))
    assert done.returncode == 2 and f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr, done.stderr


class _Fake:
    def __init__(self, rx: float) -> None:
        self.rx = rx

    def collect(self):
        fam = CounterMetricFamily("node_network_receive_bytes", "rx", labels=["device"])
        fam.add_metric(["vnet0"], self.rx)
        yield fam
        up = GaugeMetricFamily("node_network_up", "up", labels=["device"])
        up.add_metric(["vnet0"], 1)
        yield up


def test_pack_collector_merges_families_by_name():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PackCollector(lambda: [("a", _Fake(10)), ("b", _Fake(20))]))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE node_network_receive_bytes_total counter") == 1
    assert text.count("# HELP node_network_up ") == 1
    assert 'node_network_receive_bytes_total{device="vnet0",node="b"} 20.0' in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["node"] for s in families["node_network_up"].samples} == {"a", "b"}


def test_lan_up_prints_each_processes_endpoint(tmp_path):
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    up = subprocess.Popen([*vnet_command(), "lan", "up", "--nodes", "6", "--nodes-per-process", "3"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "stops the LAN" in line:
                break
        text = "".join(lines)
        endpoints = {line.split()[0]: line.split("metrics ")[1].strip() for line in lines
                     if line.lstrip().startswith("pack")}  # one line per process
        assert len(endpoints) == 2 and all(e.startswith("http://127.0.0.1:") for e in endpoints.values()), text
        assert "pack2    node4 .. node6" in text, text
        assert text.count("metrics http://127.0.0.1:") == 3, text  # the switch's, and one per process
        families = list(text_string_to_metric_families(fetch(endpoints["pack2"])))
        up_fam = next(f for f in families if f.name == "node_network_up")
        assert {s.labels["node"] for s in up_fam.samples} == {"node4", "node5", "node6"}
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
    finally:
        up.kill()
        up.wait()
