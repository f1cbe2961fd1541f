"""How long a LAN with a redundant trunk is cut off when its active trunk is cut:
``python3 -m bench.stp [--runs 5] [--hello 2]``.

The lab examples/labs/redundant-trunk.yml (two switches, two parallel trunks; rapid spanning
tree blocks one) runs as processes (vnet.lab.run.LabRunner). n1 pings n2 every 20 ms through
its control socket; the trunk that forwards is cut at one end (``port_set``: the cable pulled,
so both ends see the link go) and the figure is the time from the cut to the first answered
ping after it: RSTP's failover (the alternate port becomes root port at once, no
proposal/agreement needed) plus one ping's round trip and up to one ping's interval. The cable
is restored and the tree allowed to settle before the next run. ``--hello`` sets every switch's
hello time (the default is 802.1D's 2 s; a cut seen as loss of carrier does not wait for it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import time
from pathlib import Path

from vnet.handles import poll_until
from vnet.lab import load_lab
from vnet.lab.run import LabRunner

LAB = Path(__file__).resolve().parents[1] / "examples" / "labs" / "redundant-trunk.yml"
PING_EVERY = 0.02


async def _forwarding_trunk(lab: LabRunner) -> tuple[str, str]:
    """(switch, port) of the trunk port on sw2 that forwards: its root port."""
    async def root_port():
        for p in (await lab.switch("sw2").call("stp_show"))["ports"]:
            if p["role"] == "root" and p["state"] == "forwarding":
                return p["port"]
        return None
    return "sw2", await poll_until(root_port, "sw2's root port forwarding", timeout=60)


async def _settled(lab: LabRunner) -> None:
    """One trunk port discarding again (the restored cable blocked) and a ping answered."""
    async def one_blocked():
        states = [p["state"] for name in ("sw1", "sw2")
                  for p in (await lab.switch(name).call("stp_show"))["ports"] if not p["edge"]]
        return states.count("discarding") == 1 and states.count("forwarding") == 3
    await poll_until(one_blocked, "one trunk port discarding", timeout=60)
    await poll_until(lambda: _answers(lab), "n1's ping to n2", timeout=30)


async def _answers(lab: LabRunner) -> bool:
    return (await lab.node("n1").ping("10.0.0.2", count=1, timeout=0.2)).ok


async def failover(runs: int, hello: float) -> list[float]:
    lab_file = load_lab(LAB)
    switches = tuple(dataclasses.replace(sw, stp=dataclasses.replace(sw.stp, hello=hello)) for sw in lab_file.switches)
    lab_file = dataclasses.replace(lab_file, switches=switches)
    out = []
    async with LabRunner(lab_file) as lab:
        for _ in range(runs):
            await _settled(lab)
            switch, port = await _forwarding_trunk(lab)
            sw = lab.switch(switch)
            cut = time.monotonic()
            await sw.call("port_set", port=port, up=False)
            while not await _answers(lab):
                await asyncio.sleep(PING_EVERY)
            out.append(time.monotonic() - cut)
            await sw.call("port_set", port=port, up=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python3 -m bench.stp", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hello", type=float, default=2.0, help="every switch's spanning tree hello time, s")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    times = asyncio.run(failover(ns.runs, ns.hello))
    res = {"runs": len(times), "hello_s": ns.hello, "failover_ms": [round(t * 1000, 1) for t in times],
           "median_ms": round(statistics.median(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1)}
    if ns.json:
        print(json.dumps(res))
        return
    print(f"trunk cut to first answered ping, {res['runs']} runs (hello {ns.hello:g} s): median "
          f"{res['median_ms']:.0f} ms, max {res['max_ms']:.0f} ms ({', '.join(f'{t:.0f}' for t in res['failover_ms'])})")


if __name__ == "__main__":
    main()
