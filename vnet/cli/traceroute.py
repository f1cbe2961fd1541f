"""``vnet traceroute``: the path to a host, hop by hop, like traceroute(8); and ``vnet sysctl``
for the node's net.ipv4.ip_forward (the switch that makes a node a router)."""

from __future__ import annotations

import argparse

from vnet.cli.common import CliError, emit_json, node_call

IP_FORWARD = "net.ipv4.ip_forward"


def trace_lines(dst: str, result: dict, max_hops: int) -> list[str]:
    """traceroute -n's output for a ``traceroute`` result."""
    lines = [f"traceroute to {dst} ({dst}), {max_hops} hops max, 28 byte packets"]
    for hop in result["hops"]:
        line = f"{hop['ttl']:2d} "
        last = None
        for p in hop.get("probes") or [hop]:
            if p["ip"] is None:
                line += " *"
                continue
            if p["ip"] != last:
                line += f" {p['ip']}"
                last = p["ip"]
            line += f"  {p['rtt_ms']:.3f} ms"
            if p.get("note"):
                line += f" {p['note']}"
        lines.append(line)
    return lines


def cmd_traceroute(args: argparse.Namespace) -> int:
    if args.max_hops < 1 or args.max_hops > 255:
        raise CliError("traceroute: -m takes 1..255 hops")
    if args.queries < 1 or args.queries > 10:
        raise CliError("traceroute: -q takes 1..10 probes per hop")
    if args.wait < 0:
        raise CliError("traceroute: -w takes a wait of 0 seconds or more")
    wait = args.max_hops * args.queries * args.wait + args.timeout
    result = node_call(args, "traceroute", wait=wait, dst=args.dst, max_hops=args.max_hops,
                       timeout=args.wait, probes=args.queries, port=args.port)
    if args.json:
        emit_json(result)
    else:
        print("\n".join(trace_lines(args.dst, result, args.max_hops)))
    return 0 if result["reached"] else 1


def cmd_sysctl(args: argparse.Namespace) -> int:
    name, eq, value = args.setting.partition("=")
    if name != IP_FORWARD:
        raise CliError(f"sysctl: only {IP_FORWARD} is a node setting here")
    if eq and value not in ("0", "1"):
        raise CliError(f"sysctl: {IP_FORWARD} takes 0 or 1")
    out = node_call(args, "forwarding_set", on=(value == "1") if eq else None)
    if args.json:
        emit_json(out)
    else:
        print(f"{IP_FORWARD} = {int(out['forwarding'])}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``traceroute`` and ``sysctl`` commands."""
    tr = sub.add_parser("traceroute", parents=[common], help="the routers on the way to a host (like traceroute -n)")
    tr.add_argument("dst", help="destination IPv4 address")
    tr.add_argument("-m", dest="max_hops", type=int, default=30, help="the largest TTL (default 30)")
    tr.add_argument("-w", dest="wait", type=float, default=1.0, help="seconds to wait for each answer (default 1)")
    tr.add_argument("-q", dest="queries", type=int, default=1, help="probes per hop (default 1)")
    tr.add_argument("-p", dest="port", type=int, default=33434, help="the first destination port (default 33434)")
    tr.set_defaults(func=cmd_traceroute)
    sc = sub.add_parser("sysctl", parents=[common], help=f"read or set {IP_FORWARD} (like sysctl -w)")
    sc.add_argument("-w", dest="write", action="store_true", help="write (as sysctl -w; NAME=VALUE also writes)")
    sc.add_argument("setting", help=f"{IP_FORWARD} or {IP_FORWARD}=0|1")
    sc.set_defaults(func=cmd_sysctl)
