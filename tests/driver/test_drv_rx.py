"""RX: DMA ring, length checks, address filter, coalescing, IRQ/NAPI, delivery, counters."""

from __future__ import annotations

import logging

import pytest

from vnet.node.ethtool import ethtool_get_stats, ethtool_set_coalesce
from vnet.node.netdevice import (
    NetdevError, dev_add_pack, dev_close, dev_get_stats, dev_mc_add, dev_mc_del,
    dev_remove_pack, dev_set_allmulti, dev_set_promiscuity,
)
from vnet.node.skbuff import (
    ETH_P_ALL, ETH_P_ARP, PACKET_BROADCAST, PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST,
    skb_mac_header,
)
from vnet.node.vnic import vnic_poll

GROUP = b"\x01\x00\x5e\x00\x00\xfb"
GROUP2 = b"\x01\x00\x5e\x00\x00\xfc"


def spy_polls(b):
    """Record (work, still scheduled, IRQ masked) after every poll of the NIC's NAPI."""
    log = []
    napi = b.priv.napi

    def poll(n, budget):
        work = vnic_poll(n, budget)
        log.append((work, n.scheduled, b.hw.irq_masked))
        return work

    napi.poll = poll
    return log


def test_rx_overflow_drops_are_counted_exactly(bench):
    b = bench(rx_ring_size=16).up()
    b.inject([b.frame(i) for i in range(40)])  # one batch: NAPI cannot run in between
    b.loop.advance(0.001)
    s = dev_get_stats(b.dev)
    assert s.rx_missed_errors == 24 and s.rx_packets == 16
    assert s.rx_dropped == 0  # ring-full drops are not rx_dropped (if_link.h)
    assert ethtool_get_stats(b.dev)["rx_queue_0_drops"] == 24
    assert [i for i in range(16)] == [int.from_bytes(f[14:18], "big") for _, f in b.delivered]


def test_runts_and_giants_are_length_errors(bench):
    b = bench().up()
    b.inject([b"\x00" * 13, b.frame(1, size=1500 + 18), b.frame(2, size=1500 + 19),
              b.frame(3, size=14)])
    b.loop.advance(0.001)
    s = dev_get_stats(b.dev)
    assert s.rx_length_errors == 2 and s.rx_errors == 2 and s.rx_packets == 2
    st = ethtool_get_stats(b.dev)
    assert st["rx_runts"] == 1 and st["rx_giants"] == 1


def test_filter_own_broadcast_multicast_other(bench, drv):
    b = bench().up()
    frames = [b.frame(1), b.frame(2, dst=drv.BCAST), b.frame(3, dst=GROUP),
              b.frame(4, dst=drv.OTHER)]
    b.inject(frames)
    b.loop.advance(0.001)
    assert [(t, drv.seq_of(f)) for t, f in b.delivered] == [(PACKET_HOST, 1),
                                                             (PACKET_BROADCAST, 2)]
    assert ethtool_get_stats(b.dev)["rx_filtered"] == 2

    dev_mc_add(b.dev, GROUP)
    b.delivered.clear()
    b.inject(frames)
    b.loop.advance(0.001)
    assert [(t, drv.seq_of(f)) for t, f in b.delivered] == [
        (PACKET_HOST, 1), (PACKET_BROADCAST, 2), (PACKET_MULTICAST, 3)]
    assert ethtool_get_stats(b.dev)["rx_filtered"] == 3
    assert dev_get_stats(b.dev).multicast == 1  # broadcast is not counted as multicast

    dev_mc_del(b.dev, GROUP)
    b.delivered.clear()
    b.inject([b.frame(5, dst=GROUP)])
    b.loop.advance(0.001)
    assert b.delivered == [] and ethtool_get_stats(b.dev)["rx_filtered"] == 4


