"""HostStack: the layers composed on the node's interfaces, and the dispatch tables that bind them.

Sans-I/O (h11, Faucet): frames come in with ``receive_skb(skb, now)`` (from the driver) or
``receive(frame, now)`` (raw bytes, for a hub with no driver); every method that can cause
transmission returns the frames to transmit, in order; what the application waits for
comes out of ``next_events()``; timers are ``next_deadline()`` and ``tick(now)``. Nothing
here reads a clock, sleeps, or touches a socket. The node daemon glues it to the driver:

    ETH_P_ARP/ETH_P_IP handler (skb) -> tx(stack.receive_skb(skb, now))
    at start                         -> dev_mc_add(dev, mac) for mac in stack.mc_list()
    timer at next_deadline           -> tx(stack.tick(now))
    carrier on / off                 -> tx(stack.link_up(now)) / stack.link_down(now)

Frames are classified once. From the driver, ``skb.protocol`` and ``skb.pkt_type`` come
from eth_type_trans and the stack takes them as they are; ``receive`` classifies raw
frames the same way, standing in for the NIC. Then, as Linux's arp_rcv/ip_rcv:
PACKET_OTHERHOST (a promiscuous NIC) is dropped and counted (ether rx_otherhost_dropped,
and for IPv4 the device's rx_otherhost_dropped as ip_rcv counts it); PACKET_MULTICAST is
accepted for the groups in ``mc_list()`` (the all-hosts group 224.0.0.1, 01:00:5e:00:00:01)
and otherwise counted in rx_multicast_dropped (an allmulti or promiscuous NIC passes every
group up).

DHCP (dhcp/) is a service of the stack on UDP ports 67/68: ``dhcp_client_start`` gets
an address from the LAN's server and keeps it on the interface (DhcpBound / DhcpLost);
``dhcp_server_start`` serves a pool from one of our addresses (DhcpLeasesChanged when the
leases should be saved). Their timers are part of ``tick``/``next_deadline``.

Devices: the stack starts with one, its primary (``name``, vnet0); ``add_device(name,
mac, mtu)`` adds more (vnet1, a VLAN sub-interface vnet0.10...), each with its own
addresses and ARP (indev.py), and ``del_device`` removes one. The device-level calls take a
``dev`` name (default: the primary). Frames come in with the device they arrived on
(``skb.dev.name``, or ``receive(frame, now, dev=)``); frames going out on a device other
than the primary are ``TxFrame``s naming it (``frame.dev``, ether.py), plain bytes are for
the primary. Routing (route.py) picks the device and next hop of everything sent; the
connected routes follow the usable addresses; ``route_add``/``route_del``/``route_show``
are ``ip route``; ``forwarding`` is net.ipv4.ip_forward (ipv4.py has the rules).

The interface starts down: nothing is sent and nothing received until ``link_up``.
Wire input never raises (bad frames are counted by reason in ``counters()``); caller
mistakes raise StackError with the fix in the message.
"""

from __future__ import annotations

from collections import deque
from dataclasses import fields, replace

from .arp import Arp, ArpParams
from .common import StackError
from .dhcp import (
    DHCP_CLIENT_PORT, DHCP_SERVER_PORT, Dhcp, DhcpClient, DhcpParams, DhcpServer,
    client_id_option,
)
from .ether import (
    BROADCAST_MAC, ETH_HLEN, ETH_P_ARP, ETH_P_IP, PACKET_BROADCAST, PACKET_HOST,
    PACKET_MULTICAST, PACKET_OTHERHOST, EtherCounters, Netdev, parse_mac, unicast_mac,
)
from .indev import InDevice
from .route import RTPROT_BOOT, RTPROT_DHCP, RTPROT_STATIC, Fib, Route, parse_prefix
from .events import DATA_EVENTS, Event
from .icmp import Icmp, echo_data
from .ipv4 import (
    IP_DEFAULT_TTL, IP_MIN_MTU, IPPROTO_ICMP, IPPROTO_UDP, AddrTable, Ipv4, ip_eth_mc_map,
    ip_str, parse_cidr, parse_ip,
)
from ..netdevice import dev_core_stats_rx_otherhost_dropped_inc
from ..skbuff import skb_mac_header
from .udp import Udp


