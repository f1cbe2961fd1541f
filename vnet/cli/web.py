"""``vnet web``: a live web view of a LAN (vnet/web/): its topology, rates, FDB, neighbours,
spanning tree, and buttons for cable cuts, impairments and captures.

The LAN is found as the other commands find it: the switch of ``vnet lan up`` (the default
switch control endpoint) and its nodes in the runtime directory; ``--switch-control EP``
(repeatable) names switches; ``--runtime-dir DIR`` shows the LAN or lab whose sockets are in
DIR (every ``NAME.sock`` a switch, every ``NAME.ctl`` a node), ``--lab NAME`` the one of the lab
``vnet lab up`` runs under that name; ``--docker PROJECT`` shows a
running Docker LAN, the compose project's switch and node containers (vnet/web/docker.py).

It listens on 127.0.0.1 by default. An address beyond loopback needs a token: ``--token T``,
or one is made and printed; every request must carry it.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import secrets
import signal

from vnet.cli.common import CliError, curve_client, switch_endpoint

DEFAULT_LISTEN = "127.0.0.1:8080"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT`` for IPv6) -> (host, port); CliError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise CliError(f"web: --listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CliError(f"web: --listen {text!r}: the port must be a number from 0 to 65535")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise CliError(f"web: --listen {text!r}: {host!r} is not an IPv6 address") from None
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def target_of(args: argparse.Namespace):
    """The LAN to show, from --docker, --runtime-dir, --switch-control, or the defaults; with
    CURVE keys (--curve-secret and --curve-server-key) for a CURVE LAN's switches."""
    import dataclasses

    target = _target(args)
    curve = curve_client(args)
    return dataclasses.replace(target, curve=curve) if curve is not None else target


def _target(args: argparse.Namespace):
    import os

    from vnet.proto.control import node_control_endpoint
    from vnet.web.poll import Target, ipc_path, node_endpoint_in, runtime_dir_target

    if args.web_lab:
        if args.web_runtime_dir or args.docker:
            raise CliError("web: --lab NAME is the runtime directory of `vnet lab up`: give it without --runtime-dir "
                           "or --docker")
        from vnet.cli.lab import lab_runtime_dir

        args.web_runtime_dir = lab_runtime_dir(args.web_lab)
        if not os.path.isdir(args.web_runtime_dir):
            raise CliError(f"web: no lab {args.web_lab!r} is running here ({args.web_runtime_dir} does not exist); "
                           f"start it with `vnet lab up FILE`")
    if args.docker:
        if args.web_switch_control or args.web_runtime_dir:
            raise CliError("web: --docker shows a compose project's containers: give it without --switch-control "
                           "and --runtime-dir")
        from vnet.web.docker import docker_target

        try:
            return docker_target(args.docker)
        except ValueError as exc:
            raise CliError(f"web: --docker {args.docker}: {exc}") from None
    controls = args.web_switch_control or []
    if args.web_runtime_dir and not controls:
        try:
            return runtime_dir_target(args.web_runtime_dir)
        except ValueError as exc:
            raise CliError(f"web: {exc}") from None
    if not controls:
        controls = [switch_endpoint(args)]
    switches = tuple((f"switch{i + 1}" if len(controls) > 1 else "switch", ep) for i, ep in enumerate(controls))
    for _, ep in switches:
        path = ipc_path(ep)
        if path is not None and not os.path.exists(path):
            raise CliError(f"web: no switch control socket {path}: start a LAN (vnet lan up) or name the switch "
                           "with --switch-control ENDPOINT, or a lab with --runtime-dir DIR")
    if args.web_runtime_dir:
        return Target(switches, node_endpoint_in(args.web_runtime_dir), label=", ".join(ep for _, ep in switches))

    def node_endpoint(name: str) -> str | None:
        ep = node_control_endpoint(name)
        path = ipc_path(ep)
        return ep if path is None or os.path.exists(path) else None

    return Target(switches, node_endpoint, label=", ".join(ep for _, ep in switches))


def cmd_web(args: argparse.Namespace) -> int:
    host, port = parse_listen(args.listen)
    token = args.token or ""
    if not token and not is_loopback(host):
        token = secrets.token_urlsafe(18)
        print(f"vnet web: {host} is not loopback, so every request needs a token; generated token: {token}",
              flush=True)
    target = target_of(args)
    return asyncio.run(serve(target, host, port, token))


async def serve(target, host: str, port: int, token: str) -> int:
    from aiohttp import web

    from vnet.web.app import make_app

    runner = web.AppRunner(make_app(target, token), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise CliError(f"web: cannot listen on {host}:{port}: {exc}") from None
        bound = site._server.sockets[0].getsockname()  # port 0: the one the kernel chose
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        url = f"http://{shown}:{bound[1]}/" + (f"?token={token}" if token else "")
        print(f"vnet web: {target.label}: open {url}", flush=True)
        print("Ctrl-C (or SIGTERM) stops it.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``web`` command and its arguments."""
    p = sub.add_parser("web", parents=[common], help="a live web view of a LAN: topology, rates, cable cuts, captures",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where to serve (default {DEFAULT_LISTEN}; port 0: any free port, printed); "
                        "beyond loopback a token is required")
    p.add_argument("--token", default=None, help="the token every request must carry (?token=T or header "
                   "X-Vnet-Token); made up and printed when listening beyond loopback without one")
    p.add_argument("--switch-control", dest="web_switch_control", action="append", metavar="ENDPOINT",
                   help="a switch's control endpoint (repeatable; default: the one `vnet lan up` uses)")
    p.add_argument("--runtime-dir", dest="web_runtime_dir", metavar="DIR",
                   help="a running LAN's or lab's runtime directory: its NAME.sock switches and NAME.ctl nodes")
    p.add_argument("--lab", dest="web_lab", metavar="NAME",
                   help="the lab `vnet lab up` runs under NAME (its runtime directory)")
    p.add_argument("--docker", metavar="PROJECT", help="a running Docker LAN: its compose project (docker compose -p PROJECT; "
                        "a lab's is vnet-lab-NAME)")
    p.set_defaults(func=cmd_web)
