"""TX: qdisc, stop before the ring is full -> wake on completion, backpressure, watchdog,
drop accounting. NETDEV_TX_BUSY is a counted can't-happen, never backpressure."""

from __future__ import annotations

import dataclasses
import errno
import logging

import pytest

from vnet.node.ethtool import ethtool_get_stats
from vnet.node.netdevice import (
    NET_XMIT_DROP, NET_XMIT_SUCCESS, NETDEV_TX_BUSY, NETDEV_TX_OK, NetdevError, dev_add_pack, dev_close,
    dev_change_tx_queue_len, dev_get_stats, dev_open, netif_queue_stopped, qdisc_get_stats,
)
from vnet.node.skbuff import ETH_P_8021Q, ETH_P_ALL, PACKET_OUTGOING, alloc_skb, skb_mac_header, \
    skb_put_data
from vnet.node.vnic import vnic_start_xmit


def seqs(frames, drv):
    return [drv.seq_of(f) for f in frames]


def test_frames_go_out_in_batches_with_stats(bench, drv):
    b = bench().up()
    for i in range(10):
        assert b.send(b.frame(i, dst=drv.OTHER, size=60 + i)) == NET_XMIT_SUCCESS
    assert b.wire_rx == []  # the DMA engine runs from the loop, after the doorbells
    b.loop.run_ready()
    assert seqs(b.wire_rx, drv) == list(range(10))
    s = dev_get_stats(b.dev)
    assert s.tx_packets == 10 and s.tx_bytes == sum(60 + i for i in range(10))
    st = ethtool_get_stats(b.dev)
    assert st["tx_dma_batches"] == 1 and st["tx_doorbells"] == 10  # one link.send for all
    assert st["tx_queue_0_packets"] == 10


def record_xmit(dev):
    """Wrap ndo_start_xmit to record what it returns to the qdisc."""
    rcs = []
    inner = dev.netdev_ops.ndo_start_xmit

    def xmit(skb, d):
        rc = inner(skb, d)
        rcs.append(rc)
        return rc

    dev.netdev_ops = dataclasses.replace(dev.netdev_ops, ndo_start_xmit=xmit)
    return rcs


def test_full_ring_stops_the_queue_before_busy_and_wakes_once(bench, drv):
    b = bench(tx_ring_size=8).up()
    rcs = record_xmit(b.dev)
    for i in range(12):
        assert b.send(b.frame(i, dst=drv.OTHER)) == NET_XMIT_SUCCESS
    # The 8th frame took the last descriptor: the queue stopped right then, so the driver
    # was never handed a frame it could not post.
    assert rcs == [NETDEV_TX_OK] * 8
    assert netif_queue_stopped(b.dev)
    st = ethtool_get_stats(b.dev)
    assert (st["tx_queue_0_stops"], st["tx_queue_0_wakes"], st["tx_busy"]) == (1, 0, 0)
    q = qdisc_get_stats(b.dev)
    assert q.qlen == 4 and q.requeues == 0
    b.loop.run_ready()  # DMA, completion IRQ, poll: clean 8, wake, the 4 queued go out
    assert rcs == [NETDEV_TX_OK] * 12 and NETDEV_TX_BUSY not in rcs
    assert seqs(b.wire_rx, drv) == list(range(12))  # exactly once, in order
    st = ethtool_get_stats(b.dev)
    assert (st["tx_queue_0_stops"], st["tx_queue_0_wakes"], st["tx_busy"]) == (1, 1, 0)
    assert not netif_queue_stopped(b.dev)
    s, q = dev_get_stats(b.dev), qdisc_get_stats(b.dev)
    assert s.tx_packets == q.packets == st["tx_queue_0_packets"] == 12
    assert s.tx_dropped == 0 and q.drops == 0 and q.requeues == 0 and q.qlen == 0


def test_many_ring_fulls_never_busy_in_order_and_balanced(bench, drv):
    b = bench(tx_ring_size=8).up()
    rcs = record_xmit(b.dev)
    for i in range(30):
        assert b.send(b.frame(i, dst=drv.OTHER)) == NET_XMIT_SUCCESS
    assert netif_queue_stopped(b.dev) and qdisc_get_stats(b.dev).qlen == 22
    b.loop.run_ready()
    assert seqs(b.wire_rx, drv) == list(range(30))  # exactly once, in order
    assert rcs == [NETDEV_TX_OK] * 30
    st = ethtool_get_stats(b.dev)
    assert st["tx_busy"] == 0
    assert st["tx_queue_0_wakes"] >= 1 and st["tx_queue_0_wakes"] == st["tx_queue_0_stops"]
    assert not netif_queue_stopped(b.dev)
    assert dev_get_stats(b.dev).tx_packets == 30
    q = qdisc_get_stats(b.dev)
    assert q.qlen == 0 and q.requeues == 0 and q.packets == 30


