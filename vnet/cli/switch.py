"""``vnet switch``: run the switch daemon, or query and drive it (fdb, ports, stats, flush,
set-ageing, port, port-security, vlan, impair, mirror, stp)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from vnet.proto.wire import DEFAULT_CONTROL_PORT, DEFAULT_DATA_PORT
from vnet.cli.capture import add_capture_options, run_capture
from vnet.cli.common import (CliError, IntermixedParser, emit_json, metrics_option, setup_logging, switch_client,
                             switch_endpoint)
from vnet.proto.httpserve import DEFAULT_METRICS


def cmd_switch(args: argparse.Namespace) -> int:
    if args.switch_cmd is None:
        return run_switch(args)
    if args.switch_cmd == "port":
        return _switch_port(args)
    if args.switch_cmd == "impair":
        return _switch_impair(args)
    if args.switch_cmd == "mirror":
        return _switch_mirror(args)
    if args.switch_cmd == "vlan":
        return _switch_vlan(args)
    if args.switch_cmd == "stp":
        return _switch_stp(args)
    params: dict[str, Any] = {}
    if args.switch_cmd == "flush" and args.arg:
        params["port"] = args.arg
    if args.switch_cmd == "set-ageing":
        if args.arg is None:
            raise CliError("usage: vnet switch set-ageing SECONDS")
        try:
            params["seconds"] = float(args.arg)
        except ValueError:
            raise CliError(f"switch set-ageing: {args.arg!r} is not a number of seconds") from None
    if args.switch_cmd == "fdb" and args.fdb_vlan is not None:
        params["vlan"] = args.fdb_vlan
    if args.switch_cmd == "port-security":
        params = {k: v for k, v in (("max_macs", args.set_max_macs), ("violation", args.set_violation)) if v is not None}
    cmd = {"set-ageing": "set_ageing", "port-security": "port_security"}.get(args.switch_cmd, args.switch_cmd)
    with switch_client(args, timeout=args.timeout) as client:
        result = client.call(cmd, **params)
    if args.json:
        emit_json(result)
        return 0
    if cmd == "fdb":
        for e in result:
            print(f"{e['mac']} dev {e['port']} vlan {e['vlan']} master vnet-switch age {e['age']:.1f}s")
    elif cmd == "ports":
        for p in result:
            c = p.get("counters", {})
            down = c.get("port_down", 0)
            psec = c.get("port_security", 0)
            vlan = f" vlan {_vlan_words(p['vlan'])}" if p.get("vlan") else ""
            stp_state = p.get("stp_state", "forwarding")
            print(f"port {p['port_id']}: {p['name']} state {p.get('admin', 'up').upper()} "
                  f"{'' if stp_state == 'forwarding' else f'stp {stp_state} '}"
                  f"{'trunk ' if p.get('bridge') else ''}"
                  f"macs {','.join(p['macs'])} mtu {p['mtu']} rx {c.get('rx_packets', 0)} tx {c.get('tx_packets', 0)}"
                  f"{f' port_down {down}' if down else ''}"
                  f"{f' port_security {psec}' if psec else ''}"
                  f"{vlan}"
                  f"{'  impaired' if p.get('impaired') else ''}{'  mirrored' if p.get('mirrors') else ''}")
    elif cmd == "stats":
        _print_tree(result)
    elif cmd == "flush":
        print(f"flushed {result} entries")
    elif cmd == "port_security":
        limit = result["max_macs"] or "unlimited"
        print(f"max-macs {limit} violation {result['violation']}")
    else:
        print(result)
    return 0


def _switch_port(args: argparse.Namespace) -> int:
    """``vnet switch port NODE down|up``: cut or restore a node's cable at the switch."""
    with switch_client(args, timeout=args.timeout) as client:
        result = client.call("port_set", port=args.port, up=args.state == "up")
    if args.json:
        emit_json(result)
    else:
        print(f"port {result['name']}: admin {result['admin']}"
              f"{'' if result['attached'] else ' (not attached: applies when it attaches)'}")
    return 0


def _vlan_words(row: dict) -> str:
    """A ``vlan_show`` row as the ``--vlan`` spec's words: ``access 10``, ``trunk 10,20 native 10``."""
    from vnet.switch.vlan import format_vids

    if row["mode"] == "access":
        return f"access {row['vlan']}"
    text = f"trunk {format_vids(row['allowed'])}"
    if row.get("native") is not None:
        text += f" native {row['native']}{' tagged' if row.get('native_tagged') else ''}"
    return text


