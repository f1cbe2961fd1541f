"""vnet's benchmark: ``python3 -m bench`` (``--json`` for a JSON document, ``--smoke`` for CI).

One run measures, side by side on this machine, every party in its own process:

1. transport: a trivial pyzmq relay (sender -> relay -> receiver), no vnet code, at one frame
   a message and at the datapath's batch size, 60 B and 1514 B frames;
2. switch: the real switch process (``vnet switch``) fed by raw DEALERs speaking
   switch/wire.py, learning on, 2 and 16 ports, 60 B and 1514 B;
3. e2e: node A -> switch -> node B through both drivers (qdisc, TX ring, RX ring, NAPI), with
   the account sent = delivered + counted drops read from the counters;
4. latency: ping RTT across an embedded LAN (vnet.lan.Lan, NodeHandle.ping) against the raw
   relay's round-trip floor (A -> relay -> B -> relay -> A);
5. vde: the same traffic through vde_switch and two vde_plug (skipped, with a line saying
   why, when vde2 is absent and cannot be installed);
6. scale: an embedded LAN of 100 nodes: start time, time until every node has resolved
   and pinged 3 peers, resident memory per node;
7. packed: a LAN of 1,000 nodes packed 100 to a process (bench/scale.py): start time,
   memory per node, a ping sample, the broadcast fan-out rate;
8. ratios and targets.

Throughput figures are medians of ``--repeat`` runs (min..max shown); frames/s count frames
delivered between the sender's first send and the receiver's last frame. Gbit/s counts
frame bytes (header + payload, no FCS, preamble or gap).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Optional

from bench import profile as prof
from bench import vde as vde_mod
from bench.common import Worker, WorkerError, cpu_seconds, mac, percentile, rss_kib, window_rate

SIZES = (60, 1514)
DATAPATH_BATCH = 64  # DEV_TX_WEIGHT = NAPI_POLL_WEIGHT: the batch the driver's softirqs move
SWITCH_DROPS = ("hwm", "unroutable", "runt", "oversize", "bad_src", "same_port")

TARGETS = {
    "e2e_60_vs_vde": 4.0,  # end-to-end 60 B frames/s >= 4x vde_switch's delivered frames/s
    "e2e_1514_gbps": 1.0,  # end-to-end 1514 B >= 1 Gbit/s
    "switch_vs_relay": 0.5,  # the switch alone >= 50% of the raw relay at the same batch
    "ping_vs_floor": 1.5,  # ping p50 <= 1.5x the relay floor
    "node_rss_mb": 40.0,  # a node's resident memory <= 40 MB
    "slow_consumer": 0.8,  # a flow beside a stalled receiver keeps >= 80% of its speed
}


class Config:
    def __init__(self, ns: argparse.Namespace) -> None:
        self.smoke = ns.smoke
        self.duration = ns.duration if ns.duration is not None else (0.05 if ns.smoke else 1.0)
        self.repeat = ns.repeat if ns.repeat is not None else (1 if ns.smoke else 3)
        self.ping_count = ns.ping_count if ns.ping_count is not None else (20 if ns.smoke else 500)
        self.scale_nodes = ns.scale_nodes if ns.scale_nodes is not None else (5 if ns.smoke else 100)
        self.packed_nodes = ns.packed_nodes if ns.packed_nodes is not None else (6 if ns.smoke else 1000)
        self.packed_per_process = 3 if ns.smoke else 100
        self.install_vde = not ns.no_install and not ns.smoke
        self.sections = set(ns.only.split(",")) if ns.only else set(SECTIONS)
        self.log_dir = tempfile.mkdtemp(prefix="vnet-bench-")
        self.quiet = ns.json
        self.rx_coalesce = None
        self.no_flow_control = ns.no_flow_control
        if ns.rx_coalesce:
            usecs, frames = (int(x) for x in ns.rx_coalesce.split(","))
            self.rx_coalesce = {"rx_usecs": usecs, "rx_frames": frames}
        self.profile_dir = ns.profile
        if self.profile_dir:
            os.makedirs(self.profile_dir, exist_ok=True)


def _say(cfg: Config, text: str) -> None:
    print(text, file=sys.stderr if cfg.quiet else sys.stdout, flush=True)


def _repeat(cfg: Config, fn: Callable[[], dict]) -> dict:
    """Run ``fn`` cfg.repeat times; the median run by frames/s, with every run's figure."""
    runs = [fn() for _ in range(cfg.repeat)]
    runs.sort(key=lambda r: r["fps"])
    best = dict(runs[len(runs) // 2])
    best["fps_runs"] = [round(r["fps"]) for r in runs]
    # the account must close in every run, not just the median one
    if "uncounted" in best:
        best["uncounted_all_runs"] = [r["uncounted"] for r in runs]
    return best


def _rates(delivered: int, samples: list, t0: float, t1: float, last: float) -> tuple[float, float]:
    """(steady, overall) frames/s. Steady: delivered per second at the receiver while the
    sender was sending, after its first 10% (the pipeline filling); this is the figure the
    report uses. Overall: everything delivered over first send -> last delivery, which
    rewards queues that let the sender finish early (ZeroMQ buffers thousands of messages)."""
    overall = delivered / (last - t0) if delivered and last > t0 else 0.0
    steady = window_rate(samples, t0, t1) if samples else None
    return (steady if steady is not None else overall), overall


def _gbps(fps: float, size: int) -> float:
    return fps * size * 8 / 1e9


def _profile(cfg: Config, label: str, pids: dict[str, int]) -> list:
    """py-spy on each process for the traffic's duration (``--profile DIR``)."""
    if not cfg.profile_dir:
        return []
    procs = []
    for role, pid in pids.items():
        path = os.path.join(cfg.profile_dir, f"{label}-{role}.txt")
        procs.append(prof.start(pid, path, cfg.duration))
    return procs


def _stop_all(workers: list[Optional[Worker]]) -> None:
    for w in reversed(workers):
        if w is not None:
            w.stop()


# --- 1. transport ------------------------------------------------------------------------------


def transport_once(cfg: Config, size: int, batch: int) -> dict:
    args = {"size": size, "batch": batch, "duration": cfg.duration, "msg_bytes": (size + 2) * batch}
    relay = recv = send = None
    try:
        relay = Worker("relay", args, cfg.log_dir)
        args["endpoint"] = relay.ready()["endpoint"]
        recv = Worker("trecv", args, cfg.log_dir)
        recv.ready()
        send = Worker("tsend", args, cfg.log_dir)
        send.ready()
        send.tell("go")
        s = send.result()
        r = recv.result()
        send.tell("stop")
    finally:
        _stop_all([relay, recv, send])
    fps, overall = _rates(r["frames"], r["samples"], s["t0"], s["t1"], r["last"])
    return {"size": size, "batch": batch, "fps": fps, "fps_overall": overall, "gbps": _gbps(fps, size), "sent": s["frames"],
            "received": r["frames"], "uncounted": s["frames"] - r["frames"]}


def section_transport(cfg: Config) -> list[dict]:
    rows = []
    for size in SIZES:
        for batch in (1, DATAPATH_BATCH):
            row = _repeat(cfg, lambda: transport_once(cfg, size, batch))
            rows.append(row)
            _say(cfg, f"  transport {size:>4} B x{batch:<3} {row['fps']:>12,.0f} frames/s")
    return rows


# --- 2. the switch alone -----------------------------------------------------------------------


def start_switch(cfg: Config, *extra: str) -> tuple[Worker, dict]:
    cmd = [sys.executable, "-m", "vnet.cli", "switch", "--bind", "tcp://127.0.0.1:0",
           "--switch-control", "tcp://127.0.0.1:0", "--log-level", "warning", *extra]
    sw = Worker("switch", {}, cfg.log_dir, cmd=cmd)
    try:
        info = sw.ready(prefix="vnet-ready ")
    except BaseException:
        sw.stop()
        raise
    return sw, info


def switch_stats(control: str) -> dict:
    from vnet.proto.control import ControlClient

    with ControlClient(control, timeout=10.0) as client:
        return client.call("stats")


def switch_once(cfg: Config, ports: int, size: int, batch: int, stall: int = 0, *switch_args: str) -> dict:
    """``ports`` / 2 flows through the switch; the last ``stall`` receivers never read."""
    pairs = ports // 2
    sw = recv = send = None
    try:
        sw, info = start_switch(cfg, *switch_args)
        args = {"endpoint": info["data"], "pairs": pairs, "size": size, "batch": batch,
                "duration": cfg.duration, "msg_bytes": (size + 2) * batch, "stall": stall}
        recv = Worker("swrecv", args, cfg.log_dir)
        recv.ready()
        send = Worker("swsend", args, cfg.log_dir)
        send.ready()
        spies = _profile(cfg, f"switch-{ports}p-{size}", {"switch": sw.pid})
        send.tell("go")
        s = send.result()
        prof.finish(spies)
        recv.tell(f"expect {s['frames']}")
        r = recv.result()
        stats = switch_stats(info["control"])
        send.tell("stop")
    finally:
        _stop_all([sw, recv, send])
    t = stats["totals"]
    drops = {k: t[k] for k in SWITCH_DROPS}
    fps, overall = _rates(r["frames"], r["samples"], s["t0"], s["t1"], r["last"])
    return {"ports": ports, "size": size, "batch": batch, "fps": fps, "fps_overall": overall, "gbps": _gbps(fps, size),
            "sent": s["frames"], "received": r["frames"], "switch_rx": t["rx_packets"],
            "drops": drops, "uncounted": s["frames"] - r["frames"] - sum(drops.values())}


def section_switch(cfg: Config) -> list[dict]:
    rows = []
    for ports in (2, 16):
        for size in SIZES:
            row = _repeat(cfg, lambda: switch_once(cfg, ports, size, DATAPATH_BATCH))
            rows.append(row)
            _say(cfg, f"  switch {ports:>2} ports {size:>4} B {row['fps']:>12,.0f} frames/s, "
                      f"drops {sum(row['drops'].values())}, uncounted {row['uncounted']}")
    return rows


def section_slowport(cfg: Config) -> dict:
    """A slow consumer: two flows of 60 B frames through the switch, then the same with one
    receiver that never reads. Its port's queue (``--port-hwm 64`` messages here, so it fills
    within the run) overflows and the switch drops for it (``hwm``); the other flow should
    keep its speed."""
    hwm = ("--port-hwm", "64")
    both = _repeat(cfg, lambda: switch_once(cfg, 4, 60, DATAPATH_BATCH, 0, *hwm))
    stalled = _repeat(cfg, lambda: switch_once(cfg, 4, 60, DATAPATH_BATCH, 1, *hwm))
    row = {"flow_fps_both_reading": both["fps"] / 2, "flow_fps_one_stalled": stalled["fps"],
           "stalled_hwm_drops": stalled["drops"]["hwm"], "both_uncounted": both["uncounted"]}
    _say(cfg, f"  one flow: {row['flow_fps_both_reading']:,.0f} frames/s beside a reader, "
              f"{row['flow_fps_one_stalled']:,.0f} beside a stalled one ({row['stalled_hwm_drops']:,} hwm drops)")
    return row


# --- 3. end to end -----------------------------------------------------------------------------


def e2e_once(cfg: Config, size: int, extra: Optional[dict] = None) -> dict:
    sw = rx = tx = None
    extra = extra or {}
    try:
        sw, info = start_switch(cfg)
        base = {"endpoint": info["data"], "size": size, "duration": cfg.duration, **extra}
        if cfg.no_flow_control:
            base["no_flow_control"] = True
        rx = Worker("node", {**base, "mode": "rx", "name": "bench-b", "mac": mac(2).hex(),
                             **(cfg.rx_coalesce or {})}, cfg.log_dir)
        rx.ready()
        tx = Worker("node", {**base, "mode": "tx", "name": "bench-a", "mac": mac(1).hex(),
                             "dst": mac(2).hex()}, cfg.log_dir)
        tx.ready()
        spies = _profile(cfg, f"e2e-{size}", {"switch": sw.pid, "rx": rx.pid, "tx": tx.pid})
        pids = {"tx": tx.pid, "switch": sw.pid, "rx": rx.pid}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        w0 = time.monotonic()
        tx.tell("go")
        a = tx.result(timeout=cfg.duration + 60)
        prof.finish(spies)
        rx.tell(f"expect {a['fed']}")
        b = rx.result(timeout=cfg.duration + 60)
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        w1 = time.monotonic()
        stats = switch_stats(info["control"])
    finally:
        _stop_all([sw, rx, tx])
    t = stats["totals"]
    sa, sb = a["stats64"], b["stats64"]
    drops = {
        "tx_qdisc_drops": a["qdisc"]["drops"],
        "tx_dropped": sa["tx_dropped"],
        **{f"switch_{k}": t[k] for k in SWITCH_DROPS},
        "rx_missed_errors": sb["rx_missed_errors"],
        "rx_length_errors": sb["rx_length_errors"],
        "rx_filtered": b["ethtool"]["rx_filtered"],
        "rx_dropped": sb["rx_dropped"],
    }
    delivered = b["delivered"]
    elapsed = w1 - w0
    fps, overall = _rates(delivered, b["samples"], a["t0"], a["t1"], b["last"])
    ea, eb = a["ethtool"], b["ethtool"]
    # CPU used per process from "go" to the receiver's report, in cores (1.0 = one core busy)
    cpu = {k: round((cpu1[k] - cpu0[k]) / elapsed, 2) for k in pids
           if cpu0[k] is not None and cpu1[k] is not None and elapsed > 0}
    # CPU time per delivered frame, per process: what the frames cost, whatever else the
    # machine was doing (the figure least disturbed by other load)
    cpu_us = {k: round((cpu1[k] - cpu0[k]) / delivered * 1e6, 2) for k in pids
              if cpu0[k] is not None and cpu1[k] is not None and delivered}
    return {
        "size": size, "fps": fps, "fps_overall": overall, "gbps": _gbps(fps, size), "sent": a["fed"],
        "delivered": delivered,
        "drops": drops, "uncounted": a["fed"] - delivered - sum(drops.values()),
        "tx_packets": sa["tx_packets"], "switch_rx": t["rx_packets"], "switch_tx": t["tx_packets"],
        "rx_packets": sb["rx_packets"],
        "avg_tx_batch": round(ea["tx_queue_0_packets"] / max(1, ea["tx_dma_batches"]), 1),
        "avg_rx_batch": round(eb["rx_queue_0_packets"] / max(1, eb["rx_link_batches"]), 1),
        "tx_link_backpressure": ea["tx_link_backpressure"], "tx_busy": ea["tx_busy"],
        "rx_irqs": eb["irqs_raised"], "rx_napi_polls": eb["napi_polls"],
        "feeder_yields": a["yields"], "cpu_cores": cpu, "cpu_us_per_frame": cpu_us,
    }


def section_e2e(cfg: Config) -> list[dict]:
    rows = []
    for size in SIZES:
        row = _repeat(cfg, lambda: e2e_once(cfg, size))
        rows.append(row)
        _say(cfg, f"  e2e {size:>4} B {row['fps']:>12,.0f} frames/s {row['gbps']:6.3f} Gbit/s, "
                  f"sent {row['sent']}, delivered {row['delivered']}, drops {sum(row['drops'].values())}, "
                  f"uncounted {row['uncounted']}")
    return rows


# --- 4. latency --------------------------------------------------------------------------------

PING_FRAME = 98  # an ICMP echo with ping's default 56-byte payload: 14 + 20 + 8 + 56


def floor_once(cfg: Config, count: int) -> list[float]:
    args = {"size": PING_FRAME, "count": count, "warmup": 20}
    relay = b = a = None
    try:
        relay = Worker("relay", args, cfg.log_dir)
        args["endpoint"] = relay.ready()["endpoint"]
        b = Worker("ping_b", args, cfg.log_dir)
        b.ready()
        a = Worker("ping_a", args, cfg.log_dir)
        a.ready()
        a.tell("go")
        return a.result(timeout=120)["rtts_us"]
    finally:
        _stop_all([relay, b, a])


def switch_ping_once(cfg: Config, count: int) -> list[float]:
    """RTT through the real switch with raw DEALER endpoints: the switch's share."""
    sw = b = a = None
    try:
        sw, info = start_switch(cfg)
        args = {"endpoint": info["data"], "size": PING_FRAME, "count": count, "warmup": 20}
        b = Worker("swping_b", args, cfg.log_dir)
        b.ready()
        a = Worker("swping_a", args, cfg.log_dir)
        a.ready()
        a.tell("go")
        rtts = a.result(timeout=120)["rtts_us"]
        b.tell("stop")
        return rtts
    finally:
        _stop_all([sw, b, a])


def driver_ping_once(cfg: Config, count: int) -> list[float]:
    """RTT through both drivers and the switch with no host stack: an echoing harness node."""
    sw = b = a = None
    try:
        sw, info = start_switch(cfg)
        base = {"endpoint": info["data"], "size": PING_FRAME, "count": count, "warmup": 20}
        b = Worker("node", {**base, "mode": "echo", "name": "bench-b", "mac": mac(2).hex()}, cfg.log_dir)
        b.ready()
        a = Worker("node", {**base, "mode": "ping", "name": "bench-a", "mac": mac(1).hex(),
                            "dst": mac(2).hex()}, cfg.log_dir)
        a.ready()
        a.tell("go")
        rtts = a.result(timeout=120)["rtts_us"]
        b.tell("stop")
        return rtts
    finally:
        _stop_all([sw, b, a])


async def lan_ping(count: int) -> tuple[list[float], dict]:
    from vnet.lan import Lan

    async with Lan(2, "10.0.0.0/24") as lan:
        a, b = lan.nodes
        warm = await a.ping(b.ip, count=20)  # ARP and every code path warmed up
        if not warm.ok:
            raise RuntimeError(f"LAN ping warm-up failed: {warm.replies[-1:]}")
        res = await a.ping(b.ip, count=count)
        return [r * 1000.0 for r in res.rtts_ms], {"transmitted": res.transmitted, "received": res.received}


def section_latency(cfg: Config) -> dict:
    # Alternate the two so slow drift of the machine's load hits both alike.
    rounds = 2
    per = max(10, cfg.ping_count // rounds)
    floor: list[float] = []
    lan: list[float] = []
    drv: list[float] = []
    swp: list[float] = []
    sent = received = 0
    for _ in range(rounds):
        floor += floor_once(cfg, per)
        swp += switch_ping_once(cfg, per)
        drv += driver_ping_once(cfg, per)
        rtts, acct = asyncio.run(lan_ping(per))
        lan += rtts
        sent += acct["transmitted"]
        received += acct["received"]

    def summary(v: list[float]) -> dict:
        return {"n": len(v), "p50_us": percentile(v, 50), "p99_us": percentile(v, 99),
                "min_us": min(v) if v else None}

    out = {"lan": summary(lan), "driver": summary(drv), "switch": summary(swp), "floor": summary(floor), "lan_transmitted": sent,
           "lan_received": received}
    _say(cfg, f"  ping p50 {out['lan']['p50_us']:.0f} us (p99 {out['lan']['p99_us']:.0f}); relay floor p50 "
              f"{out['floor']['p50_us']:.0f} us (p99 {out['floor']['p99_us']:.0f})")
    return out


# --- 5. the peer: vde_switch -------------------------------------------------------------------


def vde_once(cfg: Config, size: int) -> dict:
    sockdir = tempfile.mkdtemp(prefix="vnet-bench-vde-")
    sw = rx = tx = None
    args = {"sock": sockdir, "size": size, "batch": DATAPATH_BATCH, "duration": cfg.duration}
    try:
        sw = vde_mod.start_switch(sockdir)
        rx = Worker("vderecv", args, cfg.log_dir)
        rx.ready()
        tx = Worker("vdesend", args, cfg.log_dir)
        tx.ready()
        tx.tell("go")
        s = tx.result()
        rx.tell(f"expect {s['frames']}")
        r = rx.result()
        tx.tell("stop")
    finally:
        _stop_all([rx, tx])
        if sw is not None:
            sw.terminate()
            try:
                sw.wait(5)
            except Exception:
                sw.kill()
        shutil.rmtree(sockdir, ignore_errors=True)
    fps, overall = _rates(r["frames"], r["samples"], s["t0"], s["t1"], r["last"])
    lost = s["frames"] - r["frames"]
    return {"size": size, "fps": fps, "fps_overall": overall, "gbps": _gbps(fps, size), "sent": s["frames"], "delivered": r["frames"],
            "lost": lost, "lost_pct": 100.0 * lost / max(1, s["frames"]),
            "offered_fps": s["frames"] / max(1e-9, s["t1"] - s["t0"])}


def section_vde(cfg: Config) -> dict:
    why = vde_mod.install() if cfg.install_vde else ("" if vde_mod.available() else
                                                      "vde2 is not installed (apt-get install -y vde2)")
    if why:
        _say(cfg, f"  vde: skipped: {why}")
        return {"available": False, "skipped": why, "results": []}
    rows = []
    for size in SIZES:
        row = _repeat(cfg, lambda: vde_once(cfg, size))
        rows.append(row)
        _say(cfg, f"  vde {size:>4} B {row['fps']:>12,.0f} frames/s delivered, sent {row['sent']}, "
                  f"lost {row['lost']} ({row['lost_pct']:.0f}%)")
    return {"available": True, "skipped": None, "results": rows}


# --- 6. scale ----------------------------------------------------------------------------------


async def scale_run(n: int, peers: int = 3) -> dict:
    from vnet.lan import Lan
    lan = Lan(n, "10.0.0.0/24", start_timeout=300.0)
    t0 = time.monotonic()
    await lan.start()
    try:
        t_up = time.monotonic() - t0
        nodes = lan.nodes
        k = min(peers, len(nodes) - 1)

        async def resolve(i: int) -> list[bool]:
            src = nodes[i]
            out = []
            for j in range(1, k + 1):
                dst = nodes[(i + j) % len(nodes)]
                res = await src.ping(dst.ip, count=1, timeout=10.0)
                out.append(res.ok)
            return out

        t1 = time.monotonic()
        results = await asyncio.gather(*(resolve(i) for i in range(len(nodes))))
        t_resolve = time.monotonic() - t1
        ok = sum(sum(r) for r in results)
        pairs = sum(len(r) for r in results)
        rss = {name: rss_kib(p.proc.pid) for name, p in lan._node_procs.items()}
        switch_rss = rss_kib(lan._switch_proc.proc.pid) if lan._switch_proc else None
    finally:
        await lan.close()
    vals = [v / 1024 for v in rss.values() if v is not None]
    return {"nodes": n, "start_s": t_up, "resolve_s": t_resolve, "pairs": pairs, "pairs_ok": ok,
            "rss_mb": {"mean": sum(vals) / len(vals), "max": max(vals), "min": min(vals)} if vals else None,
            "switch_rss_mb": switch_rss / 1024 if switch_rss else None}


def section_scale(cfg: Config) -> dict:
    out = asyncio.run(scale_run(cfg.scale_nodes))
    _say(cfg, f"  scale {out['nodes']} nodes: up in {out['start_s']:.1f} s, {out['pairs_ok']}/{out['pairs']} "
              f"pairs resolved and pinged in {out['resolve_s']:.2f} s, node RSS mean "
              f"{out['rss_mb']['mean']:.1f} MB max {out['rss_mb']['max']:.1f} MB")
    return out


# --- 7. packed: a thousand nodes -----------------------------------------------------------------


def section_packed(cfg: Config) -> dict:
    from bench import scale

    run = asyncio.run(scale.scale_run(cfg.packed_nodes, min(cfg.packed_per_process, cfg.packed_nodes),
                                      broadcast=16 if cfg.smoke else 256))
    for line in scale.render(run).splitlines():
        _say(cfg, f"  {line}")
    run["targets"] = scale.targets(run)
    return run


# --- 8. ratios and targets ---------------------------------------------------------------------


def _find(rows: list[dict], **match: Any) -> Optional[dict]:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def ratios_and_targets(res: dict) -> tuple[dict, list[dict]]:
    ratios: dict[str, Any] = {}
    targets: list[dict] = []
    tr = res.get("transport") or []
    sw = res.get("switch") or []
    e2e = res.get("e2e") or []
    vde = (res.get("vde") or {}).get("results") or []

    def target(name: str, want: str, value: Optional[float], met: Optional[bool], note: str = "") -> None:
        targets.append({"name": name, "target": want, "value": value, "met": met, "note": note})

    for size in SIZES:
        e = _find(e2e, size=size)
        v = _find(vde, size=size)
        if e and v and v["fps"]:
            ratios[f"e2e_vs_vde_{size}"] = e["fps"] / v["fps"]
        for ports in (2, 16):
            s = _find(sw, ports=ports, size=size)
            t = _find(tr, size=size, batch=DATAPATH_BATCH)
            if s and t and t["fps"]:
                ratios[f"switch{ports}_vs_relay_{size}"] = s["fps"] / t["fps"]
        t1 = _find(tr, size=size, batch=1)
        if e and t1 and t1["fps"]:
            ratios[f"e2e_vs_relay_x1_{size}"] = e["fps"] / t1["fps"]
    lat = res.get("latency")
    if lat and lat["floor"]["p50_us"]:
        ratios["ping_p50_vs_floor"] = lat["lan"]["p50_us"] / lat["floor"]["p50_us"]

    def cpu_bound(size: int) -> str:
        e = _find(e2e, size=size)
        if not e or not e.get("cpu_us_per_frame"):
            return ""
        c = e["cpu_us_per_frame"]
        total = sum(c.values())
        return (f"bound by per-frame Python CPU: tx {c.get('tx', 0):.2f} + switch {c.get('switch', 0):.2f} + "
                f"rx {c.get('rx', 0):.2f} us a frame = {total:.2f} us on {res['machine']['cpus']} cores, "
                f"a ceiling near {res['machine']['cpus'] / total * 1e6:,.0f} frames/s")

    def missed_by(value: float, want: float, higher_is_better: bool = True) -> str:
        factor = want / value if higher_is_better else value / want
        return f"missed by {factor:.2f}x"

    r = ratios.get("e2e_vs_vde_60")
    if r is not None:
        ok = r >= TARGETS["e2e_60_vs_vde"]
        target("e2e 60 B vs vde_switch", ">= 4.0x", r, ok,
               "" if ok else f"{missed_by(r, TARGETS['e2e_60_vs_vde'])}; {cpu_bound(60)}")
    elif res.get("vde") is not None:
        target("e2e 60 B vs vde_switch", ">= 4.0x", None, None, "vde section skipped")
    e = _find(e2e, size=1514)
    if e:
        ok = e["gbps"] >= TARGETS["e2e_1514_gbps"]
        target("e2e 1514 B Gbit/s", ">= 1.0", e["gbps"], ok,
               "" if ok else f"{missed_by(e['gbps'], TARGETS['e2e_1514_gbps'])}; {cpu_bound(1514)}")
    for size in SIZES:
        r = ratios.get(f"switch2_vs_relay_{size}")
        if r is not None:
            ok = r >= TARGETS["switch_vs_relay"]
            target(f"switch (2 ports) vs relay, {size} B x{DATAPATH_BATCH}", ">= 0.5x", r, ok,
                   "" if ok else f"{missed_by(r, TARGETS['switch_vs_relay'])}; the relay does per-message work "
                                 f"only, the switch also parses, learns and looks up every frame in Python")
    r = ratios.get("ping_p50_vs_floor")
    if r is not None:
        ok = r <= TARGETS["ping_vs_floor"]
        note = ""
        if not ok:
            l = res["latency"]
            note = (f"{missed_by(r, TARGETS['ping_vs_floor'], False)}; p50 relay floor {l['floor']['p50_us']:.0f} us, "
                    f"through the switch {l['switch']['p50_us']:.0f}, through both drivers "
                    f"{l['driver']['p50_us']:.0f}, with the host stack (ARP, IPv4, ICMP) "
                    f"{l['lan']['p50_us']:.0f}: the asyncio nodes' per-hop Python work bounds it")
        target("ping p50 vs relay floor", "<= 1.5x", r, ok, note)
    accounts = [row.get("uncounted_all_runs", [row["uncounted"]]) for row in sw + e2e]
    if accounts:
        worst = max((abs(u) for runs in accounts for u in runs), default=0)
        target("uncounted loss (switch, e2e)", "0", worst, worst == 0)
    slow = res.get("slowport")
    if slow and slow["flow_fps_both_reading"]:
        r = slow["flow_fps_one_stalled"] / slow["flow_fps_both_reading"]
        ratios["slow_consumer_flow_vs_normal"] = r
        target("flow beside a stalled receiver", ">= 0.8x", r, r >= TARGETS["slow_consumer"],
               f"the stalled port's {slow['stalled_hwm_drops']:,} frames dropped and counted as hwm")
    sc = res.get("scale")
    if sc and sc.get("rss_mb"):
        target(f"node RSS ({sc['nodes']} nodes)", "<= 40 MB", sc["rss_mb"]["max"],
               sc["rss_mb"]["max"] <= TARGETS["node_rss_mb"])
    for t in (res.get("packed") or {}).get("targets", []):
        target(f"packed: {t['name']} ({res['packed']['nodes']} nodes)", t["target"], t["value"], t["met"])
    return ratios, targets


# --- the report ---------------------------------------------------------------------------------


def _f(v: Optional[float], fmt: str = ",.0f") -> str:
    return "-" if v is None else format(v, fmt)


def render(res: dict) -> str:
    out = []
    m = res["machine"]
    out.append(f"vnet benchmark: {m['cpus']} CPUs, Python {m['python']}, pyzmq {m['pyzmq']}, libzmq {m['libzmq']}, "
               f"load average {m['loadavg_start']} -> {m['loadavg_end']}; {res['config']['repeat']} runs of "
               f"{res['config']['duration']:g} s each, median (min..max)")
    if res.get("transport"):
        out.append("\n1. transport limit: pyzmq DEALER -> relay (ROUTER) -> DEALER, no vnet code")
        out.append(f"   {'frame':>6} {'batch':>5} {'frames/s':>12} {'Gbit/s':>7}  runs")
        for r in res["transport"]:
            out.append(f"   {r['size']:>4} B {r['batch']:>5} {_f(r['fps']):>12} {r['gbps']:7.3f}  "
                       f"{min(r['fps_runs']):,}..{max(r['fps_runs']):,}")
    if res.get("switch"):
        out.append(f"\n2. switch alone: real switch process, raw DEALERs, learning on, {DATAPATH_BATCH} frames a message")
        out.append(f"   {'ports':>5} {'frame':>6} {'frames/s':>12} {'Gbit/s':>7} {'sent':>10} {'recv':>10} "
                   f"{'drops':>7} {'uncounted':>9}  runs")
        for r in res["switch"]:
            out.append(f"   {r['ports']:>5} {r['size']:>4} B {_f(r['fps']):>12} {r['gbps']:7.3f} {r['sent']:>10} "
                       f"{r['received']:>10} {sum(r['drops'].values()):>7} {r['uncounted']:>9}  "
                       f"{min(r['fps_runs']):,}..{max(r['fps_runs']):,}")
    if res.get("slowport"):
        s = res["slowport"]
        out.append("\n2b. slow consumer: two flows of 60 B through the switch (--port-hwm 64); one receiver stops reading")
        out.append(f"   one flow beside a reader {_f(s['flow_fps_both_reading'])} frames/s, beside a stalled one "
                   f"{_f(s['flow_fps_one_stalled'])}; the stalled port's drops: {s['stalled_hwm_drops']:,} hwm")
    if res.get("e2e"):
        out.append("\n3. end to end: node A (qdisc, TX ring) -> switch -> node B (RX ring, NAPI, handler)")
        out.append(f"   {'frame':>6} {'frames/s':>12} {'Gbit/s':>7} {'sent':>10} {'delivered':>10} {'drops':>7} "
                   f"{'uncounted':>9} {'tx batch':>8} {'rx batch':>8}  runs")
        for r in res["e2e"]:
            out.append(f"   {r['size']:>4} B {_f(r['fps']):>12} {r['gbps']:7.3f} {r['sent']:>10} {r['delivered']:>10} "
                       f"{sum(r['drops'].values()):>7} {r['uncounted']:>9} {r['avg_tx_batch']:>8} "
                       f"{r['avg_rx_batch']:>8}  {min(r['fps_runs']):,}..{max(r['fps_runs']):,}")
            nz = {k: v for k, v in r["drops"].items() if v}
            if nz:
                out.append(f"          drops by counter: {nz}")
            c = r.get("cpu_us_per_frame") or {}
            if c:
                out.append("          CPU per delivered frame: " + ", ".join(f"{k} {v:.2f} us" for k, v in c.items())
                           + "; cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_cores"].items()))
    if res.get("latency"):
        lat = res["latency"]
        out.append("\n4. latency: round trip of a 98-byte frame")
        out.append(f"   {'path':<44} {'n':>5} {'p50 us':>8} {'p99 us':>8} {'min us':>8}")
        for label, key in (("vnet ping across an embedded LAN (2 nodes)", "lan"),
                           ("driver echo: A -> switch -> B -> switch -> A", "driver"),
                           ("switch, raw endpoints (no driver, no stack)", "switch"),
                           ("relay floor: A -> relay -> B -> relay -> A", "floor")):
            s = lat[key]
            out.append(f"   {label:<44} {s['n']:>5} {_f(s['p50_us']):>8} {_f(s['p99_us']):>8} {_f(s['min_us']):>8}")
    if res.get("vde") is not None:
        v = res["vde"]
        out.append("\n5. peer: vde_switch between two vde_plug (stdin/stdout), one frame a datagram")
        if not v["available"]:
            out.append(f"   skipped: {v['skipped']}")
        else:
            out.append(f"   {'frame':>6} {'delivered/s':>12} {'Gbit/s':>7} {'sent':>10} {'delivered':>10} {'lost':>10}  runs")
            for r in v["results"]:
                out.append(f"   {r['size']:>4} B {_f(r['fps']):>12} {r['gbps']:7.3f} {r['sent']:>10} {r['delivered']:>10} "
                           f"{r['lost']:>10} ({r['lost_pct']:.0f}%)  {min(r['fps_runs']):,}..{max(r['fps_runs']):,}")
    if res.get("scale"):
        s = res["scale"]
        out.append(f"\n6. scale: embedded LAN of {s['nodes']} nodes")
        out.append(f"   started in {s['start_s']:.1f} s; every node pinged 3 peers (ARP + echo): "
                   f"{s['pairs_ok']}/{s['pairs']} in {s['resolve_s']:.2f} s")
        if s["rss_mb"]:
            out.append(f"   node VmRSS: mean {s['rss_mb']['mean']:.1f} MB, min {s['rss_mb']['min']:.1f}, "
                       f"max {s['rss_mb']['max']:.1f}; switch {_f(s['switch_rss_mb'], '.1f')} MB")
    if res.get("packed"):
        from bench import scale

        out.append("\n7. packed: " + scale.render(res["packed"]).split("\n", 1)[0])
        out += [f"   {line.strip()}" for line in scale.render(res["packed"]).splitlines()[1:]
                if not line.strip().startswith("target")]
    if res.get("ratios"):
        out.append("\n8. ratios")
        for k, v in res["ratios"].items():
            out.append(f"   {k:<28} {v:8.2f}")
    if res.get("targets"):
        out.append("\n   targets")
        for t in res["targets"]:
            state = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
            val = "-" if t["value"] is None else (f"{t['value']:.2f}" if isinstance(t["value"], float) else str(t["value"]))
            out.append(f"   {t['name']:<40} {t['target']:>9} {val:>9}  {state}")
            if t["note"]:
                out.append(f"      {t['note']}")
    if res.get("errors"):
        out.append("\nerrors")
        for name, err in res["errors"].items():
            out.append(f"   {name}: {err}")
    return "\n".join(out)


SECTIONS = {
    "transport": section_transport,
    "switch": section_switch,
    "slowport": section_slowport,
    "e2e": section_e2e,
    "latency": section_latency,
    "vde": section_vde,
    "scale": section_scale,
    "packed": section_packed,
}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON document on stdout (progress on stderr)")
    ap.add_argument("--smoke", action="store_true", help="every section with tiny counts (CI): seconds, not minutes")
    ap.add_argument("--duration", type=float, default=None, help="seconds of traffic per measurement (default 1)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per throughput figure; the median is reported (default 3)")
    ap.add_argument("--ping-count", type=int, default=None, help="pings per latency figure (default 500)")
    ap.add_argument("--scale-nodes", type=int, default=None, help="nodes in the scale LAN (default 100; smoke 5)")
    ap.add_argument("--packed-nodes", type=int, default=None,
                    help="nodes in the packed LAN, 100 a process (default 1000; smoke 6, 3 a process)")
    ap.add_argument("--only", default=None, help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--profile", metavar="DIR", default=None,
                    help="py-spy the switch and node processes of the switch and e2e sections into DIR")
    ap.add_argument("--rx-coalesce", metavar="USECS,FRAMES", default=None,
                    help="ethtool -C rx-usecs,rx-frames for the receiving e2e node (default: the driver's)")
    ap.add_argument("--no-flow-control", action="store_true",
                    help="e2e: the receiving NIC overruns its ring instead of pausing the link (for comparison)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install vde2 when it is missing")
    cfg = Config(ap.parse_args(argv))
    import zmq

    res: dict[str, Any] = {
        "command": "python3 -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "pyzmq": zmq.__version__,
                    "libzmq": zmq.zmq_version(), "loadavg_start": [round(x, 2) for x in os.getloadavg()]},
        "config": {"duration": cfg.duration, "repeat": cfg.repeat, "ping_count": cfg.ping_count,
                   "scale_nodes": cfg.scale_nodes, "smoke": cfg.smoke, "datapath_batch": DATAPATH_BATCH},
        "errors": {},
    }
    t0 = time.monotonic()
    for name, fn in SECTIONS.items():
        if name not in cfg.sections:
            continue
        _say(cfg, f"{name} ...")
        try:
            res[name] = fn(cfg)
        except (WorkerError, RuntimeError, OSError, TimeoutError) as exc:
            res["errors"][name] = str(exc)
            _say(cfg, f"  {name} failed: {exc}")
    res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    res["elapsed_s"] = round(time.monotonic() - t0, 1)
    res["ratios"], res["targets"] = ratios_and_targets(res)
    if cfg.quiet:
        print(json.dumps(res, indent=2))
    else:
        print()
        print(render(res))
    if res["errors"]:
        _say(cfg, f"worker logs kept in {cfg.log_dir}")
        return 1
    shutil.rmtree(cfg.log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
