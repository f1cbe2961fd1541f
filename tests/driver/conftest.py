"""Fixtures for the driver-model tests: a ManualLoop, and vnet NICs on in-memory cables.

- ``bench(**probe_kwargs)``: one NIC (the device under test) whose cable ends at the test:
  ``inject(frames)`` puts one batch on the wire towards the NIC, ``wire_rx`` collects what the
  NIC sent, ``delivered`` what the NIC handed to a handler for ETH_P_TEST.
- ``pair(**probe_kwargs)``: two NICs back to back (wire_pair), each in its own namespace.

No sleeps and no sockets: time moves only through ``loop.advance``.
"""

from __future__ import annotations

import pytest

from vnet.node.link import wire_pair
from vnet.node.loop import ManualLoop
from vnet.node.netdevice import (
    DeviceNamespace, dev_add_pack, dev_open, dev_queue_xmit,
)
from vnet.node.skbuff import alloc_skb, skb_mac_header, skb_put_data
from vnet.node.vnic import vnic_probe

ETH_P_TEST = 0x88B5  # IEEE 802 local experimental ethertype
BCAST = b"\xff" * 6
OTHER = b"\x02\x00\x00\x00\x00\x99"


def make_frame(dst: bytes, src: bytes, seq: int = 0, size: int = 64,
               proto: int = ETH_P_TEST) -> bytes:
    """An Ethernet frame of ``size`` bytes whose first payload bytes carry ``seq``."""
    head = dst + src + proto.to_bytes(2, "big") + seq.to_bytes(4, "big")
    return head + bytes(max(0, size - len(head)))


def seq_of(frame: bytes) -> int:
    return int.from_bytes(frame[14:18], "big")


def xmit(dev, frame: bytes) -> int:
    skb = alloc_skb(len(frame))
    skb_put_data(skb, frame)
    skb.dev = dev
    return dev_queue_xmit(skb)


class Bench:
    """One vnet NIC whose cable ends at the test harness."""

    def __init__(self, loop: ManualLoop, **kw) -> None:
        self.loop = loop
        self.far, self.near = wire_pair(loop)
        self.ns = DeviceNamespace("dut")
        kw.setdefault("node_name", "dut")
        self.dev = vnic_probe(self.ns, loop, self.near, **kw)
        self.mac = self.dev.dev_addr
        self.wire_rx: list[bytes] = []
        self.far.open(self.wire_rx.extend, lambda up: None)
        self.delivered: list[tuple[int, bytes]] = []  # (pkt_type, whole frame)
        dev_add_pack(self.ns, ETH_P_TEST, self._handler)

    def _handler(self, skb, dev) -> None:
        self.delivered.append((skb.pkt_type, bytes(skb_mac_header(skb))))

    @property
    def priv(self):
        return self.dev.priv

    @property
    def hw(self):
        return self.dev.priv.hw

    def up(self) -> "Bench":
        dev_open(self.dev)
        self.loop.run_ready()
        return self

    def frame(self, seq: int = 0, size: int = 64, dst: bytes | None = None,
              proto: int = ETH_P_TEST) -> bytes:
        return make_frame(self.mac if dst is None else dst, OTHER, seq, size, proto)

    def inject(self, frames) -> None:
        """Put one batch on the cable towards the NIC (delivered from a loop callback)."""
        assert self.far.send(list(frames))

    def send(self, frame: bytes) -> int:
        return xmit(self.dev, frame)


class Pair:
    """Two vnet NICs back to back, each in its own namespace, collecting ETH_P_TEST frames."""

    def __init__(self, loop: ManualLoop, latency: float = 0.0, **kw) -> None:
        self.loop = loop
        self.wa, self.wb = wire_pair(loop, latency)
        self.nsa, self.nsb = DeviceNamespace("a"), DeviceNamespace("b")
        self.a = vnic_probe(self.nsa, loop, self.wa, node_name="a", **kw)
        self.b = vnic_probe(self.nsb, loop, self.wb, node_name="b", **kw)
        self.got_a: list[bytes] = []
        self.got_b: list[bytes] = []
        dev_add_pack(self.nsa, ETH_P_TEST, lambda skb, dev: self.got_a.append(
            bytes(skb_mac_header(skb))))
        dev_add_pack(self.nsb, ETH_P_TEST, lambda skb, dev: self.got_b.append(
            bytes(skb_mac_header(skb))))

    def up(self) -> "Pair":
        dev_open(self.a)
        dev_open(self.b)
        self.loop.run_ready()
        return self


@pytest.fixture
def loop() -> ManualLoop:
    return ManualLoop()


@pytest.fixture
def bench(loop):
    def make(**kw) -> Bench:
        return Bench(loop, **kw)
    return make


@pytest.fixture
def pair(loop):
    def make(**kw) -> Pair:
        return Pair(loop, **kw)
    return make


@pytest.fixture
def drv():
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""
    class _Helpers:
        ETH_P_TEST = ETH_P_TEST
        BCAST = BCAST
        OTHER = OTHER
        make_frame = staticmethod(make_frame)
        seq_of = staticmethod(seq_of)
        xmit = staticmethod(xmit)
    return _Helpers
