"""The switch over real ZeroMQ sockets on 127.0.0.1, with DEALER "nodes" and the control client."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import zmq
import zmq.asyncio

from vnet.proto import wire
from vnet.switch.server import SwitchConfig, SwitchServer
from vnet.proto.control import READY_PREFIX, AsyncControlClient, ControlError
from tests.lan.helpers import eventually

BCAST = b"\xff" * 6
MAC = {n: bytes([2, 0, 0, 0, 0, i]) for i, n in enumerate("abcd", 1)}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def eth(dst: bytes, src: bytes, payload: bytes = b"x" * 46) -> bytes:
    return dst + src + b"\x08\x00" + payload




class Node:
    """A minimal node link: a DEALER that attaches, heartbeats and records what it receives."""

    def __init__(self, ctx, endpoint: str, name: str, rcvhwm: int = 1000, read: bool = True) -> None:
        self.name = name
        self.mac = MAC[name]
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sock.connect(endpoint)
        self.frames: list[bytes] = []
        self.batches = 0
        self.control: list[list[bytes]] = []  # non-FRAMES messages, in order
        self._read = read
        self._tasks: list[asyncio.Task] = []
        self._hb: asyncio.Task | None = None

    async def attach(self, version: int = wire.PROTOCOL_VERSION) -> list[bytes]:
        if self._read and not self._tasks:
            self._tasks.append(asyncio.get_running_loop().create_task(self._reader()))
        await self.sock.send_multipart(wire.hello(self.name, [self.mac], 1500, version=version))
        if not self._read:
            reply = await asyncio.wait_for(self.sock.recv_multipart(), 5)
            self.control.append(reply)
        else:
            await eventually(lambda: self.control, what=f"{self.name}'s handshake reply")
        return self.control[0]

    def start_heartbeat(self, period: float = 0.05) -> None:
        async def beat():
            while True:
                await self.sock.send_multipart(wire.HEARTBEAT)
                await asyncio.sleep(period)

        self._hb = asyncio.get_running_loop().create_task(beat())
        self._tasks.append(self._hb)

    async def stop_heartbeat(self) -> None:
        self._hb.cancel()
        await asyncio.gather(self._hb, return_exceptions=True)

    async def _reader(self) -> None:
        while True:
            parts = await self.sock.recv_multipart()
            if parts[0] == wire.MSG_FRAMES:
                self.batches += 1
                self.frames.extend(bytes(f) for f in wire.unpack_frames(parts[1]))
            elif parts[0] != wire.MSG_HEARTBEAT:
                self.control.append(parts)

    async def send(self, *frames: bytes) -> None:
        await self.sock.send_multipart(wire.frames_msg(frames))

    def kinds(self) -> list[bytes]:
        return [m[0] for m in self.control]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.sock.close(linger=0)


@pytest.fixture
async def lan():
    """A switch with short timers, three attached heartbeating nodes and a control client."""
    ctx = zmq.asyncio.Context()
    cfg = SwitchConfig(bind="tcp://127.0.0.1:0", control="tcp://127.0.0.1:0",
                       heartbeat_interval=0.1, heartbeat_timeout=0.3, port_hwm=4)
    server = SwitchServer(cfg, ctx=ctx)
    await server.start()
    assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", server.data_endpoint)
    assert not server.data_endpoint.endswith(":0") and not server.control_endpoint.endswith(":0")
    nodes = {n: Node(ctx, server.data_endpoint, n) for n in "abc"}
    for node in nodes.values():
        reply = await node.attach()
        assert reply[0] == wire.MSG_WELCOME
        node.start_heartbeat()
    ctl = AsyncControlClient(ctx, server.control_endpoint, timeout=5.0)
    try:
        yield server, nodes, ctl
    finally:
        await ctl.close()
        await server.close()
        for node in nodes.values():
            await node.close()
        ctx.destroy(linger=0)


async def test_forwarding_and_control(lan):
    server, nodes, ctl = lan
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    assert await ctl.call("ping") == {"ok": True, "ports": 3}

    bcast = eth(BCAST, a.mac, b"hello all" + bytes(40))
    await a.send(bcast)
    await eventually(lambda: b.frames and c.frames, what="broadcast at b and c")
    assert b.frames == [bcast] and c.frames == [bcast]

    uni = eth(a.mac, b.mac)
    await b.send(uni)
    await eventually(lambda: a.frames, what="unicast at a")
    assert a.frames == [uni]

    batch = [eth(b.mac, a.mac, bytes([i]) * 60) for i in range(20)]
    before = b.batches
    await a.send(*batch)
    await eventually(lambda: len(b.frames) == 21, what="batch at b")
    assert b.frames[1:] == batch and b.batches == before + 1  # one message for the batch
    # c heard nothing but the broadcast; nobody heard their own frames
    assert c.frames == [bcast] and bcast not in a.frames

    fdb = await ctl.call("fdb")
    rows = {(r["mac"], r["port"]) for r in fdb}
    assert {("02:00:00:00:00:01", "a"), ("02:00:00:00:00:02", "b"), ("02:00:00:00:00:03", "c")} <= rows
    assert all(r["static"] is False and r["vlan"] == 0 and r["age"] >= 0 for r in fdb)
    assert [r["mac"] for r in await ctl.call("fdb", port="b")] == ["02:00:00:00:00:02"]

    ports = await ctl.call("ports")
    assert [p["name"] for p in ports] == ["a", "b", "c"]
    pa = ports[0]
    assert pa["macs"] == ["02:00:00:00:00:01"] and pa["mtu"] == 1500 and pa["port_id"] >= 1
    assert pa["counters"]["rx_packets"] == 21 and pa["last_seen_ago"] < 1.0 and pa["attached_for"] >= 0

    stats = await ctl.call("stats")
    assert stats["totals"]["rx_packets"] == 22 and stats["totals"]["flooded"] == 1
    assert stats["per_port"]["b"]["tx_packets"] == 21
    assert stats["fdb"]["entries"] >= 3 and set(stats["fdb"]) >= {"learned", "moves", "evictions", "aged"}

    assert await ctl.call("flush", port="a") == 1
    assert "a" not in {r["port"] for r in await ctl.call("fdb")}
    with pytest.raises(ControlError, match="no port named 'zz'"):
        await ctl.call("flush", port="zz")
    with pytest.raises(ControlError, match="ageing time"):
        await ctl.call("set_ageing", seconds=-1)

    assert await ctl.call("set_ageing", seconds=0.05) == 0.05
    async def fdb_empty():
        return await ctl.call("fdb") == []
    await eventually(fdb_empty, what="entries to be hidden once aged")

    async def aged():  # the timer removes them at its next tick
        return (await ctl.call("stats"))["fdb"]["aged"] >= 1

    await eventually(aged, what="the timer to expire the entries")
    assert await ctl.call("set_ageing", seconds=0) == 0.0


async def test_close_says_bye_to_every_node(lan):
    server, nodes, _ = lan
    await server.close()
    for node in nodes.values():
        await eventually(lambda: wire.MSG_BYE in node.kinds(), what=f"BYE at {node.name}")


async def test_silent_node_removed_and_told_not_attached(lan):
    server, nodes, ctl = lan
    c = nodes["c"]
    await c.stop_heartbeat()

    async def c_gone():
        return [p["name"] for p in await ctl.call("ports")] == ["a", "b"]

    await eventually(c_gone, what="c removed after the heartbeat timeout")
    assert "c" not in {r["port"] for r in await ctl.call("fdb")}
    stats = await ctl.call("stats")
    assert stats["totals"]["timeouts"] == 1 and "c" not in stats["per_port"]
    # c's next message is from a stranger: told to attach again, and it can
    await eventually(lambda: wire.MSG_BYE in c.kinds(), what="BYE to the timed-out c")
    await c.sock.send_multipart(wire.HEARTBEAT)
    await eventually(lambda: wire.MSG_NOT_ATTACHED in c.kinds(), what="NOT_ATTACHED at c")
    assert (await ctl.call("stats"))["totals"]["not_attached"] == 1  # a message, no frames
    c.control.clear()
    assert (await c.attach())[0] == wire.MSG_WELCOME
    c.start_heartbeat()
    assert (await ctl.call("ping"))["ports"] == 3


async def test_version_mismatch_refused(lan):
    server, _, ctl = lan
    d = Node(server._ctx, server.data_endpoint, "d")
    try:
        reply = await d.attach(version=wire.PROTOCOL_VERSION + 1)
        assert reply[0] == wire.MSG_REFUSE
        reason = wire.decode_map(reply[1], "REFUSE")["reason"]
        assert f"version {wire.PROTOCOL_VERSION + 1}" in reason and f"version {wire.PROTOCOL_VERSION}" in reason
        assert (await ctl.call("stats"))["totals"]["refused"] == 1
        assert (await ctl.call("ping"))["ports"] == 3
    finally:
        await d.close()


async def test_slow_port_is_dropped_not_waited_for(lan):
    """A node that stops reading fills its output queue; the switch counts hwm and goes on."""
    server, nodes, ctl = lan
    a, c = nodes["a"], nodes["c"]
    ctx = server._ctx
    slow = Node(ctx, server.data_endpoint, "d", rcvhwm=1, read=False)
    try:
        assert (await slow.attach())[0] == wire.MSG_WELCOME
        slow.start_heartbeat()
        big = [eth(slow.mac, a.mac, b"z" * 1400)] * 40  # ~58 kB a message

        async def hwm_hit():
            await a.send(*big)
            return (await ctl.call("stats"))["per_port"]["d"]["hwm"] > 0

        await eventually(hwm_hit, timeout=20, what="the slow port's queue to overflow")
        # Others still get their traffic, and the control endpoint still answers.
        ping = eth(c.mac, a.mac, b"still alive")
        await a.send(ping)
        await eventually(lambda: ping in c.frames, what="traffic to a healthy port")
        stats = await ctl.call("stats")
        assert stats["totals"]["hwm"] == stats["per_port"]["d"]["hwm"]
    finally:
        await slow.close()


async def test_server_owns_its_context():
    server = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0", control=None))
    await server.start()
    assert server.control_endpoint is None
    ctx = zmq.asyncio.Context()
    node = Node(ctx, server.data_endpoint, "a")
    try:
        assert (await node.attach())[0] == wire.MSG_WELCOME
        await asyncio.wait_for(server.close(), 5)
        await eventually(lambda: wire.MSG_BYE in node.kinds(), what="BYE")
        await server.close()  # idempotent
    finally:
        await node.close()
        ctx.destroy(linger=0)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("bind", "127.0.0.1:5540", "bind must be a ZeroMQ endpoint"),
        ("control", 5541, "control must be a ZeroMQ endpoint"),
        ("ageing_time", -1, "ageing_time must be a number >= 0"),
        ("heartbeat_interval", 0, "heartbeat_interval must be a number > 0"),
        ("heartbeat_timeout", 0.5, "heartbeat_timeout (0.5 s) must be longer than heartbeat_interval"),
        ("fdb_max", 0, "fdb_max must be an integer from 1"),
        ("mtu", 67, "mtu must be an integer from 68 to 65517"),
        ("port_hwm", 1.5, "port_hwm must be an integer"),
        ("max_ports", 0, "max_ports must be an integer from 1"),
        ("port_queue_bytes", 1000, "port_queue_bytes must be an integer from 1048576"),
        ("hello_rate", -1, "hello_rate must be a number >= 0"),
        ("hello_burst", 0, "hello_burst must be an integer from 1"),
    ],
)
def test_config_validation(field, value, words):
    with pytest.raises(ValueError) as info:
        SwitchConfig(**{field: value})
    assert words in str(info.value)


def test_vnet_switch_runs_until_sigterm():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vnet.cli", "switch", "--bind", "tcp://127.0.0.1:0",
         "--switch-control", "tcp://127.0.0.1:0", "--heartbeat-timeout", "5", "--log-level", "info"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        endpoint = None
        deadline = time.monotonic() + 20
        while endpoint is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the switch exited before it listened"
            if line.startswith(READY_PREFIX):
                endpoint = json.loads(line[len(READY_PREFIX):])["data"]
        assert endpoint, "the switch did not report its endpoint"
        sock.connect(endpoint)
        sock.send_multipart(wire.hello("n1", [MAC["a"]], 1500))
        assert sock.poll(5000) and sock.recv_multipart()[0] == wire.MSG_WELCOME
        proc.send_signal(signal.SIGTERM)
        assert sock.poll(5000) and sock.recv_multipart() == wire.BYE
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        sock.close(linger=0)
        ctx.term()
