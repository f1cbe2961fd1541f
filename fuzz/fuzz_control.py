"""Fuzz target: the control server's request parsing, ``ControlServer._answer`` (routing
envelope) and ``_dispatch`` (the request) with a fake handler table and a fake socket (the
coroutine is driven by hand: the handlers and the socket never wait).

Contract: every request gets exactly one reply, sent back on its envelope: a msgpack map
{"ok": bool, ...}; a malformed request is an error reply with a sentence, counted in
``bad_requests``, never an internal error (the fake handlers raise only the errors a
handler may raise for a client's mistake)."""

from __future__ import annotations

import msgpack

import zmq

from vnet.proto.control import ControlError, ControlServer
from vnet.proto.policy import Arg, Policy

from _fdp import Reader, fmap, value

KEYS = ("cmd", "args", "name", "port", "count", "ip", "wait")
MAX_LEN = 4096


def _ping() -> str:
    return "pong"


def _set_port(name: str, port: int, wait: float = 0.0) -> dict:
    if name not in ("a", "b"):  # a refusal the schema cannot express: the handler's, as ControlError
        raise ControlError(f"no port {name!r}")
    return {"name": name, "port": port}


def _show(name: str | None = None, count: int | None = None, ip: str | None = None) -> dict:
    return {"name": name, "count": count, "ip": ip}


def _refuse(count: int = 0) -> None:
    raise ControlError(f"refused {count!r}")


async def _later(ip: str = "") -> str:
    return str(ip)


HANDLERS = {"ping": _ping, "set_port": _set_port, "show": _show, "refuse": _refuse,
            "later": _later}
# Their declared arguments, as proto/policy.py declares the real commands'.
POLICY = {
    "ping": Policy({}),
    "set_port": Policy({"name": Arg(str, required=True, max_len=64), "port": Arg(int, required=True, low=0, high=65535),
                        "wait": Arg(float, default=0.0, low=0, high=300, clamp=True)}),
    "show": Policy({"name": Arg(str, max_len=64), "count": Arg(int, low=0, high=1 << 20), "ip": Arg(str, max_len=64)}),
    "refuse": Policy({"count": Arg(int, default=0, low=-(1 << 31), high=1 << 31)}),
    "later": Policy({"ip": Arg(str, default="", max_len=64)}),
}
CMDS = tuple(HANDLERS) + ("", "nope", "__class__", "get")

SEEDS = [
    b"\x00\x00" + msgpack.packb({"cmd": "set_port", "args": {"name": "a", "port": 5}}),
    b"\x00\x00" + msgpack.packb({"cmd": "later", "args": {"ip": "10.0.0.1"}}),
]


class FakeSocket:
    """Records what the server sends; never waits."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    async def send_multipart(self, parts) -> None:
        self.sent.append(list(parts))


def server() -> ControlServer:
    """A real server (its policy checks, counters and limits), bound in-process; its socket is
    then swapped for a fake one, so only the parsing and dispatch are exercised."""
    ctx = zmq.Context.instance()
    s = ControlServer(ctx, "inproc://fuzz-control", HANDLERS, policy=POLICY)
    s._sock.close(linger=0)
    s._sock = FakeSocket()
    return s


SERVER = server()


# A ROUTER socket always puts the sender's (non-empty) identity first; the rest may be
# anything a DEALER or REQ client sent.
ENVELOPES = ((b"id1", b""), (b"id1", b"tag", b""), (b"id1",), (b"id1", b"tag"))


def body_of(r: Reader) -> list[bytes]:
    shape = r.u8() % 4
    if shape == 0:
        return [r.rest()]
    if shape == 1:
        req = {"cmd": r.pick(CMDS) if r.u8() % 4 else value(r, KEYS)}
        if r.u8() % 4:
            req["args"] = fmap(r, KEYS) if r.u8() % 4 else value(r, KEYS)
        if r.u8() % 8 == 0:
            req.update(fmap(r, KEYS))
        return [msgpack.packb(req, use_bin_type=True)]
    if shape == 2:
        return [r.sized_bytes(64) for _ in range(r.int_in(0, 3))]
    return [msgpack.packb(value(r, KEYS), use_bin_type=True)]


def run(coro):
    """Drive a coroutine that never suspends (the fake handlers do not wait)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("_dispatch suspended with handlers that never wait")


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    envelope = list(r.pick(ENVELOPES))
    parts = envelope + body_of(r)
    bad = SERVER.bad_requests
    sent = SERVER._sock.sent
    sent.clear()
    run(SERVER._answer(parts))
    assert len(sent) == 1, sent
    *head, payload = sent[0]
    # The reply goes back on the identity (and the envelope up to its delimiter).
    assert head[:1] == parts[:1] and head[-1:] == [b""], (parts, head)
    reply = msgpack.unpackb(payload, raw=False)
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
    if reply["ok"]:
        assert SERVER.bad_requests == bad
        assert set(reply) == {"ok", "result"}
    else:
        assert isinstance(reply.get("error"), str) and reply["error"], reply
        assert not reply["error"].startswith("internal error"), reply
        assert SERVER.bad_requests == bad + 1
