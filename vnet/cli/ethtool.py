"""``vnet ethtool``: driver information, statistics, ring sizes and interrupt coalescing."""

from __future__ import annotations

import argparse

from vnet.cli.common import CliError, emit_json, node_call


_RING_KEYS = {"rx": "rx_pending", "tx": "tx_pending"}
_COALESCE_KEYS = {"rx-usecs": "rx_usecs", "rx-frames": "rx_frames"}


def _pairs(words: list[str], allowed: dict[str, str], what: str) -> dict[str, int]:
    if len(words) % 2:
        raise CliError(f"ethtool {what}: give NAME VALUE pairs ({', '.join(allowed)})")
    out = {}
    for name, value in zip(words[::2], words[1::2]):
        if name not in allowed:
            raise CliError(f"ethtool {what}: unknown parameter {name!r} ({', '.join(allowed)})")
        try:
            out[allowed[name]] = int(value)
        except ValueError:
            raise CliError(f"ethtool {what}: {name} {value!r} is not a number") from None
    if not out:
        raise CliError(f"ethtool {what}: nothing to change ({', '.join(allowed)})")
    return out


def cmd_ethtool(args: argparse.Namespace) -> int:
    dev = args.devname
    if args.set_ring is not None:
        result = node_call(args, "ethtool", op="set_ringparam", dev=dev, **_pairs(args.set_ring, _RING_KEYS, "-G"))
    elif args.set_coalesce is not None:
        result = node_call(args, "ethtool", op="set_coalesce", dev=dev,
                           **_pairs(args.set_coalesce, _COALESCE_KEYS, "-C"))
    else:
        op = {"i": "drvinfo", "S": "stats", "g": "get_ringparam", "c": "get_coalesce"}.get(args.mode, "link")
        result = node_call(args, "ethtool", op=op, dev=dev)
        if args.json:
            emit_json(result)
        elif op == "drvinfo":
            for k, v in result.items():
                print(f"{k.replace('_', '-')}: {v}")
        elif op == "stats":
            print("NIC statistics:")
            for k, v in result.items():
                print(f"     {k}: {v}")
        elif op == "get_ringparam":
            print(f"Ring parameters for {dev}:\nPre-set maximums:")
            print(f"RX:\t\t{result.get('rx_max_pending')}\nTX:\t\t{result.get('tx_max_pending')}")
            print("Current hardware settings:")
            print(f"RX:\t\t{result.get('rx_pending')}\nTX:\t\t{result.get('tx_pending')}")
        elif op == "get_coalesce":
            print(f"Coalesce parameters for {dev}:")
            for k, v in result.items():
                print(f"{k.replace('_', '-')}: {v}")
        else:
            print(f"Settings for {dev}:\n\tLink detected: {'yes' if result else 'no'}")
        return 0
    if args.json:
        emit_json(result)
    return 0


def finish_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """-G and -C take the NAME VALUE pairs; any other mode takes none (a usage error)."""
    if args.set_ring or args.set_coalesce:
        args.set_ring = args.params if args.set_ring else None
        args.set_coalesce = args.params if args.set_coalesce else None
    else:
        args.set_ring = args.set_coalesce = None
        if args.params:
            parser.error(f"ethtool: unexpected arguments {' '.join(args.params)}")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``ethtool`` command and its arguments."""
    et = sub.add_parser("ethtool", parents=[common], help="driver info, statistics, rings, coalescing")
    mode = et.add_mutually_exclusive_group()
    mode.add_argument("-i", dest="mode", action="store_const", const="i", help="driver information")
    mode.add_argument("-S", dest="mode", action="store_const", const="S", help="NIC statistics")
    mode.add_argument("-g", dest="mode", action="store_const", const="g", help="ring sizes")
    mode.add_argument("-c", dest="mode", action="store_const", const="c", help="interrupt coalescing")
    mode.add_argument("-G", dest="set_ring", action="store_true", help="set ring sizes: rx N tx N")
    mode.add_argument("-C", dest="set_coalesce", action="store_true", help="set coalescing: rx-usecs N rx-frames N")
    et.add_argument("devname", metavar="DEVNAME")
    et.add_argument("params", nargs="*", help="NAME VALUE pairs for -G / -C")
    et.set_defaults(func=cmd_ethtool, post_parse=finish_args, mode=None)
