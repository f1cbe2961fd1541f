"""net_device and the core networking calls a driver is written against (net/core/dev.c).

What lives here, by kernel concept:

- ``NetDevice`` (struct net_device) made by ``alloc_etherdev`` with ether_setup's defaults;
  ``DeviceNamespace`` (a struct net): the per-node registry that names devices ``vnet%d``,
  hands out ifindexes, holds the packet-type handlers and the netdevice notifier chain. There
  is no process-wide state: every node has its own namespace.
- ``NetDeviceOps`` (struct net_device_ops): the driver's entry points, a frozen table.
- Administrative calls: dev_open/dev_close, dev_change_flags/dev_get_flags, dev_set_mtu,
  dev_set_mac_address, the promiscuity and allmulti counters, the multicast list,
  carrier and operstate (linkwatch, RFC 2863), the notifier events.
- TX: dev_queue_xmit -> pfifo qdisc (qdisc.py) -> qdisc_run -> ndo_start_xmit, with requeue on
  NETDEV_TX_BUSY (a driver bug), netif_stop_queue/netif_wake_queue and the driver's
  stop-before-full helpers netif_txq_maybe_stop/netif_txq_completed_wake, ETH_P_ALL taps (dev_queue_xmit_nit) and
  the TX watchdog (dev_watchdog -> ndo_tx_timeout).
- RX: netif_receive_skb -> ETH_P_ALL taps, then the handlers registered for skb.protocol.

Errors split by blame: a caller's mistake raises ``NetdevError`` (an OSError carrying the
errno Linux would return); anything that comes from the wire or from load is counted in a
named counter (see stats.py) and never raised.

Time is the device's ``loop`` (node/loop.py): ``loop.time()`` for trans_start and the
watchdog, ``call_soon`` for the TX softirq (net_tx_action), ``call_later`` for timers. Times
are in seconds (the kernel counts jiffies).
"""

from __future__ import annotations

import enum
import errno
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from vnet.proto.ether import mac_str as format_mac

from .qdisc import PfifoQdisc, QdiscStats

# if_ether.h and if_packet.h constants, re-exported as <linux/netdevice.h> pulls them in.
from .skbuff import (  # noqa: F401
    ETH_ALEN, ETH_DATA_LEN, ETH_FRAME_LEN, ETH_HLEN, ETH_MIN_MTU, ETH_P_802_2, ETH_P_802_3,
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_ALL, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_ZLEN,
    PACKET_BROADCAST, PACKET_HOST, PACKET_LOOPBACK, PACKET_MULTICAST, PACKET_OTHERHOST,
    PACKET_OUTGOING, VLAN_ETH_HLEN, VLAN_HLEN, SkBuff, skb_clone,
)
from .stats import NetdevCoreStats, RtnlLinkStats64

log = logging.getLogger(__name__)

# --- constants --------------------------------------------------------------------------

# include/uapi/linux/if.h: net_device_flags
IFF_UP = 1 << 0
IFF_BROADCAST = 1 << 1
IFF_DEBUG = 1 << 2
IFF_LOOPBACK = 1 << 3
IFF_POINTOPOINT = 1 << 4
IFF_NOTRAILERS = 1 << 5
IFF_RUNNING = 1 << 6
IFF_NOARP = 1 << 7
IFF_PROMISC = 1 << 8
IFF_ALLMULTI = 1 << 9
IFF_MASTER = 1 << 10
IFF_SLAVE = 1 << 11
IFF_MULTICAST = 1 << 12
IFF_PORTSEL = 1 << 13
IFF_AUTOMEDIA = 1 << 14
IFF_DYNAMIC = 1 << 15
IFF_LOWER_UP = 1 << 16
IFF_DORMANT = 1 << 17
IFF_ECHO = 1 << 18

IFF_VOLATILE = (IFF_LOOPBACK | IFF_POINTOPOINT | IFF_BROADCAST | IFF_ECHO | IFF_MASTER |
                IFF_SLAVE | IFF_RUNNING | IFF_LOWER_UP | IFF_DORMANT)

# Names as `ip link` prints them, in its order.
IFF_NAMES = ((IFF_LOOPBACK, "LOOPBACK"), (IFF_BROADCAST, "BROADCAST"),
             (IFF_POINTOPOINT, "POINTOPOINT"), (IFF_MULTICAST, "MULTICAST"),
             (IFF_NOARP, "NOARP"), (IFF_ALLMULTI, "ALLMULTI"), (IFF_PROMISC, "PROMISC"),
             (IFF_MASTER, "MASTER"), (IFF_SLAVE, "SLAVE"), (IFF_DEBUG, "DEBUG"),
             (IFF_DYNAMIC, "DYNAMIC"), (IFF_AUTOMEDIA, "AUTOMEDIA"), (IFF_PORTSEL, "PORTSEL"),
             (IFF_NOTRAILERS, "NOTRAILERS"), (IFF_UP, "UP"), (IFF_LOWER_UP, "LOWER_UP"),
             (IFF_DORMANT, "DORMANT"), (IFF_ECHO, "ECHO"))

# dev->priv_flags
IFF_LIVE_ADDR_CHANGE = 1 << 15  # the driver can change the MAC while the device is up

ARPHRD_ETHER = 1
DEFAULT_TX_QUEUE_LEN = 1000
DEFAULT_WATCHDOG_TIMEO = 5.0  # seconds; dev_watchdog_init's default of 5 * HZ
DEV_TX_WEIGHT = 64  # frames one qdisc run may send before yielding (dev_tx_weight)

# netdev_tx_t
NETDEV_TX_OK = 0x00
NETDEV_TX_BUSY = 0x10

# dev_queue_xmit results
NET_XMIT_SUCCESS = 0x00
NET_XMIT_DROP = 0x01
NET_XMIT_CN = 0x02

# netif_receive_skb results
NET_RX_SUCCESS = 0
NET_RX_DROP = 1

# RFC 2863 operational states (IF_OPER_*), and the names `ip link` prints.
IF_OPER_UNKNOWN = 0
IF_OPER_NOTPRESENT = 1
IF_OPER_DOWN = 2
IF_OPER_LOWERLAYERDOWN = 3
IF_OPER_TESTING = 4
IF_OPER_DORMANT = 5
IF_OPER_UP = 6
OPERSTATE_NAMES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT",
                   "UP")

# addr_assign_type
NET_ADDR_PERM = 0
NET_ADDR_RANDOM = 1
NET_ADDR_STOLEN = 2
NET_ADDR_SET = 3

# reg_state
NETREG_UNINITIALIZED = 0
NETREG_REGISTERED = 1
NETREG_UNREGISTERED = 3


