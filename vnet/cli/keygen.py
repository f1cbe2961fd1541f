"""``vnet keygen``: the CURVE keys of a LAN."""

from __future__ import annotations

import argparse
import sys

from vnet.cli.common import CliError


def cmd_keygen(args: argparse.Namespace) -> int:
    """``vnet keygen DIR NODE...``: the LAN's CURVE keys (vnet/auth.py has the layout)."""
    from vnet.proto.auth import keygen

    try:
        written = keygen(args.dir, args.nodes)
    except (ValueError, OSError) as exc:
        raise CliError(f"keygen: {exc}") from None
    for path in written:
        print(path)
    d = args.dir
    print(f"# switch: --curve-secret {d}/switch.key_secret --curve-allowed {d}/allowed", file=sys.stderr)
    print(f"# node:   --curve-secret {d}/NODE.key_secret --curve-server-key {d}/switch.key", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``keygen`` command and its arguments."""
    kg = sub.add_parser("keygen", parents=[common], help="make CURVE keys for a LAN: the switch's pair, one per node, "
                                                      "and the allowed list")
    kg.add_argument("dir", metavar="DIR", help="where to write them (existing keys are kept)")
    kg.add_argument("nodes", nargs="*", metavar="NODE", help="node names (one key pair each)")
    kg.set_defaults(func=cmd_keygen)
