"""netdev_rx_handler_register: the hook the TAP edge takes a model device's traffic through
(no root needed: the driver model alone, a manual clock, an in-memory cable)."""

from __future__ import annotations

import errno

import pytest

from vnet.node.link import wire_pair
from vnet.node.loop import ManualLoop
from vnet.node.netdevice import (
    ETH_P_ALL, DeviceNamespace, NetdevError, dev_add_pack, dev_get_stats, dev_open,
    netdev_rx_handler_register, netdev_rx_handler_unregister,
)
from vnet.node.skbuff import skb_mac_header
from vnet.node.vnic import vnic_probe

ETH_P_TEST = 0x88B5


def make(n: int):
    loop = ManualLoop()
    far, near = wire_pair(loop)
    ns = DeviceNamespace("dut")
    dev = vnic_probe(ns, loop, near, node_name="dut")
    far.open(lambda batch: None, lambda up: None)
    dev_open(dev)
    loop.run_ready()
    frames = [bytes(dev.dev_addr) + b"\x02\x00\x00\x00\x00\x99" + ETH_P_TEST.to_bytes(2, "big") + bytes([i]) * 50
              for i in range(n)]
    return loop, far, ns, dev, frames


@pytest.mark.parametrize("n", [1, 70])  # one frame (netif_receive_skb path) and more than a poll's weight
def test_rx_handler_takes_every_frame_after_the_taps(n):
    loop, far, ns, dev, frames = make(n)
    handled, protocol, tapped = [], [], []
    dev_add_pack(ns, ETH_P_TEST, lambda skb, d: protocol.append(1))
    dev_add_pack(dev, ETH_P_ALL, lambda skb, d: tapped.append(bytes(skb_mac_header(skb))))
    netdev_rx_handler_register(dev, lambda skb, d: handled.append(bytes(skb_mac_header(skb))))
    assert far.send(frames)
    loop.run_ready()
    assert handled == frames
    assert tapped == frames  # captures still see what the handler takes
    assert protocol == []
    assert dev_get_stats(dev).rx_packets == n and dev_get_stats(dev).rx_dropped == 0


def test_unregister_gives_frames_back_and_a_second_handler_is_ebusy():
    loop, far, ns, dev, frames = make(2)
    protocol = []
    dev_add_pack(ns, ETH_P_TEST, lambda skb, d: protocol.append(1))
    netdev_rx_handler_register(dev, lambda skb, d: None)
    with pytest.raises(NetdevError) as exc:
        netdev_rx_handler_register(dev, lambda skb, d: None)
    assert exc.value.errno == errno.EBUSY
    netdev_rx_handler_unregister(dev)
    assert far.send(frames)
    loop.run_ready()
    assert protocol == [1, 1]


def test_a_raising_rx_handler_is_counted_not_fatal():
    loop, far, ns, dev, frames = make(3)

    def boom(skb, d):
        raise RuntimeError("handler bug")

    netdev_rx_handler_register(dev, boom)
    assert far.send(frames)
    loop.run_ready()
    assert dev_get_stats(dev).rx_dropped == 3
