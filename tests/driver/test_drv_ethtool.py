"""ethtool: -i, link, -g/-G (resize under traffic), -c/-C, -S, and dispatch."""

from __future__ import annotations

import errno

import pytest

from vnet.node.ethtool import (
    EthtoolCoalesce, EthtoolRingparam, ethtool_get_coalesce, ethtool_get_drvinfo,
    ethtool_get_link, ethtool_get_ringparam, ethtool_get_stats, ethtool_get_strings,
    ethtool_set_coalesce, ethtool_set_ringparam,
)
from vnet.node.netdevice import (
    NetdevError, alloc_etherdev, dev_close, dev_get_stats, netif_queue_stopped,
    qdisc_get_stats,
)

REQUIRED_STATS = [
    "rx_queue_0_packets", "rx_queue_0_bytes", "rx_queue_0_drops", "tx_queue_0_packets",
    "tx_queue_0_bytes", "tx_queue_0_stops", "tx_queue_0_wakes", "tx_busy", "tx_timeouts",
    "napi_polls", "napi_budget_exhausted", "irqs_raised", "irqs_coalesced", "rx_filtered",
]


def test_drvinfo(bench):
    b = bench()
    info = ethtool_get_drvinfo(b.dev)
    assert info.driver == "vnet" and info.version
    assert info.bus_info == "vnet:dut"
    assert info.n_stats == len(ethtool_get_strings(b.dev))


def test_get_link_needs_up_and_carrier(bench):
    b = bench()
    assert ethtool_get_link(b.dev) is False
    b.up()
    assert ethtool_get_link(b.dev) is True
    b.far.unplug()
    b.loop.run_ready()
    assert ethtool_get_link(b.dev) is False


def test_stats_are_ordered_named_ints(bench):
    b = bench().up()
    b.inject([b.frame(1)])
    b.loop.advance(0.001)
    st = ethtool_get_stats(b.dev)
    names = list(st)
    assert names == ethtool_get_strings(b.dev)
    assert all(isinstance(v, int) for v in st.values())
    assert [n for n in names if n in REQUIRED_STATS] == REQUIRED_STATS
    assert st["rx_queue_0_packets"] == 1 and st["rx_queue_0_bytes"] == 64


def test_ringparam_get_and_validation(bench):
    b = bench(rx_ring_size=128)
    assert ethtool_get_ringparam(b.dev) == EthtoolRingparam(4096, 4096, 128, 256)
    for kw in ({"rx_pending": 0}, {"tx_pending": 4097}, {"rx_pending": -1},
               {"tx_pending": "64"}, {"rx_pending": True}):
        with pytest.raises(NetdevError) as e:
            ethtool_set_ringparam(b.dev, **kw)
        assert e.value.errno == errno.EINVAL
    ethtool_set_ringparam(b.dev, tx_pending=64)  # while down: just the sizes
    assert ethtool_get_ringparam(b.dev).tx_pending == 64
    assert ethtool_get_ringparam(b.dev).rx_pending == 128


def test_coalesce_get_set_and_validation(bench):
    b = bench()
    assert ethtool_get_coalesce(b.dev) == EthtoolCoalesce(rx_usecs=0, rx_frames=1)
    ethtool_set_coalesce(b.dev, rx_usecs=10)
    assert ethtool_get_coalesce(b.dev) == EthtoolCoalesce(10, 1)
    for kw in ({"rx_usecs": -1}, {"rx_frames": -2}, {"rx_usecs": 100_001},
               {"rx_frames": 4097}, {"rx_usecs": 1.5}):
        with pytest.raises(NetdevError) as e:
            ethtool_set_coalesce(b.dev, **kw)
        assert e.value.errno == errno.EINVAL
    assert ethtool_get_coalesce(b.dev) == EthtoolCoalesce(10, 1)


def test_missing_ops_are_eopnotsupp():
    dev = alloc_etherdev()
    with pytest.raises(NetdevError) as e:
        ethtool_get_stats(dev)
    assert e.value.errno == errno.EOPNOTSUPP


