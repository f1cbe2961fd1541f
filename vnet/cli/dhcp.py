"""``vnet dhcp``: a node's DHCP client state and, on a DHCP server, its leases."""

from __future__ import annotations

import argparse

from vnet.cli.common import emit_json, node_call


def cmd_dhcp(args: argparse.Namespace) -> int:
    info = node_call(args, "dhcp_show")
    if args.json:
        emit_json(info)
        return 0
    client, server = info["client"], info["server"]
    if client is None and server is None:
        print("this node neither asks for nor serves DHCP")
    if client is not None:
        left = client.get("lease_remaining")
        print(f"client: {client['state']} address {client.get('address') or '-'} from {client.get('server') or '-'}"
              + (f", lease {left:.0f} s left" if left is not None else ""))
    if server is not None:
        print(f"server: {len(server)} lease(s)")
        for lease in server:
            left = lease.get("remaining")
            print(f"  {lease['ip']:<15} {lease['state']:<8} {lease.get('hostname') or lease['client_id']}"
                  + (f"  {left:.0f} s" if left is not None else ""))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``dhcp`` command."""
    dhcp = sub.add_parser("dhcp", parents=[common], help="the node's DHCP client state and, on a server, its leases")
    dhcp.set_defaults(func=cmd_dhcp)
