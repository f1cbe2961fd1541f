"""vnet: the driver for the vnet NIC (hw.py), written against the core in netdevice.py.

Laid out like a small Linux Ethernet driver (drivers/net/netdevsim, veth): one private state
class (``VnicPriv``, netdev_priv), every function prefixed ``vnic_``, the whole interface in
``VNIC_OPS`` (net_device_ops) and ``VNIC_ETHTOOL_OPS`` (ethtool_ops).

Datapath:

- TX: ``vnic_start_xmit`` posts the skb on the TX ring and rings the doorbell, then stops
  the queue when fewer than ``VNIC_TX_STOP_THRESH`` descriptors are left (netif_txq_maybe_stop),
  so the next frame always fits: NETDEV_TX_BUSY is not backpressure (driver.rst). A ring
  found full anyway is a driver bug, counted in ``tx_busy`` and logged rate-limited, and
  only then returns NETDEV_TX_BUSY. Anything else it cannot send is counted in tx_dropped
  and returns NETDEV_TX_OK.
- The NIC raises one IRQ for both directions. ``vnic_interrupt`` masks it only once
  ``napi_schedule_prep`` has taken the instance, then ``__napi_schedule``: an IRQ that finds
  NAPI disabled or already scheduled leaves the line as it was.
- ``vnic_poll`` first cleans the TX ring (TX completion: tx_packets/tx_bytes, and wakes the
  queue once a quarter of the ring is free: netif_txq_completed_wake), which does not count
  against the budget as napi.rst asks, then receives up to ``budget`` frames: eth_type_trans on each, then the
  whole poll's frames in one netif_receive_skb_list, then the descriptors go back to the NIC
  (``rx_refill``). Under budget it completes and unmasks; at budget it leaves both to the
  core, which polls again with the IRQ still masked.
- TX doorbells honour ``netdev_xmit_more``: within one qdisc run only the last frame (or a
  frame that finds the ring full) rings it.

Defaults (``vnic_probe``): rings of 256 descriptors (max 4096), rx-usecs 0 and rx-frames 1
(an IRQ as soon as a batch lands), NAPI weight 64, max MTU 9000, a 64-entry multicast filter (more groups switch
the filter to all-multicast, as real NICs do).
"""

from __future__ import annotations

import errno
import functools
import logging
from typing import Any, Optional

from .ethtool import (
    EthtoolCoalesce, EthtoolDrvinfo, EthtoolOps, EthtoolRingparam, ethtool_op_get_link,
)
from .hw import VnicHw
from .link import Link
from .napi import (
    NAPI_POLL_WEIGHT, NapiStruct, __napi_schedule, napi_complete_done, napi_disable,
    napi_enable, napi_schedule_prep, netif_napi_add, netif_napi_del,
)
from .netdevice import (
    IFF_ALLMULTI, IFF_LIVE_ADDR_CHANGE, IFF_PROMISC, NETDEV_TX_BUSY, NETDEV_TX_OK,
    NETREG_REGISTERED,
    DeviceNamespace, NetDevice, NetDeviceOps, NetdevError, alloc_etherdev, eth_addr_from_name,
    eth_hw_addr_random, eth_hw_addr_set, eth_mac_addr, format_mac, is_valid_ether_addr,
    netdev_priv, netif_carrier_off, netif_carrier_on, netif_queue_stopped,
    netif_receive_skb_list, netif_running, netif_start_queue, netif_stop_queue,
    netif_trans_update, netif_tx_disable, netif_txq_completed_wake, netif_txq_maybe_stop,
    netif_wake_queue, unregister_netdev,
)
from .skbuff import ETH_HLEN, PACKET_MULTICAST, VLAN_ETH_HLEN, eth_type_trans
from vnet.proto.ratelimit import RateLimit

log = logging.getLogger(__name__)

DRV_NAME = "vnet"
DRV_VERSION = "0.1.0"