def test_shrink_rx_ring_below_its_occupancy_keeps_every_frame(bench):
    b = bench(rx_usecs=1000, rx_frames=64).up()
    b.inject([b.frame(i) for i in range(20)])
    b.loop.run_ready()  # held in the ring by coalescing
    assert len(b.hw.rx_ring) == 20
    ethtool_set_ringparam(b.dev, rx_pending=8)
    b.loop.run_ready()
    assert [int.from_bytes(f[14:18], "big") for _, f in b.delivered] == list(range(20))
    s = dev_get_stats(b.dev)
    assert s.rx_missed_errors == 0 and s.rx_packets == 20


def test_shrink_tx_ring_below_its_occupancy_while_stalled(bench, drv):
    b = bench(tx_ring_size=32).up()
    b.near.stall()
    for i in range(50):
        b.send(b.frame(i, dst=drv.OTHER))
    assert netif_queue_stopped(b.dev) and qdisc_get_stats(b.dev).qlen == 18
    ethtool_set_ringparam(b.dev, tx_pending=8)
    assert netif_queue_stopped(b.dev)  # 32 posted on an 8-slot ring: full until drained
    b.loop.advance(0.01)
    ethtool_set_ringparam(b.dev, tx_pending=128)  # grow again, still stalled
    b.loop.advance(0.01)
    b.near.unstall()
    b.loop.advance(0.01)
    assert [drv.seq_of(f) for f in b.wire_rx] == list(range(50))
    assert dev_get_stats(b.dev).tx_packets == 50 and qdisc_get_stats(b.dev).drops == 0


def test_resize_under_bidirectional_traffic_loses_nothing(pair, drv):
    p = pair(tx_ring_size=64, rx_ring_size=256).up()
    sizes = [(256, 16), (512, 8), (128, 64), (1024, 128), (256, 32)]
    sent = {p.a: 0, p.b: 0}
    quiesced = []  # was a poll pending when a queued resize ran?
    for rnd in range(60):
        for dev, peer in ((p.a, p.b), (p.b, p.a)):
            for _ in range(40):
                drv.xmit(dev, drv.make_frame(peer.dev_addr, dev.dev_addr, sent[dev],
                                             size=60 + sent[dev] % 200))
                sent[dev] += 1
        if rnd % 3 == 1:
            # Resize while frames sit in the qdisc, the TX ring and the peer's RX path; every
            # other time from a callback queued among the softirqs, so a NAPI poll is pending.
            rx, tx = sizes[(rnd // 3) % len(sizes)]
            for dev in (p.a, p.b):
                if rnd % 2:
                    p.loop.call_soon(lambda d=dev, rx=rx, tx=tx: (
                        quiesced.append(d.priv.napi.scheduled),
                        ethtool_set_ringparam(d, rx_pending=rx, tx_pending=tx)))
                else:
                    ethtool_set_ringparam(dev, rx_pending=rx, tx_pending=tx)
        p.loop.advance(0.00002)
    p.loop.advance(0.01)
    assert [drv.seq_of(f) for f in p.got_b] == list(range(sent[p.a]))
    assert [drv.seq_of(f) for f in p.got_a] == list(range(sent[p.b]))
    sa, sb = dev_get_stats(p.a), dev_get_stats(p.b)
    assert (sa.tx_packets, sa.tx_bytes) == (sb.rx_packets, sb.rx_bytes)
    assert (sb.tx_packets, sb.tx_bytes) == (sa.rx_packets, sa.rx_bytes)
    for s in (sa, sb):
        assert s.rx_missed_errors == s.tx_dropped == s.rx_dropped == 0
    assert qdisc_get_stats(p.a).drops == qdisc_get_stats(p.b).drops == 0
    assert True in quiesced  # at least one resize had to quiesce a scheduled poll


def test_resize_while_down_then_up_uses_new_sizes(bench):
    b = bench()
    ethtool_set_ringparam(b.dev, rx_pending=4)
    b.up()
    b.inject([b.frame(i) for i in range(6)])
    b.loop.advance(0.001)
    assert dev_get_stats(b.dev).rx_missed_errors == 2
    dev_close(b.dev)
    assert ethtool_get_ringparam(b.dev).rx_pending == 4
