"""The node daemon: vnet0 on a ZeroMQ link to the switch, the host stack on vnet0, and the
node's control endpoint (the rtnetlink analogue). The only node layer that owns sockets,
tasks and the clock.

Glue, in kernel terms:

- the hardware model's Link is a ``ZmqLink`` to the switch (carrier follows the attachment);
- the host stack is bound to vnet0 as packet-type handlers for ETH_P_ARP and ETH_P_IP
  (``dev_add_pack``); the frames it returns go out through ``dev_queue_xmit``;
- netdevice notifier events drive the stack: carrier up -> gratuitous ARP, address and MTU
  changes -> the stack's copy;
- the stack's timers (ARP retries, ageing, DAD) run from one loop timer re-armed at
  ``stack.next_deadline()``;
- control requests (``vnet ip``, ``vnet ping``, ...) are served from ``CONTROL_COMMANDS``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from vnet.node import ethtool
from vnet.proto import auth
from vnet.proto.capture import Capture, CaptureSession, FilterError
from vnet.node.leasefile import restore_lease_file, save_lease_file
from vnet.node.netdevice import (
    ETH_P_ALL,
    ETH_P_ARP,
    ETH_P_IP,
    IFF_LOWER_UP,
    IFF_NAMES,
    IFF_PROMISC,
    IFF_UP,
    NETDEV_CHANGE,
    NETDEV_CHANGEADDR,
    NETDEV_CHANGEMTU,
    NETDEV_DOWN,
    NETDEV_UP,
    DeviceNamespace,
    NetdevError,
    dev_add_pack,
    dev_change_flags,
    dev_remove_pack,
    dev_get_flags,
    dev_get_stats,
    dev_mc_add,
    dev_open,
    dev_queue_xmit,
    dev_set_mac_address,
    dev_set_mtu,
    netif_carrier_ok,
    qdisc_get_stats,
    register_netdevice_notifier,
)
from vnet.node.skbuff import PACKET_OUTGOING, skb_from_frame, skb_mac_header
from vnet.node.stack import (
    AddressConflict,
    AddressReady,
    ArpReply,
    DhcpBound,
    DhcpLeasesChanged,
    DhcpLost,
    EchoReply,
    HostStack,
    NeighFailed,
    StackError,
    UdpDatagram,
)
from vnet.node.stack.dhcp import DhcpPool
from vnet.node.stack.ether import mac_str, parse_mac
from vnet.node.vnic import VNIC_RING_MAX, vnic_probe, vnic_remove
from vnet.node.zmqlink import ZmqLink
from vnet.proto.wire import DEFAULT_DATA_PORT
from vnet.proto.control import ControlError, ControlServer, node_control_endpoint, print_ready, runtime_dir

log = logging.getLogger(__name__)

UDP_QUEUE_LEN = 1024


@dataclass
class NodeConfig:
    """What a node is: its name, where the switch is, its addresses and NIC settings."""

    name: str
    switch: str = f"tcp://127.0.0.1:{DEFAULT_DATA_PORT}"
    addresses: list[str] = field(default_factory=list)
    control: str | None = None
    mac: str | None = None
    mtu: int = 1500
    tx_ring_size: int = 256
    rx_ring_size: int = 256
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 3.0
    dhcp: bool = False
    dhcp_server: str | None = None
    lease_file: str | None = None
    lease_time: float = 3600.0
    curve_secret: str | None = None  # this node's key pair (.key_secret): CURVE to the switch
    curve_server_key: str | None = None  # the LAN's public key (the switch's .key)
    stack: str = "vnet"  # the upper layer on vnet0: vnet's own stack, or the kernel's through a TAP
    netns: str | None = None  # kernel stack: the network namespace of its vnet0 (None: this one)

    def validate(self) -> None:
        """Raise ValueError naming the setting and what would be accepted."""
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"node name {self.name!r}: use letters, digits, '-', '_' or '.'")
        if not self.switch.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"switch endpoint {self.switch!r}: expected tcp://HOST:PORT")
        if self.control is not None and not auth.is_loopback_or_local(self.control):
            raise ValueError(f"control endpoint {self.control!r}: a node's control socket is for its own host or "
                             f"container; use ipc://PATH (the default) or tcp://127.0.0.1:PORT")
        if (self.curve_secret is None) != (self.curve_server_key is None):
            raise ValueError("CURVE needs both curve_secret (this node's .key_secret) and curve_server_key "
                             "(the switch's .key); `vnet keygen DIR NODE...` writes both")
        if self.curve_secret is not None:
            self.curve()
        for cidr in self.addresses:
            try:
                iface = ipaddress.IPv4Interface(cidr)
            except ValueError as exc:
                raise ValueError(f"address {cidr!r}: {exc}; expected A.B.C.D/PREFIX") from None
            if iface.network.prefixlen > 30 or iface.ip in (iface.network.network_address, iface.network.broadcast_address):
                raise ValueError(f"address {cidr!r}: not a usable host address in {iface.network}")
        if self.mac is not None:
            mac = parse_mac(self.mac)
            if mac[0] & 1 or mac == bytes(6):
                raise ValueError(f"mac {self.mac}: a NIC's address must be unicast and not all zeros "
                                 f"(clear the low bit of the first byte, e.g. 02:00:00:00:00:01)")
        if not 0 < self.heartbeat_interval < self.heartbeat_timeout:
            raise ValueError(f"heartbeat: need 0 < interval < timeout (typically 3 intervals), got interval "
                             f"{self.heartbeat_interval:g} s and timeout {self.heartbeat_timeout:g} s")
        for ring, size in (("tx ring", self.tx_ring_size), ("rx ring", self.rx_ring_size)):
            if not 1 <= size <= VNIC_RING_MAX:
                raise ValueError(f"{ring} size {size}: must be between 1 and {VNIC_RING_MAX} descriptors")
        if not 68 <= self.mtu <= 9000:
            raise ValueError(f"mtu {self.mtu}: must be between 68 and 9000")
        if self.dhcp_server is not None:
            if not self.addresses:
                raise ValueError("dhcp server: the node needs a static address (--address) to serve from")
            first, last = self.dhcp_pool()
            iface = ipaddress.IPv4Interface(self.addresses[0])
            DhcpPool.check(str(iface.ip), iface.network.prefixlen, str(first), str(last))
        if self.lease_time < 10:
            raise ValueError(f"lease time {self.lease_time:g} s: must be at least 10 s")
        if self.stack not in ("vnet", "kernel"):
            raise ValueError(f"stack {self.stack!r}: use vnet (vnet's own, the default) or kernel (a TAP)")
        if self.stack == "vnet" and self.netns is not None:
            raise ValueError("netns: only a kernel-stack node has a namespace (add --stack kernel)")
        if self.stack == "kernel" and (self.dhcp or self.dhcp_server):
            raise ValueError("dhcp: a kernel-stack node runs the system's DHCP programs in its namespace "
                             "(udhcpc, dnsmasq: `vnet --node NAME exec -- ...`), not vnet's")

    def curve(self) -> auth.CurveClient | None:
        """The CURVE client keys, read from their files (KeyFileError saying what is wrong)."""
        if self.curve_secret is None:
            return None
        return auth.CurveClient.from_files(self.curve_secret, self.curve_server_key)

    def dhcp_pool(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        """The DHCP server's pool, from "FIRST-LAST"."""
        try:
            first, last = (ipaddress.IPv4Address(p.strip()) for p in self.dhcp_server.split("-"))
        except ValueError:
            raise ValueError(f"dhcp pool {self.dhcp_server!r}: expected FIRST-LAST, e.g. 10.0.0.100-10.0.0.199") from None
        return first, last


