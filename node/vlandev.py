"""802.1Q VLAN sub-interfaces: the kernel's 8021q driver (net/8021q/vlan_dev.c, vlan_core.c).

``vlan_dev_create(ns, real_dev, "vnet0.10", 10)`` makes a net_device stacked on a real one,
as ``ip link add link vnet0 name vnet0.10 type vlan id 10`` does:

- TX (``vlan_dev_hard_start_xmit``): the frame gets the 802.1Q tag (TPID 0x8100, priority
  0, the VID) after its MAC addresses and is handed to the real device's
  ``dev_queue_xmit``; the sub-interface counts it (tx_packets/bytes, or tx_dropped).
- RX (``vlan_do_receive``): the real device's ETH_P_8021Q handler looks the VID up in its
  group; the tag comes off and the frame is received again on the sub-interface
  (eth_type_trans, netif_receive_skb: its protocol handlers and taps), counted there. A VID
  with no sub-interface (or one that is down) is dropped and counted in the real device's
  rx_dropped (the sub-interface's, if down). VID 0 (priority-tagged) goes back to the real
  device untagged. Untagged frames never come here: they stay on the real device.
- The sub-interface shares the real device's MAC, takes its MTU (at most the real one's: the
  tag fits in the 4 bytes dev_queue_xmit allows a tagged frame), and follows its carrier
  (``vlan_transfer_operstate``); it cannot be opened while the real device is down
  (ENETDOWN), and goes when the real device is unregistered.

The VLAN group of a real device (``vlan_info``) lives in one ETH_P_8021Q handler closure and
one notifier registered on the namespace, both made with its first sub-interface.
"""

from __future__ import annotations

import errno
import logging

from .netdevice import (
    ETH_HLEN, ETH_P_8021Q, IFF_UP, NET_XMIT_SUCCESS, NETDEV_CHANGE, NETDEV_CHANGEADDR,
    NETDEV_CHANGEMTU, NETDEV_DOWN, NETDEV_TX_OK, NETDEV_UNREGISTER, NETDEV_UP, NetDeviceOps,
    NetdevError, alloc_etherdev, dev_add_pack, dev_close, dev_queue_xmit, dev_set_mtu,
    eth_mac_addr, netif_carrier_off, netif_carrier_on, netif_receive_skb, netif_start_queue,
    netif_stop_queue, register_netdev, register_netdevice_notifier, unregister_netdev,
)
from .skbuff import eth_type_trans, skb_from_frame, skb_mac_header

log = logging.getLogger(__name__)

VLAN_VID_MASK = 0x0FFF
VLAN_N_VID = 4096


class VlanGroup:
    """The sub-interfaces of one real device, by VID (struct vlan_info)."""

    __slots__ = ("real_dev", "by_vid")

    def __init__(self, real_dev) -> None:
        self.real_dev = real_dev
        self.by_vid: dict[int, object] = {}


class VlanPriv:
    """A sub-interface's private state (struct vlan_dev_priv)."""

    __slots__ = ("real_dev", "vid", "group")

    def __init__(self, real_dev, vid: int, group: VlanGroup) -> None:
        self.real_dev = real_dev
        self.vid = vid
        self.group = group


def is_vlan_dev(dev) -> bool:
    return isinstance(dev.priv, VlanPriv)


def vlan_dev_real_dev(dev):
    return dev.priv.real_dev


def vlan_dev_vlan_id(dev) -> int:
    return dev.priv.vid


# -- the ops ------------------------------------------------------------------------------

def vlan_dev_open(dev) -> None:
    real = dev.priv.real_dev
    if not real.flags & IFF_UP:
        raise NetdevError(errno.ENETDOWN, f"{dev.name}: its real device {real.name} is down; "
                                          f"bring {real.name} up first")
    netif_start_queue(dev)
    _transfer_operstate(dev)


def vlan_dev_stop(dev) -> None:
    netif_stop_queue(dev)


def vlan_dev_hard_start_xmit(skb, dev) -> int:
    """Push the tag, hand the frame to the real device; never fails to the caller."""
    priv = dev.priv
    frame = bytes(skb.buf[skb.data:skb.tail])
    n = len(frame)
    tci = priv.vid & VLAN_VID_MASK
    tagged = frame[:12] + bytes((0x81, 0x00, tci >> 8, tci & 0xFF)) + frame[12:]
    out = skb_from_frame(tagged)
    out.dev = priv.real_dev
    try:
        rc = dev_queue_xmit(out)
    except NetdevError:
        rc = -1
    if rc == NET_XMIT_SUCCESS:
        dev.stats.tx_packets += 1
        dev.stats.tx_bytes += n
    else:
        dev.stats.tx_dropped += 1
    return NETDEV_TX_OK


def vlan_dev_change_mtu(dev, new_mtu: int) -> None:
    real = dev.priv.real_dev
    if new_mtu > real.mtu:
        raise NetdevError(errno.ERANGE, f"{dev.name}: mtu {new_mtu} is over its real device "
                                        f"{real.name}'s {real.mtu}")
    dev.mtu = new_mtu