def test_promiscuous_and_allmulti_modes(bench, drv):
    b = bench().up()
    dev_set_allmulti(b.dev, 1)
    b.inject([b.frame(1, dst=GROUP), b.frame(2, dst=GROUP2), b.frame(3, dst=drv.OTHER)])
    b.loop.advance(0.001)
    assert [drv.seq_of(f) for _, f in b.delivered] == [1, 2]
    assert ethtool_get_stats(b.dev)["rx_filtered"] == 1
    dev_set_allmulti(b.dev, -1)

    dev_set_promiscuity(b.dev, 1)
    b.delivered.clear()
    b.inject([b.frame(4, dst=drv.OTHER), b.frame(5, dst=GROUP2), b.frame(6)])
    b.loop.advance(0.001)
    assert [(t, drv.seq_of(f)) for t, f in b.delivered] == [
        (PACKET_OTHERHOST, 4), (PACKET_MULTICAST, 5), (PACKET_HOST, 6)]
    assert ethtool_get_stats(b.dev)["rx_filtered"] == 1
    dev_set_promiscuity(b.dev, -1)
    b.inject([b.frame(7, dst=drv.OTHER)])
    b.loop.advance(0.001)
    assert ethtool_get_stats(b.dev)["rx_filtered"] == 2


def test_mc_filter_overflow_falls_back_to_allmulti(bench):
    b = bench().up()
    for i in range(65):
        dev_mc_add(b.dev, b"\x01\x00\x5e\x00\x01" + bytes([i]))
    assert b.hw.allmulti and not b.dev.allmulti


def test_poll_at_exactly_budget_is_polled_again_with_irq_masked(bench):
    b = bench().up()
    polls = spy_polls(b)
    b.inject([b.frame(i) for i in range(64)])
    b.loop.run_ready()  # 64 >= rx-frames 32: the IRQ fires at once
    assert polls[0] == (64, True, True)  # whole budget: not completed, IRQ still masked
    assert polls[1] == (0, False, False)  # polled again, nothing left: complete + unmask
    assert len(polls) == 2
    assert len(b.delivered) == 64
    st = ethtool_get_stats(b.dev)
    assert (st["napi_polls"], st["napi_budget_exhausted"], st["irqs_raised"]) == (2, 1, 1)


def test_poll_over_budget_spreads_over_polls(bench):
    b = bench(rx_ring_size=512).up()
    polls = spy_polls(b)
    b.inject([b.frame(i) for i in range(150)])
    b.loop.run_ready()
    assert [p[0] for p in polls] == [64, 64, 22]
    assert [p[2] for p in polls] == [True, True, False]
    assert [int.from_bytes(f[14:18], "big") for _, f in b.delivered] == list(range(150))


def test_no_irq_storm_while_traffic_flows(bench):
    b = bench(rx_usecs=0, rx_frames=1).up()  # the most IRQ-happy setting
    seq = 0
    for step in range(200):
        b.inject([b.frame(seq + i) for i in range(step % 7 + 1)])
        seq += step % 7 + 1
        if step % 3:
            b.send(b.frame(seq, dst=b"\x02\x00\x00\x00\x00\x99"))
        b.loop.advance(0.00001)
        st = ethtool_get_stats(b.dev)
        assert st["irqs_raised"] <= st["napi_polls"] + 1
    assert len(b.delivered) == seq


def test_coalescing_by_frames(bench):
    b = bench(rx_usecs=1000, rx_frames=8).up()
    polls = spy_polls(b)
    b.inject([b.frame(i) for i in range(3)])
    b.loop.run_ready()
    b.inject([b.frame(i) for i in range(3, 6)])
    b.loop.run_ready()
    assert polls == [] and ethtool_get_stats(b.dev)["irqs_coalesced"] == 2
    b.inject([b.frame(i) for i in range(6, 8)])  # the 8th frame
    b.loop.run_ready()
    st = ethtool_get_stats(b.dev)
    assert st["irqs_raised"] == 1 and len(b.delivered) == 8


