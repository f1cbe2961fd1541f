"""The benchmark's worker processes: ``python -m bench.worker ROLE JSON-ARGS``.

Roles (see bench/common.py for the ready/command/result protocol):

- ``relay``: the transport limit's middle box, a trivial pyzmq ROUTER that passes every
  message from peer A to peer B and back, with no vnet code;
- ``tsend`` / ``trecv``: raw DEALERs feeding and draining that relay (throughput);
- ``ping_a`` / ``ping_b``: the round-trip floor through the relay (A -> relay -> B -> relay -> A);
- ``swsend`` / ``swrecv``: raw DEALERs that speak switch/wire.py to the real switch process,
  one socket per switch port;
- ``node``: a vnet NIC (bench/e2e.py) on a ZmqLink, transmitting or counting;
- ``vdesend`` / ``vderecv``: frames through vde_plug's stdin/stdout (bench/vde.py).
"""

from __future__ import annotations

import json
import sys
import time

import zmq

from bench.common import READY, RESULT, Sampler, emit, make_frame, mac, records, stdin_lines
from vnet.proto import wire

ZERO_COPY_BYTES = 65536  # messages at least this big are received without a copy


def _wait_for(reader, word: str, beat=None, every: float = 0.5) -> str:
    """Block until a stdin command starting with ``word``; call ``beat()`` every ``every`` s."""
    poller = zmq.Poller()
    poller.register(reader.fd, zmq.POLLIN)
    next_beat = time.monotonic()
    while True:
        for line in reader.poll():
            if line.startswith(word):
                return line
        if reader.eof:
            raise SystemExit(f"stdin closed while waiting for {word!r}")
        if beat is not None and time.monotonic() >= next_beat:
            beat()
            next_beat = time.monotonic() + every
        poller.poll(int(every * 1000))


# --- the transport limit: a trivial relay ------------------------------------------------------


def relay(args: dict) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # block (never drop) when a peer's queue is full
    s.bind("tcp://127.0.0.1:0")
    emit(READY, {"endpoint": s.getsockopt_string(zmq.LAST_ENDPOINT)})
    copy = args.get("msg_bytes", 0) < ZERO_COPY_BYTES
    recv = s.recv_multipart
    send = s.send_multipart
    other = {b"A": b"B", b"B": b"A"}
    while True:
        parts = recv(copy=copy)
        peer = parts[0] if copy else parts[0].bytes
        if len(parts) == 2 and (parts[1] if copy else parts[1].bytes) == b"R":
            send([peer, b"R"])  # registration ack
            continue
        parts[0] = other[peer]
        send(parts, copy=copy)


def _dealer(ctx: zmq.Context, endpoint: str, identity: bytes | None = None, rcvhwm: int = 1000) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    s.setsockopt(zmq.RCVHWM, rcvhwm)
    s.setsockopt(zmq.LINGER, 2000)
    s.connect(endpoint)
    return s


def _register(s: zmq.Socket) -> None:
    s.send_multipart([b"R"])
    if not s.poll(10_000):
        raise SystemExit("the relay did not acknowledge")
    s.recv_multipart()


def tsend(args: dict) -> None:
    ctx = zmq.Context()
    s = _dealer(ctx, args["endpoint"], b"A")
    _register(s)
    frame = make_frame(mac(2), mac(1), args["size"])
    msg = [wire.MSG_FRAMES, records(frame, args["batch"])]
    reader = stdin_lines()
    emit(READY, {})
    _wait_for(reader, "go")
    send = s.send_multipart
    duration = args["duration"]
    n = 0
    t0 = time.monotonic()
    end = t0 + duration
    while time.monotonic() < end:
        for _ in range(50):
            send(msg)
        n += 50
    t1 = time.monotonic()
    send([b"E"])
    emit(RESULT, {"messages": n, "frames": n * args["batch"], "t0": t0, "t1": t1})
    _wait_for(reader, "stop")
    s.close()
    ctx.term()


