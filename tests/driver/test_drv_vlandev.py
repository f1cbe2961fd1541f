"""802.1Q sub-interfaces (node/vlandev.py) on a vnet NIC, driven by a ManualLoop: the tag is
pushed on TX and popped on RX, VIDs demux to their sub-interface, untagged frames stay on the
real device, counters land on the sub-interface, carrier and lifetime follow the real one."""

from __future__ import annotations

import errno

import pytest

from vnet.node.netdevice import (
    ETH_P_8021Q, NET_XMIT_DROP, NetdevError, dev_add_pack, dev_close, dev_get_stats, dev_open, netif_carrier_ok,
)
from vnet.node.skbuff import skb_mac_header
from vnet.node.vlandev import vlan_dev_create, vlan_dev_destroy


def tag(frame: bytes, vid: int) -> bytes:
    return frame[:12] + ETH_P_8021Q.to_bytes(2, "big") + vid.to_bytes(2, "big") + frame[12:]


@pytest.fixture
def setup(bench, drv):
    b = bench().up()
    v10 = vlan_dev_create(b.ns, b.dev, "vnet0.10", 10)
    got: dict[str, list[bytes]] = {"vnet0": [], "vnet0.10": []}
    for dev in (b.dev, v10):
        dev_add_pack(dev, drv.ETH_P_TEST, lambda skb, d: got[d.name].append(bytes(skb_mac_header(skb))))
    return b, v10, got


def test_tx_pushes_the_tag_and_counts_on_the_subinterface(setup, drv, loop):
    b, v10, _ = setup
    assert drv.xmit(v10, b.frame(1)) == NET_XMIT_DROP  # created down, as ip link add leaves it
    loop.run_ready()
    assert b.wire_rx == []
    dev_open(v10)
    assert netif_carrier_ok(v10) and v10.dev_addr == b.dev.dev_addr
    frame = drv.make_frame(drv.OTHER, bytes(b.mac), 7, size=1514)  # a full-MTU frame: the tag still fits
    drv.xmit(v10, frame)
    loop.run_ready()
    assert b.wire_rx == [tag(frame, 10)]
    s = dev_get_stats(v10)
    assert (s.tx_packets, s.tx_bytes) == (1, 1514)
    assert dev_get_stats(b.dev).tx_packets == 1


def test_rx_demuxes_by_vid_and_pops_the_tag(setup, drv, loop):
    b, v10, got = setup
    dev_open(v10)
    plain, tagged, other = b.frame(1), tag(b.frame(2), 10), tag(b.frame(3), 20)
    b.inject([plain, tagged, other, tag(b.frame(4), 0)])
    loop.run_ready()
    assert got["vnet0.10"] == [b.frame(2)]  # the tag came off
    assert got["vnet0"] == [plain, b.frame(4)]  # untagged and priority-tagged stay on the parent
    assert dev_get_stats(v10).rx_packets == 1
    assert dev_get_stats(b.dev).rx_dropped == 1  # VID 20: nobody's
    dev_close(v10)
    b.inject([tagged])
    loop.run_ready()
    assert len(got["vnet0.10"]) == 1 and dev_get_stats(v10).rx_dropped == 1


def test_carrier_follows_the_real_device_and_it_goes_with_it(setup, loop):
    b, v10, _ = setup
    with pytest.raises(NetdevError) as ei:
        vlan_dev_create(b.ns, b.dev, "vnet0.x", 10)
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(NetdevError):
        vlan_dev_create(b.ns, b.dev, "vnet0.y", 4095)
    with pytest.raises(NetdevError):
        vlan_dev_create(b.ns, v10, "vnet0.10.5", 5)
    dev_open(v10)
    dev_close(b.dev)
    assert not v10.flags & 1  # closed with its real device
    with pytest.raises(NetdevError) as ei:
        dev_open(v10)
    assert ei.value.errno == errno.ENETDOWN
    dev_open(b.dev)
    loop.run_ready()
    dev_open(v10)
    assert netif_carrier_ok(v10)
    v20 = vlan_dev_create(b.ns, b.dev, "vnet0.20", 20)
    vlan_dev_destroy(v20)
    assert b.ns.get("vnet0.20") is None
    vlan_dev_create(b.ns, b.dev, "vnet0.20", 20)  # the VID is free again
