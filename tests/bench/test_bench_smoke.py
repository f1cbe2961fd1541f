"""The benchmark's smoke run: every section with tiny counts, as CI runs it.

Benchmarks are not tests: nothing here looks at a timing. What is checked is that the one
documented command runs end to end, that its JSON document has every section, and that the
frame accounting closes (sent = received + counted drops) wherever vnet counts drops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECTIONS = ("transport", "switch", "e2e", "latency", "vde", "scale", "packed")


@pytest.fixture(scope="module")
def smoke() -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", "--no-install"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"bench --smoke failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def test_every_section_is_there_and_none_failed(smoke):
    assert smoke["errors"] == {}
    for name in SECTIONS:
        assert name in smoke, f"section {name} missing"
    assert smoke["config"]["smoke"] is True
    assert {"ratios", "targets", "machine", "command"} <= set(smoke)
    assert all({"name", "target", "value", "met"} <= set(t) for t in smoke["targets"])


def test_transport_rows_lose_nothing(smoke):
    rows = smoke["transport"]
    assert {(r["size"], r["batch"]) for r in rows} == {(60, 1), (60, 64), (1514, 1), (1514, 64)}
    for r in rows:
        assert r["sent"] > 0 and r["received"] == r["sent"]


def test_switch_account_closes(smoke):
    rows = smoke["switch"]
    assert {(r["ports"], r["size"]) for r in rows} == {(2, 60), (2, 1514), (16, 60), (16, 1514)}
    for r in rows:
        assert r["sent"] > 0
        assert r["switch_rx"] == r["sent"]  # DEALER -> ROUTER is lossless
        assert r["sent"] == r["received"] + sum(r["drops"].values())
        assert r["uncounted"] == 0


def test_end_to_end_account_closes_through_both_drivers(smoke):
    rows = smoke["e2e"]
    assert {r["size"] for r in rows} == {60, 1514}
    for r in rows:
        assert r["sent"] > 0 and r["delivered"] > 0
        assert r["sent"] == r["delivered"] + sum(r["drops"].values())
        assert r["uncounted"] == 0
        # what the counters say at each stage agrees with the account
        assert r["tx_packets"] == r["sent"] - r["drops"]["tx_qdisc_drops"] - r["drops"]["tx_dropped"]
        assert r["switch_rx"] == r["tx_packets"]


def test_latency_has_every_path(smoke):
    lat = smoke["latency"]
    for key in ("lan", "driver", "switch", "floor"):
        assert lat[key]["n"] > 0 and lat[key]["p50_us"] > 0
    assert 0 < lat["lan_received"] <= lat["lan_transmitted"]


def test_vde_section_runs_or_says_why_not(smoke):
    vde = smoke["vde"]
    if vde["available"]:
        for r in vde["results"]:
            assert r["sent"] == r["delivered"] + r["lost"]
    else:
        assert vde["skipped"] and "vde2" in vde["skipped"]


def test_scale_section_shrinks_in_smoke(smoke):
    sc = smoke["scale"]
    assert sc["nodes"] <= 10
    assert 0 < sc["pairs_ok"] <= sc["pairs"]
    assert sc["rss_mb"]["max"] > 0


def test_packed_section_shrinks_in_smoke_and_every_ping_and_broadcast_arrives(smoke):
    pk = smoke["packed"]
    assert pk["nodes"] == 6 and pk["per_process"] == 3 and pk["processes"] == 2
    assert pk["reachability"]["pings"] == 18 and pk["reachability"]["answered"] == 18
    fan = pk["fanout"]
    assert fan["delivered"] == fan["expected"] == fan["sent"] * 5
    assert pk["rss_mb_per_node"] > 0 and {t["name"] for t in pk["targets"]} >= {"node_rss_mb", "answered_pct"}
    assert 0 < pk["start_s"] <= pk["settled_s"]


def test_bench_scale_runs_alone_at_a_tiny_size():
    proc = subprocess.run([sys.executable, "-m", "bench.scale", "--nodes", "4", "--per-process", "2", "--json",
                           "--broadcast", "8"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    (run,) = doc["runs"]
    assert run["processes"] == 2 and run["reachability"]["answered_pct"] == 100.0
    assert run["fanout"]["delivered"] == 8 * 3


def test_bench_stp_measures_a_failover_per_run():
    proc = subprocess.run([sys.executable, "-m", "bench.stp", "--runs", "2", "--hello", "0.5", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["runs"] == 2 and len(doc["failover_ms"]) == 2 and all(t > 0 for t in doc["failover_ms"])