def test_busy_is_a_counted_rate_limited_bug(bench, drv, caplog):
    b = bench(tx_ring_size=2).up()
    b.near.stall()
    for i in range(2):
        b.send(b.frame(i, dst=drv.OTHER))
    assert netif_queue_stopped(b.dev)
    # A broken caller (or a driver bug) hands a frame to a full ring with the queue awake.
    b.dev.tx_queue.stopped = False
    caplog.set_level(logging.ERROR, logger="vnet.node.vnic")
    for i in range(25):
        skb = alloc_skb(64)
        skb_put_data(skb, b.frame(100 + i, dst=drv.OTHER))
        skb.dev = b.dev
        assert vnic_start_xmit(skb, b.dev) == NETDEV_TX_BUSY
    assert ethtool_get_stats(b.dev)["tx_busy"] == 25
    assert netif_queue_stopped(b.dev)
    bugs = [r for r in caplog.records if "TX ring full when queue awake" in r.getMessage()]
    assert 1 <= len(bugs) <= 10  # net_ratelimit: 10 per 5 s


def test_backpressure_fills_ring_then_qdisc_and_drops_are_counted_in_the_qdisc(bench, drv):
    b = bench(tx_ring_size=8).up()
    dev_change_tx_queue_len(b.dev, 10)
    b.near.stall()
    results = [b.send(b.frame(i, dst=drv.OTHER)) for i in range(30)]
    b.loop.advance(0.005)  # the engine retries every ms and keeps being refused
    assert results.count(NET_XMIT_DROP) == 12  # 8 on the ring + 10 queued, the rest dropped
    assert all(r == NET_XMIT_SUCCESS for r in results[:18])
    q = qdisc_get_stats(b.dev)
    assert q.drops == 12 and q.qlen == 10
    assert dev_get_stats(b.dev).tx_dropped == 0  # as Linux: qdisc drops are the qdisc's
    assert ethtool_get_stats(b.dev)["tx_link_backpressure"] >= 5
    assert b.wire_rx == []
    b.near.unstall()
    b.loop.advance(0.005)
    assert seqs(b.wire_rx, drv) == list(range(18))
    assert dev_get_stats(b.dev).tx_packets == 18


def test_watchdog_fires_when_the_link_stalls_past_watchdog_timeo(bench, drv):
    b = bench(tx_ring_size=4).up()
    b.near.stall()
    for i in range(6):
        b.send(b.frame(i, dst=drv.OTHER))
    assert netif_queue_stopped(b.dev)
    b.loop.advance(9.9)  # watchdog ticks every 5 s; stalled for 9.9 s, no 5 s check missed
    assert ethtool_get_stats(b.dev)["tx_timeouts"] == 0
    b.loop.advance(0.2)
    assert ethtool_get_stats(b.dev)["tx_timeouts"] == 1
    assert b.dev.tx_queue.trans_timeout == 1
    b.near.unstall()
    b.loop.advance(0.01)
    assert seqs(b.wire_rx, drv) == list(range(6))  # the timeout lost nothing
    b.loop.advance(30)
    assert ethtool_get_stats(b.dev)["tx_timeouts"] == 1


def test_watchdog_quiet_for_a_short_stall_and_normal_traffic(bench, drv):
    b = bench(tx_ring_size=4).up()
    b.near.stall()
    for i in range(6):
        b.send(b.frame(i, dst=drv.OTHER))
    b.loop.advance(3.0)
    b.near.unstall()
    for t in range(200):  # then steady traffic for 20 s
        b.send(b.frame(100 + t, dst=drv.OTHER))
        b.loop.advance(0.1)
    assert ethtool_get_stats(b.dev)["tx_timeouts"] == 0
    assert len(b.wire_rx) == 206


def test_xmit_on_a_down_device_is_dropped_and_counted(bench, drv):
    b = bench()
    assert b.send(b.frame(1, dst=drv.OTHER)) == NET_XMIT_DROP
    s = dev_get_stats(b.dev)
    assert s.tx_dropped == 1 and s.tx_carrier_errors == 0


def test_xmit_without_carrier_counts_carrier_errors(bench, drv):
    b = bench().up()
    b.far.unplug()
    b.loop.run_ready()
    assert b.send(b.frame(1, dst=drv.OTHER)) == NET_XMIT_DROP
    s = dev_get_stats(b.dev)
    assert (s.tx_dropped, s.tx_carrier_errors, s.tx_errors) == (1, 1, 1)
    b.far.plug()
    b.loop.run_ready()
    assert b.send(b.frame(2, dst=drv.OTHER)) == NET_XMIT_SUCCESS


