"""The node's ZeroMQ link against a real switch server: attach, refuse, lose and regain carrier."""

from __future__ import annotations

import asyncio

import zmq.asyncio

from vnet.node.zmqlink import ZmqLink
from vnet.switch.server import SwitchConfig, SwitchServer
from tests.lan.helpers import frame, poll_until

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


class Recorder:
    """What a link hands to the NIC: batches and carrier changes."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.carrier: list[bool] = []

    def rx(self, batch) -> None:
        self.frames.extend(bytes(f) for f in batch)

    def on_carrier(self, up: bool) -> None:
        self.carrier.append(up)

    async def carrier_is(self, up: bool) -> bool:
        return bool(self.carrier) and self.carrier[-1] == up


def make_link(ctx, endpoint: str, name: str, mac: bytes, **kw) -> ZmqLink:
    return ZmqLink(ctx, endpoint, lambda: (name, [mac], 1500), heartbeat_interval=0.1,
                   heartbeat_timeout=0.5, backoff_max=0.3, **kw)


async def test_links_attach_and_carry_batches_both_ways():
    ctx = zmq.asyncio.Context()
    server = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0", control=None,
                                       heartbeat_interval=0.1, heartbeat_timeout=0.5), ctx)
    await server.start()
    a, b = Recorder(), Recorder()
    la = make_link(ctx, server.data_endpoint, "a", MAC_A)
    lb = make_link(ctx, server.data_endpoint, "b", MAC_B)
    try:
        la.open(a.rx, a.on_carrier)
        lb.open(b.rx, b.on_carrier)
        await poll_until(lambda: a.carrier_is(True), "a attached")
        await poll_until(lambda: b.carrier_is(True), "b attached")
        mac_a, mac_b = MAC_A.hex(":"), MAC_B.hex(":")
        batch = [frame(mac_b, mac_a, payload=i.to_bytes(2, "big")) for i in range(100)]
        assert la.send(batch)
        await poll_until(lambda: _count(b, 100), "b receives the batch")
        assert b.frames == batch  # in order, exactly once
        assert lb.send([frame(mac_a, mac_b)])
        await poll_until(lambda: _count(a, 1), "a receives the reply")
    finally:
        la.close()
        lb.close()
        await server.close()
        ctx.term()


async def _count(rec: Recorder, n: int) -> bool:
    return len(rec.frames) >= n


async def test_version_mismatch_is_refused_with_a_message_on_both_sides():
    ctx = zmq.asyncio.Context()
    server = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0", control=None), ctx)
    await server.start()
    refusals: list[str] = []
    rec = Recorder()
    link = make_link(ctx, server.data_endpoint, "future", MAC_A, protocol_version=99,
                     on_refused=refusals.append)
    try:
        link.open(rec.rx, rec.on_carrier)
        await poll_until(lambda: _truthy(refusals), "the node hears the refusal")
        assert "99" in refusals[0] and "1" in refusals[0]
        assert link.refused == refusals[0] and not link.attached
        assert server.core.totals.refused >= 1
        assert not server.core.ports
    finally:
        link.close()
        await server.close()
        ctx.term()


async def _truthy(x) -> bool:
    return bool(x)


async def test_carrier_follows_the_switch_through_a_restart():
    ctx = zmq.asyncio.Context()
    cfg = dict(control=None, heartbeat_interval=0.1, heartbeat_timeout=0.5)
    server = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0", **cfg), ctx)
    await server.start()
    endpoint = server.data_endpoint
    rec = Recorder()
    link = make_link(ctx, endpoint, "a", MAC_A)
    try:
        link.open(rec.rx, rec.on_carrier)
        await poll_until(lambda: rec.carrier_is(True), "attached")
        await server.close()  # says BYE: carrier drops at once
        await poll_until(lambda: rec.carrier_is(False), "carrier down after the switch's BYE")
        async def restarted():
            # the old listener is closed by ZeroMQ's I/O thread after close(): bind when it is free
            new = SwitchServer(SwitchConfig(bind=endpoint, **cfg), ctx)
            try:
                await new.start()
            except OSError:
                await new.close()
                return None
            return new

        server = await poll_until(restarted, f"the new switch bound to {endpoint}", timeout=10)
        await poll_until(lambda: rec.carrier_is(True), "re-attached to the new switch", timeout=10)
        assert link.attaches == 2 and link.carrier_losses == 1
        assert [p.name for p in server.core.ports] == ["a"]
    finally:
        link.close()
        await server.close()
        ctx.term()


def test_hello_backoff_doubles_from_100_ms_capped_with_jitter():
    """Re-attaching after the switch went away: HELLO again at 0.1, 0.2, 0.4, ... s, never
    more than ``backoff_max``, each times a jitter factor from [0.5, 1.5), so a restarted switch
    is not stampeded by every node at once (the link's arithmetic; no socket, no clock)."""
    import random

    rng = random.Random(7)
    link = ZmqLink(None, "tcp://127.0.0.1:1", lambda: ("n", [bytes(6)], 1500), backoff_max=1.0,
                   rng=random.Random(7))
    link._send = lambda msg, count=False: True  # the DEALER is not what is under test
    waits = []
    for _ in range(7):
        link._say_hello(100.0)
        waits.append(round(link._next_hello - 100.0, 9))
    jitter = [0.5 + rng.random() for _ in range(7)]
    assert waits == [round(b * j, 9) for b, j in zip([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0], jitter)]
    link._set_attached(True)  # a WELCOME resets the backoff
    link._say_hello(200.0)
    assert 0.05 <= link._next_hello - 200.0 < 0.15
