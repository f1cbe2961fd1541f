"""``vnet compose [DIR] [--build]``: vnet's compose project, written out from the installed vnet
(vnet/compose/tree.py), and optionally its image built."""

from __future__ import annotations

import argparse
import os

from vnet.cli.common import CliError


def cmd_compose(args: argparse.Namespace) -> int:
    from vnet.compose.tree import TreeError, build_image, write_tree

    dest = os.path.abspath(args.dir)
    try:
        written = write_tree(dest, force=args.force)
        for path in written:
            print(f"wrote {os.path.relpath(path)}")
        if not written:
            print(f"{dest} already holds vnet's compose project")
        if args.build:
            build_image(dest)
    except TreeError as exc:
        raise CliError(str(exc)) from None
    here = "" if os.path.samefile(dest, os.getcwd()) else f"cd {os.path.relpath(dest)} && "
    if args.build:
        print(f"\nimage built; start the LAN:  {here}docker compose up -d     (Compose v1: docker-compose up -d)")
    else:
        print(f"\nnext:  {here}vnet compose --build .     (or, on a host with a registry: docker compose up -d --build)")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    cp = sub.add_parser("compose", parents=[common],
                        help="write vnet's docker-compose.yml and compose/ folder into DIR; --build the image")
    cp.add_argument("dir", nargs="?", default=".", metavar="DIR", help="where to write them (default: here)")
    cp.add_argument("--build", action="store_true",
                    help="then build the image: base image (offline if need be), wheelhouse, vnet:latest")
    cp.add_argument("--force", action="store_true", help="overwrite files that differ from vnet's")
    cp.set_defaults(func=cmd_compose)
