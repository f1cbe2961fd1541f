"""TapEdge's bookkeeping without root: a SOCK_SEQPACKET socket pair stands in for the TAP
(one read is one frame, as on /dev/net/tun), the model NIC's far end is an in-memory cable."""

from __future__ import annotations

import asyncio
import socket

from vnet.node.link import wire_pair
from vnet.node.netdevice import DeviceNamespace, dev_get_stats, dev_open, qdisc_get_stats
from vnet.node.tap import TapConfig, TapDevice
from vnet.node.tapedge import TapEdge
from vnet.node.vnic import vnic_probe, vnic_remove

MAC = bytes.fromhex("020000000a01")
PEER = bytes.fromhex("020000000b01")


def frame(dst: bytes, src: bytes, size: int, proto: bytes = b"\x88\xb5") -> bytes:
    return dst + src + proto + bytes(size - 14)


class Rig:
    def __init__(self, loop) -> None:
        self.kernel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.kernel.setblocking(False)
        theirs.setblocking(False)
        self.tap = TapDevice(theirs.detach(), TapConfig(mac=MAC))
        near, self.far = wire_pair(loop)
        self.wire: list[bytes] = []
        self.far.open(lambda batch: self.wire.extend(bytes(f) for f in batch), lambda up: None)
        self.dev = vnic_probe(DeviceNamespace(), loop, near, mac=MAC)
        self.edge = TapEdge(self.tap, self.dev, loop)
        self.edge.start()
        dev_open(self.dev)

    def close(self) -> None:
        self.edge.stop()
        vnic_remove(self.dev)
        self.tap.close()
        self.kernel.close()


async def until(pred, what: str) -> None:
    for _ in range(1000):
        if pred():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(what)


async def test_frames_cross_both_ways_and_bad_ones_are_counted():
    rig = Rig(asyncio.get_running_loop())
    try:
        good = [frame(PEER, MAC, 60 + i) for i in range(5)]
        for f in good:
            rig.kernel.send(f)
        rig.kernel.send(frame(PEER, MAC, 1500 + 14 + 1))  # one byte over mtu + header
        rig.kernel.send(frame(PEER, MAC, 1500 + 18, proto=b"\x81\x00"))  # tagged: allowed 4 more
        rig.kernel.send(b"\x01" * 10)  # shorter than a header
        await until(lambda: len(rig.wire) == 6, "the good and the tagged frames on the wire")
        assert rig.wire[:5] == good
        st = rig.tap.stats
        assert (st.tap_read_frames, st.tap_tx_oversize, st.tap_tx_runts) == (8, 1, 1)
        model = dev_get_stats(rig.dev)
        assert st.tap_read_frames == (model.tx_packets + model.tx_dropped + qdisc_get_stats(rig.dev).drops
                                      + st.tap_tx_oversize + st.tap_tx_runts)
        inbound = [frame(MAC, PEER, 100), frame(b"\xff" * 6, PEER, 42), frame(b"\x33\x33\x00\x00\x00\x01", PEER, 90)]
        assert rig.far.send(inbound)
        got = []
        for _ in inbound:
            await until(lambda: _readable(rig.kernel), "a frame written to the TAP")
            got.append(rig.kernel.recv(65536))
        assert got == inbound  # unicast, broadcast and (all-multicast) multicast all go up
        assert rig.edge.counters()["tap_handed_up"] == dev_get_stats(rig.dev).rx_packets == 3
        assert st.tap_write_frames == 3 and st.tap_write_bytes == sum(map(len, inbound))
    finally:
        rig.close()


async def test_a_failed_write_is_counted_not_fatal():
    rig = Rig(asyncio.get_running_loop())
    try:
        rig.kernel.close()  # the "kernel" went away: writes fail with EPIPE/ECONNRESET
        assert rig.far.send([frame(MAC, PEER, 64), frame(MAC, PEER, 64)])
        await until(lambda: rig.tap.stats.tap_write_errors == 2, "two failed writes counted")
        st = rig.edge.counters()
        assert st["tap_handed_up"] == st["tap_write_frames"] + st["tap_write_errors"] + st["tap_short_writes"] == 2
        assert rig.tap.eof and st["tap_read_errors"] == 1  # the end was seen once, and the reader removed
    finally:
        rig.edge.stop()
        vnic_remove(rig.dev)
        rig.tap.close()


def _readable(sock: socket.socket) -> bool:
    try:
        sock.recv(65536, socket.MSG_PEEK)
        return True
    except BlockingIOError:
        return False