def trecv(args: dict) -> None:
    ctx = zmq.Context()
    s = _dealer(ctx, args["endpoint"], b"B")
    _register(s)
    emit(READY, {})
    copy = args.get("msg_bytes", 0) < ZERO_COPY_BYTES
    recv = s.recv_multipart
    now = time.monotonic
    n = 0
    k = args["batch"]
    sampler = Sampler()
    add = sampler.add
    first = last = 0.0
    parts = recv(copy=copy)
    first = now()
    while len(parts) == 2:
        n += 1
        last = now()
        add(last, n * k)
        parts = recv(copy=copy)
    emit(RESULT, {"messages": n, "frames": n * k, "first": first, "last": last,
                  "samples": sampler.samples})
    s.close()
    ctx.term()


def ping_b(args: dict) -> None:
    ctx = zmq.Context()
    s = _dealer(ctx, args["endpoint"], b"B")
    _register(s)
    emit(READY, {})
    recv = s.recv_multipart
    send = s.send_multipart
    while True:
        parts = recv()
        if parts[0] == b"E":
            break
        send(parts)  # echo: relay -> A
    s.close()
    ctx.term()


def ping_a(args: dict) -> None:
    ctx = zmq.Context()
    s = _dealer(ctx, args["endpoint"], b"A")
    _register(s)
    frame = make_frame(mac(2), mac(1), args["size"])
    msg = [wire.MSG_FRAMES, records(frame, 1)]
    reader = stdin_lines()
    emit(READY, {})
    _wait_for(reader, "go")
    rtts = []
    clock = time.perf_counter
    for i in range(args["warmup"] + args["count"]):
        t = clock()
        s.send_multipart(msg)
        s.recv_multipart()
        if i >= args["warmup"]:
            rtts.append((clock() - t) * 1e6)
        if args.get("interval"):
            time.sleep(args["interval"])
    s.send_multipart([b"E"])
    emit(RESULT, {"rtts_us": rtts})
    s.close()
    ctx.term()


# --- the switch alone: raw DEALERs speaking switch/wire.py -------------------------------------


def _attach(ctx: zmq.Context, endpoint: str, name: str, macs: list[bytes], rcvhwm: int = 1000) -> zmq.Socket:
    s = _dealer(ctx, endpoint, rcvhwm=rcvhwm)
    s.send_multipart(wire.hello(name, macs, 1500))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if s.poll(1000):
            parts = s.recv_multipart()
            if parts[0] == wire.MSG_WELCOME:
                return s
            if parts[0] == wire.MSG_REFUSE:
                raise SystemExit(f"switch refused {name}: {parts[1:]}")
    raise SystemExit(f"no WELCOME for {name}")


def swping_b(args: dict) -> None:
    """The switch's share of the round trip: echo each frame back with the MACs swapped."""
    ctx = zmq.Context()
    s = _attach(ctx, args["endpoint"], "bpong", [mac(2)])
    reader = stdin_lines()
    poller = zmq.Poller()
    poller.register(s, zmq.POLLIN)
    poller.register(reader.fd, zmq.POLLIN)
    emit(READY, {})
    next_beat = 0.0
    while True:
        if time.monotonic() >= next_beat:
            s.send_multipart(wire.HEARTBEAT)
            next_beat = time.monotonic() + 0.5
        events = dict(poller.poll(500))
        if reader.fd in events and any(line.startswith("stop") for line in reader.poll()):
            break
        if s in events:
            while s.poll(0):
                parts = s.recv_multipart()
                if parts[0] == wire.MSG_FRAMES:
                    fr = parts[1][2:]
                    s.send_multipart([wire.MSG_FRAMES, parts[1][:2] + fr[6:12] + fr[0:6] + fr[12:]])
    s.send_multipart(wire.BYE)
    s.close()
    ctx.term()


def swping_a(args: dict) -> None:
    ctx = zmq.Context()
    s = _attach(ctx, args["endpoint"], "bping", [mac(1)])
    msg = [wire.MSG_FRAMES, records(make_frame(mac(2), mac(1), args["size"]), 1)]
    reader = stdin_lines()
    emit(READY, {})
    _wait_for(reader, "go", lambda: s.send_multipart(wire.HEARTBEAT))
    rtts = []
    clock = time.perf_counter
    for i in range(args["warmup"] + args["count"]):
        t = clock()
        s.send_multipart(msg)
        while s.recv_multipart()[0] != wire.MSG_FRAMES:
            pass  # heartbeat answers
        if i >= args["warmup"]:
            rtts.append((clock() - t) * 1e6)
        if i % 256 == 0:
            s.send_multipart(wire.HEARTBEAT)
    emit(RESULT, {"rtts_us": rtts})
    s.send_multipart(wire.BYE)
    s.close()
    ctx.term()


