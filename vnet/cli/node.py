"""``vnet node``: run a node daemon."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket

from vnet.proto.wire import DEFAULT_DATA_PORT
from vnet.cli.common import CliError, metrics_option, setup_logging
from vnet.proto.httpserve import DEFAULT_METRICS


def run_node(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    from vnet.node.daemon import serve

    return asyncio.run(serve(node_config(args)))


def node_config(args: argparse.Namespace):
    """The ``NodeConfig`` of ``vnet node``'s parsed options (CliError when a setting is bad)."""
    from vnet.node.config import NodeConfig, NicConfig, parse_route

    name = args.name or os.environ.get("VNET_NODE") or socket.gethostname()
    addresses = args.address or [a for a in os.environ.get("VNET_ADDRESS", "").split(",") if a]
    try:  # a NodeConfig checks itself when it is made
        nics = tuple(NicConfig.parse(spec) for spec in args.nic or ())
        routes = tuple(parse_route(r) for r in args.route or ())
        config = NodeConfig(
            name=name,
            switch=args.switch or os.environ.get("VNET_SWITCH") or f"tcp://127.0.0.1:{DEFAULT_DATA_PORT}",
            addresses=addresses, control=getattr(args, "control", None), mac=args.mac, mtu=args.mtu,
            tx_ring_size=args.tx_ring, rx_ring_size=args.rx_ring,
            heartbeat_interval=args.heartbeat_interval, heartbeat_timeout=args.heartbeat_timeout,
            dhcp=args.dhcp, dhcp_server=args.dhcp_server, lease_file=args.lease_file, lease_time=args.lease_time,
            curve_secret=getattr(args, "curve_secret", None) or os.environ.get("VNET_CURVE_SECRET"),
            curve_server_key=getattr(args, "curve_server_key", None) or os.environ.get("VNET_CURVE_SERVER_KEY"),
            stack=args.stack, netns=args.netns, metrics=metrics_option(args.metrics),
            nics=nics, gateway=args.gateway, routes=routes, forwarding=args.forwarding,
        )
    except ValueError as exc:
        raise CliError(f"node: {exc}") from None
    return config


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``node`` command and the daemon's options."""
    nd = sub.add_parser("node", parents=[common], help="run a node daemon")
    nd.add_argument("--name", default=None, help="node name (default $VNET_NODE, else the hostname)")
    nd.add_argument("--switch", default=None, help=f"switch data endpoint (default $VNET_SWITCH or tcp://127.0.0.1:{DEFAULT_DATA_PORT})")
    nd.add_argument("--address", action="append", help="an IPv4 address with prefix, e.g. 10.0.0.1/24 (repeatable; default $VNET_ADDRESS)")
    nd.add_argument("--mac", default=None, help="MAC address (default: derived from the name)")
    nd.add_argument("--mtu", type=int, default=1500)
    nd.add_argument("--tx-ring", type=int, default=256)
    nd.add_argument("--rx-ring", type=int, default=256)
    nd.add_argument("--heartbeat-interval", type=float, default=1.0)
    nd.add_argument("--heartbeat-timeout", type=float, default=3.0)
    nd.add_argument("--dhcp", action="store_true", help="get an address by DHCP from the LAN's DHCP server")
    nd.add_argument("--dhcp-server", metavar="FIRST-LAST", default=None,
                    help="serve DHCP from this node's (static) address, handing out FIRST..LAST")
    nd.add_argument("--lease-file", default=None, help="DHCP server: keep the leases in this JSON file")
    nd.add_argument("--lease-time", type=float, default=3600.0, help="DHCP server: lease time in seconds")
    nd.add_argument("--stack", choices=("vnet", "kernel"), default="vnet",
                    help="the stack on vnet0: vnet's own (default, no privileges) or the kernel's through a "
                         "TAP named vnet0 (root or CAP_NET_ADMIN, /dev/net/tun)")
    nd.add_argument("--netns", default=None, metavar="NAME",
                    help="kernel stack: put vnet0 in this network namespace (made if missing, and then "
                         "removed at exit); default: the daemon's own")
    nd.add_argument("--metrics", default=DEFAULT_METRICS, metavar="HOST:PORT",
                    help=f"serve Prometheus metrics on http://HOST:PORT/metrics (default {DEFAULT_METRICS}: "
                         "loopback, a free port, named in the ready line; 0.0.0.0:9100 for a container's "
                         "network; off: none)")
    nd.add_argument("--nic", action="append", metavar="switch=EP[,address=CIDR][,mac=MAC]",
                    help="one more NIC (vnet1, vnet2, ... in order), attached to switch EP as port NAME:vnetK; "
                         "address may repeat (repeatable)")
    nd.add_argument("--gateway", default=None, metavar="IP",
                    help="the default route's gateway (on-link: inside the network of an --address)")
    nd.add_argument("--route", action="append", metavar="CIDR=GW",
                    help="a static route, e.g. 10.0.2.0/24=10.0.1.1 (repeatable)")
    nd.add_argument("--forwarding", action="store_true",
                    help="forward IPv4 packets not addressed to this node (net.ipv4.ip_forward=1)")
    nd.add_argument("--log-level", default="info")
    nd.set_defaults(func=run_node)