class NetdevEvent(enum.IntEnum):
    """Netdevice notifier events (enum netdev_cmd), with the kernel's values."""

    UP = 1
    DOWN = 2
    CHANGE = 4  # carrier or flags changed
    REGISTER = 5
    UNREGISTER = 6
    CHANGEMTU = 7
    CHANGEADDR = 8
    GOING_DOWN = 10


NETDEV_UP = NetdevEvent.UP
NETDEV_DOWN = NetdevEvent.DOWN
NETDEV_CHANGE = NetdevEvent.CHANGE
NETDEV_REGISTER = NetdevEvent.REGISTER
NETDEV_UNREGISTER = NetdevEvent.UNREGISTER
NETDEV_CHANGEMTU = NetdevEvent.CHANGEMTU
NETDEV_CHANGEADDR = NetdevEvent.CHANGEADDR
NETDEV_GOING_DOWN = NetdevEvent.GOING_DOWN

NotifierFn = Callable[[NetdevEvent, "NetDevice"], Any]
PacketHandler = Callable[[SkBuff, "NetDevice"], Any]


class NetdevError(OSError):
    """A caller's mistake, with the errno Linux would return: ``NetdevError(errno.EINVAL, msg)``."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(err, message)


# --- the ops table ----------------------------------------------------------------------

@dataclass(frozen=True)
class NetDeviceOps:
    """``struct net_device_ops``: the driver's entry points. Errors are raised (NetdevError),
    not returned. ndo_start_xmit returns NETDEV_TX_OK; NETDEV_TX_BUSY only for a can't-happen
    (driver.rst: a driver stops its queue before the ring is full)."""

    ndo_open: Optional[Callable[["NetDevice"], None]] = None
    ndo_stop: Optional[Callable[["NetDevice"], None]] = None
    ndo_start_xmit: Optional[Callable[[SkBuff, "NetDevice"], int]] = None
    ndo_get_stats64: Optional[Callable[["NetDevice", RtnlLinkStats64], None]] = None
    ndo_set_mac_address: Optional[Callable[["NetDevice", bytes], None]] = None
    ndo_change_mtu: Optional[Callable[["NetDevice", int], None]] = None
    ndo_set_rx_mode: Optional[Callable[["NetDevice"], None]] = None
    ndo_tx_timeout: Optional[Callable[["NetDevice", int], None]] = None


@dataclass(frozen=True, slots=True)
class PacketType:
    """``struct packet_type``: one handler for one ethertype (or ETH_P_ALL), on one device or
    (dev None) on every device of the namespace."""

    type: int
    func: PacketHandler
    dev: Optional["NetDevice"] = None


class NetdevQueue:
    """``struct netdev_queue``: the one TX queue's driver-stop bit and watchdog bookkeeping."""

    __slots__ = ("stopped", "trans_start", "trans_timeout")

    def __init__(self) -> None:
        self.stopped = True  # __QUEUE_STATE_DRV_XOFF; netif_start_queue clears it in ndo_open
        self.trans_start = 0.0  # when the driver last accepted a frame
        self.trans_timeout = 0  # watchdog firings


class NetDevice:
    """``struct net_device``: one network interface.

    Built by ``alloc_etherdev``; the driver sets ``netdev_ops``, ``ethtool_ops``, ``loop`` and
    its ``priv`` (netdev_priv) before registering. ``flags`` is the kernel's dev->flags (with
    IFF_PROMISC/IFF_ALLMULTI set while the counters are non-zero); what `ip link` shows is
    ``dev_get_flags(dev)``. ``operstate`` is the RFC 2863 state as rtnetlink reports it.
    """

    def __init__(self, priv: Any = None) -> None:
        self.name = "vnet%d"
        self.ifindex = 0
        self.iflink = 0  # ifindex of the lower device; == ifindex for real hardware
        self.ns: Optional[DeviceNamespace] = None
        self.reg_state = NETREG_UNINITIALIZED
        self.priv = priv
        self.netdev_ops = NetDeviceOps()
        self.ethtool_ops: Any = None
        self.loop: Any = None  # scheduling; the driver sets it (node/loop.py)
        # ether_setup()
        self.type = ARPHRD_ETHER
        self.hard_header_len = ETH_HLEN
        self.addr_len = ETH_ALEN
        self.mtu = ETH_DATA_LEN
        self.min_mtu = ETH_MIN_MTU
        self.max_mtu = ETH_DATA_LEN  # ether_setup's value; drivers raise it (vnet: 9000)
        self.tx_queue_len = DEFAULT_TX_QUEUE_LEN
        self.flags = IFF_BROADCAST | IFF_MULTICAST
        self.gflags = 0  # flags the administrator set (IFF_PROMISC/IFF_ALLMULTI via ip link)
        self.priv_flags = 0
        self.broadcast = b"\xff" * ETH_ALEN
        self.dev_addr = bytes(ETH_ALEN)
        self.perm_addr = bytes(ETH_ALEN)
        self.addr_assign_type = NET_ADDR_PERM
        self.watchdog_timeo = DEFAULT_WATCHDOG_TIMEO
        self.promiscuity = 0
        self.allmulti = 0
        self.mc: dict[bytes, int] = {}  # multicast list: address -> users, in add order
        # dev->state bits
        self.running = False  # __LINK_STATE_START
        self.carrier = True  # !__LINK_STATE_NOCARRIER; drivers turn it off in probe
        self.carrier_up_count = 0  # carrier transitions (IFLA_CARRIER_UP_COUNT / _DOWN_COUNT)
        self.carrier_down_count = 0
        self.present = True  # __LINK_STATE_PRESENT
        self.oper = IF_OPER_UNKNOWN
        self.tx_queue = NetdevQueue()
        self.xmit_more = False  # netdev_xmit_more(): set by qdisc_run while a bulk continues
        self.qdisc = PfifoQdisc(self.tx_queue_len)
        self.watchdog_timer: Any = None
        self.napi_list: list[Any] = []
        self.ptype_all: tuple[PacketType, ...] = ()  # taps on this device only
        self.ptype_specific: dict[int, tuple[PacketType, ...]] = {}
        self.rx_handler: Optional[PacketHandler] = None  # netdev_rx_handler_register
        self.stats = RtnlLinkStats64()  # legacy dev->stats, for drivers without ndo_get_stats64
        self.core_stats = NetdevCoreStats()
        self.ip_ptr: Any = None  # for the IPv4 layer's per-device state (in_device)

    @property
    def txqueuelen(self) -> int:
        """``tx_queue_len`` under the name `ip link` prints; setting it resizes the qdisc."""
        return self.tx_queue_len

    @txqueuelen.setter
    def txqueuelen(self, value: int) -> None:
        dev_change_tx_queue_len(self, value)

    @property
    def operstate(self) -> str:
        """The RFC 2863 state as `ip link` shows it ("UP", "DOWN", "LOWERLAYERDOWN", ...)."""
        # rtnl_fill_ifinfo reports DOWN for any device that is not running.
        return OPERSTATE_NAMES[self.oper if self.running else IF_OPER_DOWN]

    def __repr__(self) -> str:
        return (f"<NetDevice {self.name} ifindex={self.ifindex} "
                f"addr={format_mac(self.dev_addr)} flags={dev_get_flags(self):#x} "
                f"state={self.operstate}>")