def _switch_vlan(args: argparse.Namespace) -> int:
    """``vnet switch vlan``: the ports' VLAN table; ``vnet switch vlan PORT access VID``,
    ``... PORT trunk VIDS [--native N] [--native-tagged]``, ``... PORT clear`` (as ``bridge vlan``
    and ``ovs-vsctl set port PORT tag=... trunks=...``)."""
    from vnet.switch.vlan import parse_vids

    words = args.vlan_args
    if not words:
        if args.native is not None or args.native_tagged:
            raise CliError("switch vlan: --native and --native-tagged go with PORT trunk VIDS")
        with switch_client(args, timeout=args.timeout) as client:
            rows = client.call("vlan_show")
        if args.json:
            emit_json(rows)
            return 0
        print(f"{'port':<20} {'mode':<7} {'vlans':<20} {'native':<14} attached")
        for r in rows:
            vids = str(r["vlan"]) if r["mode"] == "access" else _vlan_words(r).split()[1]
            native = "-" if r.get("native") is None else f"{r['native']}{' tagged' if r['native_tagged'] else ''}"
            print(f"{r['port']:<20} {r['mode']:<7} {vids:<20} {native:<14} {'yes' if r['attached'] else 'no'}")
        return 0
    usage = "usage: vnet switch vlan [PORT access VID | PORT trunk VIDS [--native N] [--native-tagged] | PORT clear]"
    port, mode, rest = words[0], (words[1] if len(words) > 1 else None), words[2:]
    params: dict[str, Any] = {"port": port}
    try:
        if mode == "clear" and not rest:
            cmd = "vlan_clear"
        elif mode == "access" and len(rest) == 1:
            vids = parse_vids(rest[0])
            if len(vids) != 1:
                raise ValueError(f"an access port has one VLAN id, got {rest[0]!r}")
            cmd, params["mode"], params["vlan"] = "vlan_set", "access", vids[0]
        elif mode == "trunk" and len(rest) == 1:
            cmd, params["mode"], params["allowed"] = "vlan_set", "trunk", parse_vids(rest[0])
            params["native"] = args.native
            params["native_tagged"] = args.native_tagged
        else:
            raise CliError(usage)
    except ValueError as exc:
        raise CliError(f"switch vlan {port}: {exc}") from None
    if mode != "trunk" and (args.native is not None or args.native_tagged):
        raise CliError("switch vlan: --native and --native-tagged go with PORT trunk VIDS")
    with switch_client(args, timeout=args.timeout) as client:
        row = client.call(cmd, **params)
    if args.json:
        emit_json(row)
        return 0
    what = "vlan-transparent" if row["mode"] is None else f"vlan {_vlan_words(row)}"
    note = "" if row["attached"] else " (not attached: applies when it attaches)"
    flushed = f", {row['flushed']} fdb entries flushed" if row["flushed"] else ""
    print(f"port {row['port']}: {what}{note}{flushed}")
    return 0


def _vlan_options(specs: list[str] | None) -> dict[str, Any]:
    """``--vlan PORT=SPEC`` options -> SwitchConfig.vlans (CliError for a bad or repeated one)."""
    from vnet.switch.vlan import parse_port_spec

    vlans: dict[str, Any] = {}
    for text in specs or ():
        try:
            port, cfg = parse_port_spec(text)
        except ValueError as exc:
            raise CliError(f"switch: {exc}") from None
        if port in vlans:
            raise CliError(f"switch: --vlan {port}=... given twice; give each port one VLAN spec")
        vlans[port] = cfg
    return vlans


IMPAIR_OPTIONS = ("loss", "loss_burst", "delay", "jitter", "rate", "queue", "duplicate", "corrupt", "reorder", "seed")


def _switch_impair(args: argparse.Namespace) -> int:
    """``vnet switch impair PORT [--dir in|out|both] [--loss 10%] ... | --clear``; with no
    setting, show the current ones and the counters. Values are parsed by the switch
    (switch/impair.py), which answers a clear error for a bad one."""
    params = {name: getattr(args, name) for name in IMPAIR_OPTIONS if getattr(args, name) is not None}
    with switch_client(args, timeout=args.timeout) as client:
        if params or args.clear:
            result = client.call("impair", port=args.port, dir=args.dir, clear=args.clear, **params)
        else:
            result = client.call("impair", port=args.port)
    if args.json:
        emit_json(result)
        return 0
    print(f"port {result['port']}")
    for direction, what in (("in", "from the node"), ("out", "to the node")):
        d = result[direction]
        print(f"  {direction:<3} ({what}): {d['describe']}")
        counters = " ".join(f"{k} {v}" for k, v in d["counters"].items() if v or k == "frames")
        print(f"      {counters} held {d['held']}")
    return 0


