"""A thousand nodes on one machine: ``python3 -m bench.scale [--nodes 1000] [--per-process 100]``.

An embedded LAN (vnet.lan.Lan) whose nodes run packed (``nodes_per_process``: ``vnet nodes``,
node/pack.py), measured for what a LAN that big costs and whether it works:

- start: from ``Lan.start()`` to every node ready (carrier, address past DAD: the ready lines
  and one health request per node), and on until the LAN is quiet (the switch's and a node per
  process's counters still for 1 s): each node's DAD probes and announcements are broadcasts
  that every other node receives, a million deliveries at 1,000 nodes, still on their way when
  the last node says it is ready;
- memory: the resident memory of the packed processes (VmRSS, and Pss from smaps_rollup, which
  shares the interpreter's pages fairly) divided by the nodes; the switch's apart;
- reachability: every node pings ``--peers`` random other nodes (ARP first, as any first ping),
  one ping at a time per node and ``--ping-concurrency`` nodes at once (default 16: each first
  ping is an ARP broadcast that costs every node a wakeup, so more at once only queues them
  longer), through their control sockets; the figure is the % answered;
- fan-out: one node sends ``--broadcast`` broadcast frames (an experimental ethertype no stack
  handles, injected in batches through its TX path); the switch floods each to every other
  port. Rate: frames delivered to all the receivers' RX (their rx_packets) per second, from the
  first inject until every receiver counted them all (or ``--drain-timeout``).

``--slope`` runs the same at a tenth of the nodes first, for the slope. Targets (docs/performance.md,
"Scale"): at most 2 MB resident per packed node, 1,000 nodes up in 60 s, 100% answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from typing import Any, Optional

from bench.common import ETH_P_BENCH, make_frame, rss_kib

TARGETS = {"node_rss_mb": 2.0, "start_s_1000": 60.0, "answered_pct": 100.0}
BROADCAST = bytes.fromhex("ffffffffffff")


def pss_kib(pid: int) -> Optional[int]:
    """Pss of a process in KiB (/proc/PID/smaps_rollup), None where there is none."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


async def _bounded(coros, limit: int) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(coro):
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def _reachability(lan, peers: int, concurrency: int, rng: random.Random) -> dict:
    nodes = lan.nodes
    k = min(peers, len(nodes) - 1)
    plan = [(src, rng.sample([n for n in nodes if n is not src], k)) if len(nodes) <= 50
            else (src, _sample_others(nodes, i, k, rng)) for i, src in enumerate(nodes)]

    failures: dict[str, int] = {}

    async def pings(src, dsts) -> list[bool]:
        out = []
        for dst in dsts:  # one at a time from a node: (ident, seq) keys its echo
            res = await src.ping(dst.ip, count=1, timeout=5.0)
            out.append(res.ok)
            if not res.ok:
                status = str(res.replies[-1].get("status")) if res.replies else "no reply"
                failures[status] = failures.get(status, 0) + 1
        return out

    sw0 = (await lan.switch.stats())["totals"]
    t = time.monotonic()
    results = await _bounded((pings(src, dsts) for src, dsts in plan), concurrency)
    took = time.monotonic() - t
    sw1 = (await lan.switch.stats())["totals"]
    sent = sum(len(r) for r in results)
    ok = sum(sum(r) for r in results)
    return {"pings": sent, "answered": ok, "answered_pct": 100.0 * ok / sent if sent else 0.0, "took_s": took,
            "failures": failures, "concurrency": concurrency,
            "switch_drops": {k: sw1[k] - sw0[k] for k in ("hwm", "unroutable") if k in sw1}}


def _sample_others(nodes: list, i: int, k: int, rng: random.Random) -> list:
    picked: set[int] = set()
    while len(picked) < k:
        j = rng.randrange(len(nodes))
        if j != i:
            picked.add(j)
    return [nodes[j] for j in picked]


async def _rx_packets(node) -> int:
    return (await node.link())["stats64"]["rx_packets"]