def netdev_priv(dev: NetDevice) -> Any:
    return dev.priv


def alloc_etherdev(priv: Any = None, *, name: str = "vnet%d") -> NetDevice:
    """A new Ethernet device (alloc_etherdev + ether_setup), not yet registered.

    Defaults: mtu 1500, min_mtu 68, max_mtu 1500 (ether_setup's; the driver raises it),
    tx_queue_len 1000, broadcast ff:ff:ff:ff:ff:ff, type ARPHRD_ETHER, addr_len 6, flags
    BROADCAST|MULTICAST, watchdog_timeo 5 s, carrier on (as the kernel; drivers turn it off
    until the PHY reports a link). ``name`` may hold one %d, filled at registration.
    """
    dev = NetDevice(priv)
    dev.name = name
    return dev


# --- MAC addresses ----------------------------------------------------------------------

def is_multicast_ether_addr(addr: bytes) -> bool:
    return bool(addr[0] & 1)


def is_zero_ether_addr(addr: bytes) -> bool:
    return not any(addr)


def is_valid_ether_addr(addr: bytes) -> bool:
    """Not multicast, not all zeros (is_valid_ether_addr)."""
    return len(addr) == ETH_ALEN and not addr[0] & 1 and any(addr)


def eth_addr_from_name(name: str) -> bytes:
    """A stable MAC for a node name: locally administered, unicast, from a SHA-256 of it."""
    raw = bytearray(hashlib.sha256(name.encode("utf-8")).digest()[:ETH_ALEN])
    raw[0] = (raw[0] & 0xFE) | 0x02  # clear the group bit, set the local bit
    return bytes(raw)


def eth_random_addr(rng: Any = None) -> bytes:
    """A random locally administered unicast MAC (eth_random_addr); ``rng`` is a
    random.Random-like object with getrandbits, else os.urandom is used."""
    raw = bytearray(rng.getrandbits(48).to_bytes(6, "big") if rng is not None
                    else os.urandom(ETH_ALEN))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return bytes(raw)


def eth_hw_addr_set(dev: NetDevice, addr: bytes) -> None:
    """Set dev_addr (eth_hw_addr_set); no validation beyond the length, as in the kernel."""
    addr = bytes(addr)
    if len(addr) != dev.addr_len:
        raise NetdevError(errno.EINVAL, f"eth_hw_addr_set: {len(addr)}-byte address for a "
                                        f"device with addr_len {dev.addr_len}")
    dev.dev_addr = addr


def eth_hw_addr_random(dev: NetDevice, rng: Any = None) -> None:
    """Give the device a random MAC and mark it NET_ADDR_RANDOM (eth_hw_addr_random)."""
    dev.addr_assign_type = NET_ADDR_RANDOM
    eth_hw_addr_set(dev, eth_random_addr(rng))


def eth_prepare_mac_addr_change(dev: NetDevice, addr: bytes) -> None:
    """The checks eth_mac_addr makes before a driver takes a new address."""
    if not dev.priv_flags & IFF_LIVE_ADDR_CHANGE and netif_running(dev):
        raise NetdevError(errno.EBUSY, f"{dev.name}: cannot change the MAC while the device is up")
    if not is_valid_ether_addr(bytes(addr)):
        raise NetdevError(errno.EADDRNOTAVAIL,
                          f"{dev.name}: {format_mac(bytes(addr))} is not a valid unicast "
                          f"address (multicast and 00:00:00:00:00:00 are refused)")


def eth_mac_addr(dev: NetDevice, addr: bytes) -> None:
    """The generic ndo_set_mac_address (eth_mac_addr): validate, then set."""
    eth_prepare_mac_addr_change(dev, addr)
    eth_hw_addr_set(dev, addr)


# --- namespace, registration, notifiers -------------------------------------------------

class DeviceNamespace:
    """A node's device namespace (``struct net``): names, ifindexes, handlers, notifiers.

    ``register_netdev``/``unregister_netdev`` are methods (and module functions). ``get(name)``
    and ``get_by_index(ifindex)`` return None when absent; ``devices()`` lists by ifindex.
    Packet handlers registered on the namespace (dev_add_pack(ns, ...)) see every device's
    frames; notifier callbacks see every device's events.
    """

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self._by_name: dict[str, NetDevice] = {}
        self._by_index: dict[int, NetDevice] = {}
        self._ifindex = 0
        self._notifiers: list[NotifierFn] = []
        self.ptype_all: tuple[PacketType, ...] = ()
        self.ptype_base: dict[int, tuple[PacketType, ...]] = {}

    def __repr__(self) -> str:
        return f"<DeviceNamespace {self.name} devices={list(self._by_name)}>"

    def get(self, name: str) -> Optional[NetDevice]:
        return self._by_name.get(name)

    def get_by_index(self, ifindex: int) -> Optional[NetDevice]:
        return self._by_index.get(ifindex)

    def devices(self) -> list[NetDevice]:
        return [self._by_index[i] for i in sorted(self._by_index)]

    def _alloc_name(self, template: str) -> str:
        # dev_alloc_name: the lowest unused number for a "%d" template.
        if template.count("%") != 1 or "%d" not in template:
            if "%" in template:
                raise NetdevError(errno.EINVAL, f"bad device name template {template!r}")
            return template
        used = set(self._by_name)
        i = 0
        while template % i in used:
            i += 1
        return template % i

    def register_netdev(self, dev: NetDevice) -> None:
        """Name the device, give it an ifindex, announce NETDEV_REGISTER (register_netdev)."""
        if dev.reg_state != NETREG_UNINITIALIZED:
            raise NetdevError(errno.EINVAL, f"{dev.name}: already registered (or unregistered; "
                                            f"allocate a new device)")
        name = self._alloc_name(dev.name)
        if not name or len(name) > 15 or "/" in name or any(c.isspace() for c in name):
            raise NetdevError(errno.EINVAL, f"invalid device name {name!r} (1-15 chars, no "
                                            f"'/' or spaces, as IFNAMSIZ allows)")
        if name in self._by_name:
            raise NetdevError(errno.EEXIST, f"a device named {name} already exists")
        self._ifindex += 1
        dev.name = name
        dev.ifindex = self._ifindex
        if not dev.iflink:
            dev.iflink = dev.ifindex
        dev.ns = self
        dev.qdisc.limit = dev.tx_queue_len
        dev.reg_state = NETREG_REGISTERED
        self._by_name[name] = dev
        self._by_index[dev.ifindex] = dev
        # linkwatch_init_dev: a driver that turned the carrier off in probe reports DOWN.
        if not dev.carrier:
            dev.oper = _default_operstate(dev)
        call_netdevice_notifiers(NETDEV_REGISTER, dev)

    def unregister_netdev(self, dev: NetDevice) -> None:
        """Close if up, announce NETDEV_UNREGISTER, drop its handlers and its name."""
        if dev.ns is not self or dev.reg_state != NETREG_REGISTERED:
            raise NetdevError(errno.ENODEV, f"{dev.name} is not registered in {self.name}")
        dev_close(dev)
        call_netdevice_notifiers(NETDEV_UNREGISTER, dev)
        dev.ptype_all = ()
        dev.ptype_specific = {}
        for ptype, entries in list(self.ptype_base.items()):
            kept = tuple(p for p in entries if p.dev is not dev)
            if kept:
                self.ptype_base[ptype] = kept
            else:
                del self.ptype_base[ptype]
        self.ptype_all = tuple(p for p in self.ptype_all if p.dev is not dev)
        del self._by_name[dev.name]
        del self._by_index[dev.ifindex]
        dev.reg_state = NETREG_UNREGISTERED
        dev.present = False


