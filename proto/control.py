"""The control protocol: msgpack requests and replies over ZeroMQ (the rtnetlink analogue).

The switch and every node serve a control endpoint; the ``vnet`` command, the embedded LAN
and the pytest fixtures are its clients. A request is one msgpack map
``{"cmd": NAME, "args": {...}}``; the reply is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": SENTENCE}``. The server is a ROUTER and answers each request from its
own task, so a long poll (``udp_recv`` with a timeout) does not hold up other clients.
Messages are ``[b"", payload]`` after the routing envelope, so REQ and DEALER clients both work.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from typing import Any, Awaitable, Callable, Mapping

import msgpack
import zmq
import zmq.asyncio

from vnet.proto.auth import CurveClient, CurveKeys, curve_server

log = logging.getLogger(__name__)

Handler = Callable[..., Any | Awaitable[Any]]


class ControlError(Exception):
    """A request the server refused, with the server's sentence as the message."""


def runtime_dir() -> str:
    """Where local control sockets live: $VNET_RUNTIME_DIR, else /tmp/vnet-UID (mode 0700)."""
    path = os.environ.get("VNET_RUNTIME_DIR") or f"/tmp/vnet-{os.getuid()}"
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def node_control_endpoint(name: str) -> str:
    """The default control endpoint of the node called ``name``: an ipc socket on this host."""
    return f"ipc://{runtime_dir()}/{name}.ctl"


READY_PREFIX = "vnet-ready "
FINAL_PREFIX = "vnet-final "


def print_ready(info: dict) -> None:
    """A daemon's readiness line on stdout: ``vnet-ready {json}`` with its endpoints.

    Whoever starts the daemon (the embedded LAN, a test) reads this line instead of guessing
    when the daemon is up.
    """
    import json

    print(READY_PREFIX + json.dumps(info), flush=True)


def print_final(info: dict, name: str) -> str:
    """A daemon's last line on stdout, after a clean shutdown: ``vnet-final {json}`` with its
    final counters (a switch's ``stats``), so whoever restarts it keeps the account whole.

    The counters outlive a stdout that is gone (closed, or a pipe whose reader died: the LAN
    that started the daemon was killed): the line then goes to stderr and to
    ``<runtime dir>/<name>.final.json`` (the JSON alone), and stdout is pointed at /dev/null so
    the interpreter's own flush at exit cannot fail either. Returns where the line went:
    "stdout", or the file's path."""
    import json
    import sys

    line = FINAL_PREFIX + json.dumps(info)
    out = sys.stdout
    if out is not None:
        try:
            print(line, file=out, flush=True)
            return "stdout"
        except (OSError, ValueError):  # BrokenPipeError, EBADF; ValueError: a closed file object
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, out.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
    path = os.path.join(runtime_dir(), f"{name}.final.json")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(info) + "\n")
    os.replace(tmp, path)
    try:
        print(f"{line}\n(stdout is gone: the final counters are also in {path})", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # no stderr either: the file has them
        pass
    return path


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


class ControlServer:
    """Serves ``handlers`` (name -> callable taking the request's args as keywords).

    A handler may be sync or async. ``ControlError``, ``ValueError``, ``TypeError`` and
    ``KeyError`` raised by a handler become error replies (the client's mistake); anything else
    is logged and answered as an internal error. ``requests`` and ``bad_requests`` count.
    The server owns its socket: ``close()`` cancels in-flight requests and closes it. With
    ``curve`` (the LAN key pair) it is a CURVE server: only keys the context's ZAP handler
    allows get through (vnet/auth.py).
    """

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, handlers: Mapping[str, Handler],
                 curve: "CurveKeys | None" = None) -> None:
        self.endpoint = endpoint
        self._handlers = dict(handlers)
        self._sock = ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve_server(self._sock, curve)
        try:
            if endpoint.startswith("ipc://"):
                path = endpoint[len("ipc://"):]
                if os.path.exists(path):
                    os.unlink(path)  # a stale socket file from a crashed daemon
            self._sock.bind(endpoint)
        except BaseException:  # zmq.ZMQError, or an OSError on the socket file's path
            self._sock.close(linger=0)  # an open socket would hang the context's term()
            raise
        if endpoint.startswith("ipc://"):
            os.chmod(endpoint[len("ipc://"):], 0o600)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._main: asyncio.Task | None = None  # _serve, owner of the answers' task group
        self.requests = 0
        self.bad_requests = 0

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._serve(), name=f"control {self.endpoint}")

    async def _serve(self) -> None:
        # Every request is answered from a task of its own, owned by this group: cancelling
        # the server task (close) cancels and awaits every answer still in flight.
        async with asyncio.TaskGroup() as answers:
            while True:
                parts = await self._sock.recv_multipart()
                answers.create_task(self._answer(parts))

    async def _answer(self, parts: list[bytes]) -> None:
        """Answer one request; never raises (one bad answer must not end the task group)."""
        self.requests += 1
        try:
            sep = parts.index(b"")
        except ValueError:
            sep = 0  # no envelope delimiter: answer on the identity alone
        envelope, body = parts[: sep + 1] if sep else parts[:1], parts[sep + 1 :]
        reply = await self._dispatch(body)
        try:
            payload = _pack(reply)
        except Exception as exc:  # a handler's result msgpack cannot carry: the server's fault
            log.error("control reply cannot be encoded: %s: %s", exc.__class__.__name__, exc)
            payload = _pack({"ok": False, "error": f"internal error: the reply cannot be encoded: {exc}"})
        try:
            await self._sock.send_multipart([*envelope, *([] if sep else [b""]), payload])
        except zmq.ZMQError as exc:
            log.debug("control reply not sent: %s", exc)

    async def _dispatch(self, body: list[bytes]) -> dict:
        try:
            if len(body) != 1:
                raise ControlError(f"a request is one msgpack part, got {len(body)} parts")
            try:
                req = msgpack.unpackb(body[0], raw=False)
            except Exception:
                raise ControlError("request is not msgpack") from None
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise ControlError('a request is a map {"cmd": NAME, "args": {...}}')
            args = req.get("args") or {}
            if not isinstance(args, dict):
                raise ControlError("request args must be a map")
            handler = self._handlers.get(req["cmd"])
            if handler is None:
                known = ", ".join(sorted(self._handlers))
                raise ControlError(f"unknown command {req['cmd']!r}; known: {known}")
            result = handler(**args)
            if inspect.isawaitable(result):
                result = await result
            return {"ok": True, "result": result}
        except (ControlError, ValueError, TypeError, KeyError) as exc:
            self.bad_requests += 1
            return {"ok": False, "error": str(exc) or exc.__class__.__name__}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("control request failed")
            return {"ok": False, "error": f"internal error: {exc.__class__.__name__}: {exc}"}

    async def close(self) -> None:
        if self._main is not None:
            self._main.cancel()  # its task group cancels and awaits the answers in flight
            await asyncio.gather(self._main, return_exceptions=True)
            self._main = None
        self._sock.close(linger=0)
        if self.endpoint.startswith("ipc://"):
            try:
                os.unlink(self.endpoint[len("ipc://"):])
            except OSError:
                pass


