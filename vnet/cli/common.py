"""What every ``vnet`` tool shares: the user-facing error, the JSON output, the endpoints of
a node and of the switch and their clients, daemon logging, and the argument parsers."""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import logging
import os
import signal
import sys
from typing import Any, Awaitable, Callable

from vnet.proto.control import ControlClient, node_control_endpoint, runtime_dir, switch_control_endpoint


class CliError(Exception):
    """A user-facing error: printed as ``vnet: error: ...``, exit code 2."""


# -- output helpers ---------------------------------------------------------------------------


def emit_json(obj: Any) -> None:
    print(json.dumps(jsonable(obj), indent=2, sort_keys=False))


def jsonable(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        try:
            return obj.decode()
        except UnicodeDecodeError:
            return obj.hex()
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


# -- endpoints --------------------------------------------------------------------------------


def node_endpoint(args: argparse.Namespace) -> str:
    if getattr(args, "control", None):
        return args.control
    name = getattr(args, "node", None) or os.environ.get("VNET_NODE")
    if name:
        return node_control_endpoint(name)
    rdir = runtime_dir()
    sockets = sorted(glob.glob(os.path.join(rdir, "*.ctl")))
    if len(sockets) == 1:
        return "ipc://" + sockets[0]
    if not sockets:
        raise CliError(
            f"no node runs on this host (no control socket in {rdir}); start one with "
            "`vnet node` or `vnet lan up`, or name one with --node NAME / --control ENDPOINT"
        )
    names = ", ".join(os.path.basename(s)[:-4] for s in sockets)
    raise CliError(f"several nodes run here ({names}): choose one with --node NAME or $VNET_NODE")


def switch_endpoint(args: argparse.Namespace) -> str:
    """--switch-control, else $VNET_SWITCH_CONTROL, else the default: the ipc socket in the
    runtime directory (only this user can open it; docs/reliability.md)."""
    return (
        getattr(args, "switch_control", None)
        or os.environ.get("VNET_SWITCH_CONTROL")
        or switch_control_endpoint()
    )


def curve_client(args: argparse.Namespace) -> Any:
    """The CURVE keys for talking to a switch with CURVE on (--curve-secret and
    --curve-server-key, or $VNET_CURVE_SECRET and $VNET_CURVE_SERVER_KEY), or None."""
    from vnet.proto.auth import CurveClient

    secret = getattr(args, "curve_secret", None) or os.environ.get("VNET_CURVE_SECRET")
    server = getattr(args, "curve_server_key", None) or os.environ.get("VNET_CURVE_SERVER_KEY")
    if not secret and not server:
        return None
    if not secret or not server:
        raise CliError("CURVE needs both --curve-secret (your .key_secret) and --curve-server-key "
                       "(the switch's .key), or $VNET_CURVE_SECRET and $VNET_CURVE_SERVER_KEY")
    try:
        return CurveClient.from_files(secret, server)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def switch_client(args: argparse.Namespace, timeout: float) -> ControlClient:
    """A client of the switch's control endpoint, with CURVE when keys are given."""
    return ControlClient(switch_endpoint(args), timeout=timeout, curve=curve_client(args))


def node_call(args: argparse.Namespace, cmd: str, wait: float | None = None, **params: Any) -> Any:
    with ControlClient(node_endpoint(args), timeout=args.timeout) as client:
        return client.call(cmd, wait=wait, **params)


# -- daemons and argument parsing ---------------------------------------------------------------


def metrics_option(value: str) -> str | None:
    """``--metrics HOST:PORT`` checked (CliError saying what would do), ``off`` as None."""
    from vnet.proto.httpserve import parse_listen

    try:
        return None if parse_listen(value) is None else value
    except ValueError as exc:
        raise CliError(str(exc)) from None


def setup_logging(level: str) -> None:
    """Daemon logging on stderr; SIGUSR1 dumps every thread's Python stack there (a stuck
    daemon can be asked where it is: ``kill -USR1 PID``)."""
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)


class Parser(argparse.ArgumentParser):
    """No abbreviated long options: ``--curve`` (vnet lan) must not pass for ``--curve-secret``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


class IntermixedParser(Parser):
    """A subcommand parser that lets options and positionals mix, as tcpdump's command line
    does (``vnet switch mirror node2 -w f.pcap icmp``): plain argparse stops taking
    positionals at the first option."""

    _inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:  # parse_known_intermixed_args calls back in
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


async def run_until_stopped(target: Any, what: str, describe: Callable[[], Awaitable[None]], stop_hint: str) -> int:
    """``vnet lan up`` and ``vnet lab up``: start ``target`` (a Lan or a LabRunner: ``start``,
    ``wait_failure``, ``failure``, ``close``), ``describe()`` it, then run until SIGINT or
    SIGTERM (exit 0) or until it fails, a daemon dead past its restarts (exit 1); a start
    that fails exits 2. ``target`` is closed whatever happens."""
    from vnet.handles import LanError

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await target.start()
        except LanError as exc:
            print(f"vnet: error: {exc}", file=sys.stderr)
            return 2
        await describe()
        print(stop_hint, flush=True)
        waiters = {loop.create_task(stop.wait()), loop.create_task(target.wait_failure())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:  # the one still waiting is cancelled and awaited
            for task in waiters:
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if target.failure is not None:
            print(f"vnet: error: the {what} failed: {target.failure}; stopping it", file=sys.stderr, flush=True)
            return 1
        print(f"stopping the {what}", flush=True)
        return 0
    finally:
        await target.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