VNIC_MAX_MTU = 9000
VNIC_RING_MIN = 1
VNIC_RING_MAX = 4096
VNIC_DEFAULT_RING = 256
# Measured on a 2-node embedded LAN (200 pings): rx-usecs 50 / rx-frames 32 gave p50 2.6 ms,
# rx-usecs 0 / rx-frames 1 gave 1.0 ms. An asyncio timer fires no sooner than the selector's
# 1 ms granularity, so any rx-usecs delay costs a whole millisecond, while the batching it
# would buy already happens: the link delivers a whole batch before the IRQ's poll runs.
VNIC_DEFAULT_RX_USECS = 0
VNIC_DEFAULT_RX_FRAMES = 1
VNIC_MAX_RX_USECS = 100_000  # 100 ms; longer delays are a configuration mistake
VNIC_MAX_RX_FRAMES = VNIC_RING_MAX
VNIC_MC_FILTER_SIZE = 64
# Descriptors one frame may need. A kernel driver stops its queue when fewer than
# MAX_SKB_FRAGS + 1 are free (a worst-case skb); a vnet frame is always one linear buffer,
# one descriptor, so the queue stops when the ring has no free slot left after a post.
VNIC_TX_DESCS_PER_FRAME = 1
VNIC_TX_STOP_THRESH = VNIC_TX_DESCS_PER_FRAME


class VnicPriv:
    """The driver's private state (netdev_priv): the hardware, the NAPI instance, and the
    software counters of the one RX and one TX queue."""

    __slots__ = ("dev", "hw", "napi", "node_name",
                 "rx_packets", "rx_bytes", "rx_multicast", "rx_dropped",
                 "tx_packets", "tx_bytes", "tx_dropped",
                 "tx_busy", "tx_stops", "tx_wakes", "tx_timeouts", "busy_log")

    def __init__(self, hw: VnicHw, node_name: Optional[str]) -> None:
        self.dev: Any = None
        self.hw = hw
        self.napi = NapiStruct()
        self.node_name = node_name
        self.rx_packets = 0
        self.rx_bytes = 0
        self.rx_multicast = 0
        self.rx_dropped = 0  # frames still in the RX ring at ifdown
        self.tx_packets = 0
        self.tx_bytes = 0
        self.tx_dropped = 0  # frames the TX ring could not send before ifdown
        self.tx_busy = 0  # ring full with the queue awake: a driver bug, never backpressure
        self.busy_log = RateLimit(clock=hw.loop.time)  # net_ratelimit for that bug's log line
        self.tx_stops = 0
        self.tx_wakes = 0
        self.tx_timeouts = 0


# --- queue helpers ----------------------------------------------------------------------

