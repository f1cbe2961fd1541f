"""``vnet udp``: send one UDP datagram, or print those arriving on a port."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from vnet.proto.control import ControlClient
from vnet.cli.common import CliError, Parser, emit_json, jsonable, node_call, node_endpoint


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise CliError(f"udp: {text!r}: expected IP:PORT")
    try:
        p = int(port)
    except ValueError:
        raise CliError(f"udp: port {port!r} is not a number") from None
    if not 1 <= p <= 65535:
        raise CliError(f"udp: port {p} is out of range 1..65535")
    return host, p


def cmd_udp(args: argparse.Namespace) -> int:
    if args.udp_cmd == "send":
        host, port = _host_port(args.target)
        r = node_call(args, "udp_send", dst=host, port=port, data=args.data.encode(), sport=args.sport)
        if args.json:
            emit_json(r)
        else:
            print(f"sent {r['bytes']} bytes to {host}:{port} from port {r['sport']}")
        return 0
    if not 0 <= args.port <= 65535:
        raise CliError(f"udp listen: port {args.port} is out of range 0..65535 (0 picks a free one)")
    # SIGTERM (kill, a supervisor stopping us) unbinds the port as Ctrl-C does; after SIGKILL
    # the node releases it when its lease runs out (nobody renews it with udp_recv).
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ControlClient(node_endpoint(args), timeout=args.timeout) as client:
            port = None
            try:
                port = client.call("udp_bind", port=args.port)["port"]
                print(f"listening on udp port {port}", file=sys.stderr, flush=True)
                _listen(args, client, port)
            except KeyboardInterrupt:
                pass
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not skip the unbind
                if port is not None:
                    client.call("udp_unbind", port=port)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _listen(args: argparse.Namespace, client: ControlClient, port: int) -> None:
    got = 0
    while args.count is None or got < args.count:
        batch = client.call("udp_recv", wait=args.timeout + 1.0, port=port, timeout=1.0)
        for d in batch:
            got += 1
            if args.json:
                print(json.dumps(jsonable(d)), flush=True)
            else:
                print(f"{d['src']}:{d['sport']} -> {d['dst']}:{d['port']}: "
                      f"{d['data'].decode(errors='replace')}", flush=True)
            if args.count is not None and got >= args.count:
                break


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``udp`` command, its ``send`` and ``listen`` subcommands and their arguments."""
    udp = sub.add_parser("udp", parents=[common], help="send or receive UDP datagrams")
    usub = udp.add_subparsers(dest="udp_cmd", metavar="send|listen", required=True, parser_class=Parser)
    us = usub.add_parser("send", parents=[common], help="send one datagram")
    us.add_argument("target", metavar="IP:PORT")
    us.add_argument("data", metavar="DATA")
    us.add_argument("--sport", type=int, default=0, help="source port (default: an ephemeral one)")
    ul = usub.add_parser("listen", parents=[common], help="print datagrams arriving on a port")
    ul.add_argument("port", type=int, metavar="PORT", help="the port to bind (0 picks a free one)")
    ul.add_argument("-c", dest="count", type=int, default=None, help="exit after COUNT datagrams")
    udp.set_defaults(func=cmd_udp)