def _arp_rcv(frame: bytes, pkt_type: int, now: float, indev: InDevice) -> list[bytes]:
    return indev.arp.rcv(frame, pkt_type, now)


def _check_name(name) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 15 or "/" in name \
            or any(c.isspace() for c in name):
        raise StackError(f"device name {name!r}: 1-15 characters, no '/' or spaces (IFNAMSIZ)")
    return name


def _check_ttl(ttl) -> int | None:
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool)
                            or not 1 <= ttl <= 255):
        raise StackError(f"TTL {ttl!r} must be an integer 1..255")
    return ttl


def _check_mtu(mtu) -> int:
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not IP_MIN_MTU <= mtu <= 65535:
        raise StackError(f"MTU {mtu!r} must be an integer {IP_MIN_MTU}..65535 "
                         "(IPv4 needs at least 68)")
    return mtu


class HostStack:
    """A host's IPv4 stack on its Ethernet interfaces: ARP, IPv4 (routing, forwarding),
    ICMP, UDP. ``name`` is the first (primary) device's; ``add_device`` adds more.

    ``arp`` (an ArpParams) and keyword overrides of its fields (``retrans_time=0.5``...)
    tune the neighbour table and DAD; ``rng`` (a random.Random) randomises reachable time,
    the DAD start and ephemeral ports (None: deterministic). ``event_queue_len`` bounds the
    traffic events (EchoReply, UdpDatagram, ArpReply) waiting in ``next_events``; beyond it
    they are dropped and counted (rcvbuf_errors). Control events are always queued.
    """

    def __init__(self, mac: bytes | str, *, mtu: int = 1500, rng=None,
                 ttl: int = IP_DEFAULT_TTL, icmp_ratelimit: float = 1.0,
                 icmp_ratelimit_burst: int = 6, icmp_echo_ignore_broadcasts: bool = True,
                 event_queue_len: int = 1024, arp: ArpParams | None = None,
                 name: str = "vnet0", **arp_params) -> None:
        params = arp or ArpParams()
        if arp_params:
            names = {f.name for f in fields(ArpParams)}
            unknown = sorted(set(arp_params) - names)
            if unknown:
                raise StackError(f"unknown HostStack parameter(s) {', '.join(unknown)}; "
                                 f"ARP parameters are: {', '.join(sorted(names))}")
            params = replace(params, **arp_params)
        if not isinstance(ttl, int) or not 1 <= ttl <= 255:
            raise StackError(f"TTL {ttl!r} must be an integer 1..255")
        self._events: deque[Event] = deque()
        self._event_queue_len = event_queue_len
        self._arp_params = params
        self._rng = rng
        self.devs: dict[str, InDevice] = {}
        self.fib = Fib()
        self.ip = Ipv4(self.devs, self.fib, ttl)
        primary = self._new_device(_check_name(name), unicast_mac(mac), _check_mtu(mtu), True)
        self.dev, self.addrs, self.arp = primary.dev, primary.addrs, primary.arp
        self.icmp = Icmp(self.ip, self._emit, ratelimit=icmp_ratelimit,
                         burst=icmp_ratelimit_burst,
                         echo_ignore_broadcasts=icmp_echo_ignore_broadcasts)
        self.udp = Udp(self.ip, self.icmp, self._emit, rng)
        self.dhcp = Dhcp(self.dev, self.addrs, self.arp, self.udp, self._emit, rng)
        self.ec = EtherCounters()
        # The dispatch tables: the whole receive path at a glance.
        self.ip.protocols = {IPPROTO_ICMP: self.icmp.rcv, IPPROTO_UDP: self.udp.rcv}
        self.ip.unreach = self.icmp.unreach
        self.ip.icmp_error = self.icmp.send_error
        self.ptype = {ETH_P_ARP: _arp_rcv, ETH_P_IP: self.ip.rcv}
        self.mc_macs = frozenset(ip_eth_mc_map(g) for g in self.ip.mc_groups)

    # -- devices (in_device) ---------------------------------------------------------------

    def _new_device(self, name: str, mac: bytes, mtu: int, primary: bool) -> InDevice:
        dev = Netdev(mac, mtu, name, primary)
        addrs = AddrTable()
        arp = Arp(dev, addrs, self._arp_params, self._emit, self._rng)
        indev = InDevice(dev, addrs, arp)
        arp.neigh.error_report = self._neigh_error
        addrs.on_change = lambda: self._addrs_changed(indev)
        self.devs[name] = indev
        return indev

    def _addrs_changed(self, indev: InDevice) -> None:
        """An address of ``indev`` was added, removed or changed state: the connected
        routes and the table of local addresses follow (fib_add_ifaddr/fib_del_ifaddr)."""
        if self.devs.get(indev.name) is indev:
            self.fib.sync_connected(indev.name, indev.addrs.usable)
        self.ip.refresh_local()

    def _neigh_error(self, packet: bytes, now: float) -> list[bytes]:
        """A packet lost to a failed ARP resolution: if we were forwarding it, tell its
        sender the host is unreachable (ipv4_link_failure); our own are NeighFailed."""
        if packet[12:16] in self.ip.local:
            return []
        return self.icmp.send_error(packet, (packet[0] & 15) * 4, 3, 1, now)

    def _indev(self, dev: str | None) -> InDevice:
        if dev is None:
            return self.devs[self.dev.name]
        indev = self.devs.get(dev)
        if indev is None:
            raise StackError(f"no device {dev!r} in the stack (devices: "
                             f"{', '.join(self.devs)}); add_device it first")
        return indev

    def add_device(self, name: str, mac: bytes | str, mtu: int = 1500) -> None:
        """Run the stack on one more device (register_netdevice + inetdev_init): it starts
        down with no addresses; ``link_up(now, dev=name)`` when it has carrier."""
        if name in self.devs:
            raise StackError(f"device {name!r} is already in the stack")
        self._new_device(_check_name(name), unicast_mac(mac), _check_mtu(mtu), False)

    def del_device(self, name: str) -> None:
        """Stop running on ``name`` (inetdev_destroy): its addresses, neighbours and every
        route through it go. The primary device cannot be removed."""
        indev = self._indev(name)
        if indev.dev.primary:
            raise StackError(f"{name} is the stack's primary device; it cannot be removed")
        indev.dev.up = False
        indev.arp.link_down(0.0)
        del self.devs[name]
        self.fib.flush_dev(name)
        self.ip.refresh_local()

    def devices(self) -> list[str]:
        return list(self.devs)

    # -- plumbing --------------------------------------------------------------------------

    def _emit(self, ev: Event) -> bool:
        if isinstance(ev, DATA_EVENTS) and len(self._events) >= self._event_queue_len:
            return False
        self._events.append(ev)
        return True

    def _tx(self, frames: list[bytes]) -> list[bytes]:
        if frames:
            ec = self.ec
            ec.tx_frames += len(frames)
            ec.tx_bytes += sum(map(len, frames))
        return frames

    # -- the interface ---------------------------------------------------------------------

    @property
    def mac(self) -> bytes:
        return self.dev.mac

    @property
    def mtu(self) -> int:
        return self.dev.mtu

    @property
    def is_up(self) -> bool:
        return self.dev.up

    def set_mac(self, mac: bytes | str, now: float, dev: str | None = None) -> list[bytes]:
        """Change a device's MAC; returns gratuitous ARPs for its usable addresses so that
        neighbours pick it up."""
        indev = self._indev(dev)
        indev.dev.mac = unicast_mac(mac)
        frames: list[bytes] = []
        for ifa in indev.addrs.usable:
            frames += indev.arp.announce(ifa, now)
        return self._tx(frames)

    def set_mtu(self, mtu: int, dev: str | None = None) -> None:
        self._indev(dev).dev.mtu = _check_mtu(mtu)

    def link_up(self, now: float, dev: str | None = None) -> list[bytes]:
        """Carrier on: announce usable addresses, start DAD of tentative ones."""
        indev = self._indev(dev)
        if indev.dev.up:
            return []
        indev.dev.up = True
        frames = indev.arp.link_up(now)
        if indev.dev.primary:
            frames = frames + self.dhcp.link_up(now)
        return self._tx(frames)

    def link_down(self, now: float, dev: str | None = None) -> list[bytes]:
        """Carrier off: the neighbour table is flushed (NeighFailed for queued packets),
        DAD pauses until link up; sends are dropped (ip out_discards). Returns []."""
        indev = self._indev(dev)
        if indev.dev.up:
            indev.dev.up = False
            indev.arp.link_down(now)
        return []

    def add_address(self, cidr: str, now: float, dev: str | None = None) -> list[bytes]:
        """Add "a.b.c.d/len" to a device. It is tentative until DAD passes (AddressReady),
        or unusable if another host has it (AddressConflict). Its connected route appears
        when it is usable."""
        indev = self._indev(dev)
        ip, plen = parse_cidr(cidr)
        for other in self.devs.values():
            if other is not indev and other.addrs.find(ip) is not None:
                raise StackError(f"{ip_str(ip)} is already assigned on {other.name}; "
                                 "delete it there first")
        ifa = indev.addrs.add(ip, plen)
        return self._tx(indev.arp.start_dad(ifa, now))

    def del_address(self, cidr: str, dev: str | None = None) -> None:
        """Remove "a.b.c.d/len" (or "a.b.c.d"), whatever its state, from ``dev`` (None: the
        device that has it, else the primary); its connected route goes with it."""
        if isinstance(cidr, str) and "/" in cidr:
            ip, plen = parse_cidr(cidr)
        else:
            ip, plen = parse_ip(cidr), None
        if dev is None:
            dev = next((name for name, indev in self.devs.items() if ip in indev.addrs), None)
        self._indev(dev).addrs.remove(ip, plen)

    def addresses(self, dev: str | None = None) -> list[dict]:
        """[{"address": "10.0.0.1", "prefixlen": 24, "state": "ok", "broadcast": ...,
        "dev": "vnet0"}]: one device's (``dev``), or every device's (None), primary first."""
        devs = self.devs.values() if dev is None else (self._indev(dev),)
        return [{"address": ip_str(a.ip), "prefixlen": a.prefixlen, "state": a.state,
                 "broadcast": ip_str(a.bcast) if a.bcast else None, "dev": indev.name}
                for indev in devs for a in indev.addrs.all]

    # -- the wire and the clock ------------------------------------------------------------

    def mc_list(self) -> list[bytes]:
        """The multicast MACs the interface must accept (what ip_mc_up hands dev_mc_add)."""
        return sorted(self.mc_macs)

    def receive_skb(self, skb, now: float) -> list[bytes]:
        """A frame from the driver: an skb after eth_type_trans, as a packet-type handler
        gets it, on the device ``skb.dev`` (by name; a registered device the stack does not
        run on is dropped and counted, rx_no_dev; no device or an unregistered one means the
        primary). Its ``protocol``
        and ``pkt_type`` are used as they are, not re-derived from the bytes. Never raises
        on content."""
        frame = bytes(skb_mac_header(skb))
        ec = self.ec
        ec.rx_frames += 1
        ec.rx_bytes += len(frame)
        netdev = skb.dev
        indev = self.devs.get(netdev.name) if netdev is not None else None
        if indev is None:
            if netdev is not None and getattr(netdev, "ns", None) is not None:
                ec.rx_no_dev += 1  # a registered device the stack does not run on
                return []
            indev = self.devs[self.dev.name]  # no device, or a bare unregistered one: the primary
        return self._rcv(frame, skb.protocol, skb.pkt_type, netdev, now, indev)

    def receive(self, frame: bytes | bytearray | memoryview, now: float,
                dev: str | None = None) -> list[bytes]:
        """A raw frame (whole Ethernet frame, no FCS) from a hub with no driver, on device
        ``dev`` (default: the primary): classified here as eth_type_trans would, then
        handled as ``receive_skb``. Never raises."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        ec = self.ec
        ec.rx_frames += 1
        ec.rx_bytes += len(frame)
        indev = self.devs.get(dev) if dev is not None else self.devs[self.dev.name]
        if indev is None:
            ec.rx_no_dev += 1
            return []
        if len(frame) < ETH_HLEN:
            ec.rx_runts += 1
            return []
        dst = frame[:6]
        if dst[0] & 1:
            pkt_type = PACKET_BROADCAST if dst == BROADCAST_MAC else PACKET_MULTICAST
        elif dst == indev.dev.mac:
            pkt_type = PACKET_HOST
        else:
            pkt_type = PACKET_OTHERHOST
        return self._rcv(frame, (frame[12] << 8) | frame[13], pkt_type, None, now, indev)

    def _rcv(self, frame: bytes, protocol: int, pkt_type: int, netdev, now: float,
             indev: InDevice) -> list[bytes]:
        """The ptype dispatch for a classified frame (``netdev``: the driver's device, for
        the counters ip_rcv keeps there, or None)."""
        ec = self.ec
        if not indev.dev.up:
            ec.rx_link_down += 1
            return []
        if pkt_type == PACKET_OTHERHOST:  # arp_rcv and ip_rcv drop these
            ec.rx_otherhost_dropped += 1
            if protocol == ETH_P_IP and netdev is not None:
                dev_core_stats_rx_otherhost_dropped_inc(netdev)
            return []
        if pkt_type == PACKET_MULTICAST and frame[:6] not in self.mc_macs:
            ec.rx_multicast_dropped += 1
            return []
        if frame[6] & 1:
            ec.rx_bad_src += 1
            return []
        handler = self.ptype.get(protocol)
        if handler is None:
            ec.rx_unknown_type += 1
            return []
        frames = handler(frame, pkt_type, now, indev)
        if self.dhcp.client is not None:  # an ARP reply may have ended the client's DAD
            frames = frames + self.dhcp.poll(now)
        return self._tx(frames)

    def tick(self, now: float) -> list[bytes]:
        """Run the timers due at ``now`` (ARP retries and ageing, DAD, announcements on
        every device, the DHCP client's retransmissions and lease times)."""
        frames: list[bytes] = []
        for indev in list(self.devs.values()):
            frames += indev.arp.tick(now)
        return self._tx(frames + self.dhcp.tick(now))

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work (may be in the past), or None."""
        due = [d for d in (indev.arp.next_deadline() for indev in self.devs.values())
               if d is not None]
        d = self.dhcp.next_deadline()
        if d is not None:
            due.append(d)
        return min(due) if due else None

    def next_events(self) -> list[Event]:
        """Everything that happened since the last call, oldest first."""
        events = list(self._events)
        self._events.clear()
        return events

    # -- what applications do --------------------------------------------------------------

    def send_echo(self, dst_ip: str, ident: int, seq: int, payload: int | bytes,
                  now: float, *, ttl: int | None = None) -> list[bytes]:
        """An ICMP echo request; ``payload`` is bytes or a size (ping's pattern, 56 is
        ping's default). Replies come out as EchoReply; an ARP failure as NeighFailed;
        ICMP errors about it as DestUnreachable/TimeExceeded. ``ttl``: ping -t."""
        if isinstance(payload, int) and not isinstance(payload, bool):
            if payload < 0:
                raise StackError(f"echo payload size {payload} must be >= 0")
            self.ip.check_size(payload, 8, "ICMP echo data")
            payload = echo_data(payload)
        elif isinstance(payload, (bytes, bytearray, memoryview)):
            payload = bytes(payload)
        else:
            raise StackError(f"echo payload must be bytes or a size, not {payload!r}")
        return self._tx(self.icmp.send_echo(parse_ip(dst_ip), ident, seq, payload, now,
                                            _check_ttl(ttl)))

    def send_udp(self, src_port: int, dst_ip: str, dst_port: int, payload: bytes,
                 now: float, *, ttl: int | None = None) -> list[bytes]:
        """A UDP datagram; ``ttl`` overrides the default (traceroute's probes)."""
        return self._tx(self.udp.send(src_port, parse_ip(dst_ip), dst_port, payload, now,
                                      _check_ttl(ttl)))

    def udp_bind(self, port: int) -> int:
        """Bind ``port`` (0 picks a free ephemeral one); returns it. StackError if bound."""
        return self.udp.bind(port)

    def udp_unbind(self, port: int) -> None:
        self.udp.unbind(port)

    def arp_probe(self, ip: str, now: float, dev: str | None = None) -> list[bytes]:
        """arping: a broadcast ARP request for ``ip`` on ``dev`` (default: the device the
        route to ``ip`` uses, else the primary); answers come out as ArpReply."""
        target = parse_ip(ip)
        if dev is None:
            rt = self.fib.lookup(target)
            dev = rt.dev if rt is not None else None
        return self._tx(self._indev(dev).arp.probe(target, now))

    # -- routing (ip route, net.ipv4.ip_forward) -------------------------------------------

    @property
    def forwarding(self) -> bool:
        """net.ipv4.ip_forward: route packets that are not for us (off by default)."""
        return self.ip.forwarding

    @forwarding.setter
    def forwarding(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise StackError(f"forwarding must be true or false, not {on!r}")
        self.ip.forwarding = on

    def route_add(self, dst: str, via: str | None = None, dev: str | None = None, *,
                  metric: int = 0, proto: str = RTPROT_STATIC) -> dict:
        """``ip route add DST [via GW] [dev DEV] [metric N]``: DST is a prefix, an address
        (/32) or "default". A gateway must be on-link: inside the subnet of an address of
        ``dev`` (of any device if ``dev`` is not given; that device is the route's). With no
        gateway, ``dev`` is required (a device route, scope link). Returns the route."""
        net, plen = parse_prefix(dst)
        if not isinstance(metric, int) or isinstance(metric, bool) or not 0 <= metric <= 0xFFFFFFFF:
            raise StackError(f"route metric {metric!r} must be an integer 0..4294967295")
        if proto not in (RTPROT_STATIC, RTPROT_BOOT, RTPROT_DHCP):
            raise StackError(f"route proto {proto!r}: static, boot or dhcp")
        indev = self._indev(dev) if dev is not None else None
        gw = None
        if via is not None:
            gw = parse_ip(via)
            if gw in self.ip.local or any(d.addrs.find(gw) for d in self.devs.values()):
                raise StackError(f"gateway {via} is one of our own addresses; give a neighbour's")
            cands = [indev] if indev is not None else list(self.devs.values())
            on = next((d for d in cands if any(a.contains(gw) for a in d.addrs.all)), None)
            if on is None:
                where = f"on {dev}" if dev is not None else "on any device"
                raise StackError(f"gateway {via} is not on-link {where} (Nexthop has invalid "
                                 "gateway): it must be inside the subnet of one of our "
                                 "addresses; add that address first")
            indev = on
        elif indev is None:
            raise StackError(f"route {dst}: give a gateway (via GW) or a device (dev DEV)")
        rt = self.fib.add(Route(net, plen, indev.name, gw, proto=proto, metric=metric))
        return rt.as_dict()

    def route_del(self, dst: str, via: str | None = None, dev: str | None = None) -> dict:
        """``ip route del DST [via GW] [dev DEV]``: the first route that matches; returns it."""
        net, plen = parse_prefix(dst)
        gw = parse_ip(via) if via is not None else None
        return self.fib.delete(net, plen, gw=gw, dev=dev).as_dict()

    def route_show(self) -> list[dict]:
        """The main table as ``ip route`` lists it: [{dst, via, dev, proto, scope, metric,
        src}], default first."""
        return self.fib.show()

    def route_get(self, dst: str) -> dict:
        """``ip route get DST``: the route used, with the source address it would pick."""
        ip = parse_ip(dst)
        src, _ = self.ip.route(ip)
        rt = self.fib.lookup(ip)
        out = rt.as_dict() if rt is not None else {"dst": dst, "via": None, "dev": None}
        return {**out, "dst": ip_str(ip), "prefix": out["dst"], "src": ip_str(src)}

    # -- DHCP (dhcp/) ---------------------------------------------------------------------

    def dhcp_client_start(self, now: float, client_id: bytes | str | None,
                          hostname: str | None = None, previous_ip: str | None = None, *,
                          params: DhcpParams | None = None) -> list[bytes]:
        """Get an address by DHCP and keep it: DhcpBound once it is on the interface (DAD
        passed), DhcpLost when it goes. ``client_id``: a stable id such as the node's name
        (option 61 = type 0 + it), or None for type 1 + our MAC; the server keys leases by
        it. ``hostname``: option 12. ``previous_ip``: the address we had (INIT-REBOOT asks
        for it back). Takes UDP port 68."""
        if self.dhcp.client is not None:
            raise StackError("the DHCP client is already running; dhcp_client_stop() it "
                             "first")
        cid = client_id_option(client_id, self.dev.mac)
        if hostname is not None and (not isinstance(hostname, str)
                                     or not 1 <= len(hostname.encode()) <= 255):
            raise StackError(f"DHCP host name {hostname!r} must be a string of 1..255 bytes")
        prev = None
        if previous_ip is not None:
            prev = parse_ip(previous_ip)
            if prev == bytes(4) or prev[0] in (0, 127) or prev[0] >= 224:
                raise StackError(f"previous DHCP address {previous_ip!r} is not a unicast "
                                 "address; pass None to start from DISCOVER")
        if params is not None and not isinstance(params, DhcpParams):
            raise StackError("params must be a DhcpParams")
        self.udp.attach(DHCP_CLIENT_PORT, self.dhcp.client_rcv)
        client = DhcpClient(self.dhcp, cid, hostname, prev, params or DhcpParams(),
                            self.dhcp.rng, self.dhcp.c, self._emit)
        self.dhcp.client = client
        return self._tx(client.start(now))

    def dhcp_client_stop(self, now: float, release: bool = True) -> list[bytes]:
        """Stop the client and remove its address (DhcpLost "released"/"stopped").
        ``release``: send DHCPRELEASE so the server frees the lease now (it is unicast to
        the server, through ARP if its MAC is not cached: keep handling frames briefly);
        without it the server keeps the lease until it expires."""
        client = self.dhcp.client
        if client is None:
            return []
        frames = client.stop(now, release)
        self.dhcp.client = None
        self.udp.detach(DHCP_CLIENT_PORT)
        return self._tx(frames)

    def dhcp_client_state(self, now: float | None = None) -> dict:
        """{state, address, prefixlen, server, lease_time, lease_remaining, renew_in,
        rebind_in, client_id, hostname, xid, next_timeout}; times in seconds from ``now``
        (default: the last time the client was called)."""
        client = self.dhcp.client
        if client is None:
            return {"state": "stopped", "address": None, "prefixlen": None, "server": None,
                    "lease_time": None, "lease_remaining": None, "renew_in": None,
                    "rebind_in": None, "client_id": None, "hostname": None, "xid": None,
                    "next_timeout": None}
        return client.show(now)

    def dhcp_server_start(self, server_cidr: str, pool_first: str, pool_last: str,
                          lease_time: float = 3600, leases: dict | None = None,
                          static=(), *, offer_hold: float = 60.0,
                          decline_hold: float = 600.0, router: str | None = None) -> None:
        """Serve addresses ``pool_first..pool_last`` (minus ours and ``static``) from
        ``server_cidr``, an address already on the interface ("10.0.0.1/24", or without
        the prefix). ``leases``: what ``dhcp_server_leases()`` returned before a restart.
        Answers only while that address is usable (DAD passed). Takes UDP port 67."""
        if self.dhcp.server is not None:
            raise StackError("the DHCP server is already running; dhcp_server_stop() it "
                             "first")
        if isinstance(server_cidr, str) and "/" in server_cidr:
            ip, plen = parse_cidr(server_cidr)
        else:
            ip, plen = parse_ip(server_cidr), None
        ifa = self.addrs.find(ip)
        if ifa is None or (plen is not None and plen != ifa.prefixlen):
            have = ", ".join(a.cidr for a in self.addrs.all) or "none"
            raise StackError(f"the DHCP server address {server_cidr} is not on the "
                             f"interface (addresses: {have}); add_address it first")
        server = DhcpServer(ip, ifa.prefixlen, pool_first, pool_last, lease_time=lease_time,
                            offer_hold=offer_hold, decline_hold=decline_hold, static=static,
                            router=router, leases=leases, counters=self.dhcp.c,
                            emit=self._emit)
        self.udp.attach(DHCP_SERVER_PORT, self.dhcp.server_rcv)
        self.dhcp.server = server

    def dhcp_server_stop(self) -> None:
        if self.dhcp.server is not None:
            self.dhcp.server = None
            self.udp.detach(DHCP_SERVER_PORT)

    def dhcp_server_leases(self) -> dict:
        """The leases to persist, JSON-serialisable: {client id hex: {"ip": "10.0.0.10",
        "expires": <absolute time, the clock of now>, "hostname": str | None}}. Reading
        them counts as saving: the next change emits DhcpLeasesChanged again."""
        server = self.dhcp.server
        if server is None:
            raise StackError("the DHCP server is not running; dhcp_server_start() it first")
        server.mark_saved()
        return server.leases_to_dict()

    def dhcp_server_show(self, now: float) -> list[dict]:
        """[{ip, state (bound, expired, offered, declined), client_id, hostname,
        remaining}] by address."""
        server = self.dhcp.server
        return [] if server is None else server.show(now)

    # -- the neighbour table (ip neigh) ----------------------------------------------------

    def neigh_show(self, now: float, dev: str | None = None) -> list[dict]:
        """[{ip, mac|None, state, age, used, confirmed, probes, queued, dev}] sorted by IP,
        one device's or every device's; times are seconds ago."""
        devs = self.devs.values() if dev is None else (self._indev(dev),)
        return [{**row, "dev": indev.name} for indev in devs
                for row in indev.arp.neigh.show(now)]

    def neigh_flush(self, dev: str | None = None) -> int:
        """Remove all non-permanent entries (of ``dev``, or of every device); how many."""
        devs = list(self.devs.values()) if dev is None else [self._indev(dev)]
        return sum(indev.arp.neigh.flush() for indev in devs)

    def neigh_add(self, ip: str, mac: bytes | str, now: float,
                  dev: str | None = None) -> list[bytes]:
        """A static (PERMANENT) entry; returns packets that were waiting for it."""
        return self._tx(self._indev(dev).arp.neigh.add_static(parse_ip(ip), parse_mac(mac),
                                                              now))

    def neigh_del(self, ip: str, dev: str | None = None) -> bool:
        return self._indev(dev).arp.neigh.delete(parse_ip(ip))

    # -- statistics ------------------------------------------------------------------------

    def counters(self) -> dict[str, dict[str, int]]:
        """Every layer's counters (the /proc/net/snmp groups); "arp" sums the devices'."""
        arp: dict[str, int] = {}
        for indev in self.devs.values():
            for k, v in indev.arp.c.as_dict().items():
                arp[k] = arp.get(k, 0) + v
        return {"ether": self.ec.as_dict(), "arp": arp,
                "ip": self.ip.c.as_dict(), "icmp": self.icmp.c.as_dict(),
                "udp": self.udp.c.as_dict(), "dhcp": self.dhcp.c.as_dict()}

    def __repr__(self) -> str:
        addrs = ",".join(f"{a['dev'] + ':' if a['dev'] != self.dev.name else ''}"
                         f"{a['address']}/{a['prefixlen']}({a['state']})"
                         for a in self.addresses())
        return (f"HostStack({self.dev.mac.hex(':')}, {'up' if self.dev.up else 'down'}, "
                f"[{addrs}])")
