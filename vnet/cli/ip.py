"""``vnet ip``: links (and 802.1Q sub-interfaces), addresses, neighbours and routes, like iproute2."""

from __future__ import annotations

import argparse
from typing import Any

from vnet.cli.common import CliError, emit_json, node_call


def _link_lines(link: dict, stats: bool) -> list[str]:
    flags = ",".join(link["flags"])
    state = link["operstate"].upper()
    name = f"{link['name']}@{link['link']}" if link.get("link") else link["name"]
    lines = [
        f"{link['ifindex']}: {name}: <{flags}> mtu {link['mtu']} qdisc {link['qdisc']} "
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
        if action == "add":
            return _ip_link_add(args)
        if action in ("del", "delete"):
            words = [w for w in args.rest if w != "dev"]
            if len(words) != 1:
                raise CliError("usage: vnet ip link del NAME")
            out = node_call(args, "link_del", name=words[0])
            if args.json:
                emit_json(out)
            return 0
        raise CliError(f"ip link {action}: use show, set, add or del")
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
            dev = args.rest[-1] if len(args.rest) >= 2 and args.rest[-2] == "dev" else args.dev
            info = node_call(args, cmd, cidr=cidr, dev=dev)
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
    if obj in ("route", "r", "ro"):
        return _ip_route(args)
    raise CliError(f"ip {obj}: use link, addr, neigh or route")


def route_line(r: dict) -> str:
    """A route as `ip route` prints it."""
    line = r["dst"]
    if r.get("via"):
        line += f" via {r['via']}"
    line += f" dev {r['dev']}"
    if r.get("proto") not in (None, "boot"):
        line += f" proto {r['proto']}"
    if r.get("scope") == "link":
        line += " scope link"
    if r.get("src"):
        line += f" src {r['src']}"
    if r.get("metric"):
        line += f" metric {r['metric']}"
    return line


def _route_words(words: list[str], usage: str) -> tuple[str, dict[str, Any]]:
    if not words:
        raise CliError(f"usage: vnet {usage}")
    dst, words = words[0], words[1:]
    opts: dict[str, Any] = {}
    while words:
        w = words.pop(0)
        if w not in ("via", "dev", "metric") or not words:
            raise CliError(f"ip route: unexpected {w!r}; usage: vnet {usage}")
        value = words.pop(0)
        if w == "metric":
            try:
                opts["metric"] = int(value)
            except ValueError:
                raise CliError(f"ip route: metric {value!r} is not a number") from None
        else:
            opts[w] = value
    return dst, opts


def _ip_route(args: argparse.Namespace) -> int:
    action = args.action
    if action in (None, "show", "list"):
        routes = node_call(args, "route_show")
        if args.json:
            emit_json(routes)
        else:
            for r in routes:
                print(route_line(r))
        return 0
    if action == "add":
        dst, opts = _route_words(list(args.rest), "ip route add CIDR|default via GW [dev DEV] [metric N]")
        out = node_call(args, "route_add", dst=dst, **opts)
    elif action in ("del", "delete"):
        dst, opts = _route_words(list(args.rest), "ip route del CIDR|default [via GW] [dev DEV]")
        opts.pop("metric", None)
        out = node_call(args, "route_del", dst=dst, **opts)
    elif action == "get":
        dst, _ = _route_words(list(args.rest)[:1], "ip route get IP")
        out = node_call(args, "route_get", dst=dst)
        if not args.json:
            print(f"{out['dst']} {'via ' + out['via'] + ' ' if out.get('via') else ''}dev {out['dev']} "
                  f"src {out['src']}")
            return 0
    else:
        raise CliError(f"ip route {action}: use show, add, del or get")
    if args.json:
        emit_json(out)
    return 0


def _ip_link_add(args: argparse.Namespace) -> int:
    """`ip link add link vnet0 name vnet0.10 type vlan id 10`."""
    usage = "usage: vnet ip link add link DEV name NAME type vlan id VID"
    words = list(args.rest)
    opts: dict[str, str] = {}
    while words:
        w = words.pop(0)
        if w not in ("link", "name", "type", "id") or not words:
            raise CliError(f"ip link add: unexpected {w!r}; {usage}")
        opts[w] = words.pop(0)
    if opts.get("type") != "vlan" or not {"link", "name", "id"} <= set(opts):
        raise CliError(f"ip link add: only VLAN sub-interfaces (type vlan); {usage}")
    try:
        vid = int(opts["id"])
    except ValueError:
        raise CliError(f"ip link add: id {opts['id']!r} is not a number (1..4094)") from None
    link = node_call(args, "link_add", link=opts["link"], name=opts["name"], vlan=vid)
    if args.json:
        emit_json(link)
    return 0


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
    ip = sub.add_parser("ip", parents=[common], help="links, addresses, neighbours and routes (like iproute2)")
    ip.add_argument("-s", "-stats", "--stats", dest="stats", action="store_true", help="show statistics")
    ip.add_argument("object", choices=["link", "l", "addr", "address", "a", "neigh", "neighbour", "neighbor", "n",
                                       "route", "r", "ro"])
    ip.add_argument("action", nargs="?", help="show | set | add | del | flush | get")
    ip.add_argument("rest", nargs="*", help="arguments of the action")
    ip.set_defaults(func=cmd_ip, dev="vnet0")
