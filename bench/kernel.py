"""Kernel stacks over three LANs: vnet (two kernel-stack nodes), vde_switch (two TAPs) and a
bare veth pair, in one run: ``python3 -m bench.kernel [--seconds S] [--pings N]``.

Each LAN joins two network namespaces; the measurements run there with the system's tools:
``iperf3`` TCP throughput (one stream, S seconds) and ``ping`` RTT p50 (N probes, 10 ms
apart). The output is one table and the ratios vnet/vde and vnet/veth. Needs root,
/dev/net/tun, iperf3, ping, and vde2 for the vde row (skipped, saying why, without it).
The namespaces are ``vbk<pid>-*`` and removed at the end whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass

RTT_RE = re.compile(r"time=([0-9.]+) ms")


@dataclass
class Figures:
    lan: str
    tcp_mbit: float | None = None
    rtt_p50_ms: float | None = None
    note: str = ""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


async def measure(lan: str, a_argv, b_argv, b_ip: str, seconds: int, pings: int) -> Figures:
    """iperf3 and ping from side A to side B; ``*_argv`` prefix a command with its namespace."""
    srv = await asyncio.create_subprocess_exec(*b_argv, "iperf3", "-s", "-1", "--forceflush", "-B", b_ip,
                                               stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        while b"Server listening" not in await asyncio.wait_for(srv.stdout.readline(), 15):
            pass
        cli = await asyncio.create_subprocess_exec(*a_argv, "iperf3", "-c", b_ip, "-t", str(seconds), "-J",
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(cli.communicate(), seconds + 60)
        if cli.returncode != 0:
            return Figures(lan, note=f"iperf3 failed: {err.decode().strip()[-200:]}")
        tcp = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        if srv.returncode is None:
            srv.kill()
        await srv.wait()
    ping = await asyncio.create_subprocess_exec(*a_argv, "ping", "-n", "-c", str(pings),
                                                "-i", "0.01", "-W", "2", b_ip, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(ping.communicate(), pings * 0.05 + 30)
    rtts = [float(x) for x in RTT_RE.findall(out.decode())]
    return Figures(lan, tcp, statistics.median(rtts) if rtts else None,
                   "" if len(rtts) == pings else f"{pings - len(rtts)} pings lost")


def netns_argv(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


def make_ns(name: str) -> None:
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")


def configure(ns: str, dev: str, cidr: str) -> None:
    sh("ip", "-n", ns, "addr", "add", cidr, "dev", dev)
    sh("ip", "-n", ns, "link", "set", dev, "up")


async def bench_veth(tag: str, seconds: int, pings: int) -> Figures:
    a, b = f"{tag}-va", f"{tag}-vb"
    made = []
    try:
        for ns in (a, b):
            make_ns(ns)
            made.append(ns)
        sh("ip", "link", "add", f"{tag}a", "netns", a, "type", "veth", "peer", "name", f"{tag}b", "netns", b)
        configure(a, f"{tag}a", "10.251.0.1/24")
        configure(b, f"{tag}b", "10.251.0.2/24")
        return await measure("veth pair", netns_argv(a), netns_argv(b), "10.251.0.2", seconds, pings)
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


async def bench_vde(tag: str, seconds: int, pings: int) -> Figures:
    if shutil.which("vde_switch") is None:
        return Figures("vde_switch + 2 TAPs", note="skipped: vde2 is not installed (apt-get install vde2)")
    a, b = f"{tag}-da", f"{tag}-db"
    made = []
    tmp = tempfile.mkdtemp(prefix="vbk-vde-")
    taps = (f"{tag}ta", f"{tag}tb")
    sw = subprocess.Popen(["vde_switch", "-s", f"{tmp}/sw", "-t", taps[0], "-t", taps[1]],
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not all(os.path.exists(f"/sys/class/net/{t}") for t in taps):
            if sw.poll() is not None or loop.time() > deadline:
                return Figures("vde_switch + 2 TAPs", note="vde_switch did not create its TAPs")
            await asyncio.sleep(0.02)  # polling for the TAPs to appear, with a deadline
        for ns, tap, cidr in ((a, taps[0], "10.252.0.1/24"), (b, taps[1], "10.252.0.2/24")):
            make_ns(ns)
            made.append(ns)
            sh("ip", "link", "set", tap, "netns", ns)
            configure(ns, tap, cidr)
        return await measure("vde_switch + 2 TAPs", netns_argv(a), netns_argv(b), "10.252.0.2", seconds, pings)
    finally:
        sw.terminate()
        sw.wait(10)
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


async def bench_vnet(seconds: int, pings: int) -> Figures:
    from vnet.lan import Lan

    async with Lan(2, "10.253.0.0/24", stack="kernel") as lan:
        a, b = lan.nodes
        return await measure("vnet (kernel stacks)", netns_argv(a.netns), netns_argv(b.netns), b.ip, seconds, pings)


def ratio(x: float | None, y: float | None) -> str:
    return f"{x / y:.3f}" if x and y else "-"


async def main_async(seconds: int, pings: int, as_json: bool) -> int:
    tag = f"vbk{os.getpid() % 100000}"
    rows = [await bench_vnet(seconds, pings), await bench_vde(tag, seconds, pings),
            await bench_veth(tag, seconds, pings)]
    vnet, vde, veth = rows
    if as_json:
        print(json.dumps({"seconds": seconds, "pings": pings, "rows": [r.__dict__ for r in rows],
                          "ratios": {"tcp_vnet_vs_vde": ratio(vnet.tcp_mbit, vde.tcp_mbit),
                                     "tcp_vnet_vs_veth": ratio(vnet.tcp_mbit, veth.tcp_mbit),
                                     "rtt_vnet_vs_vde": ratio(vnet.rtt_p50_ms, vde.rtt_p50_ms),
                                     "rtt_vnet_vs_veth": ratio(vnet.rtt_p50_ms, veth.rtt_p50_ms)}}, indent=2))
        return 0
    print(f"kernel stacks across three LANs: iperf3 TCP {seconds} s, ping x{pings} (10 ms apart)")
    print(f"{'LAN':<22} {'TCP Mbit/s':>11} {'RTT p50 ms':>11}  note")
    for r in rows:
        tcp = f"{r.tcp_mbit:.1f}" if r.tcp_mbit is not None else "-"
        rtt = f"{r.rtt_p50_ms:.3f}" if r.rtt_p50_ms is not None else "-"
        print(f"{r.lan:<22} {tcp:>11} {rtt:>11}  {r.note}")
    print(f"vnet/vde:  TCP x{ratio(vnet.tcp_mbit, vde.tcp_mbit)}, RTT x{ratio(vnet.rtt_p50_ms, vde.rtt_p50_ms)}")
    print(f"vnet/veth: TCP x{ratio(vnet.tcp_mbit, veth.tcp_mbit)}, RTT x{ratio(vnet.rtt_p50_ms, veth.rtt_p50_ms)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.kernel", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=5, help="iperf3 duration per LAN (default 5)")
    p.add_argument("--pings", type=int, default=200, help="pings per LAN (default 200)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    missing = [t for t in ("ip", "iperf3", "ping") if shutil.which(t) is None]
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or missing:
        why = "needs root and /dev/net/tun" if not missing else f"needs {', '.join(missing)}"
        print(f"bench.kernel: {why}", file=sys.stderr)
        return 2
    return asyncio.run(main_async(args.seconds, args.pings, args.json))


if __name__ == "__main__":
    sys.exit(main())