VLAN_OPS = NetDeviceOps(
    ndo_open=vlan_dev_open,
    ndo_stop=vlan_dev_stop,
    ndo_start_xmit=vlan_dev_hard_start_xmit,
    ndo_set_mac_address=eth_mac_addr,
    ndo_change_mtu=vlan_dev_change_mtu,
)


# -- receive ------------------------------------------------------------------------------

def _vlan_rcv(group: VlanGroup, skb, real_dev) -> None:
    """The real device's ETH_P_8021Q handler (vlan_do_receive)."""
    frame = bytes(skb_mac_header(skb))
    if len(frame) < ETH_HLEN + 4:
        real_dev.core_stats.rx_dropped += 1
        return
    vid = ((frame[14] << 8) | frame[15]) & VLAN_VID_MASK
    inner = frame[:12] + frame[16:]
    if vid == 0:  # priority-tagged: the real device's own traffic
        target = real_dev
    else:
        target = group.by_vid.get(vid)
        if target is None:
            real_dev.core_stats.rx_dropped += 1
            return
        if not target.running:
            target.stats.rx_dropped += 1
            return
        target.stats.rx_packets += 1
        target.stats.rx_bytes += len(inner)
        if inner[0] & 1:
            target.stats.multicast += 1
    out = skb_from_frame(inner)
    eth_type_trans(out, target)
    netif_receive_skb(out)


# -- the real device's events -------------------------------------------------------------

def _transfer_operstate(dev) -> None:
    real = dev.priv.real_dev
    if real.running and real.carrier:
        netif_carrier_on(dev)
    else:
        netif_carrier_off(dev)


def _group_event(group: VlanGroup, event: int, dev) -> None:
    if dev is not group.real_dev:
        return
    vlans = list(group.by_vid.values())
    if event in (NETDEV_UP, NETDEV_CHANGE, NETDEV_DOWN):
        for v in vlans:
            _transfer_operstate(v)
            if event == NETDEV_DOWN and v.flags & IFF_UP:
                dev_close(v)  # as vlan_device_event closes the VLANs of a real device going down
    elif event == NETDEV_CHANGEADDR:
        for v in vlans:
            v.dev_addr = bytes(dev.dev_addr)
    elif event == NETDEV_CHANGEMTU:
        for v in vlans:
            if v.mtu > dev.mtu:
                dev_set_mtu(v, dev.mtu)
    elif event == NETDEV_UNREGISTER:
        for v in vlans:
            vlan_dev_destroy(v)


# -- create and destroy -------------------------------------------------------------------

def vlan_dev_create(ns, real_dev, name: str, vid: int):
    """A registered, down VLAN sub-interface ``name`` over ``real_dev`` for ``vid``
    (register_vlan_device). NetdevError: a bad VID (1..4094), a VID already there, a taken
    name, a real device that is itself a VLAN."""
    if not isinstance(vid, int) or isinstance(vid, bool) or not 1 <= vid < VLAN_N_VID - 1:
        raise NetdevError(errno.ERANGE, f"VLAN id {vid!r} must be 1..4094")
    if is_vlan_dev(real_dev):
        raise NetdevError(errno.EOPNOTSUPP, f"{real_dev.name} is a VLAN device itself; stack "
                                            f"the VLAN on the real device")
    if ns.get(name) is not None:
        raise NetdevError(errno.EEXIST, f"a device named {name} already exists")
    group = getattr(real_dev, "vlan_info", None)
    if group is None:
        group = VlanGroup(real_dev)
        real_dev.vlan_info = group
        dev_add_pack(real_dev, ETH_P_8021Q, lambda skb, d: _vlan_rcv(group, skb, d))
        register_netdevice_notifier(ns, lambda event, d: _group_event(group, event, d))
    if vid in group.by_vid:
        raise NetdevError(errno.EEXIST, f"{real_dev.name} has VLAN {vid} already "
                                        f"({group.by_vid[vid].name})")
    dev = alloc_etherdev(VlanPriv(real_dev, vid, group), name=name)
    dev.netdev_ops = VLAN_OPS
    dev.loop = real_dev.loop
    dev.dev_addr = bytes(real_dev.dev_addr)
    dev.perm_addr = bytes(real_dev.dev_addr)
    dev.mtu = real_dev.mtu
    dev.max_mtu = real_dev.max_mtu
    dev.iflink = real_dev.ifindex
    dev.carrier = False
    register_netdev(ns, dev)
    group.by_vid[vid] = dev
    return dev


def vlan_dev_destroy(dev) -> None:
    """Unregister a VLAN sub-interface (unregister_vlan_dev)."""
    if not is_vlan_dev(dev):
        raise NetdevError(errno.EOPNOTSUPP, f"{dev.name} is not a VLAN device")
    group = dev.priv.group
    if group.by_vid.get(dev.priv.vid) is dev:
        del group.by_vid[dev.priv.vid]
    unregister_netdev(dev)