class StartError(Exception):
    """The node cannot start for a reason its operator can fix (the sentence says how)."""


class NodeDaemon:
    """One node: owns its ZeroMQ context, link, device namespace, stack and control server."""

    def __init__(self, config: NodeConfig) -> None:
        config.validate()
        self.config = config
        self._ctx: zmq.asyncio.Context | None = None  # the control socket's
        self._link_ctx: zmq.asyncio.Context | None = None  # the link's
        self._loop: asyncio.AbstractEventLoop | None = None
        self.link: ZmqLink | None = None
        self.ns: DeviceNamespace | None = None
        self.dev = None
        self.stack: HostStack | None = None
        self.control: ControlServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._echo_waiters: dict[tuple[int, int], tuple[bytes, asyncio.Future]] = {}
        self._arp_waiters: dict[bytes, list[asyncio.Future]] = {}
        self._udp_queues: dict[int, asyncio.Queue] = {}
        self.udp_queue_drops = 0
        self.conflicts: list[dict] = []
        self.refused = asyncio.Event()
        self._ping_ident = os.getpid() & 0xFFFF
        self._captures: dict[int, CaptureSession] = {}
        self._capture_ids = itertools.count(1)
        self._tap = None

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._ctx = zmq.asyncio.Context()
        # The link has a context (an I/O thread) of its own: ZeroMQ resolves the switch's
        # host name on it, and a name server that does not answer (a container cut off its
        # network) would otherwise stall the control socket with it.
        self._link_ctx = zmq.asyncio.Context()
        self.link = ZmqLink(
            self._link_ctx,
            cfg.switch,
            self._hello,
            heartbeat_interval=cfg.heartbeat_interval,
            heartbeat_timeout=cfg.heartbeat_timeout,
            on_refused=lambda reason: self.refused.set(),
            curve=cfg.curve(),
        )
        self.ns = DeviceNamespace()
        mac = parse_mac(cfg.mac) if cfg.mac else None
        self.dev = vnic_probe(
            self.ns,
            self._loop,
            self.link,
            mac=mac,
            node_name=cfg.name,
            tx_ring_size=cfg.tx_ring_size,
            rx_ring_size=cfg.rx_ring_size,
        )
        if cfg.mtu != self.dev.mtu:
            dev_set_mtu(self.dev, cfg.mtu)
        self.stack = HostStack(bytes(self.dev.dev_addr), mtu=self.dev.mtu)
        dev_add_pack(self.ns, ETH_P_ARP, self._stack_rcv)
        dev_add_pack(self.ns, ETH_P_IP, self._stack_rcv)
        for mc in self.stack.mc_list():  # the all-hosts group, as ip_mc_up joins it
            dev_mc_add(self.dev, mc)
        register_netdevice_notifier(self.ns, self._netdev_event)
        self.control = ControlServer(self._ctx, cfg.control or node_control_endpoint(cfg.name), self._handlers())
        self.control.start()
        dev_open(self.dev)
        now = self._loop.time()
        for cidr in cfg.addresses:
            self._xmit(self.stack.add_address(cidr, now))
        if cfg.dhcp_server:
            first, last = cfg.dhcp_pool()
            self.stack.dhcp_server_start(cfg.addresses[0], str(first), str(last), cfg.lease_time)
            if cfg.lease_file:
                restore_lease_file(self.stack.dhcp.server, cfg.lease_file, now, time.time())
        if cfg.dhcp:
            self._xmit(self.stack.dhcp_client_start(now, cfg.name.encode(), hostname=cfg.name,
                                                    previous_ip=self._read_dhcp_state()))
        self._after_stack()

    async def close(self) -> None:
        """Bring vnet0 down (BYE to the switch), stop serving, close every socket."""
        if self._timer is not None:
            self._timer.cancel()
        if self.dev is not None:
            vnic_remove(self.dev)  # closes vnet0 first: the link says BYE
        for _, fut in self._echo_waiters.values():
            fut.cancel()
        self._captures.clear()
        if self.control is not None:
            await self.control.close()
        if self.link is not None:
            self.link.close()
        for ctx in (self._ctx, self._link_ctx):
            if ctx is not None:
                ctx.term()

    def _hello(self) -> tuple[str, list[bytes], int]:
        return self.config.name, [bytes(self.dev.dev_addr)], self.dev.mtu

    # -- driver <-> stack glue ----------------------------------------------------------------

    def _stack_rcv(self, skb, dev) -> None:
        self._xmit(self.stack.receive_skb(skb, self._loop.time()))
        self._after_stack()

    def _netdev_event(self, event: int, dev) -> None:
        if dev is not self.dev or self.stack is None:
            return
        now = self._loop.time()
        if event == NETDEV_CHANGEADDR:
            self._xmit(self.stack.set_mac(bytes(dev.dev_addr), now))
        elif event == NETDEV_CHANGEMTU:
            self.stack.set_mtu(dev.mtu)
        elif event in (NETDEV_UP, NETDEV_CHANGE):
            if dev.flags & IFF_UP and netif_carrier_ok(dev):
                self._xmit(self.stack.link_up(now))
            else:
                self.stack.link_down(now)
        elif event == NETDEV_DOWN:
            self.stack.link_down(now)
        self._after_stack()

    def _xmit(self, frames: list[bytes], dev=None) -> int:
        """Hand whole frames to ``dev_queue_xmit`` (vnet0 by default); return how many."""
        dev = dev or self.dev
        for frame in frames:
            skb = skb_from_frame(frame)
            skb.dev = dev
            _netdev_call(dev_queue_xmit, skb)
        return len(frames)

    def _after_stack(self) -> None:
        """Hand out the stack's events and re-arm its timer."""
        for ev in self.stack.next_events():
            self._on_event(ev)
        when = self.stack.next_deadline()
        if when == self._timer_when:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_when = when
        if when is not None:
            self._timer = self._loop.call_at(when, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_when = None
        self._xmit(self.stack.tick(self._loop.time()))
        self._after_stack()

    def _on_event(self, ev) -> None:
        now = self._loop.time()
        if isinstance(ev, EchoReply):
            waiter = self._echo_waiters.get((ev.ident, ev.seq))
            if waiter is not None and not waiter[1].done():
                waiter[1].set_result((ev, now))
        elif isinstance(ev, UdpDatagram):
            queue = self._udp_queues.get(ev.dst_port)
            if queue is None:
                return
            if queue.full():
                self.udp_queue_drops += 1
                return
            queue.put_nowait(ev)
        elif isinstance(ev, ArpReply):
            for fut in self._arp_waiters.pop(bytes(ev.ip), []):
                if not fut.done():
                    fut.set_result((ev, now))
        elif isinstance(ev, NeighFailed):
            ip = bytes(ev.ip)
            for dst, fut in self._echo_waiters.values():
                if dst == ip and not fut.done():
                    fut.set_result(None)
        elif isinstance(ev, AddressConflict):
            conflict = {"address": _ip_str(ev.ip), "mac": mac_str(ev.mac)}
            self.conflicts.append(conflict)
            log.error("address %s is already in use by %s: not using it", conflict["address"], conflict["mac"])
        elif isinstance(ev, AddressReady):
            log.info("address %s ready", _ip_str(ev.ip))
        elif isinstance(ev, DhcpBound):
            if not ev.renewal:
                log.info("dhcp: bound to %s/%d from %s for %d s", _ip_str(ev.ip), ev.prefixlen,
                         _ip_str(ev.server), ev.lease_time)
            self._write_dhcp_state(_ip_str(ev.ip))
        elif isinstance(ev, DhcpLost):
            log.warning("dhcp: lost %s (%s)", _ip_str(ev.ip), ev.reason)
        elif isinstance(ev, DhcpLeasesChanged):
            self._save_leases()

    # -- DHCP state on disk -------------------------------------------------------------------
    # Lease expiry times are on the loop's monotonic clock inside the stack and in wall-clock
    # time on disk, so a lease file survives a reboot of the host.

    def _dhcp_state_path(self) -> str:
        return os.path.join(runtime_dir(), f"{self.config.name}.dhcp")

    def _read_dhcp_state(self) -> str | None:
        """The address this node held before it restarted (INIT-REBOOT asks for it again)."""
        try:
            with open(self._dhcp_state_path()) as fh:
                return str(ipaddress.IPv4Address(fh.read().strip()))
        except (OSError, ValueError):
            return None

    def _write_dhcp_state(self, ip: str) -> None:
        _write_atomic(self._dhcp_state_path(), ip + "\n")

    def _save_leases(self) -> None:
        path = self.config.lease_file
        if not path:
            return
        try:
            save_lease_file(path, self.stack.dhcp_server_leases(), self._loop.time(), time.time())
        except OSError as exc:
            log.error("dhcp: cannot save leases to %s: %s", path, exc)

    # -- control commands ---------------------------------------------------------------------

    def _handlers(self) -> dict[str, Any]:
        return {name: getattr(self, "_cmd_" + name) for name in CONTROL_COMMANDS}

    def _cmd_health(self) -> dict:
        return {
            "name": self.config.name,
            "carrier": bool(netif_carrier_ok(self.dev)),
            "up": bool(self.dev.flags & IFF_UP),
            "attached": self.link.attached,
            "refused": self.link.refused,
            "addresses": self.stack.addresses(),
        }

    def _cmd_link_show(self) -> list[dict]:
        return [_link_info(dev, self.link) for dev in self.ns.devices()]

    def _cmd_link_set(self, dev: str = "vnet0", state: str | None = None, mtu: int | None = None,
                      address: str | None = None, promisc: bool | None = None) -> dict:
        """``ip link set``: MTU and address first, then the flags, as iproute2 orders them."""
        d = self._dev(dev)
        if state not in (None, "up", "down"):
            raise ControlError(f"link state {state!r}: use up or down")
        if mtu is not None:
            _netdev_call(dev_set_mtu, d, int(mtu))
        if address is not None:
            _netdev_call(dev_set_mac_address, d, parse_mac(address))
        flags = dev_get_flags(d)
        if state is not None:
            flags = flags | IFF_UP if state == "up" else flags & ~IFF_UP
        if promisc is not None:
            flags = flags | IFF_PROMISC if promisc else flags & ~IFF_PROMISC
        _netdev_call(dev_change_flags, d, flags)
        self._after_stack()
        return _link_info(d, self.link)

    def _cmd_addr_show(self) -> dict:
        return {"dev": self.dev.name, "addresses": self.stack.addresses(), "conflicts": self.conflicts}

    def _cmd_addr_add(self, cidr: str, dev: str = "vnet0") -> dict:
        self._dev(dev)
        self._xmit(self.stack.add_address(cidr, self._loop.time()))
        self._after_stack()
        return self._cmd_addr_show()

    def _cmd_addr_del(self, cidr: str, dev: str = "vnet0") -> dict:
        self._dev(dev)
        self.stack.del_address(cidr)
        return self._cmd_addr_show()

    def _cmd_dhcp_show(self) -> dict:
        now = self._loop.time()
        return {
            "client": self.stack.dhcp_client_state(now) if self.config.dhcp else None,
            "server": self.stack.dhcp_server_show(now) if self.config.dhcp_server else None,
        }

    def _cmd_neigh_show(self) -> list[dict]:
        return self.stack.neigh_show(self._loop.time())

    def _cmd_neigh_flush(self) -> int:
        return self.stack.neigh_flush()

    def _cmd_stats(self) -> dict:
        return {
            "dev": self.dev.name,
            "stats64": _stats64(self.dev),
            "ethtool": ethtool.ethtool_get_stats(self.dev),
            "stack": self.stack.counters(),
            "link": {
                "tx_batches": self.link.tx_batches,
                "tx_frames": self.link.tx_frames,
                "tx_again": self.link.tx_again,
                "rx_batches": self.link.rx_batches,
                "rx_frames": self.link.rx_frames,
                "rx_not_attached": self.link.rx_not_attached,
                "rx_malformed": self.link.rx_malformed,
                "attaches": self.link.attaches,
                "carrier_losses": self.link.carrier_losses,
                "tx_no_carrier": self.link.tx_no_carrier,
                "cable_cuts": self.link.cable_cuts,
                "auth_failures": self.link.auth_failures,
                "reconnects": self.link.reconnects,
            },
            "udp_queue_drops": self.udp_queue_drops,
            "captures": len(self._captures),
        }

    def _cmd_ethtool(self, op: str, dev: str = "vnet0", **params: Any) -> Any:
        d = self._dev(dev)
        ops = {
            "drvinfo": lambda: ethtool.ethtool_get_drvinfo(d),
            "link": lambda: ethtool.ethtool_get_link(d),
            "stats": lambda: ethtool.ethtool_get_stats(d),
            "get_ringparam": lambda: ethtool.ethtool_get_ringparam(d),
            "set_ringparam": lambda: ethtool.ethtool_set_ringparam(d, **params),
            "get_coalesce": lambda: ethtool.ethtool_get_coalesce(d),
            "set_coalesce": lambda: ethtool.ethtool_set_coalesce(d, **params),
        }
        if op not in ops:
            raise ControlError(f"ethtool op {op!r}: one of {', '.join(ops)}")
        result = _netdev_call(ops[op])
        return _plain(result)

    async def _cmd_ping(self, dst: str, seq: int = 1, size: int = 56, timeout: float = 4.0,
                        ident: int | None = None) -> dict:
        ident = self._ping_ident if ident is None else int(ident) & 0xFFFF
        dst_ip = _parse_ip(dst)
        key = (ident, int(seq) & 0xFFFF)
        if key in self._echo_waiters:
            raise ControlError(f"echo id {ident} seq {seq} is already waiting for a reply")
        fut = self._loop.create_future()
        self._echo_waiters[key] = (dst_ip, fut)
        try:
            sent = self._loop.time()
            self._xmit(_stack_call(self.stack.send_echo, dst, ident, key[1], int(size), sent))
            self._after_stack()
            try:
                got = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                return {"seq": seq, "dst": dst, "status": "timeout"}
            if got is None:
                return {"seq": seq, "dst": dst, "status": "unreachable", "error": "Destination Host Unreachable"}
            ev, when = got
            return {"seq": seq, "dst": dst, "status": "reply", "ttl": ev.ttl, "bytes": ev.size,
                    "rtt_ms": (when - sent) * 1000.0, "from": _ip_str(ev.src)}
        finally:
            self._echo_waiters.pop(key, None)

    async def _cmd_arping(self, dst: str, timeout: float = 1.0) -> dict:
        ip = _parse_ip(dst)
        fut = self._loop.create_future()
        self._arp_waiters.setdefault(ip, []).append(fut)
        sent = self._loop.time()
        try:
            self._xmit(_stack_call(self.stack.arp_probe, dst, sent))
            self._after_stack()
            try:
                ev, when = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                return {"dst": dst, "status": "timeout"}
            return {"dst": dst, "status": "reply", "mac": mac_str(ev.mac), "rtt_ms": (when - sent) * 1000.0}
        finally:
            waiters = self._arp_waiters.get(ip, [])
            if fut in waiters:
                waiters.remove(fut)

    def _cmd_udp_bind(self, port: int) -> dict:
        port = int(port)
        _stack_call(self.stack.udp_bind, port)
        self._udp_queues[port] = asyncio.Queue(UDP_QUEUE_LEN)
        return {"port": port}

    def _cmd_udp_unbind(self, port: int) -> dict:
        port = int(port)
        _stack_call(self.stack.udp_unbind, port)
        self._udp_queues.pop(port, None)
        return {"port": port}

    def _cmd_udp_send(self, dst: str, port: int, data: bytes, sport: int = 0) -> dict:
        if isinstance(data, str):
            data = data.encode()
        sport = int(sport) or 32768 + (os.getpid() % 28000)
        self._xmit(_stack_call(self.stack.send_udp, sport, dst, int(port), bytes(data), self._loop.time()))
        self._after_stack()
        return {"dst": dst, "port": int(port), "sport": sport, "bytes": len(data)}

    async def _cmd_udp_recv(self, port: int, timeout: float = 1.0, max: int = 64) -> list[dict]:
        queue = self._udp_queues.get(int(port))
        if queue is None:
            raise ControlError(f"udp port {port} is not bound here: udp_bind it first")
        out = []
        try:
            ev = await asyncio.wait_for(queue.get(), timeout)
        except asyncio.TimeoutError:
            return out
        out.append(ev)
        while len(out) < max and not queue.empty():
            out.append(queue.get_nowait())
        return [{"src": _ip_str(e.src_ip), "sport": e.src_port, "dst": _ip_str(e.dst_ip), "port": e.dst_port,
                 "data": bytes(e.data)} for e in out]

    def _cmd_inject(self, frames: list[bytes], dev: str = "vnet0") -> dict:
        d = self._dev(dev)
        if not isinstance(frames, list) or not all(isinstance(f, (bytes, bytearray)) for f in frames):
            raise ControlError("inject: frames must be a list of binary frames")
        for sent, frame in enumerate(frames):
            try:
                self._xmit([bytes(frame)], d)
            except ControlError as exc:  # the driver's size checks, as packet_snd's
                raise ControlError(f"inject: frame {sent + 1} of {len(frames)} ({len(frame)} bytes): {exc}; "
                                   f"{sent} sent before it") from None
        return {"sent": len(frames)}

    # -- capture (an ETH_P_ALL tap, like an AF_PACKET socket) --------------------------------

    def _tap_rcv(self, skb, dev) -> None:
        direction = "out" if skb.pkt_type == PACKET_OUTGOING else "in"
        frame = bytes(skb_mac_header(skb))
        ts = time.time()  # pcap timestamps are wall-clock
        for session in self._captures.values():
            session.offer(ts, direction, (frame,))

    def _cmd_capture_start(self, filter: str = "", count: int | None = None, buffer: int = 4096) -> dict:
        try:
            capture = Capture(filter, buffer=int(buffer), count=None if count is None else int(count))
        except FilterError as exc:
            raise ControlError(str(exc)) from None
        cid = next(self._capture_ids)
        self._captures[cid] = CaptureSession(capture, self._loop.time())
        if self._tap is None:
            self._tap = dev_add_pack(self.dev, ETH_P_ALL, self._tap_rcv)
            self._loop.call_later(CAPTURE_IDLE_TIMEOUT / 3, self._expire_captures)
        return {"id": cid, **capture.stats()}

    async def _cmd_capture_read(self, id: int, timeout: float = 1.0, max: int = 1024) -> dict:
        """Frames captured since the last read (waits up to ``timeout`` for the first one)."""
        session = self._captures.get(int(id))
        if session is None:
            raise ControlError(f"no capture {id} on this node (it was stopped, or expired unread)")
        return await session.read(self._loop.time, timeout, max)

    def _cmd_capture_stop(self, id: int) -> dict:
        session = self._captures.pop(int(id), None)
        if session is None:
            raise ControlError(f"no capture {id} on this node")
        if not self._captures and self._tap is not None:
            dev_remove_pack(self.dev, ETH_P_ALL, self._tap_rcv)
            self._tap = None
        return session.capture.stats()

    def _expire_captures(self) -> None:
        """Stop captures nobody has read for a while (a reader that died must not leave a tap
        behind); runs every third of the idle timeout while the tap is in place."""
        now = self._loop.time()
        for cid, session in list(self._captures.items()):
            if session.idle_for(now) > CAPTURE_IDLE_TIMEOUT:
                log.warning("capture %d unread for %.0f s: stopped", cid, session.idle_for(now))
                self._cmd_capture_stop(cid)
        if self._tap is not None:
            self._loop.call_later(CAPTURE_IDLE_TIMEOUT / 3, self._expire_captures)

    # -- helpers ------------------------------------------------------------------------------

    def _dev(self, name: str):
        dev = self.ns.get(name)
        if dev is None:
            names = ", ".join(d.name for d in self.ns.devices())
            raise ControlError(f"no device {name!r} on node {self.config.name} (devices: {names})")
        return dev


CONTROL_COMMANDS = (
    "health", "link_show", "link_set", "addr_show", "addr_add", "addr_del", "neigh_show",
    "neigh_flush", "stats", "ethtool", "ping", "arping", "udp_bind", "udp_unbind", "udp_send",
    "udp_recv", "inject", "dhcp_show", "capture_start", "capture_read", "capture_stop",
)

CAPTURE_IDLE_TIMEOUT = 30.0  # seconds a capture may go unread before it is stopped


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _parse_ip(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise ControlError(f"{text!r} is not an IPv4 address") from None


def _ip_str(ip) -> str:
    if isinstance(ip, str):
        return ip
    if isinstance(ip, int):
        return str(ipaddress.IPv4Address(ip))
    return str(ipaddress.IPv4Address(bytes(ip)))


def _stack_call(fn, *args):
    try:
        return fn(*args)
    except StackError as exc:
        raise ControlError(str(exc)) from None


def _netdev_call(fn, *args):
    try:
        return fn(*args)
    except NetdevError as exc:
        raise ControlError(str(exc)) from None


def _plain(obj: Any) -> Any:
    """Make driver results msgpack-able (dataclasses to dicts)."""
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    return obj


def _stats64(dev) -> dict:
    return _plain(dev_get_stats(dev))


def _link_info(dev, link: ZmqLink) -> dict:
    qdisc = _plain(qdisc_get_stats(dev))
    return {
        "ifindex": dev.ifindex,
        "name": dev.name,
        "flags": _flag_names(dev),
        "mtu": dev.mtu,
        "qdisc": qdisc["kind"],
        "qdisc_stats": qdisc,
        "operstate": dev.operstate,
        "txqueuelen": dev.txqueuelen,
        "address": mac_str(bytes(dev.dev_addr)),
        "broadcast": mac_str(bytes(dev.broadcast)),
        "promiscuity": dev.promiscuity,
        "carrier": bool(netif_carrier_ok(dev)),
        "switch": link.endpoint,
        "switch_port": link.port,
        "stats64": _stats64(dev),
    }


def _flag_names(dev) -> list[str]:
    """The flags as ``ip link`` prints them (NO-CARRIER first when up without carrier)."""
    flags = dev_get_flags(dev)
    names = [name for bit, name in IFF_NAMES if flags & bit]
    if flags & IFF_UP and not flags & IFF_LOWER_UP:
        names.insert(0, "NO-CARRIER")
    return names


async def serve(config: NodeConfig, ready_line: bool = True) -> int:
    """Run a node until SIGTERM/SIGINT (or a REFUSE from the switch); return an exit code."""
    if config.stack == "kernel":
        from vnet.node.kernelnode import KernelNodeDaemon
        daemon = KernelNodeDaemon(config)
    else:
        daemon = NodeDaemon(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await daemon.start()
        except StartError as exc:
            print(f"vnet node {config.name}: {exc}", file=sys.stderr)
            return 2
        if ready_line:
            print_ready({"node": config.name, "control": daemon.control.endpoint,
                          "mac": mac_str(bytes(daemon.dev.dev_addr))})
        stopper = loop.create_task(stop.wait())
        refused = loop.create_task(daemon.refused.wait())
        await asyncio.wait({stopper, refused}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        refused.cancel()
        code = 3 if daemon.refused.is_set() else 0
        if code:
            print(f"vnet node {config.name}: {daemon.link.refused}", file=sys.stderr)
        return code
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await daemon.close()
