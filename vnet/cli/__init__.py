"""The ``vnet`` command: iproute2/ethtool/ping-like tools for a node, switch queries, the
daemons, and the embedded LAN.

Every tool is a client of a control endpoint (vnet/proto/control.py). A node is chosen with
``--node NAME`` or $VNET_NODE (its socket is in the runtime directory), or with
``--control ENDPOINT``; when exactly one node runs on this host (inside a node's container,
say) it is the default. ``--json`` prints the machine-readable result instead of the
human one. Exit codes: 0 success, 1 the thing asked for did not happen (ping with no
reply, a failed demo pair), 2 usage or request errors.

One module per command family (ip, ethtool, ping, traceroute (and sysctl), udp, inject, capture, dhcp, call, exec
(netns_exec), switch, node, nodes (a pack of nodes), keygen, lan, lab, top, web): each holds its command's behaviour and a ``register(sub, common)`` that
adds its subparser. ``common`` has what they share; this module assembles the parser and runs
the chosen command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from vnet.proto.control import ControlError
from vnet.cli import (
    call, capture, compose, dhcp, ethtool, inject, ip, keygen, lab, lan, netns_exec, node, nodes, ping, switch, top,
    traceroute, udp, web,
)
from vnet.cli.common import CliError, Parser

# The order of `vnet --help`'s command list.
FAMILIES = (ip, ethtool, ping, traceroute, udp, inject, capture, dhcp, call, netns_exec, switch, node, nodes, compose,
            keygen, lan, lab, top, web)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--node", default=argparse.SUPPRESS, help="the node to talk to (default: $VNET_NODE, "
                        "or the only node on this host)")
    common.add_argument("--control", default=argparse.SUPPRESS, help="a node's control endpoint, instead of --node")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help="seconds to wait for the control endpoint (default 5)")
    common.add_argument("--curve-secret", dest="curve_secret", metavar="FILE", default=argparse.SUPPRESS,
                        help="CURVE: this side's key pair, a .key_secret file from `vnet keygen` "
                             "(default $VNET_CURVE_SECRET)")
    common.add_argument("--curve-server-key", dest="curve_server_key", metavar="FILE", default=argparse.SUPPRESS,
                        help="CURVE: the switch's public key, its .key file (default $VNET_CURVE_SERVER_KEY)")

    p = Parser(prog="vnet", parents=[common], description="A virtual Ethernet LAN for containers and processes.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for family in FAMILIES:
        family.register(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    post_parse = getattr(args, "post_parse", None)
    if post_parse is not None:
        post_parse(args, parser)
    for name, default in (("json", False), ("timeout", 5.0), ("node", None), ("control", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"vnet: error: {exc}", file=sys.stderr)
        return 2
    except ControlError as exc:
        print(f"vnet: error: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"vnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