def test_frame_size_checks_are_the_callers_mistake(bench, drv):
    b = bench().up()
    with pytest.raises(NetdevError) as e:
        b.send(b.frame(1, dst=drv.OTHER, size=1500 + 15))
    assert e.value.errno == errno.EMSGSIZE
    assert b.send(b.frame(1, dst=drv.OTHER, size=1514)) == NET_XMIT_SUCCESS
    tagged = drv.make_frame(drv.OTHER, b.mac, 2, size=1518, proto=ETH_P_8021Q)
    assert b.send(tagged) == NET_XMIT_SUCCESS
    with pytest.raises(NetdevError) as e:
        b.send(drv.make_frame(drv.OTHER, b.mac, 3, size=1519, proto=ETH_P_8021Q))
    assert e.value.errno == errno.EMSGSIZE
    with pytest.raises(NetdevError) as e:
        b.send(b"\x00" * 13)
    assert e.value.errno == errno.EINVAL
    b.loop.run_ready()
    assert len(b.wire_rx) == 2 and dev_get_stats(b.dev).tx_dropped == 0


def test_start_xmit_never_fails_its_caller(bench, drv):
    b = bench()  # hardware not started
    skb = alloc_skb(64)
    skb_put_data(skb, b.frame(1, dst=drv.OTHER))
    skb.dev = b.dev
    assert vnic_start_xmit(skb, b.dev) == NETDEV_TX_OK
    assert dev_get_stats(b.dev).tx_dropped == 1


def test_taps_see_each_transmitted_frame_once_as_outgoing(bench, drv):
    b = bench(tx_ring_size=4).up()
    seen = []
    dev_add_pack(b.ns, ETH_P_ALL, lambda skb, dev: seen.append(
        (skb.pkt_type, bytes(skb_mac_header(skb)))))
    for i in range(12):  # the queue stops and wakes on the way
        b.send(b.frame(i, dst=drv.OTHER))
    b.loop.run_ready()
    assert ethtool_get_stats(b.dev)["tx_queue_0_stops"] >= 1
    assert [t for t, _ in seen] == [PACKET_OUTGOING] * 12
    assert [drv.seq_of(f) for _, f in seen] == list(range(12))
    assert [f for _, f in seen] == b.wire_rx


def test_carrier_loss_purges_the_qdisc_counting_every_frame(bench, drv):
    b = bench(tx_ring_size=4).up()
    b.near.stall()
    for i in range(10):
        b.send(b.frame(i, dst=drv.OTHER))
    assert qdisc_get_stats(b.dev).qlen == 6
    b.far.unplug()
    b.loop.run_ready()
    assert qdisc_get_stats(b.dev).drops == 6
    assert dev_get_stats(b.dev).tx_dropped == 0  # counted once: in the qdisc that held them


def test_drop_counters_sum_exactly_to_what_was_offered(bench, drv):
    b = bench(tx_ring_size=4).up()
    dev_change_tx_queue_len(b.dev, 5)
    b.near.stall()
    results = [b.send(b.frame(i, dst=drv.OTHER)) for i in range(12)]
    dev_close(b.dev)  # 4 on the ring, 5 in the qdisc, 3 refused by the full qdisc
    down = b.send(b.frame(99, dst=drv.OTHER))  # refused: the device is down
    s, q = dev_get_stats(b.dev), qdisc_get_stats(b.dev)
    offered = len(results) + 1
    assert results.count(NET_XMIT_DROP) + (down == NET_XMIT_DROP) == 4
    assert q.drops == 3 + 5  # full, then purged at ifdown, each once
    assert s.tx_dropped == 4 + 1  # the ring's frames and the down refusal
    assert s.tx_packets + s.tx_dropped + q.drops == offered


def test_ifdown_accounts_for_every_frame(bench, drv):
    b = bench(tx_ring_size=4).up()
    b.near.stall()
    for i in range(10):
        b.send(b.frame(i, dst=drv.OTHER))
    dev_close(b.dev)  # 4 posted but unsendable, 6 in the qdisc
    s = dev_get_stats(b.dev)
    q = qdisc_get_stats(b.dev)
    assert s.tx_packets == 0 and s.tx_dropped == 4 and q.drops == 6  # each counted once
    b.near.unstall()
    dev_open(b.dev)
    assert b.send(b.frame(98, dst=drv.OTHER)) == NET_XMIT_DROP  # no carrier yet
    b.loop.run_ready()  # the PHY reports the link
    b.send(b.frame(99, dst=drv.OTHER))
    b.loop.run_ready()
    assert seqs(b.wire_rx, drv) == [99]


def test_ifdown_flushes_what_the_link_will_take(bench, drv):
    b = bench().up()
    for i in range(5):
        b.send(b.frame(i, dst=drv.OTHER))
    dev_close(b.dev)  # before the DMA engine ran: the stop path sends them
    b.loop.run_ready()
    assert seqs(b.wire_rx, drv) == list(range(5))
    s = dev_get_stats(b.dev)
    assert s.tx_packets == 5 and s.tx_dropped == 0