async def _fanout(lan, frames: int, concurrency: int, drain_timeout: float) -> dict:
    """Node 1 sends ``frames`` broadcasts; the rate at which the others' RX counted them."""
    src, receivers = lan.nodes[0], lan.nodes[1:]
    frame = make_frame(BROADCAST, bytes.fromhex(src.mac.replace(":", "")), 60, ETH_P_BENCH)
    before = await _bounded((_rx_packets(n) for n in receivers), concurrency)
    sw0 = (await lan.switch.stats())["totals"]
    probes = [n for n in (lan.node(p[-1]) for p in lan.packs.values()) if n is not src] or receivers[-1:]
    probe_base = {n.name: before[receivers.index(n)] for n in probes}
    t0 = time.monotonic()
    sent = 0
    while sent < frames:
        batch = min(256, frames - sent)
        sent += (await src.inject([frame] * batch))["sent"]
    deadline = t0 + drain_timeout
    while time.monotonic() < deadline:  # until every process's last node has them all
        counts = await asyncio.gather(*(_rx_packets(n) for n in probes))
        if all(c - probe_base[n.name] >= sent for c, n in zip(counts, probes)):
            break
        await asyncio.sleep(0.05)
    t1 = time.monotonic()
    after = await _bounded((_rx_packets(n) for n in receivers), concurrency)
    sw1 = (await lan.switch.stats())["totals"]
    delivered = sum(a - b for a, b in zip(after, before))
    expected = sent * len(receivers)
    return {"sent": sent, "receivers": len(receivers), "expected": expected, "delivered": delivered,
            "delivered_pct": 100.0 * delivered / expected if expected else 0.0,
            "switch_flooded": sw1["flooded"] - sw0["flooded"], "switch_tx": sw1["tx_packets"] - sw0["tx_packets"],
            "switch_drops": {k: sw1[k] - sw0[k] for k in ("hwm", "unroutable") if k in sw1},
            "took_s": t1 - t0, "fps": delivered / (t1 - t0) if t1 > t0 else 0.0}


async def scale_run(nodes: int, per_process: int, peers: int = 3, broadcast: int = 256, concurrency: int = 64,
                    seed: int = 1, drain_timeout: float = 60.0, ping_concurrency: int = 16) -> dict:
    from vnet.cli.lan import default_subnet
    from vnet.lan import Lan

    lan = Lan(nodes, default_subnet(nodes), nodes_per_process=per_process, start_timeout=max(120.0, nodes / 5))
    t0 = time.monotonic()
    await lan.start()
    try:
        settled_s = time.monotonic() - t0  # Lan.start() of packed nodes waits until quiet
        start_s = lan.ready_after
        pids = lan.pids()
        procs = {name: pid for name, pid in pids.items() if name != "switch"}
        rss = {name: rss_kib(pid) or 0 for name, pid in procs.items()}
        pss = {name: pss_kib(pid) or 0 for name, pid in procs.items()}
        switch_rss = rss_kib(pids["switch"]) or 0
        reach = await _reachability(lan, peers, ping_concurrency, random.Random(seed))
        fan = await _fanout(lan, broadcast, concurrency, drain_timeout) if nodes > 1 else None
        rss_after = {name: rss_kib(pid) or 0 for name, pid in procs.items()}
        switch_rss_after = rss_kib(pids["switch"]) or 0
    finally:
        await lan.close()
    return {
        "nodes": nodes, "per_process": per_process, "processes": len(procs), "start_s": start_s,
        "settled_s": settled_s,
        "rss_mb_per_node": sum(rss.values()) / 1024 / nodes,
        "pss_mb_per_node": sum(pss.values()) / 1024 / nodes,
        "rss_mb_per_node_after_traffic": sum(rss_after.values()) / 1024 / nodes,
        "process_rss_mb": {"min": min(rss.values()) / 1024, "max": max(rss.values()) / 1024},
        "switch_rss_mb": switch_rss / 1024, "switch_rss_mb_after_traffic": switch_rss_after / 1024,
        "reachability": reach, "fanout": fan,
    }


def targets(run: dict) -> list[dict]:
    out = [{"name": "node_rss_mb", "target": f"<= {TARGETS['node_rss_mb']} MB resident per packed node",
            "value": round(run["rss_mb_per_node"], 2), "met": run["rss_mb_per_node"] <= TARGETS["node_rss_mb"]},
           {"name": "answered_pct", "target": "100% of the ping sample answered",
            "value": round(run["reachability"]["answered_pct"], 2),
            "met": run["reachability"]["answered_pct"] >= TARGETS["answered_pct"]}]
    if run["nodes"] >= 1000:
        out.append({"name": "start_s_1000", "target": f"1,000 nodes up (ready and settled) in <= "
                                                      f"{TARGETS['start_s_1000']:g} s",
                    "value": round(run["settled_s"], 1), "met": run["settled_s"] <= TARGETS["start_s_1000"]})
    return out