def test_coalescing_by_usecs_from_the_first_pending_frame(bench):
    b = bench(rx_usecs=50, rx_frames=32).up()
    b.inject([b.frame(0)])
    b.loop.run_ready()
    t0 = b.loop.time()
    b.loop.advance(0.000020)
    b.inject([b.frame(1)])  # a second frame does not restart the clock
    b.loop.advance(0.000020)
    assert b.delivered == [] and ethtool_get_stats(b.dev)["irqs_raised"] == 0
    b.loop.advance(0.000011)
    assert len(b.delivered) == 2
    assert ethtool_get_stats(b.dev)["irqs_raised"] == 1
    assert b.loop.time() - t0 >= 0.000050


@pytest.mark.parametrize("usecs,frames", [(0, 1), (0, 0), (50, 1)])
def test_coalescing_off_means_one_irq_per_batch(bench, usecs, frames):
    b = bench(rx_usecs=usecs, rx_frames=frames).up()
    for i in range(3):
        b.inject([b.frame(i)])
        b.loop.run_ready()
        assert len(b.delivered) == i + 1
    st = ethtool_get_stats(b.dev)
    assert st["irqs_raised"] == 3 and st["irqs_coalesced"] == 0


def test_frames_only_coalescing_and_the_ring_full_interrupt(bench):
    b = bench(rx_usecs=0, rx_frames=4, rx_ring_size=8).up()
    b.inject([b.frame(i) for i in range(3)])
    b.loop.advance(1.0)  # no time limit: they wait for the 4th
    assert b.delivered == []
    b.inject([b.frame(3)])
    b.loop.run_ready()
    assert len(b.delivered) == 4
    ethtool_set_coalesce(b.dev, rx_frames=100)  # more than the ring holds
    b.inject([b.frame(i) for i in range(4, 12)])
    b.loop.run_ready()
    assert len(b.delivered) == 12  # the full ring raised the IRQ


def test_set_coalesce_applies_to_pending_frames(bench):
    b = bench(rx_usecs=0, rx_frames=4).up()
    b.inject([b.frame(0)])
    b.loop.run_ready()
    assert b.delivered == []
    ethtool_set_coalesce(b.dev, rx_frames=1)
    b.loop.run_ready()
    assert len(b.delivered) == 1


def test_unknown_ethertype_is_counted_in_rx_dropped_unless_a_tap_took_it(bench, drv):
    b = bench().up()
    b.inject([b.frame(1, proto=0x88B6)])
    b.loop.advance(0.001)
    s = dev_get_stats(b.dev)
    assert s.rx_dropped == 1 and s.rx_packets == 1 and s.rx_nohandler == 0
    taps = []
    dev_add_pack(b.dev, ETH_P_ALL, lambda skb, dev: taps.append(skb.protocol))
    b.inject([b.frame(2, proto=0x88B6), b.frame(3)])
    b.loop.advance(0.001)
    assert taps == [0x88B6, drv.ETH_P_TEST]
    assert dev_get_stats(b.dev).rx_dropped == 1
    assert [drv.seq_of(f) for _, f in b.delivered] == [3]


def test_handler_tables_namespace_device_and_removal(bench, drv):
    b = bench().up()
    ns_arp, dev_arp = [], []

    def on_ns(skb, dev):
        ns_arp.append(bytes(skb_mac_header(skb)))

    def on_dev(skb, dev):
        dev_arp.append(skb.len)

    dev_add_pack(b.ns, ETH_P_ARP, on_ns)
    dev_add_pack(b.dev, ETH_P_ARP, on_dev)
    arp = b.frame(1, dst=drv.BCAST, proto=ETH_P_ARP, size=42)
    b.inject([arp])
    b.loop.advance(0.001)
    assert ns_arp == [arp] and dev_arp == [28]
    dev_remove_pack(b.ns, ETH_P_ARP, on_ns)
    b.inject([arp])
    b.loop.advance(0.001)
    assert len(ns_arp) == 1 and len(dev_arp) == 2
    with pytest.raises(NetdevError):
        dev_remove_pack(b.ns, ETH_P_ARP, on_ns)


