"""``vnet nodes``: run many nodes in one process (node/pack.py), from a JSON file."""

from __future__ import annotations

import argparse
import asyncio

from vnet.cli.common import CliError, setup_logging


def run_nodes(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    from vnet.node.pack import PackConfig, serve_pack

    try:
        config = PackConfig.load(args.config)
    except ValueError as exc:
        raise CliError(f"nodes: {exc}") from None
    return asyncio.run(serve_pack(config))


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``nodes`` command: a pack of node daemons sharing one process."""
    nd = sub.add_parser(
        "nodes", parents=[common], help="run many node daemons in one process (a pack), from a JSON file",
        description="Run many nodes in one process: each a whole node (its own vnet0, stack, counters and "
                    "control socket), sharing one event loop and one ZeroMQ context. FILE.json is "
                    '{"nodes": [{"name": "node1", "switch": "ipc://...", "addresses": ["10.0.0.1/24"]}, ...], '
                    '"start_concurrency": 32, "ready_timeout": 60, "metrics": "127.0.0.1:0"}, each node taking '
                    "`vnet node`'s settings by their NodeConfig names; metrics is the process's one Prometheus "
                    'endpoint for all its nodes (a "node" label each; "off": none). One `vnet-ready` line per '
                    "node once it is ready.")
    nd.add_argument("--config", required=True, metavar="FILE.json", help="the nodes to host")
    nd.add_argument("--log-level", default="info")
    nd.set_defaults(func=run_nodes)