def _switch_mirror(args: argparse.Namespace) -> int:
    """``vnet switch mirror PORT [-w FILE.pcap] [-c N] [FILTER]``: what crosses a switch port,
    both directions ("in": from the node, "out": to it), as ``vnet capture`` shows a node's."""
    if not args.port:
        raise CliError("usage: vnet switch mirror PORT [-w FILE.pcap] [-c N] [FILTER]")
    return run_capture(args, lambda: switch_client(args, timeout=args.timeout), f"mirror of switch port {args.port}",
                       "mirror_start", "mirror_read", "mirror_stop", port=args.port)

def _switch_stp(args: argparse.Namespace) -> int:
    """``vnet switch stp``: the spanning tree, as ``mstpctl showport`` / ``bridge link`` show it."""
    with switch_client(args, timeout=args.timeout) as client:
        r = client.call("stp_show")
    if args.json:
        emit_json(r)
        return 0
    print(f"switch {r['name']} bridge id {r['bridge_id']}")
    print(f"  root {r['root_id']}{' (this switch)' if r['is_root'] else ''} root port {r['root_port'] or '-'} "
          f"root path cost {r['root_path_cost']}")
    print(f"  hello {r['hello']:g}s max age {r['max_age']:g}s forward delay {r['forward_delay']:g}s "
          f"topology changes {r['topology_changes']}")
    for p in r["ports"]:
        c = p["counters"]
        link = f" link {p['trunk']['link']} to {p['trunk']['endpoint']}" if p.get("trunk") else ""
        print(f"  {p['port']:<16} {p['role']:<10} {p['state']:<10} cost {p['cost']:<6} "
              f"designated {p['designated_bridge']}{' edge' if p['edge'] else ''}"
              f" bpdu rx {c['bpdu_rx']} tx {c['bpdu_tx']}{link}")
    return 0


def _print_tree(obj: Any, indent: int = 0) -> None:
    pad = "  " * indent
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                print(f"{pad}{k}:")
                _print_tree(v, indent + 1)
            else:
                print(f"{pad}{k}: {v}")
    elif isinstance(obj, list):
        for v in obj:
            _print_tree(v, indent)
            print()
    else:
        print(f"{pad}{obj}")


