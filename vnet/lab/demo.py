"""``vnet lab demo``: every node pings every other node's addresses across the running lab.

A vnet-stack node pings through its control endpoint (``NodeHandle.ping``); a kernel-stack
node runs the system's ``ping`` in its namespace (``NodeHandle.run``), as an administrator
would there: on this host for the embedded lab (``LabRunner``), in the node's container for
the lab as containers (``DockerLabRunner``, vnet/lab/docker.py, whose image has ping).
One record per ordered pair and address: ``{src, dst, ip, ok}``; ``matrix`` draws them as a
table, a row per source and a column per destination.
"""

from __future__ import annotations

import asyncio
import shutil

from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from vnet.lab.docker import DockerLabRunner
    from vnet.lab.run import LabRunner

    Runner = Union[LabRunner, DockerLabRunner]


async def ping_from(runner: "Runner", src: str, ip: str, count: int = 3, timeout: float = 2.0) -> bool:
    """Whether ``src`` got an answer from ``ip`` (a reply to at least one of ``count`` echoes
    after the first, which may spend its time on ARP and, across a router, on two)."""
    node = runner.node(src)
    if node.stack == "kernel":
        if getattr(node, "container", None) is None and shutil.which("ping") is None:
            raise RuntimeError(f"{src} runs the kernel's stack: pinging from it needs the system's ping "
                               f"(iputils-ping) on this host")
        done = await node.run(["ping", "-n", "-c", str(count), "-W", f"{timeout:g}", ip], timeout=count * timeout + 10)
        return done.returncode == 0
    res = await node.ping(ip, count=count, timeout=timeout)
    return res.received > 0


async def ping_all(runner: "Runner", count: int = 3) -> list[dict]:
    """Every node to every other node's every address, the sources in parallel."""
    targets = {name: await runner.addresses(name) for name in runner.nodes}

    async def from_one(src: str) -> list[dict]:
        out = []
        for dst, ips in targets.items():
            if dst == src:
                continue
            for ip in ips:
                out.append({"src": src, "dst": dst, "ip": ip, "ok": await ping_from(runner, src, ip, count)})
        return out

    rows = await asyncio.gather(*(from_one(src) for src in runner.nodes))
    return [r for row in rows for r in row]


def matrix(records: list[dict]) -> str:
    """The pairs as a table: ``ok``/``FAIL`` per source (rows) and destination address (columns)."""
    srcs = list(dict.fromkeys(r["src"] for r in records))
    cols = list(dict.fromkeys((r["dst"], r["ip"]) for r in records))
    got = {(r["src"], r["dst"], r["ip"]): r["ok"] for r in records}
    heads = [f"{d} {ip}" for d, ip in cols]
    corner = "from \\ to"
    width = max([len(corner), *map(len, srcs)])
    lines = ["  ".join([corner.ljust(width), *heads])]
    for s in srcs:
        cells = []
        for (d, ip), head in zip(cols, heads):
            v = got.get((s, d, ip))
            cells.append(f"{'-' if v is None else 'ok' if v else 'FAIL':<{len(head)}}")
        lines.append("  ".join([f"{s:<{width}}", *cells]))
    return "\n".join(line.rstrip() for line in lines)