def render(run: dict) -> str:
    r, f = run["reachability"], run["fanout"]
    lines = [
        f"{run['nodes']} nodes, {run['per_process']} a process ({run['processes']} processes)",
        f"  start:        {run['start_s']:.1f} s to every node ready, {run['settled_s']:.1f} s until the LAN is quiet "
        f"(the nodes' announcements delivered)",
        f"  memory:       {run['rss_mb_per_node']:.2f} MB RSS per node ({run['pss_mb_per_node']:.2f} MB Pss; "
        f"{run['rss_mb_per_node_after_traffic']:.2f} MB after the traffic); processes "
        f"{run['process_rss_mb']['min']:.0f}..{run['process_rss_mb']['max']:.0f} MB; switch "
        f"{run['switch_rss_mb']:.0f} MB ({run['switch_rss_mb_after_traffic']:.0f} MB after)",
        f"  reachability: {r['answered']}/{r['pings']} pings answered ({r['answered_pct']:.1f}%) in {r['took_s']:.2f} s, "
        f"{r['concurrency']} nodes at once" + (f"; unanswered: {r['failures']}, switch drops {r['switch_drops']}"
                                                if r["failures"] else ""),
    ]
    if f:
        lines.append(f"  fan-out:      {f['sent']} broadcasts x {f['receivers']} receivers: {f['delivered']:,} of "
                     f"{f['expected']:,} delivered ({f['delivered_pct']:.1f}%) in {f['took_s']:.2f} s = "
                     f"{f['fps']:,.0f} frames/s delivered; switch drops {f['switch_drops']}")
    for t in targets(run):
        lines.append(f"  target {t['target']}: {t['value']} {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--per-process", type=int, default=100, help="nodes per process (default 100)")
    ap.add_argument("--peers", type=int, default=3, help="random peers each node pings (default 3)")
    ap.add_argument("--broadcast", type=int, default=256, help="broadcast frames for the fan-out (default 256)")
    ap.add_argument("--concurrency", type=int, default=64, help="nodes asked for counters at once (default 64)")
    ap.add_argument("--ping-concurrency", type=int, default=16, help="nodes pinging at once (default 16)")
    ap.add_argument("--slope", action="store_true", help="first the same at a tenth of the nodes")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args(argv)
    sizes = ([max(2, ns.nodes // 10)] if ns.slope else []) + [ns.nodes]
    runs = []
    for n in sizes:
        per = min(ns.per_process, n)
        run = asyncio.run(scale_run(n, per, ns.peers, ns.broadcast, ns.concurrency,
                                    ping_concurrency=ns.ping_concurrency))
        runs.append(run)
        if not ns.json:
            print(render(run), flush=True)
    doc: dict[str, Any] = {"command": "python3 -m bench.scale " + " ".join(argv if argv is not None else sys.argv[1:]),
                           "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
                           "runs": runs, "targets": [t for r in runs for t in targets(r)]}
    if len(runs) == 2:
        a, b = runs
        dn = b["nodes"] - a["nodes"]
        doc["slope"] = {"start_s_per_100_nodes": 100 * (b["start_s"] - a["start_s"]) / dn,
                        "settled_s_per_100_nodes": 100 * (b["settled_s"] - a["settled_s"]) / dn,
                        "rss_mb_per_extra_node": (b["rss_mb_per_node"] * b["nodes"] - a["rss_mb_per_node"] * a["nodes"]) / dn}
        if not ns.json:
            s = doc["slope"]
            print(f"slope {a['nodes']} -> {b['nodes']}: {s['start_s_per_100_nodes']:.2f} s to ready and "
                  f"{s['settled_s_per_100_nodes']:.2f} s to quiet per 100 nodes, "
                  f"{s['rss_mb_per_extra_node']:.2f} MB per extra node")
    if ns.json:
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
