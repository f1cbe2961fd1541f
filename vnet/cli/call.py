"""``vnet health`` and ``vnet call``: is a node (or the switch) healthy, and any control request
to it, JSON in and out."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from vnet.proto.control import ControlClient, ControlError
from vnet.cli.common import CliError, curve_client, node_call, node_endpoint, switch_client, switch_endpoint


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when healthy, 1 when not, with one line saying why (the image's HEALTHCHECK).

    A node is healthy when it has carrier (attached to the switch) and at least one address,
    every one past duplicate address detection; the switch when its control endpoint answers.
    The role is the switch's with --switch or $VNET_ROLE=switch, else the node's.
    """
    role = "switch" if args.switch or os.environ.get("VNET_ROLE") == "switch" else "node"
    try:
        if role == "switch":
            with switch_client(args, timeout=min(args.timeout, 2.0)) as client:
                pong = client.call("ping")
            print(f"healthy: switch answers, {pong.get('ports')} ports")
            return 0
        with ControlClient(node_endpoint(args), timeout=min(args.timeout, 2.0)) as client:
            health = client.call("health")
    except (CliError, ControlError, TimeoutError) as exc:
        print(f"unhealthy: {exc}")
        return 1
    addrs = [f"{a['address']}/{a['prefixlen']} {a['state']}" for a in health["addresses"]]
    if not health["carrier"]:
        print(f"unhealthy: node {health['name']} has no carrier (switch attached: {health['attached']})")
        return 1
    if not addrs or any(not a.endswith(" ok") for a in addrs):
        print(f"unhealthy: node {health['name']} has carrier, addresses not ready: {', '.join(addrs) or 'none yet'}")
        return 1
    print(f"healthy: node {health['name']} carrier up, addresses {', '.join(addrs)}")
    return 0


def _untag(obj: Any) -> Any:
    """JSON in, with ``{"$bytes": HEX}`` standing for binary values."""
    if isinstance(obj, dict):
        if set(obj) == {"$bytes"}:
            return bytes.fromhex(obj["$bytes"])
        return {k: _untag(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_untag(v) for v in obj]
    return obj


def _tag(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return {"$bytes": bytes(obj).hex()}
    if isinstance(obj, dict):
        return {str(k): _tag(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tag(v) for v in obj]
    return obj


def _call_stream(args: argparse.Namespace) -> int:
    """``vnet call --stream``: the persistent control channel (vnet/ctlstream.py)."""
    import asyncio

    import zmq.asyncio

    from vnet.ctlstream import relay
    from vnet.proto.control import AsyncControlClient

    async def serve() -> int:
        ctx = zmq.asyncio.Context()
        try:
            curve = curve_client(args) if args.switch else None
            endpoint = switch_endpoint(args) if args.switch else node_endpoint(args)
            return await relay(AsyncControlClient(ctx, endpoint, curve=curve))
        finally:
            ctx.term()

    return asyncio.run(serve())


def cmd_call(args: argparse.Namespace) -> int:
    """Any control request. ``vnet call CMD '{"arg": 1}'`` prints the result as JSON (binary as
    ``{"$bytes": HEX}``); ``vnet call --stdio`` relays one msgpack request from stdin and writes
    the raw msgpack reply to stdout (how the Docker LAN fixture reaches a node in a container)."""
    import zmq

    if args.stream:
        return _call_stream(args)
    if args.stdio:
        request = sys.stdin.buffer.read()
        from vnet.proto.control import MAX_REPLY_BYTES

        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        try:
            if args.switch:
                curve = curve_client(args)
                if curve is not None:
                    curve.apply(sock)
            sock.connect(switch_endpoint(args) if args.switch else node_endpoint(args))
            sock.send_multipart([b"", request])
            wait = args.wait if args.wait is not None else args.timeout
            if not sock.poll(int(wait * 1000)):
                raise CliError(f"no answer from the {'switch' if args.switch else 'node'} within {wait:g} s")
            sys.stdout.buffer.write(sock.recv_multipart()[-1])
            sys.stdout.buffer.flush()
        finally:
            sock.close(linger=0)
        return 0
    if not args.cmd:
        raise CliError("call: give a command name (or --stdio)")
    try:
        params = _untag(json.loads(args.params)) if args.params else {}
    except json.JSONDecodeError as exc:
        raise CliError(f"call: arguments must be a JSON object: {exc}") from None
    if not isinstance(params, dict):
        raise CliError("call: arguments must be a JSON object")
    if args.switch:
        with switch_client(args, timeout=args.timeout) as client:
            result = client.call(args.cmd, wait=args.wait, **params)
    else:
        result = node_call(args, args.cmd, wait=args.wait, **params)
    print(json.dumps(_tag(result), indent=2))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``health`` and ``call`` commands and their arguments."""
    health = sub.add_parser("health", parents=[common], help="exit 0 if the local node (or --switch) is healthy")
    health.add_argument("--switch", action="store_true", help="check the switch instead of a node")
    health.add_argument("--switch-control", dest="switch_control", default=None, help="the switch's control endpoint")
    health.set_defaults(func=cmd_health)

    call = sub.add_parser("call", parents=[common], help="send any control request to a node (JSON in and out)")
    call.add_argument("cmd", nargs="?", metavar="CMD", help="e.g. neigh_show, stats, ping")
    call.add_argument("params", nargs="?", metavar="JSON", help='arguments, e.g. \'{"dst": "10.0.0.2"}\'')
    call.add_argument("--stdio", action="store_true", help="relay a msgpack request from stdin (for programs)")
    call.add_argument("--stream", action="store_true",
                      help="relay msgpack requests from stdin until it ends, concurrently (a persistent channel)")
    call.add_argument("--wait", type=float, default=None, help="seconds to wait for the answer")
    call.add_argument("--switch", action="store_true", help="ask the switch (its control endpoint) instead of a node")
    call.add_argument("--switch-control", dest="switch_control", default=None, help="the switch's control endpoint")
    call.set_defaults(func=cmd_call)