def test_a_raising_handler_is_logged_and_counted_not_fatal(bench, drv, caplog):
    b = bench().up()
    boom = []

    def bad(skb, dev):
        boom.append(1)
        raise RuntimeError("handler bug")

    dev_add_pack(b.ns, ETH_P_ARP, bad)
    with caplog.at_level(logging.ERROR):
        b.inject([b.frame(1, proto=ETH_P_ARP), b.frame(2)])
        b.loop.advance(0.001)
    assert boom == [1] and [drv.seq_of(f) for _, f in b.delivered] == [2]
    assert dev_get_stats(b.dev).rx_dropped == 1
    assert "handler bug" in caplog.text


def test_frames_waiting_in_the_ring_at_ifdown_are_counted(bench):
    b = bench(rx_usecs=1000, rx_frames=32).up()
    b.inject([b.frame(i) for i in range(5)])
    b.loop.run_ready()  # coalescing holds the IRQ back
    dev_close(b.dev)
    s = dev_get_stats(b.dev)
    assert s.rx_dropped == 5 and s.rx_packets == 0


def test_frames_arriving_as_readonly_memoryviews(bench, drv):
    """ZmqLink hands over zero-copy views into one received message; the DMA copies them."""
    b = bench().up()
    dev_mc_add(b.dev, GROUP)
    payload = b"".join([b.frame(1), b.frame(2, dst=GROUP), b.frame(3, dst=drv.OTHER),
                        b.frame(4, dst=drv.BCAST)])
    view = memoryview(payload)
    b.hw._link_rx([view[i * 64:(i + 1) * 64] for i in range(4)])  # what the link's rx() gets
    b.loop.advance(0.001)
    assert [(t, drv.seq_of(f)) for t, f in b.delivered] == [
        (PACKET_HOST, 1), (PACKET_MULTICAST, 2), (PACKET_BROADCAST, 4)]
    assert ethtool_get_stats(b.dev)["rx_filtered"] == 1
    del view


def test_irq_while_napi_disabled_does_not_leave_the_line_masked(bench):
    # vnic_interrupt masks only once napi_schedule_prep took the instance (e1000_intr):
    # an IRQ that finds NAPI disabled (a ring resize, ifdown in progress) must leave the
    # line unmasked, or nothing would ever unmask it and RX would stall for good.
    from vnet.node.napi import napi_disable, napi_enable
    b = bench().up()
    napi = b.priv.napi
    napi_disable(napi)
    assert not b.hw.irq_masked
    b.inject([b.frame(1)])
    b.loop.run_ready()  # the IRQ fires; NAPI cannot be scheduled
    assert b.hw.irqs_raised >= 1
    assert not b.hw.irq_masked
    assert b.delivered == []
    napi_enable(napi)
    b.inject([b.frame(2)])
    b.loop.run_ready()  # the next IRQ schedules the poll, which finds both frames
    assert [drv_seq(f) for _, f in b.delivered] == [1, 2]
    assert not b.hw.irq_masked


def test_irq_while_napi_scheduled_marks_missed_and_keeps_the_mask_state(bench):
    from vnet.node.vnic import vnic_interrupt
    from vnet.node.napi import NAPI_STATE_MISSED, napi_schedule_prep
    b = bench().up()
    napi = b.priv.napi
    assert napi_schedule_prep(napi)  # someone else (a busy poller) owns NAPI
    vnic_interrupt(0, b.dev)
    assert napi.state & NAPI_STATE_MISSED  # the owner will poll once more
    assert not b.hw.irq_masked  # and unmask nothing it did not mask


def drv_seq(frame: bytes) -> int:
    return int.from_bytes(frame[14:18], "big")