def register_netdev(ns: DeviceNamespace, dev: NetDevice) -> None:
    ns.register_netdev(dev)


def unregister_netdev(dev: NetDevice) -> None:
    if dev.ns is None:
        raise NetdevError(errno.ENODEV, f"{dev.name} is not registered")
    dev.ns.unregister_netdev(dev)


def register_netdevice_notifier(ns: DeviceNamespace, cb: NotifierFn) -> None:
    """Add ``cb(event, dev)`` to the namespace's chain. As in the kernel, the new callback is
    first told about the devices that exist: NETDEV_REGISTER, and NETDEV_UP if up."""
    ns._notifiers.append(cb)
    for dev in ns.devices():
        cb(NETDEV_REGISTER, dev)
        if dev.flags & IFF_UP:
            cb(NETDEV_UP, dev)


def unregister_netdevice_notifier(ns: DeviceNamespace, cb: NotifierFn) -> None:
    """Remove ``cb``; as in the kernel it is told NETDEV_DOWN (if up) and NETDEV_UNREGISTER
    for every device, so it can release what it holds."""
    try:
        ns._notifiers.remove(cb)
    except ValueError:
        raise NetdevError(errno.ENOENT, "unregister_netdevice_notifier: callback not registered")
    for dev in ns.devices():
        if dev.flags & IFF_UP:
            cb(NETDEV_DOWN, dev)
        cb(NETDEV_UNREGISTER, dev)


def call_netdevice_notifiers(event: NetdevEvent, dev: NetDevice) -> None:
    ns = dev.ns
    if ns is None:
        return
    for cb in list(ns._notifiers):
        cb(event, dev)


# --- flags, open/close ------------------------------------------------------------------

def netif_running(dev: NetDevice) -> bool:
    return dev.running


def netif_device_present(dev: NetDevice) -> bool:
    return dev.present


def netif_oper_up(dev: NetDevice) -> bool:
    return dev.oper in (IF_OPER_UP, IF_OPER_UNKNOWN)


def dev_get_flags(dev: NetDevice) -> int:
    """The flags user space sees (dev_get_flags): IFF_PROMISC/ALLMULTI only as the admin set
    them (a sniffer's promiscuity shows in ``dev.promiscuity``, not here), and IFF_RUNNING /
    IFF_LOWER_UP computed from operstate and carrier while the device is up."""
    flags = (dev.flags & ~(IFF_PROMISC | IFF_ALLMULTI | IFF_RUNNING | IFF_LOWER_UP | IFF_DORMANT)
             ) | (dev.gflags & (IFF_PROMISC | IFF_ALLMULTI))
    if dev.running:
        if netif_oper_up(dev):
            flags |= IFF_RUNNING
        if dev.carrier:
            flags |= IFF_LOWER_UP
    return flags


def dev_open(dev: NetDevice) -> None:
    """Bring the device up (dev_open): ndo_open, IFF_UP, rx mode, qdisc, NETDEV_UP."""
    if dev.flags & IFF_UP:
        return
    if dev.reg_state != NETREG_REGISTERED or not dev.present:
        raise NetdevError(errno.ENODEV, f"{dev.name}: not registered")
    if dev.loop is None:
        raise NetdevError(errno.EINVAL, f"{dev.name}: set dev.loop (node/loop.py) before "
                                        f"dev_open; the TX path and the watchdog run on it")
    dev.running = True  # set before ndo_open, as __dev_open does
    try:
        if dev.netdev_ops.ndo_open is not None:
            dev.netdev_ops.ndo_open(dev)
    except BaseException:
        dev.running = False
        raise
    dev.flags |= IFF_UP
    dev_set_rx_mode(dev)
    dev_activate(dev)
    call_netdevice_notifiers(NETDEV_UP, dev)


def dev_close(dev: NetDevice) -> None:
    """Take the device down (dev_close): NETDEV_GOING_DOWN, deactivate, ndo_stop, NETDEV_DOWN."""
    if not dev.flags & IFF_UP:
        return
    call_netdevice_notifiers(NETDEV_GOING_DOWN, dev)
    dev.running = False  # cleared before ndo_stop, as __dev_close_many does
    dev_deactivate(dev)
    if dev.netdev_ops.ndo_stop is not None:
        dev.netdev_ops.ndo_stop(dev)
    dev.flags &= ~IFF_UP
    call_netdevice_notifiers(NETDEV_DOWN, dev)


def dev_change_flags(dev: NetDevice, flags: int) -> None:
    """What `ip link set` does (__dev_change_flags): IFF_UP opens/closes; IFF_PROMISC and
    IFF_ALLMULTI are the administrator's single reference on each counter (kept in gflags,
    so setting them twice is idempotent); a few plain flags are taken as given."""
    old = dev.flags
    settable = (IFF_DEBUG | IFF_NOTRAILERS | IFF_NOARP | IFF_DYNAMIC | IFF_MULTICAST |
                IFF_PORTSEL | IFF_AUTOMEDIA)
    dev.flags = (flags & settable) | (dev.flags & (IFF_UP | IFF_VOLATILE | IFF_PROMISC |
                                                   IFF_ALLMULTI))
    if (old ^ flags) & IFF_UP:
        if flags & IFF_UP:
            dev_open(dev)
        else:
            dev_close(dev)
    if (flags ^ dev.gflags) & IFF_PROMISC:
        dev.gflags ^= IFF_PROMISC
        dev_set_promiscuity(dev, 1 if flags & IFF_PROMISC else -1)
    if (flags ^ dev.gflags) & IFF_ALLMULTI:
        dev.gflags ^= IFF_ALLMULTI
        dev_set_allmulti(dev, 1 if flags & IFF_ALLMULTI else -1)
    changes = (old ^ dev.flags) & ~(IFF_UP | IFF_PROMISC | IFF_ALLMULTI | IFF_VOLATILE)
    if dev.flags & IFF_UP and changes:
        call_netdevice_notifiers(NETDEV_CHANGE, dev)


