"""Two vnet NICs back to back (wire_pair): bulk exchange with exact, matching statistics."""

from __future__ import annotations

import pytest

from vnet.node.ethtool import ethtool_get_stats
from vnet.node.netdevice import (
    NET_XMIT_SUCCESS, NETDEV_CHANGE, dev_add_pack, dev_get_stats, qdisc_get_stats,
    register_netdevice_notifier,
)
from vnet.node.skbuff import ETH_P_ALL, PACKET_HOST, PACKET_OUTGOING
from vnet.node.vnic import vnic_remove

N = 10_000


def exchange(p, drv, n=N, burst=300, step=0.00005):
    """Send ``n`` frames each way, ``burst`` at a time per side, checking the IRQ invariant
    after every step."""
    sent = {p.a: 0, p.b: 0}
    nbytes = {p.a: 0, p.b: 0}
    while sent[p.a] < n or sent[p.b] < n:
        for dev, peer in ((p.a, p.b), (p.b, p.a)):
            for _ in range(min(burst, n - sent[dev])):
                i = sent[dev]
                size = max(18, 14 + (i * 37) % 1501)  # 18 .. 1514 bytes
                frame = drv.make_frame(peer.dev_addr, dev.dev_addr, i, size=size)
                assert drv.xmit(dev, frame) == NET_XMIT_SUCCESS
                sent[dev] += 1
                nbytes[dev] += size
        p.loop.advance(step)
        for dev in (p.a, p.b):
            st = ethtool_get_stats(dev)
            assert st["irqs_raised"] <= st["napi_polls"] + 1
    p.loop.advance(0.01)
    return sent, nbytes


@pytest.mark.parametrize("kw", [
    {},
    {"latency": 0.00003, "tx_ring_size": 32, "rx_ring_size": 512, "rx_usecs": 0,
     "rx_frames": 1},
    {"tx_ring_size": 512, "rx_ring_size": 1024, "rx_usecs": 200, "rx_frames": 128},
], ids=["defaults", "latency-small-tx-ring-no-coalescing", "big-rings-heavy-coalescing"])
def test_ten_thousand_frames_each_way_with_matching_stats(pair, drv, kw):
    p = pair(**kw).up()
    sent, nbytes = exchange(p, drv)
    assert [drv.seq_of(f) for f in p.got_b] == list(range(N))  # each once, in order
    assert [drv.seq_of(f) for f in p.got_a] == list(range(N))
    sa, sb = dev_get_stats(p.a), dev_get_stats(p.b)
    assert sa.tx_packets == sb.rx_packets == N
    assert sb.tx_packets == sa.rx_packets == N
    assert sa.tx_bytes == sb.rx_bytes == nbytes[p.a]
    assert sb.tx_bytes == sa.rx_bytes == nbytes[p.b]
    for s in (sa, sb):
        assert (s.rx_dropped, s.tx_dropped, s.rx_missed_errors, s.rx_errors, s.tx_errors) == (
            0, 0, 0, 0, 0)
    for dev in (p.a, p.b):
        st = ethtool_get_stats(dev)
        assert st["rx_queue_0_packets"] == st["tx_queue_0_packets"] == N
        assert st["rx_filtered"] == 0
        assert st["tx_dma_batches"] < N / 4  # the doorbells were batched
        assert qdisc_get_stats(dev).drops == 0


def test_taps_on_both_sides_see_the_conversation(pair, drv):
    p = pair().up()
    tap_a = []
    dev_add_pack(p.nsa, ETH_P_ALL, lambda skb, dev: tap_a.append(
        (skb.pkt_type, drv.seq_of(bytes(skb.buf[skb.mac_header:skb.tail])))))
    for i in range(3):
        drv.xmit(p.a, drv.make_frame(p.b.dev_addr, p.a.dev_addr, i))
        drv.xmit(p.b, drv.make_frame(p.a.dev_addr, p.b.dev_addr, 100 + i))
    p.loop.advance(0.001)
    assert sorted(tap_a) == sorted([(PACKET_OUTGOING, i) for i in range(3)] +
                                   [(PACKET_HOST, 100 + i) for i in range(3)])


def test_unplug_replug_carrier_events_and_recovery(pair, drv):
    p = pair().up()
    changes = []
    register_netdevice_notifier(p.nsa, lambda ev, dev: changes.append(
        (ev, dev.operstate)) if ev == NETDEV_CHANGE else None)
    p.wa.unplug()
    p.loop.run_ready()
    p.wa.plug()
    p.loop.run_ready()
    assert changes == [(NETDEV_CHANGE, "DOWN"), (NETDEV_CHANGE, "UP")]
    drv.xmit(p.a, drv.make_frame(p.b.dev_addr, p.a.dev_addr, 7))
    p.loop.advance(0.001)
    assert [drv.seq_of(f) for f in p.got_b] == [7]


def test_peer_removed_drops_carrier(pair, drv):
    p = pair().up()
    vnic_remove(p.b)
    p.loop.run_ready()
    assert p.a.operstate == "DOWN"
    assert p.nsb.devices() == []