def run_switch(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    from vnet.switch.server import SwitchConfig, serve
    from vnet.proto.control import print_final, print_ready

    try:
        config = SwitchConfig(
            name=args.name, trunks=list(args.trunk), stp_priority=args.stp_priority, stp_hello=args.stp_hello,
            stp_max_age=args.stp_max_age, stp_forward_delay=args.stp_forward_delay,
            bind=args.bind, control=switch_endpoint(args),
            ageing_time=args.ageing, heartbeat_interval=args.heartbeat_interval,
            heartbeat_timeout=args.heartbeat_timeout, mtu=args.mtu, fdb_max=args.fdb_max,
            port_hwm=args.port_hwm, max_macs=args.max_macs, violation=args.violation,
            max_ports=args.max_ports, hello_rate=args.hello_rate, port_queue_bytes=args.port_queue_bytes,
            curve_secret=getattr(args, "curve_secret", None) or os.environ.get("VNET_CURVE_SECRET"),
            curve_allowed=args.curve_allowed or os.environ.get("VNET_CURVE_ALLOWED"),
            vlans=_vlan_options(args.vlan_specs),
            metrics=metrics_option(args.metrics),
        )
    except ValueError as exc:
        raise CliError(f"switch: {exc}") from None
    ready = lambda server: print_ready({"switch": True, "name": server.config.name,  # noqa: E731
                                        "data": server.data_endpoint, "control": server.control_endpoint,
                                        "metrics": server.metrics_url})
    final = lambda server: print_final(server.final_stats, "switch")  # noqa: E731
    try:
        asyncio.run(serve(config, on_ready=ready, on_closed=final))
    except OSError as exc:  # an endpoint that cannot be bound: in use, bad address
        raise CliError(f"switch: {exc}") from None
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``switch`` command, its daemon options, its subcommands and their arguments."""
    sw = sub.add_parser("switch", parents=[common],
                        help="run the switch daemon, or query and drive it: fdb, ports, stats, flush, set-ageing, "
                             "port, impair, mirror")
    sw.add_argument("--switch-control", dest="switch_control", default=None,
                    help="the switch's control endpoint (default $VNET_SWITCH_CONTROL, else an ipc socket in the "
                         f"runtime directory that only this user can open; tcp://127.0.0.1:{DEFAULT_CONTROL_PORT} "
                         "lets every local user drive the switch)")
    sw.add_argument("--bind", default=f"tcp://127.0.0.1:{DEFAULT_DATA_PORT}",
                    help=f"daemon: data endpoint to bind (default tcp://127.0.0.1:{DEFAULT_DATA_PORT})")
    sw.add_argument("--ageing", type=float, default=300.0, help="daemon: FDB ageing time, s (0 = never)")
    sw.add_argument("--heartbeat-interval", type=float, default=1.0)
    sw.add_argument("--heartbeat-timeout", type=float, default=3.0)
    sw.add_argument("--mtu", type=int, default=1500)
    sw.add_argument("--fdb-max", type=int, default=8192, help="daemon: FDB size bound")
    sw.add_argument("--port-hwm", type=int, default=1000, help="daemon: per-port output queue, in messages")
    sw.add_argument("--port-queue-bytes", dest="port_queue_bytes", type=int, default=64 * 1024 * 1024,
                    help="daemon: per-port output queue, in bytes (default 64 MiB; at least 1 MiB)")
    sw.add_argument("--max-ports", dest="max_ports", type=int, default=4096,
                    help="daemon: ports attached at most; a HELLO for one more is refused (default 4096)")
    sw.add_argument("--hello-rate", dest="hello_rate", type=float, default=1000.0,
                    help="daemon: HELLOs a second from new nodes, after a burst of 1000; 0 = no limit")
    sw.add_argument("--max-macs", dest="max_macs", type=int, default=0,
                    help="daemon: port security, MAC addresses a port may hold (0 = unlimited)")
    sw.add_argument("--violation", choices=["drop", "shutdown"], default="drop",
                    help="daemon: a frame from one MAC too many is dropped, or also shuts the port down")
    sw.add_argument("--curve-allowed", dest="curve_allowed", metavar="DIR", default=None,
                    help="daemon: CURVE on, allowing the public keys (.key files) in DIR; with --curve-secret "
                         "(default $VNET_CURVE_ALLOWED)")
    sw.add_argument("--vlan", dest="vlan_specs", action="append", metavar="PORT=SPEC", default=None,
                    help="daemon: an 802.1Q port VLAN, PORT=access:VID or PORT=trunk:VIDS[:native=VID]"
                         "[:native-tagged] (VIDS like 10,20,30-40); repeatable; applies when the port attaches")
    sw.add_argument("--metrics", default=DEFAULT_METRICS, metavar="HOST:PORT",
                    help=f"daemon: serve Prometheus metrics on http://HOST:PORT/metrics (default {DEFAULT_METRICS}: "
                         "loopback, a free port, named in the ready line; 0.0.0.0:9100 for a container's network; "
                         "off: none)")
    sw.add_argument("--name", default="switch",
                    help="daemon: this switch's name (its spanning tree bridge MAC comes from it; default switch)")
    sw.add_argument("--trunk", action="append", default=[], metavar="PORT=ENDPOINT[,as=REMOTE_PORT]",
                    help="daemon: dial another switch's data endpoint; the link is port PORT here and REMOTE_PORT "
                         "(default: this switch's --name) there, and runs spanning tree (repeatable)")
    sw.add_argument("--stp-priority", dest="stp_priority", type=int, default=32768,
                    help="daemon: spanning tree bridge priority, a multiple of 4096 (lowest is root; default 32768)")
    sw.add_argument("--stp-hello", dest="stp_hello", type=float, default=2.0,
                    help="daemon: spanning tree hello time, s (default 2)")
    sw.add_argument("--stp-max-age", dest="stp_max_age", type=float, default=20.0,
                    help="daemon: spanning tree max age, s (default 20)")
    sw.add_argument("--stp-forward-delay", dest="stp_forward_delay", type=float, default=15.0,
                    help="daemon: spanning tree forward delay, s (default 15)")
    sw.add_argument("--log-level", default="info")
    sw.set_defaults(func=cmd_switch)
    swsub = sw.add_subparsers(dest="switch_cmd", parser_class=IntermixedParser,
                              metavar="fdb|ports|stats|flush [PORT]|set-ageing SECONDS|port|port-security|vlan|impair|mirror|stp")

    def switch_cmd(name: str, text: str) -> argparse.ArgumentParser:
        sp = swsub.add_parser(name, parents=[common], help=text, description=text)
        sp.add_argument("--switch-control", dest="switch_control", default=argparse.SUPPRESS,
                        help="the switch's control endpoint")
        return sp

    switch_cmd("fdb", "the MAC table, like `bridge fdb show`").add_argument(
        "--vlan", dest="fdb_vlan", type=int, default=None, metavar="VID", help="only this VLAN's entries")
    switch_cmd("ports", "attached ports, their admin state and counters")
    switch_cmd("stats", "switch counters: totals, per port, FDB")
    switch_cmd("stp", "spanning tree: bridge and root ids, each port's role and state")
    switch_cmd("flush", "flush the FDB, or one port's entries").add_argument("arg", nargs="?", metavar="PORT")
    switch_cmd("set-ageing", "set the FDB ageing time").add_argument("arg", nargs="?", metavar="SECONDS")
    sp = switch_cmd("port", "cut (down) or restore (up) a node's cable at the switch: its carrier follows")
    sp.add_argument("port", metavar="NODE")
    sp.add_argument("state", choices=["down", "up"])
    sp = switch_cmd("port-security", "show or set the MAC limit per port and what a violation does")
    sp.add_argument("--max-macs", dest="set_max_macs", type=int, default=None, metavar="N", help="0 = unlimited")
    sp.add_argument("--violation", dest="set_violation", choices=["drop", "shutdown"], default=None)
    sp = switch_cmd("vlan", "802.1Q port VLANs, like `bridge vlan`: show them; PORT access VID; "
                            "PORT trunk VIDS [--native N] [--native-tagged]; PORT clear")
    sp.add_argument("vlan_args", nargs="*", metavar="PORT access VID | PORT trunk VIDS | PORT clear")
    sp.add_argument("--native", type=int, default=None, metavar="VID",
                    help="trunk: the VLAN untagged frames join (sent untagged)")
    sp.add_argument("--native-tagged", dest="native_tagged", action="store_true",
                    help="trunk: send the native VLAN tagged too")
    sp = switch_cmd("impair", "impair a port (loss, delay, rate, ...) like netem; without settings, show them")
    sp.add_argument("port", metavar="PORT")
    sp.add_argument("--dir", choices=["in", "out", "both"], default="both",
                    help="in: frames from the node, out: frames to it (default both)")
    sp.add_argument("--loss", metavar="PCT", help="random loss, e.g. 10%%")
    sp.add_argument("--loss-burst", dest="loss_burst", metavar="P,R[,1-H[,1-K]]",
                    help="bursty loss, netem's gemodel: P good->bad, R bad->good, 1-H loss when bad "
                         "(100%%), 1-K loss when good (0%%), e.g. 1%%,30%%")
    sp.add_argument("--delay", metavar="TIME", help="delay, e.g. 20ms, 500us, 1s")
    sp.add_argument("--jitter", metavar="TIME", help="uniform jitter around the delay, e.g. 5ms")
    sp.add_argument("--rate", metavar="RATE", help="rate limit, e.g. 10mbit, 512kbit (0: unlimited)")
    sp.add_argument("--queue", metavar="FRAMES", help="frames held at most by rate/delay before tail drop (1000)")
    sp.add_argument("--duplicate", metavar="PCT", help="duplicate this share of frames, e.g. 1%%")
    sp.add_argument("--corrupt", metavar="PCT", help="flip one bit past the Ethernet header, e.g. 0.1%%")
    sp.add_argument("--reorder", metavar="PCT", help="with --delay, this share of frames skips the delay")
    sp.add_argument("--seed", metavar="N", help="seed the random choices (reproducible runs)")
    sp.add_argument("--clear", action="store_true", help="remove every impairment (before applying any given)")
    sp = switch_cmd("mirror", "record what crosses a switch port, both directions, like tcpdump")
    sp.add_argument("port", nargs="?", metavar="PORT")
    add_capture_options(sp)