def dev_set_rx_mode(dev: NetDevice) -> None:
    """Push flags and the multicast list to the driver, if up (__dev_set_rx_mode)."""
    if dev.flags & IFF_UP and dev.present and dev.netdev_ops.ndo_set_rx_mode is not None:
        dev.netdev_ops.ndo_set_rx_mode(dev)


def _set_counter_flag(dev: NetDevice, inc: int, attr: str, flag: int, what: str) -> None:
    count = getattr(dev, attr) + inc
    if count < 0:
        raise NetdevError(errno.EINVAL, f"{dev.name}: {what} would go below zero "
                                        f"(unbalanced dev_set_{attr}(-1))")
    setattr(dev, attr, count)
    old = dev.flags
    dev.flags = dev.flags | flag if count else dev.flags & ~flag
    if dev.flags != old:
        if flag == IFF_PROMISC:
            log.info("%s: %s promiscuous mode", dev.name, "entered" if count else "left")
        dev_set_rx_mode(dev)


def dev_set_promiscuity(dev: NetDevice, inc: int) -> None:
    """Add ``inc`` (+1/-1) to the promiscuity counter; the device is promiscuous while it is
    non-zero (two sniffers on, one off: still promiscuous). Below zero: NetdevError(EINVAL)."""
    _set_counter_flag(dev, inc, "promiscuity", IFF_PROMISC, "promiscuity")


def dev_set_allmulti(dev: NetDevice, inc: int) -> None:
    """The allmulti counter, like dev_set_promiscuity."""
    _set_counter_flag(dev, inc, "allmulti", IFF_ALLMULTI, "allmulti count")


def dev_mc_add(dev: NetDevice, addr: bytes) -> None:
    """Subscribe to a multicast group (dev_mc_add); references are counted per address."""
    addr = bytes(addr)
    if len(addr) != ETH_ALEN or not addr[0] & 1:
        raise NetdevError(errno.EINVAL, f"dev_mc_add: {addr.hex(':')} is not a multicast MAC")
    users = dev.mc.get(addr, 0)
    dev.mc[addr] = users + 1
    if not users:
        dev_set_rx_mode(dev)


def dev_mc_del(dev: NetDevice, addr: bytes) -> None:
    """Drop one reference to a multicast group (dev_mc_del); ENOENT if not subscribed."""
    addr = bytes(addr)
    users = dev.mc.get(addr, 0)
    if not users:
        raise NetdevError(errno.ENOENT, f"dev_mc_del: {dev.name} is not subscribed to "
                                        f"{addr.hex(':')}")
    if users == 1:
        del dev.mc[addr]
        dev_set_rx_mode(dev)
    else:
        dev.mc[addr] = users - 1


def dev_set_mtu(dev: NetDevice, new_mtu: int) -> None:
    """Change the MTU within [min_mtu, max_mtu] (dev_set_mtu); NETDEV_CHANGEMTU."""
    if not isinstance(new_mtu, int) or new_mtu < dev.min_mtu:
        raise NetdevError(errno.EINVAL, f"{dev.name}: mtu {new_mtu} is less than the device "
                                        f"minimum {dev.min_mtu}")
    if dev.max_mtu > 0 and new_mtu > dev.max_mtu:
        raise NetdevError(errno.EINVAL, f"{dev.name}: mtu {new_mtu} is greater than the device "
                                        f"maximum {dev.max_mtu}")
    if new_mtu == dev.mtu:
        return
    if dev.netdev_ops.ndo_change_mtu is not None:
        dev.netdev_ops.ndo_change_mtu(dev, new_mtu)
    else:
        dev.mtu = new_mtu
    call_netdevice_notifiers(NETDEV_CHANGEMTU, dev)


def dev_set_mac_address(dev: NetDevice, addr: bytes) -> None:
    """Change the MAC through the driver (dev_set_mac_address); NETDEV_CHANGEADDR."""
    addr = bytes(addr)
    if len(addr) != dev.addr_len:
        raise NetdevError(errno.EINVAL, f"{dev.name}: a MAC address has {dev.addr_len} bytes, "
                                        f"got {len(addr)}")
    if dev.netdev_ops.ndo_set_mac_address is None:
        raise NetdevError(errno.EOPNOTSUPP, f"{dev.name}: the driver cannot change its address")
    if not dev.present:
        raise NetdevError(errno.ENODEV, f"{dev.name}: device not present")
    dev.netdev_ops.ndo_set_mac_address(dev, addr)
    dev.addr_assign_type = NET_ADDR_SET
    call_netdevice_notifiers(NETDEV_CHANGEADDR, dev)


def dev_change_tx_queue_len(dev: NetDevice, new_len: int) -> None:
    """`ip link set txqueuelen N`: the pfifo limit follows (qdisc_change_tx_queue_len)."""
    if not isinstance(new_len, int) or new_len < 0:
        raise NetdevError(errno.EINVAL, f"{dev.name}: txqueuelen must be >= 0, got {new_len}")
    dev.tx_queue_len = new_len
    dev.qdisc.limit = new_len


# --- carrier, operstate, activation -----------------------------------------------------

def netif_carrier_ok(dev: NetDevice) -> bool:
    return dev.carrier


def netif_carrier_on(dev: NetDevice) -> None:
    """The PHY has a link (netif_carrier_on): operstate, qdisc and watchdog follow."""
    if dev.carrier:
        return
    dev.carrier = True
    dev.carrier_up_count += 1
    if dev.reg_state == NETREG_REGISTERED:
        _linkwatch(dev)


def netif_carrier_off(dev: NetDevice) -> None:
    """The PHY lost the link (netif_carrier_off)."""
    if not dev.carrier:
        return
    dev.carrier = False
    dev.carrier_down_count += 1
    if dev.reg_state == NETREG_REGISTERED:
        _linkwatch(dev)


def _default_operstate(dev: NetDevice) -> int:
    if not dev.carrier:
        # A stacked device whose lower device is down says so; real hardware says DOWN.
        return IF_OPER_DOWN if dev.iflink == dev.ifindex else IF_OPER_LOWERLAYERDOWN
    return IF_OPER_UP


