"""``vnet ip``: links, addresses and neighbours, like iproute2."""

from __future__ import annotations

import argparse
from typing import Any

from vnet.cli.common import CliError, emit_json, node_call


def _link_lines(link: dict, stats: bool) -> list[str]:
    flags = ",".join(link["flags"])
    state = link["operstate"].upper()
    lines = [
        f"{link['ifindex']}: {link['name']}: <{flags}> mtu {link['mtu']} qdisc {link['qdisc']} "
        f"state {state} mode DEFAULT qlen {link['txqueuelen']}",
        f"    link/ether {link['address']} brd {link['broadcast']}"
        + (f" promiscuity {link['promiscuity']}" if link["promiscuity"] else ""),
    ]
    if stats:
        s = link["stats64"]
        lines += [
            "    RX:  bytes packets errors dropped  missed   mcast",
            f"    {s['rx_bytes']:>10} {s['rx_packets']:>7} {s['rx_errors']:>6} {s['rx_dropped']:>7} "
            f"{s['rx_missed_errors']:>7} {s['multicast']:>7}",
            "    TX:  bytes packets errors dropped carrier collsns",
            f"    {s['tx_bytes']:>10} {s['tx_packets']:>7} {s['tx_errors']:>6} {s['tx_dropped']:>7} "
            f"{s['tx_carrier_errors']:>7} {s['collisions']:>7}",
        ]
    return lines


def cmd_ip(args: argparse.Namespace) -> int:
    obj, action = args.object, args.action
    if obj in ("link", "l"):
        if action in (None, "show", "list"):
            links = node_call(args, "link_show")
            if args.json:
                emit_json(links)
            else:
                for link in links:
                    print("\n".join(_link_lines(link, args.stats)))
            return 0
        if action == "set":
            return _ip_link_set(args)
        raise CliError(f"ip link {action}: use show or set")
    if obj in ("addr", "address", "a"):
        if action in (None, "show", "list"):
            info = node_call(args, "addr_show")
            links = node_call(args, "link_show")
            if args.json:
                emit_json(info)
            else:
                for link in links:
                    print("\n".join(_link_lines(link, args.stats)))
                    for a in info["addresses"]:
                        if a.get("dev", link["name"]) != link["name"]:
                            continue
                        extra = "" if a["state"] == "ok" else f" {a['state']}"
                        print(f"    inet {a['address']}/{a['prefixlen']} brd {a.get('broadcast', '')} scope global{extra} {link['name']}")
                for c in info["conflicts"]:
                    print(f"    address conflict: {c['address']} is in use by {c['mac']}")
            return 0
        if action in ("add", "del", "delete"):
            cidr = _one_arg(args.rest, f"ip addr {action} A.B.C.D/PREFIX [dev vnet0]")
            cmd = "addr_add" if action == "add" else "addr_del"
            info = node_call(args, cmd, cidr=cidr, dev=args.dev)
            if args.json:
                emit_json(info)
            return 0
        raise CliError(f"ip addr {action}: use show, add or del")
    if obj in ("neigh", "neighbour", "neighbor", "n"):
        if action in (None, "show", "list"):
            entries = node_call(args, "neigh_show")
            if args.json:
                emit_json(entries)
            else:
                for e in entries:
                    ll = f" lladdr {e['mac']}" if e.get("mac") else ""
                    print(f"{e['ip']} dev {e.get('dev', 'vnet0')}{ll} {e['state']}")
            return 0
        if action == "flush":
            n = node_call(args, "neigh_flush")
            if args.json:
                emit_json({"flushed": n})
            else:
                print(f"*** Round 1, deleting {n} entries ***\n*** Flush is complete after 1 round ***")
            return 0
        raise CliError(f"ip neigh {action}: use show or flush")
    raise CliError(f"ip {obj}: use link, addr or neigh")


def _one_arg(rest: list[str], usage: str) -> str:
    rest = [r for r in rest if r]
    if len(rest) >= 2 and rest[-2] == "dev":
        rest = rest[:-2]
    if len(rest) != 1:
        raise CliError(f"usage: vnet {usage}")
    return rest[0]


def _ip_link_set(args: argparse.Namespace) -> int:
    words = list(args.rest)
    if words and words[0] == "dev":
        words.pop(0)
    if not words:
        raise CliError("usage: vnet ip link set vnet0 up|down|mtu N|address MAC|promisc on|off")
    dev, words = words[0], words[1:]
    change: dict[str, Any] = {}
    while words:
        w = words.pop(0)
        if w in ("up", "down"):
            change["state"] = w
        elif w in ("mtu", "address", "promisc"):
            if not words:
                raise CliError(f"ip link set: {w} needs a value")
            value = words.pop(0)
            if w == "mtu":
                try:
                    change["mtu"] = int(value)
                except ValueError:
                    raise CliError(f"ip link set: mtu {value!r} is not a number") from None
            elif w == "address":
                change["address"] = value
            else:
                if value not in ("on", "off"):
                    raise CliError("ip link set: promisc takes on or off")
                change["promisc"] = value == "on"
        else:
            raise CliError(f"ip link set: unknown word {w!r} (up, down, mtu N, address MAC, promisc on|off)")
    if not change:
        raise CliError("ip link set: nothing to change")
    link = node_call(args, "link_set", dev=dev, **change)
    if args.json:
        emit_json(link)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``ip`` command and its arguments."""
    ip = sub.add_parser("ip", parents=[common], help="links, addresses and neighbours (like iproute2)")
    ip.add_argument("-s", "-stats", "--stats", dest="stats", action="store_true", help="show statistics")
    ip.add_argument("object", choices=["link", "l", "addr", "address", "a", "neigh", "neighbour", "neighbor", "n"])
    ip.add_argument("action", nargs="?", help="show | set | add | del | flush")
    ip.add_argument("rest", nargs="*", help="arguments of the action")
    ip.set_defaults(func=cmd_ip, dev="vnet0")
