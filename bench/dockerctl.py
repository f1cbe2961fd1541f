"""Control round trip to a node in a container: ``python3 -m bench.dockerctl [--json]``.

Side by side, against one node of a running Docker LAN (vnet's own compose file, the image
built from the installed vnet):

- one-shot: a ``docker exec -i NODE vnet call --stdio`` process per request (how the Docker
  LAN reached its nodes before it kept a channel per container);
- channel: the Docker LAN's persistent channel (one ``vnet call --stream`` per container,
  started with the Docker SDK's exec, requests multiplexed over its stdin and stdout).

Each request is ``link_show`` (a small read of the node's interface). Prints the median, p10 and
p90 per request and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time

import msgpack

from vnet.compose.tree import build_image, write_tree
from vnet.docker_lan import DockerLan
from vnet.proto.control import decode_reply


async def one_shot(container: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "docker", "exec", "-i", container, "vnet", "call", "--stdio",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(msgpack.packb({"cmd": "link_show", "args": {}}, use_bin_type=True))
    if proc.returncode != 0:
        raise RuntimeError(f"docker exec {container}: {err.decode(errors='replace')}")
    decode_reply(out)


def summary(samples: list[float]) -> dict:
    q = statistics.quantiles(samples, n=10)
    return {"n": len(samples), "median_ms": round(statistics.median(samples) * 1e3, 2),
            "p10_ms": round(q[0] * 1e3, 2), "p90_ms": round(q[-1] * 1e3, 2)}


async def measure(one_shots: int, channel_requests: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="vnet-bench-compose.") as tree:
        write_tree(tree, wheel=False)
        t0 = time.monotonic()
        build_image(tree, quiet=True)
        build_s = time.monotonic() - t0
        async with DockerLan(f"{tree}/docker-compose.yml") as lan:
            node = lan.nodes[0]
            channel = lan.channel(node.container)
            await channel.call("link_show")  # the channel is open before timing
            shots = []
            for _ in range(one_shots):
                t = time.perf_counter()
                await one_shot(node.container)
                shots.append(time.perf_counter() - t)
            chan = []
            for _ in range(channel_requests):
                t = time.perf_counter()
                await channel.call("link_show")
                chan.append(time.perf_counter() - t)
            opened = channel.channels_opened
    res = {"one_shot": summary(shots), "channel": summary(chan), "channels_opened": opened,
           "image_build_s": round(build_s, 1)}
    res["speedup"] = round(res["one_shot"]["median_ms"] / res["channel"]["median_ms"], 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.dockerctl", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one-shots", type=int, default=30)
    ap.add_argument("--requests", type=int, default=300)
    ns = ap.parse_args(argv)
    res = asyncio.run(measure(ns.one_shots, ns.requests))
    if ns.json:
        print(json.dumps(res, indent=2))
        return 0
    print("control round trip to a containerised node (request: link_show)")
    print(f"{'path':<34}{'n':>6}{'median ms':>12}{'p10 ms':>10}{'p90 ms':>10}")
    for label, key in (("docker exec per request (one-shot)", "one_shot"), ("persistent channel (SDK exec)", "channel")):
        r = res[key]
        print(f"{label:<34}{r['n']:>6}{r['median_ms']:>12.2f}{r['p10_ms']:>10.2f}{r['p90_ms']:>10.2f}")
    print(f"speedup (median): {res['speedup']}x; channels opened: {res['channels_opened']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
