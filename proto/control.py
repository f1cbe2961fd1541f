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
import errno
import inspect
import logging
import os
from typing import Any, Awaitable, Callable, Mapping

import msgpack
import zmq
import zmq.asyncio

from vnet.proto.auth import CurveClient, CurveKeys, curve_server
from vnet.proto.policy import MAX_FRAME, MAX_READ, Policy, PolicyError
from vnet.proto.ratelimit import RateLimit

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


def switch_control_endpoint() -> str:
    """The switch's default control endpoint: an ipc socket in the runtime directory (mode
    0600 in a 0700 directory), so only this user drives the switch. TCP is opt-in
    (``--switch-control tcp://...``): on 127.0.0.1 every local user can reach it, and other
    hosts only with CURVE (docs/reliability.md)."""
    return f"ipc://{runtime_dir()}/switch.sock"


class EndpointInUse(OSError):
    """An ipc control socket that another live process still serves."""


def claim_ipc_path(path: str) -> None:
    """Make way for binding the ipc socket ``path``: remove a stale socket file left by a
    process that died, but refuse (EndpointInUse) when something still accepts connections
    on it, rather than take a live daemon's socket over."""
    import socket
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):  # not a daemon's: nothing to take over, nothing to remove
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket: remove it or choose "
                                            "another control endpoint")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # nobody listens: a stale socket from a crashed daemon
        return
    except OSError as exc:  # EACCES, a timeout: something is there we cannot vouch for
        raise EndpointInUse(f"its control socket {path} exists and cannot be probed ({exc})") from None
    finally:
        probe.close()
    raise EndpointInUse(f"its control socket {path} answers")


def _socket_id(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


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


# Message size limits (ZMQ_MAXMSGSIZE): ZeroMQ drops the connection of a peer whose message is
# bigger, before reading it whole, so a 100 MB request costs a node nothing.
# A request is at most MAX_REQUEST_BYTES: the largest legal one is an ``inject`` of frames,
# which clients send in batches under this (ControlClient refuses a bigger request with a
# sentence); every other request is a few hundred bytes (a filter, a UDP payload of 64 KiB).
MAX_REQUEST_BYTES = 1 << 20
# A reply is at most MAX_REPLY_BYTES: the largest legal one is a capture or mirror read of
# MAX_READ frames of MAX_FRAME bytes each, with msgpack's framing around each.
MAX_REPLY_BYTES = MAX_READ * (MAX_FRAME + 64) + (1 << 20)
# Requests in flight (answered later: long polls) the server holds at once, in all and per
# client identity; the excess is answered at once with a "busy" error and counted.
MAX_IN_FLIGHT = 1024
MAX_IN_FLIGHT_PER_CLIENT = 64


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


class ControlServer:
    """Serves ``handlers`` (name -> callable taking the request's args as keywords), each
    checked against its ``policy`` (name -> proto.policy.Policy) before it runs: a handler
    without a policy is refused here, when the server is built.

    A handler may be sync or async. A request that breaks its policy, and a ``ControlError``
    raised by a handler, become error replies (the client's mistake, ``bad_requests``); any
    other exception is a bug in the handler: its traceback is logged (rate-limited) and the
    reply says "internal error" (``internal_errors``). At most ``max_in_flight`` requests to
    async handlers (the long polls: they wait) are in flight at once, ``max_per_client`` from
    one client identity; the excess is answered at once with a busy error (``busy``). Sync
    handlers answer before the next request is read and are not capped. A client that went
    away leaves its long polls to run out their timeouts (which the policies clamp, to
    MAX_POLL_TIMEOUT), their replies are dropped by the ROUTER; so a departed client holds
    at most ``max_per_client`` requests for at most that long. ``counters()`` has them all.
    The server owns its socket: ``close()`` cancels in-flight requests and closes it. With
    ``curve`` (the LAN key pair) it is a CURVE server: only keys the context's ZAP handler
    allows get through (vnet/auth.py).
    """

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, handlers: Mapping[str, Handler],
                 curve: "CurveKeys | None" = None, policy: Mapping[str, Policy] | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT, max_per_client: int = MAX_IN_FLIGHT_PER_CLIENT) -> None:
        self.endpoint = endpoint
        self._handlers = dict(handlers)
        self._policy = dict(policy or {})
        missing = sorted(set(self._handlers) - set(self._policy))
        if missing:
            raise ValueError(f"control commands without a policy (proto/policy.py): {', '.join(missing)}")
        self.max_in_flight = max_in_flight
        self.max_per_client = max_per_client
        self._in_flight = 0
        self._per_client: dict[bytes, int] = {}
        self.busy = 0
        self.internal_errors = 0
        self._ratelimit = RateLimit()
        self._sock = ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        if curve is not None:
            curve_server(self._sock, curve)
        try:
            if endpoint.startswith("ipc://"):
                # a stale socket file from a crashed daemon goes; a live owner keeps its own
                claim_ipc_path(endpoint[len("ipc://"):])
            self._sock.bind(endpoint)
        except BaseException:  # EndpointInUse, zmq.ZMQError, an OSError on the socket file's path
            self._sock.close(linger=0)  # an open socket would hang the context's term()
            raise
        self._ipc_id = None  # the socket file this server bound: close() unlinks only it
        if endpoint.startswith("ipc://"):
            os.chmod(endpoint[len("ipc://"):], 0o600)
            self._ipc_id = _socket_id(endpoint[len("ipc://"):])
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
        reply = await self._dispatch(body, envelope[0] if envelope else b"")
        try:
            payload = _pack(reply)
        except Exception as exc:  # a handler's result msgpack cannot carry: the server's fault
            log.error("control reply cannot be encoded: %s: %s", exc.__class__.__name__, exc)
            payload = _pack({"ok": False, "error": f"internal error: the reply cannot be encoded: {exc}"})
        try:
            await self._sock.send_multipart([*envelope, *([] if sep else [b""]), payload])
        except zmq.ZMQError as exc:
            log.debug("control reply not sent: %s", exc)

    async def _dispatch(self, body: list[bytes], client: bytes = b"") -> dict:
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
                raise ControlError(f"unknown command {str(req['cmd'])[:60]!r}; known: {known}")
            args = self._policy[req["cmd"]].check(req["cmd"], args)
        except (ControlError, PolicyError) as exc:
            self.bad_requests += 1
            return {"ok": False, "error": str(exc)}
        if not inspect.iscoroutinefunction(handler):  # answered before the next request is read
            return self._call_sync(req["cmd"], handler, args)
        if self._in_flight >= self.max_in_flight or self._per_client.get(client, 0) >= self.max_per_client:
            self.busy += 1
            mine = self._per_client.get(client, 0)
            return {"ok": False, "error": f"control busy: {self._in_flight} requests in flight "
                    f"({mine} of them this client's; limits {self.max_in_flight} and "
                    f"{self.max_per_client} per client): try again when some are answered"}
        self._in_flight += 1
        self._per_client[client] = self._per_client.get(client, 0) + 1
        try:
            return {"ok": True, "result": await handler(**args)}
        except ControlError as exc:
            self.bad_requests += 1
            return {"ok": False, "error": str(exc) or exc.__class__.__name__}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._internal_error(req["cmd"], exc)
        finally:
            self._in_flight -= 1
            left = self._per_client[client] - 1
            if left:
                self._per_client[client] = left
            else:
                del self._per_client[client]

    def _call_sync(self, cmd: str, handler: Handler, args: dict) -> dict:
        """A handler that answers at once: it holds nothing between requests, so the
        in-flight caps (for long polls) do not apply and `health` answers at the cap."""
        try:
            return {"ok": True, "result": handler(**args)}
        except ControlError as exc:
            self.bad_requests += 1
            return {"ok": False, "error": str(exc) or exc.__class__.__name__}
        except Exception as exc:
            return self._internal_error(cmd, exc)

    def _internal_error(self, cmd: str, exc: Exception) -> dict:
        """A bug in a handler: its traceback logged (rate-limited), "internal error" answered."""
        self.internal_errors += 1
        if self._ratelimit.allow():
            held = self._ratelimit.suppressed
            self._ratelimit.suppressed = 0
            log.error("control request %s failed (a bug in its handler)%s", cmd,
                      f" ({held} similar messages suppressed)" if held else "", exc_info=exc)
        return {"ok": False, "error": f"internal error in {cmd}: {exc.__class__.__name__} (the server logged it)"}

    def counters(self) -> dict:
        """The control socket's counters (in ``stats`` of the node and of the switch)."""
        return {"requests": self.requests, "bad_requests": self.bad_requests,
                "internal_errors": self.internal_errors, "control_busy": self.busy,
                "in_flight": self._in_flight, "clients_in_flight": len(self._per_client)}

    async def close(self) -> None:
        if self._main is not None:
            self._main.cancel()  # its task group cancels and awaits the answers in flight
            await asyncio.gather(self._main, return_exceptions=True)
            self._main = None
        self._sock.close(linger=0)
        self._unlink_own_socket()

    def _unlink_own_socket(self) -> None:
        """Remove the ipc socket file if it is still the one this server bound (another
        process may have replaced it since: that one is not ours to delete)."""
        if self._ipc_id is None:
            return
        path = self.endpoint[len("ipc://"):]
        if _socket_id(path) == self._ipc_id:
            try:
                os.unlink(path)
            except OSError:
                pass