def decode_reply(raw: bytes) -> Any:
    """A reply's result, or ControlError with the server's sentence."""
    reply = msgpack.unpackb(raw, raw=False)
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ControlError("malformed reply from the control endpoint")
    if not reply["ok"]:
        raise ControlError(reply.get("error", "request failed"))
    return reply.get("result")


class ControlClient:
    """Blocking client for one control endpoint (the CLI's). Owns one DEALER socket."""

    def __init__(self, endpoint: str, timeout: float = 5.0, ctx: zmq.Context | None = None,
                 curve: "CurveClient | None" = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._sock = (ctx or zmq.Context.instance()).socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.curve = curve
        if curve is not None:
            curve.apply(self._sock)
        self._sock.connect(endpoint)

    def call(self, cmd: str, wait: float | None = None, **args: Any) -> Any:
        """Send ``cmd`` with ``args``; wait up to ``wait`` s (default: the client's timeout)."""
        self._sock.send_multipart([b"", _pack({"cmd": cmd, "args": args})])
        wait = self.timeout if wait is None else wait
        if not self._sock.poll(int(wait * 1000)):
            hint = "is it running, and is this key allowed?" if self.curve else "is it running?"
            raise TimeoutError(f"no answer from {self.endpoint} within {wait:g} s ({hint})")
        parts = self._sock.recv_multipart()
        return decode_reply(parts[-1])

    def close(self) -> None:
        self._sock.close(linger=0)

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncControlClient:
    """asyncio client for one control endpoint (the LAN fixtures'). Owns one DEALER socket.

    Requests may run concurrently: each carries a sequence number in its envelope.
    """

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, timeout: float = 5.0,
                 curve: "CurveClient | None" = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._sock = ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self._sock)
        self._sock.connect(endpoint)
        self._seq = 0
        self._waiting: dict[bytes, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None

    async def call(self, cmd: str, wait: float | None = None, **args: Any) -> Any:
        """Send ``cmd`` with ``args``; wait up to ``wait`` s (default: the client's timeout)."""
        return decode_reply(await self.call_raw(cmd, wait, **args))

    async def call_raw(self, cmd: str, wait: float | None = None, **args: Any) -> bytes:
        """``call``, returning the server's reply as it sent it (msgpack, undecoded)."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())
        self._seq += 1
        tag = self._seq.to_bytes(8, "big")
        fut = asyncio.get_running_loop().create_future()
        self._waiting[tag] = fut
        try:
            await self._sock.send_multipart([tag, b"", _pack({"cmd": cmd, "args": args})])
            wait = self.timeout if wait is None else wait
            try:
                raw = await asyncio.wait_for(fut, wait)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no answer from {self.endpoint} to {cmd!r} within {wait:g} s") from None
        finally:
            self._waiting.pop(tag, None)
        return raw

    async def _read(self) -> None:
        while True:
            parts = await self._sock.recv_multipart()
            fut = self._waiting.get(parts[0])
            if fut is not None and not fut.done():
                fut.set_result(parts[-1])

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._sock.close(linger=0)
