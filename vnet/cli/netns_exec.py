"""``vnet --node NAME exec -- CMD [ARGS...]``: run a program in a kernel-stack node's network
namespace (as `ip netns exec`), exiting with its status."""

from __future__ import annotations

import argparse
import os
import shutil

from vnet.cli.common import CliError, node_call


def cmd_exec(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise CliError("exec: give the program to run after --, e.g. vnet --node node1 exec -- ping -c 1 10.0.0.2")
    health = node_call(args, "health")
    name = health.get("name", "?")
    if health.get("stack") != "kernel":
        raise CliError(f"exec: node {name} runs vnet's own stack, which has no kernel interface for a program "
                       f"to use; start it with --stack kernel, or use vnet's tools (vnet --node {name} ping ...)")
    netns = health.get("netns")
    if netns:
        if shutil.which("ip") is None:
            raise CliError("exec: needs iproute2's `ip` (Debian: apt-get install iproute2)")
        full = ["ip", "netns", "exec", netns, *argv]
    else:  # the node's vnet0 is in the daemon's own namespace: a container's, which is ours
        full = argv
    try:
        os.execvp(full[0], full)  # replaces this process: its exit status is the program's
    except OSError as exc:
        raise CliError(f"exec: cannot run {argv[0]}: {exc.strerror}") from None
    return 127  # not reached


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``exec`` command."""
    ex = sub.add_parser("exec", parents=[common], help="run a program in a kernel-stack node's namespace",
                        description="Run CMD in the node's network namespace (vnet --node NAME exec -- CMD ARGS); "
                                    "exits with CMD's status.")
    ex.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    ex.set_defaults(func=cmd_exec)
