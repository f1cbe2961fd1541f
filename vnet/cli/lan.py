"""``vnet lan``: an embedded LAN on this machine, ``up`` until Ctrl-C or a ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from vnet.cli.common import CliError, Parser, run_until_stopped


def cmd_lan(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise CliError("lan: --nodes must be at least 1")
    subnet = args.subnet or default_subnet(args.nodes)
    try:
        if args.lan_cmd == "up":
            return asyncio.run(lan_up(args.nodes, subnet, curve=args.curve, bind=args.bind,
                                      switch_control=args.switch_control, stack=args.stack,
                                      nodes_per_process=args.nodes_per_process))
        return asyncio.run(lan_demo(args.nodes, subnet, as_json=args.json, count=args.count,
                                    curve=args.curve, stack=args.stack, nodes_per_process=args.nodes_per_process))
    except ValueError as exc:
        raise CliError(f"lan: {exc}") from None


def default_subnet(nodes: int) -> str:
    """10.0.0.0/24, or the smallest 10.0.0.0/N below it with room for ``nodes`` hosts."""
    prefix = 24
    while prefix > 8 and (1 << (32 - prefix)) - 2 < nodes:
        prefix -= 1
    return f"10.0.0.0/{prefix}"


# A daemon of `vnet lan up` that dies unasked is restarted at most this often (in a window of
# RESTART_WINDOW seconds); one death more and `vnet lan up` stops the LAN and exits 1.
RESTARTS = 3
RESTART_WINDOW = 60.0


async def lan_up(nodes: int, subnet: str, curve: bool = False, bind: str | None = None,
                 switch_control: str | None = None, stack: str = "vnet", nodes_per_process: int = 1) -> int:
    """``vnet lan up``: a LAN on the default switch ports and runtime directory, until signalled.

    It supervises its daemons: one that dies is reported on stderr (exit status or signal, the
    end of its log) and restarted, up to RESTARTS times in RESTART_WINDOW s; past that the LAN
    is stopped and the command exits 1 saying why. Daemons left by an earlier ``vnet lan up``
    that was killed are stopped first, and said so."""
    from vnet.lan import Lan  # zmq and the LAN only for `vnet lan`
    from vnet.proto.control import runtime_dir

    logging.basicConfig(level=logging.WARNING, format="vnet lan: %(message)s", stream=sys.stderr)
    # the switch's control on its default ipc socket in the runtime directory (only this user),
    # unless --switch-control names another
    lan = Lan(nodes, subnet, switch_bind=bind,
              switch_control=switch_control, runtime_dir=runtime_dir(), curve=curve, stack=stack, name="lan",
              restarts=RESTARTS, restart_window=RESTART_WINDOW, nodes_per_process=nodes_per_process,
              start_timeout=max(60.0, nodes / 10))
    async def describe() -> None:
        print(f"vnet LAN up: switch {lan.switch.data} (control {lan.switch.control}), subnet {lan.subnet}")
        if lan.switch.metrics_url:
            print(f"  switch metrics {lan.switch.metrics_url}")
        for n in lan.nodes:
            how = (f"vnet --node {n.name} exec -- ping <ip>   (namespace {n.netns})" if n.stack == "kernel"
                   else f"vnet --node {n.name} ping <ip>")
            print(f"  {n.name:<8} {n.ip:<15} {n.mac}   {how}")
            if n.metrics_url and not lan.packs:
                print(f"  {'':<8} metrics {n.metrics_url}")
        for name, members in lan.packs.items():  # one endpoint per process, for all its nodes
            url = lan.node(members[0]).metrics_url
            print(f"  {name:<8} {members[0]} .. {members[-1]}" + (f"   metrics {url}" if url else ""))
        if lan.packs:
            print(f"{len(lan.nodes)} nodes in {len(lan.packs)} processes of up to {nodes_per_process} "
                  f"(`vnet nodes`); the LAN restarts a process that dies, with its nodes")
        if curve:
            keys = lan.keys_dir
            print(f"CURVE on, keys in {keys}; ask the switch with VNET_CURVE_SECRET={keys}/switch.key_secret "
                  f"VNET_CURVE_SERVER_KEY={keys}/switch.key vnet switch fdb")

    return await run_until_stopped(lan, "LAN", describe, "Ctrl-C (or SIGTERM) stops the LAN.")


async def lan_demo(nodes: int, subnet: str, as_json: bool = False, count: int = 3, curve: bool = False,
                   stack: str = "vnet", nodes_per_process: int = 1) -> int:
    """``vnet lan demo``: every node pings every other; exit 0 only if every pair answered.
    On a kernel-stack LAN each ping is the system's ping run in the sender's namespace."""
    from vnet.lan import Lan, LanError

    lan = Lan(nodes, subnet, curve=curve, stack=stack, name="demo", nodes_per_process=nodes_per_process,
              start_timeout=max(60.0, nodes / 10))
    try:
        await lan.start()
    except LanError as exc:
        print(f"vnet: error: {exc}", file=sys.stderr)
        return 2
    try:
        pairs = []
        for a in lan.nodes:
            for b in lan.nodes:
                if a is b:
                    continue
                res = await a.ping(b.ip, count=count)
                pairs.append({
                    "src": a.name, "dst": b.name, "dst_ip": b.ip, "transmitted": res.transmitted,
                    "received": res.received, "loss_pct": res.loss, "ok": res.ok,
                    "rtt_avg_ms": sum(res.rtts_ms) / len(res.rtts_ms) if res.rtts_ms else None,
                })
        arp = {n.name: await n.neigh() for n in lan.nodes}
        stats = {n.name: (await n.link())["stats64"] for n in lan.nodes}
        fdb = await lan.switch.fdb()
    finally:
        await lan.close()
    ok = all(p["ok"] for p in pairs)
    if as_json:
        print(json.dumps({"ok": ok, "nodes": nodes, "pairs": pairs, "arp": arp, "stats": stats, "fdb": fdb}, indent=2))
        return 0 if ok else 1
    print(f"{'from':<8} {'to':<8} {'ip':<15} {'sent':>4} {'recv':>4} {'rtt avg':>10}")
    for p in pairs:
        rtt = f"{p['rtt_avg_ms']:.3f} ms" if p["rtt_avg_ms"] is not None else "-"
        print(f"{p['src']:<8} {p['dst']:<8} {p['dst_ip']:<15} {p['transmitted']:>4} {p['received']:>4} {rtt:>10}")
    for name, entries in arp.items():
        print(f"\nARP table of {name}:")
        for e in entries:
            print(f"  {e['ip']:<15} {e.get('mac') or '-':<17} {e['state']}")
    print(f"\n{'node':<8} {'rx_packets':>10} {'rx_bytes':>10} {'tx_packets':>10} {'tx_bytes':>10} {'dropped':>8}")
    for name, s in stats.items():
        print(f"{name:<8} {s['rx_packets']:>10} {s['rx_bytes']:>10} {s['tx_packets']:>10} {s['tx_bytes']:>10} "
              f"{s['rx_dropped'] + s['tx_dropped']:>8}")
    print(f"\n{sum(p['ok'] for p in pairs)}/{len(pairs)} pairs answered every ping: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``lan`` command, its ``up`` and ``demo`` subcommands and their arguments."""
    lan = sub.add_parser("lan", parents=[common], help="an embedded LAN on this machine: up, or demo")
    lsub = lan.add_subparsers(dest="lan_cmd", metavar="up|demo", required=True, parser_class=Parser)
    for name, text in (("up", "run a LAN until Ctrl-C"), ("demo", "every node pings every other, then exit")):
        lp = lsub.add_parser(name, parents=[common], help=text)
        lp.add_argument("--nodes", type=int, default=3)
        lp.add_argument("--subnet", default=None,
                        help="the LAN's subnet (default 10.0.0.0/24, or a wider 10.0.0.0/N for more than 254 nodes)")
        lp.add_argument("--nodes-per-process", dest="nodes_per_process", type=int, default=1, metavar="N",
                        help="run the nodes N to a process (`vnet nodes`: each still a whole node with its own "
                             "control socket); default 1, a process per node. 100 makes a LAN of 1000 nodes "
                             "fit in a few hundred MB")
        lp.add_argument("--curve", action="store_true", help="CURVE on every link (keys made in the runtime directory)")
        lp.add_argument("--stack", choices=("vnet", "kernel"), default="vnet",
                        help="each node's stack: vnet's own (default) or the kernel's through a TAP in a "
                             "namespace vnet-LAN-NODE (needs root and /dev/net/tun)")
        if name == "up":
            lp.add_argument("--bind", default=None, metavar="ENDPOINT",
                            help="the switch's data endpoint (default: an ipc socket in the runtime directory; "
                                 "tcp://127.0.0.1:5540 lets nodes started by hand elsewhere attach)")
            lp.add_argument("--switch-control", dest="switch_control", default=None, metavar="ENDPOINT",
                            help="the switch's control endpoint (default: an ipc socket in the runtime directory)")
        if name == "demo":
            lp.add_argument("--count", type=int, default=3, help="pings per pair (default 3)")
    lan.set_defaults(func=cmd_lan)
