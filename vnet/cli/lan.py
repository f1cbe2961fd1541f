"""``vnet lan``: an embedded LAN on this machine, ``up`` until Ctrl-C or a ``demo``."""

from __future__ import annotations

import argparse
import asyncio

from vnet.cli.common import CliError, Parser


def cmd_lan(args: argparse.Namespace) -> int:
    from vnet import lan as lanmod

    if args.nodes < 1:
        raise CliError("lan: --nodes must be at least 1")
    try:
        if args.lan_cmd == "up":
            return asyncio.run(lanmod.lan_up(args.nodes, args.subnet, curve=args.curve, stack=args.stack))
        return asyncio.run(lanmod.lan_demo(args.nodes, args.subnet, as_json=args.json, count=args.count,
                                           curve=args.curve, stack=args.stack))
    except ValueError as exc:
        raise CliError(f"lan: {exc}") from None


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``lan`` command, its ``up`` and ``demo`` subcommands and their arguments."""
    lan = sub.add_parser("lan", parents=[common], help="an embedded LAN on this machine: up, or demo")
    lsub = lan.add_subparsers(dest="lan_cmd", metavar="up|demo", required=True, parser_class=Parser)
    for name, text in (("up", "run a LAN until Ctrl-C"), ("demo", "every node pings every other, then exit")):
        lp = lsub.add_parser(name, parents=[common], help=text)
        lp.add_argument("--nodes", type=int, default=3)
        lp.add_argument("--subnet", default="10.0.0.0/24")
        lp.add_argument("--curve", action="store_true", help="CURVE on every link (keys made in the runtime directory)")
        lp.add_argument("--stack", choices=("vnet", "kernel"), default="vnet",
                        help="each node's stack: vnet's own (default) or the kernel's through a TAP in a "
                             "namespace vnet-LAN-NODE (needs root and /dev/net/tun)")
        if name == "demo":
            lp.add_argument("--count", type=int, default=3, help="pings per pair (default 3)")
    lan.set_defaults(func=cmd_lan)