def _linkwatch(dev: NetDevice) -> None:
    # linkwatch_do_dev, run synchronously: RFC 2863 state, (de)activate the qdisc, and tell
    # the notifier chain (only while up, as netdev_state_change).
    dev.oper = _default_operstate(dev)
    if dev.running:
        if dev.carrier:
            dev_activate(dev)
        else:
            dev_deactivate(dev)
        call_netdevice_notifiers(NETDEV_CHANGE, dev)


def dev_activate(dev: NetDevice) -> None:
    """Let the qdisc feed the driver and start the watchdog; waits for carrier (dev_activate)."""
    if not dev.carrier or not dev.running:
        return
    q = dev.qdisc
    q.active = True
    _watchdog_up(dev)
    if q.q:
        __netif_schedule(dev)


def dev_deactivate(dev: NetDevice) -> None:
    """Stop the qdisc and the watchdog; frames it held are dropped and counted once, in the
    qdisc's drops (tc -s qdisc), as a full qdisc's are: never also in the device's
    tx_dropped, so qdisc drops + tx_dropped + tx_packets add up to what was offered."""
    q = dev.qdisc
    q.active = False
    if q.scheduled is not None:
        q.scheduled.cancel()
        q.scheduled = None
    q.purge()
    _watchdog_down(dev)


# --- TX ---------------------------------------------------------------------------------

def netif_start_queue(dev: NetDevice) -> None:
    """Allow ndo_start_xmit calls (netif_start_queue); does not schedule the qdisc."""
    dev.tx_queue.stopped = False


def netif_stop_queue(dev: NetDevice) -> None:
    """The driver cannot take more frames: the qdisc holds them (netif_stop_queue)."""
    dev.tx_queue.stopped = True


def netif_tx_disable(dev: NetDevice) -> None:
    netif_stop_queue(dev)


def netif_wake_queue(dev: NetDevice) -> None:
    """Restart a stopped queue and reschedule the qdisc run (netif_wake_queue)."""
    txq = dev.tx_queue
    if txq.stopped:
        txq.stopped = False
        if dev.qdisc.q:
            __netif_schedule(dev)


def netif_queue_stopped(dev: NetDevice) -> bool:
    return dev.tx_queue.stopped


def netif_txq_maybe_stop(dev: NetDevice, get_desc: Callable[[], int], stop_thrs: int,
                         start_thrs: int) -> int:
    """Stop the queue *before* the ring is full (netif_txq_maybe_stop, net/netdev_queues.h).

    Called by ndo_start_xmit after posting a frame: if fewer than ``stop_thrs`` descriptors
    are free (``get_desc()``), the next frame might not fit, so the queue stops now and the
    driver never has to return NETDEV_TX_BUSY. As the kernel, it re-checks after stopping
    and restarts when completion freed at least ``start_thrs`` meanwhile. Returns 1 (not
    stopped), 0 (stopped) or -1 (stopped and restarted at once).
    """
    if get_desc() >= stop_thrs:
        return 1
    netif_stop_queue(dev)
    if get_desc() >= start_thrs:
        netif_start_queue(dev)
        return -1
    return 0


def netif_txq_completed_wake(dev: NetDevice, get_desc: Callable[[], int],
                             start_thrs: int) -> bool:
    """Wake a stopped queue from TX completion once ``start_thrs`` descriptors are free
    (netif_txq_completed_wake); the gap between the stop and start thresholds keeps the
    queue from flapping. True when it woke the queue."""
    if dev.tx_queue.stopped and dev.running and get_desc() >= start_thrs:
        netif_wake_queue(dev)
        return True
    return False


def netif_trans_update(dev: NetDevice) -> None:
    """Mark the queue as making progress now (netif_trans_update): holds off the watchdog."""
    dev.tx_queue.trans_start = dev.loop.time()


def qdisc_get_stats(dev: NetDevice) -> QdiscStats:
    """The root qdisc's counters, as `tc -s qdisc show dev X` prints them."""
    return dev.qdisc.stats()


def dev_queue_xmit(skb: SkBuff) -> int:
    """Send a whole Ethernet frame (data at the destination MAC) on ``skb.dev``.

    Returns NET_XMIT_SUCCESS when queued, NET_XMIT_DROP when dropped (and counted): device
    down -> tx_dropped; no carrier -> tx_dropped and tx_carrier_errors; qdisc full -> the
    qdisc's drops (as in Linux, not tx_dropped). A frame longer than mtu + 14 (+ 4 with an
    802.1Q/802.1ad tag) raises NetdevError(EMSGSIZE) and one shorter than 14 bytes
    NetdevError(EINVAL): the caller's mistake, as packet_snd reports them.
    """
    dev = skb.dev
    if dev is None:
        raise NetdevError(errno.ENODEV, "dev_queue_xmit: skb.dev is not set")
    n = skb.len
    mtu = dev.mtu
    if n > mtu + ETH_HLEN:
        proto = 0
        if n >= ETH_HLEN:
            d = skb.data
            proto = (skb.buf[d + 12] << 8) | skb.buf[d + 13]
        if n > mtu + ETH_HLEN + 4 or proto not in (ETH_P_8021Q, ETH_P_8021AD):
            raise NetdevError(errno.EMSGSIZE, f"{dev.name}: {n}-byte frame exceeds mtu {mtu} "
                                              f"+ {ETH_HLEN}-byte header (+4 if VLAN-tagged)")
    elif n < ETH_HLEN:
        raise NetdevError(errno.EINVAL, f"{dev.name}: {n}-byte frame is shorter than the "
                                        f"{ETH_HLEN}-byte Ethernet header")
    skb.mac_header = skb.data  # skb_reset_mac_header, as __dev_queue_xmit
    if not dev.running:  # down, or on its way down (dev_close has begun)
        dev.core_stats.tx_dropped += 1
        return NET_XMIT_DROP
    if not dev.carrier:
        dev.core_stats.tx_dropped += 1
        dev.core_stats.tx_carrier_errors += 1
        return NET_XMIT_DROP
    q = dev.qdisc
    if not q.active or dev.netdev_ops.ndo_start_xmit is None:
        # Inside ndo_open, before dev_activate (Linux's noop qdisc drops), or no driver.
        dev.core_stats.tx_dropped += 1
        return NET_XMIT_DROP
    if not q.enqueue(skb):
        return NET_XMIT_DROP
    if not q.running and not dev.tx_queue.stopped:
        # A stopped queue is restarted by netif_wake_queue, which schedules the run.
        qdisc_run(dev)
    return NET_XMIT_SUCCESS