def vnic_tx_wake_threshold(priv: VnicPriv) -> int:
    """Free descriptors needed before a stopped queue is woken: a quarter of the ring (at
    least the stop threshold), so the queue does not flap between stop and wake on every
    completion."""
    return max(VNIC_TX_STOP_THRESH, priv.hw.tx_ring_size // 4)


def vnic_stop_queue(priv: VnicPriv) -> None:
    if not netif_queue_stopped(priv.dev):
        priv.tx_stops += 1
    netif_stop_queue(priv.dev)


def vnic_tx_maybe_stop(priv: VnicPriv) -> None:
    """After a post: stop the queue if the next frame might not fit (netif_txq_maybe_stop)."""
    rc = netif_txq_maybe_stop(priv.dev, priv.hw.tx_free, VNIC_TX_STOP_THRESH,
                              vnic_tx_wake_threshold(priv))
    if rc <= 0:
        priv.tx_stops += 1
        if rc < 0:
            priv.tx_wakes += 1


def vnic_maybe_wake_queue(priv: VnicPriv) -> None:
    if netif_txq_completed_wake(priv.dev, priv.hw.tx_free, vnic_tx_wake_threshold(priv)):
        priv.tx_wakes += 1


def vnic_clean_tx(priv: VnicPriv) -> int:
    """TX completion: account for descriptors the hardware has sent, then maybe wake."""
    hw = priv.hw
    done = hw.tx_done
    n = len(done)
    if n:
        priv.tx_packets += n
        priv.tx_bytes += hw.tx_done_bytes
        hw.tx_done_bytes = 0
        done.clear()  # dev_consume_skb_any: the buffers are no longer ours
    if priv.dev.tx_queue.stopped:
        vnic_maybe_wake_queue(priv)
    return n


# --- interrupt and NAPI -----------------------------------------------------------------

def vnic_interrupt(irq: int, dev: NetDevice) -> None:
    """The IRQ handler: take NAPI, then mask, and leave the work to the poll.

    The order is the kernel's (e1000_intr, napi.rst): masking before ``napi_schedule_prep``
    succeeded would leave the line masked with no poll to unmask it when NAPI is disabled
    (a ring resize, ifdown) or already owned by a poll that has decided to complete.
    """
    priv = netdev_priv(dev)
    napi = priv.napi
    if napi_schedule_prep(napi):
        priv.hw.irq_disable()
        __napi_schedule(napi)


def vnic_poll(napi: NapiStruct, budget: int) -> int:
    """NAPI poll: clean TX (not counted), receive at most ``budget`` frames.

    The frames of one poll are classified (eth_type_trans) one by one and handed to the
    core together (netif_receive_skb_list, as drivers do through GRO's normal list), then
    the descriptors go back to the NIC (rx_refill), which may lift a PAUSE.
    """
    dev = napi.dev
    priv = netdev_priv(dev)
    hw = priv.hw
    if hw.tx_done or dev.tx_queue.stopped:
        vnic_clean_tx(priv)
    ring = hw.rx_ring
    work = len(ring)
    if work > budget:
        work = budget
    if work:
        popleft = ring.popleft
        skbs = [popleft() for _ in range(work)]
        nbytes = mcast = 0
        for skb in skbs:
            nbytes += skb.len
            eth_type_trans(skb, dev)
            if skb.pkt_type == PACKET_MULTICAST:
                mcast += 1
        priv.rx_packets += work
        priv.rx_bytes += nbytes
        if mcast:
            priv.rx_multicast += mcast
        netif_receive_skb_list(skbs)
        hw.rx_refill()
    if work < budget and napi_complete_done(napi, work):
        hw.irq_enable()
    return work


def vnic_link_change(dev: NetDevice, up: bool) -> None:
    """The PHY's link-state interrupt: carrier follows the cable."""
    if up:
        log.info("%s: Link is Up", dev.name)
        netif_carrier_on(dev)
    else:
        log.info("%s: Link is Down", dev.name)
        netif_carrier_off(dev)


# --- net_device_ops ---------------------------------------------------------------------

def vnic_open(dev: NetDevice) -> None:
    priv = netdev_priv(dev)
    hw = priv.hw
    hw.set_mac(dev.dev_addr)
    hw.set_max_frame(dev.mtu + VLAN_ETH_HLEN)
    hw.request_irq(vnic_interrupt, dev)
    napi_enable(priv.napi)
    hw.start(functools.partial(vnic_link_change, dev))
    hw.irq_enable()
    netif_start_queue(dev)


def vnic_stop(dev: NetDevice) -> None:
    priv = netdev_priv(dev)
    hw = priv.hw
    netif_tx_disable(dev)
    napi_disable(priv.napi)
    hw.stop()
    vnic_clean_tx(priv)
    # What the hardware could not send, and what was received but not yet polled, is
    # dropped with the rings, and counted.
    priv.tx_dropped += len(hw.tx_pending)
    hw.tx_pending.clear()
    priv.rx_dropped += len(hw.rx_ring)
    hw.rx_ring.clear()
    hw.free_irq()
    netif_carrier_off(dev)


def vnic_start_xmit(skb: Any, dev: NetDevice) -> int:
    priv = netdev_priv(dev)
    hw = priv.hw
    if not hw.enabled or skb.len < ETH_HLEN:
        priv.tx_dropped += 1  # never fail the caller: count and consume
        if not dev.xmit_more and hw.tx_pending:
            hw.tx_doorbell()  # for the frames posted before this one under xmit_more
        return NETDEV_TX_OK
    # Write the descriptor (hw.tx_post, inlined: a driver fills ring memory itself)
    pending = hw.tx_pending
    if len(pending) + len(hw.tx_done) >= hw.tx_ring_size:
        # Can't happen: the queue is stopped while fewer than VNIC_TX_STOP_THRESH
        # descriptors are free. Say so, as e1000's "BUG! Tx Ring full when queue awake!".
        vnic_stop_queue(priv)
        priv.tx_busy += 1
        priv.busy_log.log(log, logging.ERROR, "%s: BUG! TX ring full when queue awake "
                          "(tx_busy %d)", dev.name, priv.tx_busy)
        if pending:
            hw.tx_doorbell()  # frames posted under xmit_more must not wait for the next one
        return NETDEV_TX_BUSY
    pending.append(skb)
    if hw.tx_ring_size - len(pending) - len(hw.tx_done) < VNIC_TX_STOP_THRESH:
        vnic_tx_maybe_stop(priv)  # the ring is about to fill: netif_txq_maybe_stop's slow path
    # netdev_xmit_more(): one doorbell for a qdisc run's whole bulk, and at once when the
    # queue has just stopped (no further frame of this run will come to ring it).
    if not dev.xmit_more or dev.tx_queue.stopped:
        hw.tx_doorbell()
    return NETDEV_TX_OK


def vnic_get_stats64(dev: NetDevice, stats: Any) -> None:
    priv = netdev_priv(dev)
    hw = priv.hw
    stats.rx_packets = priv.rx_packets
    stats.rx_bytes = priv.rx_bytes
    stats.multicast = priv.rx_multicast
    stats.rx_dropped = priv.rx_dropped
    stats.rx_length_errors = hw.rx_runts + hw.rx_giants
    stats.rx_errors = stats.rx_length_errors
    stats.rx_missed_errors = hw.rx_missed  # ring full; not in rx_dropped (if_link.h)
    stats.tx_packets = priv.tx_packets
    stats.tx_bytes = priv.tx_bytes
    stats.tx_dropped = priv.tx_dropped


def vnic_set_mac_address(dev: NetDevice, addr: bytes) -> None:
    eth_mac_addr(dev, addr)  # EADDRNOTAVAIL for multicast or zero
    netdev_priv(dev).hw.set_mac(dev.dev_addr)


def vnic_change_mtu(dev: NetDevice, new_mtu: int) -> None:
    if not dev.min_mtu <= new_mtu <= dev.max_mtu:
        raise NetdevError(errno.EINVAL, f"{dev.name}: mtu {new_mtu} outside "
                                        f"[{dev.min_mtu}, {dev.max_mtu}]")
    dev.mtu = new_mtu
    netdev_priv(dev).hw.set_max_frame(new_mtu + VLAN_ETH_HLEN)


def vnic_set_rx_mode(dev: NetDevice) -> None:
    promisc = bool(dev.flags & IFF_PROMISC)
    allmulti = bool(dev.flags & IFF_ALLMULTI)
    mc = frozenset(dev.mc)
    if len(mc) > VNIC_MC_FILTER_SIZE:
        allmulti, mc = True, frozenset()  # filter overflow: accept every group
    netdev_priv(dev).hw.set_rx_filter(mc, promisc, allmulti)


def vnic_tx_timeout(dev: NetDevice, txqueue: int) -> None:
    """The watchdog saw the queue stopped too long: reset the TX engine's backoff and retry.

    Posted frames are kept, not freed (a stalled link loses nothing); the queue wakes when
    TX completion frees descriptors.
    """
    priv = netdev_priv(dev)
    priv.tx_timeouts += 1
    hw = priv.hw
    log.warning("%s: TX timeout on queue %d: %d descriptors posted, link %s", dev.name,
                txqueue, len(hw.tx_pending), "up" if hw.carrier else "down")
    netif_trans_update(dev)
    hw.tx_kick()


VNIC_OPS = NetDeviceOps(
    ndo_open=vnic_open,
    ndo_stop=vnic_stop,
    ndo_start_xmit=vnic_start_xmit,
    ndo_get_stats64=vnic_get_stats64,
    ndo_set_mac_address=vnic_set_mac_address,
    ndo_change_mtu=vnic_change_mtu,
    ndo_set_rx_mode=vnic_set_rx_mode,
    ndo_tx_timeout=vnic_tx_timeout,
)


# --- ethtool_ops ------------------------------------------------------------------------

# ethtool -S: (name, how to read it from the private state), in print order.
VNIC_ETHTOOL_STATS = (
    ("rx_queue_0_packets", lambda p: p.rx_packets),
    ("rx_queue_0_bytes", lambda p: p.rx_bytes),
    ("rx_queue_0_drops", lambda p: p.hw.rx_missed),
    ("tx_queue_0_packets", lambda p: p.tx_packets),
    ("tx_queue_0_bytes", lambda p: p.tx_bytes),
    ("tx_queue_0_stops", lambda p: p.tx_stops),
    ("tx_queue_0_wakes", lambda p: p.tx_wakes),
    ("tx_busy", lambda p: p.tx_busy),
    ("tx_timeouts", lambda p: p.tx_timeouts),
    ("napi_polls", lambda p: p.napi.polls),
    ("napi_budget_exhausted", lambda p: p.napi.budget_exhausted),
    ("napi_completes", lambda p: p.napi.completes),
    ("irqs_raised", lambda p: p.hw.irqs_raised),
    ("irqs_coalesced", lambda p: p.hw.irqs_coalesced),
    ("rx_filtered", lambda p: p.hw.rx_filtered),
    ("rx_runts", lambda p: p.hw.rx_runts),
    ("rx_giants", lambda p: p.hw.rx_giants),
    ("rx_link_batches", lambda p: p.hw.rx_batches),
    ("tx_doorbells", lambda p: p.hw.tx_doorbells),
    ("tx_dma_batches", lambda p: p.hw.tx_batches),
    ("tx_link_backpressure", lambda p: p.hw.tx_backpressure),
)


def vnic_get_drvinfo(dev: NetDevice) -> EthtoolDrvinfo:
    priv = netdev_priv(dev)
    where = priv.node_name or format_mac(dev.perm_addr)
    return EthtoolDrvinfo(driver=DRV_NAME, version=DRV_VERSION, fw_version="N/A",
                          bus_info=f"vnet:{where}", n_stats=len(VNIC_ETHTOOL_STATS))


def vnic_get_ringparam(dev: NetDevice) -> EthtoolRingparam:
    hw = netdev_priv(dev).hw
    return EthtoolRingparam(rx_max_pending=VNIC_RING_MAX, tx_max_pending=VNIC_RING_MAX,
                            rx_pending=hw.rx_ring_size, tx_pending=hw.tx_ring_size)


def _check_ring(name: str, size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not (
            VNIC_RING_MIN <= size <= VNIC_RING_MAX):
        raise NetdevError(errno.EINVAL, f"{name} ring size must be {VNIC_RING_MIN}.."
                                        f"{VNIC_RING_MAX}, got {size!r}")


def vnic_set_ringparam(dev: NetDevice, rx_pending: int, tx_pending: int) -> None:
    """Resize the rings, safely under traffic.

    Quiesce first (NAPI disabled, which lets a scheduled poll finish; the queue stopped; the
    IRQ masked), complete what the hardware has sent, resize keeping every in-flight
    descriptor, then restart: the IRQ is unmasked (raising it if frames wait) and the queue
    woken if the new ring has room. Nothing is dropped or duplicated.
    """
    _check_ring("rx", rx_pending)
    _check_ring("tx", tx_pending)
    priv = netdev_priv(dev)
    hw = priv.hw
    if not netif_running(dev):
        hw.resize(rx_pending, tx_pending)
        return
    napi_disable(priv.napi)
    was_stopped = netif_queue_stopped(dev)
    netif_tx_disable(dev)
    hw.irq_disable()
    hw.resize(rx_pending, tx_pending)
    vnic_clean_tx(priv)
    napi_enable(priv.napi)
    hw.irq_enable()
    if hw.tx_free() >= VNIC_TX_STOP_THRESH:
        if was_stopped:
            priv.tx_wakes += 1
        netif_wake_queue(dev)
    elif not was_stopped:
        priv.tx_stops += 1  # a smaller ring full of in-flight frames: completion wakes it


def vnic_get_coalesce(dev: NetDevice) -> EthtoolCoalesce:
    hw = netdev_priv(dev).hw
    return EthtoolCoalesce(rx_usecs=hw.rx_usecs, rx_frames=hw.rx_frames)


def _check_coalesce(rx_usecs: int, rx_frames: int) -> None:
    if not 0 <= rx_usecs <= VNIC_MAX_RX_USECS:
        raise NetdevError(errno.EINVAL, f"rx-usecs must be 0..{VNIC_MAX_RX_USECS}, "
                                        f"got {rx_usecs}")
    if not 0 <= rx_frames <= VNIC_MAX_RX_FRAMES:
        raise NetdevError(errno.EINVAL, f"rx-frames must be 0..{VNIC_MAX_RX_FRAMES}, "
                                        f"got {rx_frames}")


def vnic_set_coalesce(dev: NetDevice, rx_usecs: int, rx_frames: int) -> None:
    _check_coalesce(rx_usecs, rx_frames)
    netdev_priv(dev).hw.set_coalesce(rx_usecs, rx_frames)


def vnic_get_strings(dev: NetDevice) -> list[str]:
    return [name for name, _ in VNIC_ETHTOOL_STATS]


def vnic_get_ethtool_stats(dev: NetDevice) -> list[int]:
    priv = netdev_priv(dev)
    return [get(priv) for _, get in VNIC_ETHTOOL_STATS]


VNIC_ETHTOOL_OPS = EthtoolOps(
    get_drvinfo=vnic_get_drvinfo,
    get_link=ethtool_op_get_link,
    get_ringparam=vnic_get_ringparam,
    set_ringparam=vnic_set_ringparam,
    get_coalesce=vnic_get_coalesce,
    set_coalesce=vnic_set_coalesce,
    get_strings=vnic_get_strings,
    get_ethtool_stats=vnic_get_ethtool_stats,
)


# --- probe / remove ---------------------------------------------------------------------

def vnic_probe(ns: DeviceNamespace, loop: Any, link: Link, *, mac: Optional[bytes] = None,
               node_name: Optional[str] = None, tx_ring_size: int = VNIC_DEFAULT_RING,
               rx_ring_size: int = VNIC_DEFAULT_RING, rx_usecs: int = VNIC_DEFAULT_RX_USECS,
               rx_frames: int = VNIC_DEFAULT_RX_FRAMES) -> NetDevice:
    """Create, address and register one vnet NIC on ``link``; it stays down until dev_open.

    The MAC is ``mac`` if given (it must be a valid unicast address: EADDRNOTAVAIL), else
    derived from ``node_name`` (eth_addr_from_name), else random. The device is named
    ``vnet%d`` in ``ns`` (vnet0 in a fresh namespace).
    """
    _check_ring("rx", rx_ring_size)
    _check_ring("tx", tx_ring_size)
    _check_coalesce(rx_usecs, rx_frames)
    hw = VnicHw(loop, link, rx_ring_size=rx_ring_size, tx_ring_size=tx_ring_size,
                rx_usecs=rx_usecs, rx_frames=rx_frames)
    priv = VnicPriv(hw, node_name)
    dev = alloc_etherdev(priv, name="vnet%d")
    priv.dev = dev
    dev.loop = loop
    dev.netdev_ops = VNIC_OPS
    dev.ethtool_ops = VNIC_ETHTOOL_OPS
    dev.max_mtu = VNIC_MAX_MTU
    dev.priv_flags |= IFF_LIVE_ADDR_CHANGE
    netif_napi_add(dev, priv.napi, vnic_poll, NAPI_POLL_WEIGHT)
    if mac is not None:
        mac = bytes(mac)
        if not is_valid_ether_addr(mac):
            raise NetdevError(errno.EADDRNOTAVAIL, f"vnic_probe: {mac.hex(':')} is not a valid "
                                                   f"unicast MAC")
        eth_hw_addr_set(dev, mac)
    elif node_name:
        eth_hw_addr_set(dev, eth_addr_from_name(node_name))
    else:
        eth_hw_addr_random(dev)
    dev.perm_addr = dev.dev_addr
    netif_carrier_off(dev)  # until the PHY reports a link
    ns.register_netdev(dev)
    return dev


def vnic_remove(dev: NetDevice) -> None:
    """Unregister (closing it if up) and detach NAPI: the device is gone."""
    if dev.reg_state == NETREG_REGISTERED:
        unregister_netdev(dev)
    netif_napi_del(netdev_priv(dev).napi)
