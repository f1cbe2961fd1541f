"""``vnet ping`` and ``vnet arping``: ICMP echo and ARP probes, like ping(8) and arping(8)."""

from __future__ import annotations

import argparse
import asyncio

from vnet.proto.control import AsyncControlClient
from vnet.cli.common import CliError, emit_json, node_call, node_endpoint


def cmd_ping(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise CliError("ping: -c needs a count of at least 1")
    if args.interval < 0.001:
        raise CliError("ping: -i must be at least 0.001 s")
    if not 0 <= args.size <= 65507:
        raise CliError("ping: -s must be between 0 and 65507")
    return asyncio.run(_ping(args))


async def _ping(args: argparse.Namespace) -> int:
    import zmq.asyncio

    from vnet.node.stack import PingStats

    ctx = zmq.asyncio.Context()
    client = AsyncControlClient(ctx, node_endpoint(args), timeout=args.timeout)
    stats = PingStats()
    replies: list[dict] = []
    src = None
    if not args.json:
        print(f"PING {args.dst} ({args.dst}) {args.size}({args.size + 28}) bytes of data.")
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def probe(seq: int) -> None:
        nonlocal src
        stats.on_transmit()
        r = await client.call("ping", wait=args.wait + args.timeout, dst=args.dst, seq=seq,
                              size=args.size, timeout=args.wait)
        replies.append(r)
        if r["status"] == "reply":
            stats.on_reply(r["rtt_ms"] / 1000.0)
            if not args.json:
                print(f"{r['bytes']} bytes from {r['from']}: icmp_seq={seq} ttl={r['ttl']} time={r['rtt_ms']:.3f} ms")
        elif r["status"] in ("unreachable", "ttl_exceeded"):
            stats.on_error()
            if not args.json:
                if r.get("from"):  # a router's ICMP error
                    print(f"From {r['from']} icmp_seq={seq} {r.get('error', 'Destination Host Unreachable')}")
                    return
                if src is None:
                    addrs = (await client.call("addr_show"))["addresses"]
                    src = addrs[0]["address"] if addrs else "?"
                print(f"From {src} icmp_seq={seq} Destination Host Unreachable")

    tasks = []
    try:
        seq = 0
        while args.count is None or seq < args.count:
            seq += 1
            tasks.append(loop.create_task(probe(seq)))
            if args.count is not None and seq >= args.count:
                break
            await asyncio.sleep(args.interval)  # ping's probe interval (-i)
        await asyncio.gather(*tasks)
    except (KeyboardInterrupt, asyncio.CancelledError):
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # cancelled probes end before the client closes
    finally:
        await client.close()
        ctx.term()
    elapsed = loop.time() - started
    if args.json:
        rtt = stats.rtt_us()
        emit_json({
            "dst": args.dst, "transmitted": stats.transmitted, "received": stats.received,
            "errors": stats.errors, "loss_pct": stats.loss_percent, "time_ms": elapsed * 1000.0,
            "rtt_ms": dict(zip(("min", "avg", "max", "mdev"), (v / 1000.0 for v in rtt))) if rtt else None,
            "replies": sorted(replies, key=lambda r: r["seq"]),
        })
    else:
        print()
        print(stats.format(args.dst, elapsed))
    return 0 if stats.received else 1


def cmd_arping(args: argparse.Namespace) -> int:
    got = 0
    results = []
    if not args.json:
        print(f"ARPING {args.dst}")
    for _ in range(args.count):
        r = node_call(args, "arping", wait=args.wait + args.timeout, dst=args.dst, timeout=args.wait)
        results.append(r)
        if r["status"] == "reply":
            got += 1
            if not args.json:
                print(f"Unicast reply from {args.dst} [{r['mac']}]  {r['rtt_ms']:.3f}ms")
        elif not args.json:
            print(f"Timeout waiting for a reply from {args.dst}")
    if args.json:
        emit_json({"dst": args.dst, "sent": args.count, "received": got, "replies": results})
    else:
        print(f"Sent {args.count} probes (1 broadcast(s))\nReceived {got} response(s)")
    return 0 if got else 1


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``ping`` and ``arping`` commands and their arguments."""
    ping = sub.add_parser("ping", parents=[common], help="ICMP echo, like ping(8)")
    ping.add_argument("-c", dest="count", type=int, default=None, help="stop after COUNT probes")
    ping.add_argument("-i", dest="interval", type=float, default=1.0, help="seconds between probes (default 1)")
    ping.add_argument("-s", dest="size", type=int, default=56, help="payload bytes (default 56)")
    ping.add_argument("-W", dest="wait", type=float, default=4.0, help="seconds to wait for each reply (default 4)")
    ping.add_argument("dst", metavar="IP")
    ping.set_defaults(func=cmd_ping)

    arping = sub.add_parser("arping", parents=[common], help="ARP requests, like arping(8)")
    arping.add_argument("-c", dest="count", type=int, default=1, help="requests to send (default 1)")
    arping.add_argument("-w", dest="wait", type=float, default=1.0, help="seconds to wait for each reply")
    arping.add_argument("dst", metavar="IP")
    arping.set_defaults(func=cmd_arping)