def netdev_xmit_more(dev: NetDevice) -> bool:
    """True while ndo_start_xmit is being handed a frame that is not the last of the qdisc
    run (netdev_xmit_more): the driver may then skip its doorbell, as Linux drivers do, and
    ring it once for the whole bulk."""
    return dev.xmit_more


def qdisc_run(dev: NetDevice) -> None:
    """Move frames from the qdisc to the driver until it is empty, the queue stops, or
    DEV_TX_WEIGHT frames went (then the rest runs from a fresh callback: net_tx_action).

    As the kernel's bulk dequeue (dev_hard_start_xmit with xmit_more), every frame but the
    last of the run is handed over with ``netdev_xmit_more(dev)`` True. The qdisc's counters
    are updated once per run (the frames were dequeued one by one all the same).
    """
    q = dev.qdisc
    if q.running or not q.active:
        return
    q.running = True
    txq = dev.tx_queue
    xmit = dev.netdev_ops.ndo_start_xmit
    queue = q.q
    popleft = queue.popleft
    ns = dev.ns
    taps = bool(dev.ptype_all or (ns is not None and ns.ptype_all))
    sent = nbytes = 0
    budget = DEV_TX_WEIGHT
    try:
        while queue and not txq.stopped:
            skb = popleft()
            n = skb.len
            q.backlog -= n
            budget -= 1
            dev.xmit_more = budget > 0 and len(queue) > 0
            rc = xmit(skb, dev)
            if rc == NETDEV_TX_BUSY:
                q.requeue(skb)
                if not txq.stopped:
                    # A driver that says BUSY without stopping: retry later, as the kernel.
                    __netif_schedule(dev)
                break
            sent += 1
            nbytes += n
            if taps:
                dev_queue_xmit_nit(skb, dev)
            if budget <= 0:
                break
    finally:
        dev.xmit_more = False
        q.running = False
        q.packets += sent
        q.bytes += nbytes
    if sent:
        txq.trans_start = dev.loop.time()
        if sent >= DEV_TX_WEIGHT and queue and not txq.stopped:
            __netif_schedule(dev)


def __netif_schedule(dev: NetDevice) -> None:
    """Run the qdisc from the TX softirq (a call_soon), unless a run is already pending."""
    q = dev.qdisc
    if q.scheduled is None and q.active:
        q.scheduled = dev.loop.call_soon(_net_tx_action, dev)


def _net_tx_action(dev: NetDevice) -> None:
    dev.qdisc.scheduled = None
    qdisc_run(dev)


def dev_queue_xmit_nit(skb: SkBuff, dev: NetDevice) -> None:
    """Show a transmitted frame to the ETH_P_ALL taps, as PACKET_OUTGOING.

    Each tap gets its own clone (shared bytes). The kernel calls this just before
    ndo_start_xmit, so a frame requeued after NETDEV_TX_BUSY can be seen twice; here it runs
    once the driver has accepted the frame, so taps see every frame exactly once.
    """
    taps = (dev.ns.ptype_all if dev.ns is not None else ()) + dev.ptype_all
    for pt in taps:
        c = skb_clone(skb)
        c.pkt_type = PACKET_OUTGOING
        c.mac_header = c.data
        c.network_header = c.data + ETH_HLEN
        if not c.protocol:
            c.protocol = (c.buf[c.data + 12] << 8) | c.buf[c.data + 13]
        _deliver(pt, c, dev)


# --- TX watchdog ------------------------------------------------------------------------

def _watchdog_up(dev: NetDevice) -> None:
    if dev.netdev_ops.ndo_tx_timeout is None or dev.watchdog_timer is not None:
        return
    if dev.watchdog_timeo <= 0:
        dev.watchdog_timeo = DEFAULT_WATCHDOG_TIMEO
    dev.watchdog_timer = dev.loop.call_later(dev.watchdog_timeo, _dev_watchdog, dev)


def _watchdog_down(dev: NetDevice) -> None:
    if dev.watchdog_timer is not None:
        dev.watchdog_timer.cancel()
        dev.watchdog_timer = None


def _dev_watchdog(dev: NetDevice) -> None:
    """dev_watchdog: a queue stopped with no frame accepted for watchdog_timeo is hung."""
    dev.watchdog_timer = None
    if not (dev.present and dev.running and dev.carrier):
        return
    txq = dev.tx_queue
    now = dev.loop.time()
    if txq.stopped and now > txq.trans_start + dev.watchdog_timeo:
        txq.trans_timeout += 1
        log.warning("NETDEV WATCHDOG: %s: transmit queue 0 timed out %d ms", dev.name,
                    int((now - txq.trans_start) * 1000))
        dev.netdev_ops.ndo_tx_timeout(dev, 0)
    if dev.running and dev.carrier and dev.watchdog_timer is None:
        dev.watchdog_timer = dev.loop.call_later(dev.watchdog_timeo, _dev_watchdog, dev)


# --- RX: packet handlers ----------------------------------------------------------------

def dev_add_pack(where: Union[DeviceNamespace, NetDevice], ethertype: int,
                 handler: PacketHandler) -> PacketType:
    """Register ``handler(skb, dev)`` for ``ethertype`` (dev_add_pack).

    ``where`` is a namespace (every device) or one device. ETH_P_ALL registers a tap: it sees
    every received frame and, with pkt_type PACKET_OUTGOING, every transmitted one. Handlers
    run after eth_type_trans: skb.data is at the network header, skb_mac_header(skb) gives
    the whole frame. A handler owns the skb it is given (taps get clones).
    """
    if isinstance(where, NetDevice):
        pt = PacketType(ethertype, handler, where)
        if ethertype == ETH_P_ALL:
            where.ptype_all = where.ptype_all + (pt,)
        else:
            where.ptype_specific[ethertype] = where.ptype_specific.get(ethertype, ()) + (pt,)
    elif isinstance(where, DeviceNamespace):
        pt = PacketType(ethertype, handler, None)
        if ethertype == ETH_P_ALL:
            where.ptype_all = where.ptype_all + (pt,)
        else:
            where.ptype_base[ethertype] = where.ptype_base.get(ethertype, ()) + (pt,)
    else:
        raise TypeError(f"dev_add_pack: expected a DeviceNamespace or NetDevice, got {where!r}")
    return pt


def dev_remove_pack(where: Union[DeviceNamespace, NetDevice], ethertype: int,
                    handler: PacketHandler) -> None:
    """Unregister a handler added with the same arguments (dev_remove_pack)."""
    if isinstance(where, NetDevice):
        owner_all, table = where, where.ptype_specific
    elif isinstance(where, DeviceNamespace):
        owner_all, table = where, where.ptype_base
    else:
        raise TypeError(f"dev_remove_pack: expected a DeviceNamespace or NetDevice, got {where!r}")
    entries = owner_all.ptype_all if ethertype == ETH_P_ALL else table.get(ethertype, ())
    for i, pt in enumerate(entries):
        if pt.func == handler:
            kept = entries[:i] + entries[i + 1:]
            break
    else:
        raise NetdevError(errno.ENOENT, f"dev_remove_pack: no handler {handler!r} for "
                                        f"ethertype {ethertype:#06x}")
    if ethertype == ETH_P_ALL:
        owner_all.ptype_all = kept
    elif kept:
        table[ethertype] = kept
    else:
        del table[ethertype]