def pack_request(cmd: str, args: Mapping[str, Any]) -> bytes:
    """A request as it goes on the wire; ControlError if it is over MAX_REQUEST_BYTES (the
    server would drop the connection without an answer)."""
    raw = _pack({"cmd": cmd, "args": dict(args)})
    if len(raw) > MAX_REQUEST_BYTES:
        raise ControlError(f"{cmd}: a request of {len(raw)} bytes is over the limit of {MAX_REQUEST_BYTES} "
                           "(send it in smaller parts)")
    return raw


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
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        self.curve = curve
        if curve is not None:
            curve.apply(self._sock)
        self._sock.connect(endpoint)

    def call(self, cmd: str, wait: float | None = None, **args: Any) -> Any:
        """Send ``cmd`` with ``args``; wait up to ``wait`` s (default: the client's timeout)."""
        request = pack_request(cmd, args)
        wait = self.timeout if wait is None else wait
        hint = "is it running, and is this key allowed?" if self.curve else "is it running?"
        # A DEALER with no connection yet (a server not up, a CURVE handshake refused) would
        # block in send: wait for room to send within the same deadline.
        if not self._sock.poll(int(wait * 1000), zmq.POLLOUT):
            raise TimeoutError(f"no connection to {self.endpoint} within {wait:g} s ({hint})")
        self._sock.send_multipart([b"", request])
        if not self._sock.poll(int(wait * 1000)):
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
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
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
        request = pack_request(cmd, args)  # too large: ControlError before anything is queued
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())
        self._seq += 1
        tag = self._seq.to_bytes(8, "big")
        fut = asyncio.get_running_loop().create_future()
        self._waiting[tag] = fut
        wait = self.timeout if wait is None else wait
        try:
            # The send is inside the deadline too: a DEALER with no connection yet (a server
            # not up, a CURVE handshake refused) does not take the message until it has one.
            async with asyncio.timeout(wait):
                await self._sock.send_multipart([tag, b"", request])
                raw = await fut
        except TimeoutError:
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