def swsend(args: dict) -> None:
    ctx = zmq.Context()
    pairs = args["pairs"]
    socks = [_attach(ctx, args["endpoint"], f"bsend{i}", [mac(100 + i)]) for i in range(pairs)]
    msgs = [[wire.MSG_FRAMES, records(make_frame(mac(200 + i), mac(100 + i), args["size"]), args["batch"])]
            for i in range(pairs)]
    reader = stdin_lines()

    def beat() -> None:
        for s in socks:
            s.send_multipart(wire.HEARTBEAT)
            while s.poll(0):
                s.recv_multipart()  # heartbeat answers

    emit(READY, {})
    _wait_for(reader, "go", beat)
    sends = [s.send_multipart for s in socks]
    work = list(zip(sends, msgs)) * max(1, 64 // pairs)
    duration = args["duration"]
    n = 0
    t0 = time.monotonic()
    end = t0 + duration
    while time.monotonic() < end:
        for send, msg in work:
            send(msg)
        n += len(work)
    t1 = time.monotonic()
    emit(RESULT, {"messages": n, "frames": n * args["batch"], "t0": t0, "t1": t1})
    _wait_for(reader, "stop", beat)
    for s in socks:
        s.send_multipart(wire.BYE)
        s.close()
    ctx.term()


def swrecv(args: dict) -> None:
    ctx = zmq.Context()
    pairs = args["pairs"]
    n_live = pairs - args.get("stall", 0)  # the others never read (slow consumers, small queues)
    socks = [_attach(ctx, args["endpoint"], f"brecv{i}", [mac(200 + i)], 1000 if i < n_live else 1)
             for i in range(pairs)]
    live = socks[:n_live]
    rec = args["size"] + 2
    copy = args.get("msg_bytes", 0) < ZERO_COPY_BYTES
    reader = stdin_lines()
    poller = zmq.Poller()
    for s in live:
        poller.register(s, zmq.POLLIN)
    poller.register(reader.fd, zmq.POLLIN)
    emit(READY, {})
    now = time.monotonic
    frames = other = 0
    first = last = 0.0
    sampler = Sampler()
    expected = None
    idle = args.get("idle", 0.5)
    deadline = now() + args.get("timeout", 120)
    next_beat = now()
    while True:
        t = now()
        if t >= next_beat:
            for s in socks:
                s.send_multipart(wire.HEARTBEAT)
            next_beat = t + 0.5
        if expected is not None and (frames >= expected or t - max(last, expected_at) > idle):
            break
        if t > deadline:
            break
        for sock, _ in poller.poll(100):
            if sock == reader.fd:
                for line in reader.poll():
                    if line.startswith("expect"):
                        expected = int(line.split()[1])
                        expected_at = now()
                continue
            while True:
                try:
                    parts = sock.recv_multipart(zmq.NOBLOCK, copy=copy)
                except zmq.Again:
                    break
                kind = parts[0] if copy else parts[0].bytes
                if kind == wire.MSG_FRAMES:
                    if not first:
                        first = now()
                    frames += len(parts[1]) // rec
                    last = now()
                    sampler.add(last, frames)
                else:
                    other += 1
    emit(RESULT, {"frames": frames, "first": first, "last": last, "other_messages": other,
                  "samples": sampler.samples})
    for s in socks:
        s.send_multipart(wire.BYE)
        s.close()
    ctx.term()


def main() -> None:
    role = sys.argv[1]
    args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    if role == "node":
        from bench.e2e import node_main

        node_main(args)
        return
    if role in ("vdesend", "vderecv"):
        from bench import vde

        getattr(vde, role)(args)
        return
    roles = {"relay": relay, "tsend": tsend, "trecv": trecv, "ping_a": ping_a, "ping_b": ping_b,
             "swsend": swsend, "swrecv": swrecv, "swping_a": swping_a, "swping_b": swping_b}
    if role not in roles:
        raise SystemExit(f"unknown role {role!r}")
    roles[role](args)


if __name__ == "__main__":
    main()