def netdev_rx_handler_register(dev: NetDevice, handler: PacketHandler) -> None:
    """Give every frame ``dev`` receives to ``handler(skb, dev)`` instead of the protocol
    handlers (netdev_rx_handler_register: how a bridge port, macvlan or a TAP upper edge
    takes a device's traffic). Taps still see each frame first; the handler owns the skb
    (RX_HANDLER_CONSUMED). One handler per device: a second is NetdevError(EBUSY)."""
    if dev.rx_handler is not None:
        raise NetdevError(errno.EBUSY, f"{dev.name}: an rx_handler is already registered")
    dev.rx_handler = handler


def netdev_rx_handler_unregister(dev: NetDevice) -> None:
    """Give the device's frames back to the protocol handlers (netdev_rx_handler_unregister)."""
    dev.rx_handler = None


def _deliver_rx_handler(skb: SkBuff, dev: NetDevice) -> None:
    try:
        dev.rx_handler(skb, dev)
    except Exception:
        log.exception("%s: rx_handler %r raised", dev.name, dev.rx_handler)
        dev.core_stats.rx_dropped += 1


def _deliver(pt: PacketType, skb: SkBuff, dev: NetDevice) -> bool:
    # A handler that raises must not wedge the NAPI poll that called us: log, count, go on.
    try:
        pt.func(skb, dev)
        return True
    except Exception:
        log.exception("%s: packet handler %r for %#06x raised", dev.name, pt.func, pt.type)
        dev.core_stats.rx_dropped += 1
        return False


def netif_receive_skb(skb: SkBuff) -> int:
    """Deliver a received frame (after eth_type_trans) to the taps and the handlers of its
    protocol (__netif_receive_skb_core).

    Taps (namespace-wide, then the device's) each get a clone. Then every handler for
    skb.protocol, namespace-wide then device-specific; the last one gets the skb itself. A
    frame nobody took, not even a tap, is counted in rx_dropped, as Linux does for an active
    device (rx_nohandler is the kernel's counter for inactive bonding slaves only). A device
    with an rx_handler (netdev_rx_handler_register) gives the frame to it after the taps.
    """
    dev = skb.dev
    ns = dev.ns
    ns_all = ns.ptype_all if ns is not None else ()
    delivered = False
    if ns_all or dev.ptype_all:
        for pt in ns_all + dev.ptype_all:
            _deliver(pt, skb_clone(skb), dev)
        delivered = True
    if dev.rx_handler is not None:
        _deliver_rx_handler(skb, dev)
        return NET_RX_SUCCESS
    proto = skb.protocol
    handlers = ns.ptype_base.get(proto, ()) if ns is not None else ()
    specific = dev.ptype_specific.get(proto) if dev.ptype_specific else None
    if specific:
        handlers = handlers + specific
    if handlers:
        last = len(handlers) - 1
        for i, pt in enumerate(handlers):
            _deliver(pt, skb if i == last else skb_clone(skb), dev)
        return NET_RX_SUCCESS
    if delivered:
        return NET_RX_SUCCESS
    dev.core_stats.rx_dropped += 1
    return NET_RX_DROP


def netif_receive_skb_list(skbs: list[SkBuff]) -> None:
    """Deliver a list of received frames, in order (netif_receive_skb_list).

    What a NAPI driver hands the core once per poll instead of one netif_receive_skb per
    frame (the kernel's GRO "normal list"). Each frame gets exactly what netif_receive_skb
    would give it (taps first, each a clone; then the handlers for its protocol, the last
    one the skb itself; rx_dropped when nobody took it); the handler tables are looked up
    once per run of frames of the same device and protocol. The tables are the ones in force
    when the run began, as an RCU reader in the kernel would see them.
    """
    last_dev: Any = None
    last_proto = -1
    taps: tuple[PacketType, ...] = ()
    handlers: tuple[PacketType, ...] = ()
    single: Any = None
    for skb in skbs:
        dev = skb.dev
        proto = skb.protocol
        if proto != last_proto or dev is not last_dev:
            last_dev = dev
            last_proto = proto
            ns = dev.ns
            taps = (ns.ptype_all if ns is not None else ()) + dev.ptype_all
            handlers = ns.ptype_base.get(proto, ()) if ns is not None else ()
            specific = dev.ptype_specific.get(proto) if dev.ptype_specific else None
            if specific:
                handlers = handlers + specific
            single = handlers[0].func if len(handlers) == 1 and not taps else None
            if dev.rx_handler is not None:
                handlers = ()
                single = None
        if dev.rx_handler is not None:
            for pt in taps:
                _deliver(pt, skb_clone(skb), dev)
            _deliver_rx_handler(skb, dev)
            continue
        if single is not None:
            # the common case, inlined: one handler, no taps
            try:
                single(skb, dev)
            except Exception:
                log.exception("%s: packet handler %r for %#06x raised", dev.name, single, proto)
                dev.core_stats.rx_dropped += 1
            continue
        for pt in taps:
            _deliver(pt, skb_clone(skb), dev)
        if handlers:
            last = len(handlers) - 1
            for i, pt in enumerate(handlers):
                _deliver(pt, skb if i == last else skb_clone(skb), dev)
        elif not taps:
            dev.core_stats.rx_dropped += 1


# --- statistics -------------------------------------------------------------------------

def dev_core_stats_rx_otherhost_dropped_inc(dev: NetDevice) -> None:
    """A protocol dropped a frame for another host (PACKET_OTHERHOST, a promiscuous device),
    as ip_rcv does: it shows in the device's rx_otherhost_dropped (dev_get_stats)."""
    dev.core_stats.rx_otherhost_dropped += 1


def dev_get_stats(dev: NetDevice) -> RtnlLinkStats64:
    """A fresh snapshot of the interface counters (dev_get_stats): the driver's, plus the
    core's own drops. Mutating it changes nothing on the device."""
    stats = RtnlLinkStats64()
    if dev.netdev_ops.ndo_get_stats64 is not None:
        dev.netdev_ops.ndo_get_stats64(dev, stats)
    else:
        for name in stats.__dataclass_fields__:
            setattr(stats, name, getattr(dev.stats, name))
    dev.core_stats.fold_into(stats)
    return stats

