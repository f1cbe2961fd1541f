"""The node's ZeroMQ link against a real switch server: attach, refuse, lose and regain carrier."""

from __future__ import annotations

import asyncio

import pytest
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
        await la.aclose()
        await lb.aclose()
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
        await link.aclose()
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
        await link.aclose()
        await server.close()
        ctx.term()


async def test_a_node_with_a_larger_mtu_is_clamped_to_the_switch_and_counts_what_is_too_long():
    """WELCOME carries the switch's MTU: a 9000-byte node on a 1500-byte switch is told to
    lower its MTU, and a frame still too long for the switch counts ``tx_oversize`` on the
    link (the switch drops it as ``oversize``), so the loss is visible on the node."""
    ctx = zmq.asyncio.Context()
    server = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0", control=None, mtu=1500), ctx)
    await server.start()
    rec = Recorder()
    clamps: list[int] = []
    link = ZmqLink(ctx, server.data_endpoint, lambda: ("big", [MAC_A], 9000), heartbeat_interval=0.1,
                   heartbeat_timeout=0.5, on_mtu=clamps.append)
    try:
        link.open(rec.rx, rec.on_carrier)
        await poll_until(lambda: rec.carrier_is(True), "attached")
        assert clamps == [1500] and link.switch_mtu == 1500
        mac_a, mac_b = MAC_A.hex(":"), MAC_B.hex(":")
        ok, big = frame(mac_b, mac_a), frame(mac_b, mac_a, payload=bytes(3000))
        assert link.send([ok, big, big])
        assert link.counters()["tx_oversize"] == 2 and link.tx_frames == 3

        async def switch_counted() -> bool:
            return server.core.totals.oversize == 2
        await poll_until(switch_counted, "the switch drops the same two frames")
    finally:
        await link.aclose()
        await server.close()
        ctx.term()


async def test_close_cancels_and_awaits_the_links_task_and_says_bye():
    ctx = zmq.asyncio.Context()
    server = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0", control=None), ctx)
    await server.start()
    rec = Recorder()
    link = make_link(ctx, server.data_endpoint, "a", MAC_A)
    try:
        link.open(rec.rx, rec.on_carrier)
        await poll_until(lambda: rec.carrier_is(True), "attached")
        await link.aclose()
        assert not link.attached and not link.carrier

        async def gone() -> bool:
            return not server.core.ports and server.core.totals.byes == 1
        await poll_until(gone, "the switch hears the BYE")
        await link.aclose()  # twice is harmless
    finally:
        await link.aclose()
        await server.close()
        ctx.term()


@pytest.mark.vnet_lan(nodes=1)
async def test_a_jumbo_node_daemon_takes_the_switch_mtu_and_shows_tx_oversize(vnet_lan):
    """A node started with MTU 9000 on a 1500 switch: vnet0 comes up at 1500 (the WELCOME's
    MTU). Raised by hand past the switch's, the frames the switch will drop are counted by
    the node's link (``vnet stats``: link tx_oversize), not only by the switch."""
    node = await vnet_lan.add_node("jumbo", extra_args=["--mtu", "9000"])
    assert (await node.link())["mtu"] == 1500
    await node.link_set(mtu=9000)
    await node.inject(frame(vnet_lan.nodes[0].mac, node.mac, size=3000))

    async def counted() -> bool:
        return (await node.stats())["link"]["tx_oversize"] == 1
    await poll_until(counted, "the node's link counts the frame the switch cannot take")
