"""IPv4: address helpers, the header codec and checksum, on-link routing, and the IP layer.

Addresses are parsed once, at the API boundary, into 4-byte ``bytes`` (the wire form, also
used as dict keys); subnet tests use ints. Each device has its own addresses (an
``AddrTable``, the in_device's ifa_list); output goes where the routing table (route.py, the
FIB) says: the route's device, to its gateway or on-link to the destination, resolved with
that device's ARP. No fragmentation and no reassembly: oversize sends raise, received
fragments are counted (reasm_reqds, reasm_fails) and dropped, oversize packets to forward
are dropped (with DF: ICMP fragmentation needed).

Forwarding (``forwarding``, the sysctl net.ipv4.ip_forward, off by default) follows
ip_route_input + ip_forward: a unicast packet (to our MAC) not addressed to us is routed;
with forwarding off it is dropped and counted in in_addr_errors. TTL 1 or 0: ICMP time
exceeded (in_hdr_errors). No route: ICMP network unreachable (in_no_routes). Too big for the
output device with DF set: ICMP fragmentation needed with the next hop's MTU (frag_fails).
Otherwise the TTL is decremented, the checksum updated incrementally (RFC 1624, as
ip_decrease_ttl) and the packet handed to the output device's neighbour
(forw_datagrams); if resolving the next hop fails, ICMP host unreachable (ipv4_link_failure).
Directed broadcasts are not forwarded (bc_forwarding=0); no redirects are sent
(send_redirects=0).

The limited broadcast 255.255.255.255 is accepted even with no usable address, and a source
of 0.0.0.0 is not a martian: that is how DHCP (dhcp/) talks before it has an address
(RFC 2131 4.1, RFC 1122 3.2.1.3); ``output`` sends from any source it is given.

Receive checks follow Linux's ip_rcv_core/ip_rcv_finish, and so do the counter names
(the IP MIB in snake_case). As in Linux, a bad header checksum counts in both
in_csum_errors and in_hdr_errors.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Callable

from .common import Counters, StackError
from .ether import BROADCAST_MAC, ETH_HDR, ETH_HLEN, ETH_P_IP, PACKET_HOST, Netdev, mac_str

IP_FMT = "!BBHHHBBH4s4s"  # ver/ihl, tos, tot_len, id, frag_off, ttl, protocol, check, saddr, daddr
IP_HDR = struct.Struct(IP_FMT)
IP_HLEN = 20
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
IPPROTO_ICMP = 1
IPPROTO_UDP = 17
IP_DEFAULT_TTL = 64
IP_MIN_MTU = 68

ZERO_IP = bytes(4)
LIMITED_BROADCAST = b"\xff" * 4
INADDR_ALLHOSTS_GROUP = bytes((224, 0, 0, 1))  # every IPv4 host is a member (RFC 1112)

_U16 = struct.Struct("!H")

# Ifaddr states, as ``addresses()`` reports them.
IFA_TENTATIVE = "tentative"  # duplicate address detection running (or waiting for link up)
IFA_OK = "ok"
IFA_CONFLICT = "conflict"  # DAD found another owner: unusable until deleted


def ip_str(ip: bytes) -> str:
    return "%d.%d.%d.%d" % (ip[0], ip[1], ip[2], ip[3])


def parse_ip(text: str | bytes) -> bytes:
    """"10.0.0.1" -> b"\\n\\0\\0\\x01" (4 raw bytes pass through); StackError if malformed.

    Strict dotted quad: no "10.1" shorthand, no leading "+", no spaces.
    """
    if isinstance(text, (bytes, bytearray)) and len(text) == 4:
        return bytes(text)
    parts = text.split(".") if isinstance(text, str) else ()
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and len(p) <= 3 for p in parts):
        vals = [int(p) for p in parts]
        if max(vals) <= 255:
            return bytes(vals)
    raise StackError(f"bad IPv4 address {text!r}: write a dotted quad such as 10.0.0.2")


def parse_cidr(text: str) -> tuple[bytes, int]:
    """"10.0.0.1/24" -> (4 bytes, 24); StackError if malformed or the prefix is missing."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise StackError(
            f"bad interface address {text!r}: give address/prefix length, e.g. 10.0.0.1/24"
        )
    addr, plen = text.split("/")
    ip = parse_ip(addr)
    if not (plen.isdigit() and plen.isascii() and 0 <= int(plen) <= 32):
        raise StackError(f"bad prefix length in {text!r}: it is 0..32, e.g. 10.0.0.1/24")
    return ip, int(plen)


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``; 0 when ``data`` includes a valid one.

    The ones' complement sum of 16-bit words is congruent to the whole buffer read as one
    big-endian integer modulo 0xFFFF (2**16 == 1 mod 0xFFFF), which Python's C bignum
    arithmetic computes far faster than a loop over words.
    """
    if len(data) & 1:
        data += b"\0"
    x = int.from_bytes(data, "big")
    s = x % 0xFFFF
    if s == 0 and x:
        s = 0xFFFF  # a nonzero ones' complement sum is never +0
    return ~s & 0xFFFF


def ip_header(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int,
              ttl: int = IP_DEFAULT_TTL, tos: int = 0, frag_off: int = IP_DF) -> bytes:
    """A 20-byte IPv4 header with its checksum."""
    tot = IP_HLEN + payload_len
    check = inet_checksum(IP_HDR.pack(0x45, tos, tot, ident, frag_off, ttl, proto, 0, src, dst))
    return IP_HDR.pack(0x45, tos, tot, ident, frag_off, ttl, proto, check, src, dst)


def ip_eth_mc_map(group: bytes) -> bytes:
    """The Ethernet address of an IPv4 multicast group (ip_eth_mc_map, RFC 1112 6.4):
    01:00:5e and the group's low 23 bits."""
    return b"\x01\x00\x5e" + bytes((group[1] & 0x7F, group[2], group[3]))


def is_martian_src(ip: bytes) -> bool:
    """Multicast, reserved class E or limited broadcast: never a valid source."""
    return ip[0] >= 224


class Ifaddr:
    """One address on the interface (an in_ifaddr), with its DAD bookkeeping (arp.py)."""

    __slots__ = (
        "ip", "prefixlen", "mask", "net", "bcast", "state", "conflict_mac", "dad_probes",
        "dad_deadline", "announce_left", "announce_deadline", "last_conflict",
    )

    def __init__(self, ip: bytes, prefixlen: int) -> None:
        self.ip = ip
        self.prefixlen = prefixlen
        self.mask = (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF
        self.net = int.from_bytes(ip, "big") & self.mask
        # /31 (RFC 3021) and /32 have no broadcast address.
        self.bcast = (self.net | (~self.mask & 0xFFFFFFFF)).to_bytes(4, "big") \
            if prefixlen <= 30 else None
        self.state = IFA_TENTATIVE
        self.conflict_mac: bytes | None = None
        self.dad_probes = 0
        self.dad_deadline: float | None = None
        self.announce_left = 0
        self.announce_deadline: float | None = None
        self.last_conflict: float | None = None

    @property
    def cidr(self) -> str:
        return f"{ip_str(self.ip)}/{self.prefixlen}"

    def contains(self, ip: bytes) -> bool:
        return int.from_bytes(ip, "big") & self.mask == self.net


class AddrTable:
    """One device's addresses (an in_device's ifa_list) and the on-link route lookup.

    Lookups the receive path makes per packet (is this ours? a broadcast?) use dicts and
    sets rebuilt by ``refresh()`` whenever an address is added, removed or changes state;
    ``on_change`` (set by the host stack) is then called, so the connected routes follow.
    """

    def __init__(self) -> None:
        self.on_change: Callable[[], None] | None = None
        self.all: list[Ifaddr] = []
        self._by_ip: dict[bytes, Ifaddr] = {}
        self.local: dict[bytes, Ifaddr] = {}  # usable addresses only
        self.usable: list[Ifaddr] = []
        self.broadcasts: set[bytes] = {LIMITED_BROADCAST}

    def __contains__(self, ip: bytes) -> bool:
        return ip in self._by_ip

    def add(self, ip: bytes, prefixlen: int) -> Ifaddr:
        if ip in self._by_ip:
            raise StackError(
                f"{ip_str(ip)} is already assigned ({self._by_ip[ip].cidr}); "
                "delete it first to change its prefix"
            )
        if ip == ZERO_IP or ip[0] >= 224 or ip[0] == 127:
            raise StackError(
                f"{ip_str(ip)} cannot be an interface address (unspecified, loopback, "
                "multicast or reserved); use a unicast address such as 10.0.0.1/24"
            )
        ifa = Ifaddr(ip, prefixlen)
        if ifa.bcast == ip:
            raise StackError(
                f"{ip_str(ip)} is the broadcast address of {ifa.cidr}; pick a host address"
            )
        self.all.append(ifa)
        self._by_ip[ip] = ifa
        self.refresh()
        return ifa

    def remove(self, ip: bytes, prefixlen: int | None = None) -> Ifaddr:
        ifa = self._by_ip.get(ip)
        if ifa is None or (prefixlen is not None and ifa.prefixlen != prefixlen):
            have = ", ".join(a.cidr for a in self.all) or "none"
            raise StackError(
                f"no address {ip_str(ip)}{'' if prefixlen is None else f'/{prefixlen}'} "
                f"on the interface (addresses: {have})"
            )
        self.all.remove(ifa)
        del self._by_ip[ip]
        self.refresh()
        return ifa

    def find(self, ip: bytes) -> Ifaddr | None:
        """The address ``ip`` whatever its state (DAD needs tentative ones too)."""
        return self._by_ip.get(ip)

    def set_state(self, ifa: Ifaddr, state: str) -> None:
        ifa.state = state
        self.refresh()

    def refresh(self) -> None:
        self.usable = [a for a in self.all if a.state == IFA_OK]
        self.local = {a.ip: a for a in self.usable}
        self.broadcasts = {LIMITED_BROADCAST} | {a.bcast for a in self.usable if a.bcast}
        if self.on_change is not None:
            self.on_change()

    def on_subnet(self, ip: bytes) -> bytes | None:
        """Our usable address whose subnet holds ``ip``, or None."""
        d = int.from_bytes(ip, "big")
        for ifa in self.usable:
            if d & ifa.mask == ifa.net:
                return ifa.ip
        return None

    def select_src(self, near: bytes | None) -> bytes | None:
        """A usable address to send from (inet_select_addr): one whose subnet holds
        ``near`` (the next hop), else the first usable one, else None."""
        if near is not None:
            d = int.from_bytes(near, "big")
            for ifa in self.usable:
                if d & ifa.mask == ifa.net:
                    return ifa.ip
        return self.usable[0].ip if self.usable else None

    def route(self, dst: bytes) -> tuple[Ifaddr, bool] | None:
        """(source address, is-broadcast) for an on-link ``dst``, else None."""
        if dst == LIMITED_BROADCAST:
            return (self.usable[0], True) if self.usable else None
        d = int.from_bytes(dst, "big")
        for ifa in self.usable:
            if d & ifa.mask == ifa.net:
                return ifa, dst == ifa.bcast
        return None

    def no_route_reason(self, dst: bytes) -> str | None:
        """Why ``dst`` is unreachable through this device's addresses, phrased for the
        caller with the fix; None if there is nothing to say about them."""
        d = ip_str(dst)
        for ifa in self.all:
            if ifa.state == IFA_OK or not (ifa.contains(dst) or dst == LIMITED_BROADCAST):
                continue
            if ifa.state == IFA_TENTATIVE:
                return (f"cannot send to {d}: {ifa.cidr} is still tentative (duplicate "
                        "address detection in progress, or the link is down); wait for "
                        "AddressReady")
            owner = mac_str(ifa.conflict_mac) if ifa.conflict_mac else "another host"
            return (f"cannot send to {d}: {ifa.cidr} is unusable, duplicate address "
                    f"detection found {ip_str(ifa.ip)} in use by {owner}; delete it and "
                    "pick another address")
        return None


class IpCounters(Counters):
    """The IP MIB (RFC 4293 / Linux /proc/net/snmp "Ip:" and "IpExt:") in snake_case.

    in_hdr_errors: too short, not version 4, IHL < 5, total length < IHL, bad checksum.
    in_csum_errors: bad header checksum (also in in_hdr_errors, as Linux counts).
    in_truncated_pkts: total length beyond the frame. in_addr_errors: not addressed to one
    of our usable addresses or a broadcast (a promiscuous NIC, a tentative address), or a
    martian source. in_mcast_pkts: delivered to a multicast group we are a member of
    (InMcastPkts). reasm_reqds/reasm_fails: fragments, never reassembled here.
    out_no_routes: sends refused for want of a route. frag_fails: sends refused as larger
    than the MTU, packets to forward too big for the next hop. out_discards: sends dropped
    because the link is down. forw_datagrams: packets forwarded (ForwDatagrams).
    in_no_routes: packets to forward with no route (InNoRoutes). in_hdr_errors also counts
    packets to forward whose TTL ran out, as ip_forward does.
    """

    __slots__ = (
        "in_receives", "in_hdr_errors", "in_csum_errors", "in_truncated_pkts",
        "in_addr_errors", "in_unknown_protos", "in_delivers", "in_bcast_pkts", "in_mcast_pkts",
        "out_requests", "out_discards", "out_no_routes", "out_bcast_pkts", "reasm_reqds",
        "reasm_fails", "frag_fails", "forw_datagrams", "in_no_routes",
    )


# A transport's receive function: (packet, ihl, src, dst, ttl, is_broadcast, now) -> frames.
ProtoRcv = Callable[[bytes, int, bytes, bytes, int, bool, float], list]

ICMP_TIME_EXCEEDED = 11
ICMP_EXC_TTL = 0
ICMP_DEST_UNREACH = 3
ICMP_NET_UNREACH = 0
ICMP_HOST_UNREACH = 1
ICMP_FRAG_NEEDED = 4


class Ipv4:
    """The IP layer: ``rcv`` for frames from the wire, ``send`` for the caller, ``reply``
    for packets the stack itself originates in answer to the wire (never raises), and the
    forwarding path (``forwarding``).

    ``devs`` (name -> InDevice: a device's Netdev, AddrTable and Arp; the first is the
    stack's primary device) and ``fib`` (route.py) are the stack's, shared. ``protocols``
    (IP protocol -> transport rcv) is filled in by host.py, and so are ``unreach`` (the
    ICMP destination unreachable sender, for unknown protocols) and ``icmp_error`` (any ICMP
    error: (packet, ihl, type, code, now, info, input device) -> frames). ``mc_groups``
    holds the multicast groups the interfaces are members of: the all-hosts group 224.0.0.1
    only (ip_mc_up joins it on every interface; there is no IGMP here to join others).
    ``local`` maps every usable address of every device to its device (``refresh_local``):
    a packet to any of them is ours, whichever device it came in on (the weak host model).
    """

    def __init__(self, devs: dict, fib, ttl: int = IP_DEFAULT_TTL):
        self.devs = devs
        self.fib = fib
        self.ttl = ttl
        self.forwarding = False
        self.protocols: dict[int, ProtoRcv] = {}
        self.unreach: Callable[[bytes, int, int, float], list] | None = None
        self.icmp_error: Callable | None = None
        self.c = IpCounters()
        self._ident = 0
        self._lo_queue: deque[bytes] = deque()
        self._lo_busy = False
        self.mc_groups: frozenset[bytes] = frozenset((INADDR_ALLHOSTS_GROUP,))
        self.local: dict[bytes, object] = {}

    @property
    def primary(self):
        return next(iter(self.devs.values()))

    @property
    def dev(self) -> Netdev:
        return self.primary.dev

    @property
    def addrs(self) -> AddrTable:
        return self.primary.addrs

    def refresh_local(self) -> None:
        self.local = {ifa.ip: indev for indev in self.devs.values() for ifa in indev.addrs.usable}

    # -- sending ---------------------------------------------------------------------------

    def max_payload(self) -> int:
        return self.dev.mtu - IP_HLEN

    def check_size(self, data_len: int, hdr_len: int, what: str) -> None:
        """Raise StackError if ``data_len`` bytes under a ``hdr_len`` transport header do not
        fit in one packet."""
        if data_len + hdr_len > self.dev.mtu - IP_HLEN:
            self.c.frag_fails += 1
            raise StackError(
                f"{what} of {data_len} bytes is too large: the IP packet would be "
                f"{IP_HLEN + hdr_len + data_len} bytes, over the MTU of {self.dev.mtu}; vnet "
                f"does not fragment, so send at most {self.dev.mtu - IP_HLEN - hdr_len} bytes"
            )

    def no_route_reason(self, dst: bytes) -> str:
        """Why there is no way to send to ``dst``, phrased for the caller, with the fix."""
        d = ip_str(dst)
        ifas = [a for indev in self.devs.values() for a in indev.addrs.all]
        if not ifas:
            return (f"cannot send to {d}: no IPv4 address is configured; "
                    "add one first, e.g. 10.0.0.1/24")
        for indev in self.devs.values():
            why = indev.addrs.no_route_reason(dst)
            if why is not None:
                return why
        have = ", ".join(a.cidr for a in ifas)
        return (f"{d} is not on-link and no route leads there (Network is unreachable; "
                f"addresses: {have}); add a route or a default gateway (ip route add)")

    def _src_for(self, indev, rt, dst: bytes) -> bytes | None:
        if rt is not None and rt.prefsrc is not None and rt.prefsrc in self.local:
            return rt.prefsrc
        src = indev.addrs.select_src(rt.gw if rt is not None and rt.gw else dst)
        return src if src is not None else next(iter(self.local), None)

    def route(self, dst: bytes) -> tuple[bytes, bool]:
        """(source address, is-broadcast) for sending to ``dst``; StackError, with the fix,
        if no route leads there or there is no usable address to send from."""
        if dst == LIMITED_BROADCAST:
            for indev in self.devs.values():
                if indev.addrs.usable:
                    return indev.addrs.usable[0].ip, True
        else:
            rt = self.fib.lookup(dst)
            if rt is not None:
                indev = self.devs[rt.dev]
                src = self._src_for(indev, rt, dst)
                if src is not None:
                    return src, dst in indev.addrs.broadcasts
        self.c.out_no_routes += 1
        raise StackError(self.no_route_reason(dst))

    def send(self, dst: bytes, proto: int, payload: bytes, now: float,
             ttl: int | None = None) -> list[bytes]:
        """Send for the caller (``route`` errors raise). The caller has checked the size
        with ``check_size``."""
        src, bcast = self.route(dst)
        return self.output(src, dst, proto, payload, bcast, now, ttl)

    def reply(self, dst: bytes, proto: int, payload: bytes, now: float,
              src: bytes | None = None) -> list[bytes]:
        """Send something the wire asked for (an echo reply, an ICMP error). Never raises:
        no route or no room is counted and dropped. ``src`` if it is one of ours."""
        rt = self.fib.lookup(dst) if dst != LIMITED_BROADCAST else None
        if rt is None:
            self.c.out_no_routes += 1
            return []
        indev = self.devs[rt.dev]
        if dst in indev.addrs.broadcasts or len(payload) > indev.dev.mtu - IP_HLEN:
            self.c.out_no_routes += 1
            return []
        if src is None or src not in self.local:
            src = self._src_for(indev, rt, dst)
            if src is None:
                self.c.out_no_routes += 1
                return []
        return self.output(src, dst, proto, payload, False, now)

    def output(self, src: bytes, dst: bytes, proto: int, payload: bytes, bcast: bool,
               now: float, ttl: int | None = None) -> list[bytes]:
        """Build the header and hand the packet down: loopback, broadcast, or the route's
        device and next hop (ARP)."""
        c = self.c
        c.out_requests += 1
        self._ident = (self._ident + 1) & 0xFFFF
        packet = ip_header(src, dst, proto, len(payload), self._ident,
                           self.ttl if ttl is None else ttl) + payload
        if dst in self.local:
            return self._loopback(packet, now)
        if bcast:
            indev = None
            if dst != LIMITED_BROADCAST:
                rt = self.fib.lookup(dst)
                indev = self.devs[rt.dev] if rt is not None else None
            if indev is None:
                indev = self.local.get(src) or self.primary
            dev = indev.dev
            if not dev.up:
                c.out_discards += 1  # like a qdisc with no carrier: the packet is lost, quietly
                return []
            c.out_bcast_pkts += 1
            return [dev.out(ETH_HDR.pack(BROADCAST_MAC, dev.mac, ETH_P_IP) + packet)]
        rt = self.fib.lookup(dst)
        if rt is None:
            c.out_no_routes += 1
            return []
        indev = self.devs[rt.dev]
        if not indev.dev.up:
            c.out_discards += 1
            return []
        if len(packet) > indev.dev.mtu:
            c.frag_fails += 1
            return []
        return indev.arp.output(rt.gw or dst, src, packet, now)

    def _loopback(self, packet: bytes, now: float) -> list[bytes]:
        """Deliver a packet for one of our own addresses locally (the lo device's job).

        Queued and drained iteratively: a ping to ourselves makes a reply to ourselves."""
        self._lo_queue.append(packet)
        if self._lo_busy:
            return []
        self._lo_busy = True
        frames: list[bytes] = []
        try:
            while self._lo_queue:
                p = self._lo_queue.popleft()
                self.c.in_receives += 1
                frames += self._deliver(p, IP_HLEN, True, now)  # built by output: no options
        finally:
            self._lo_busy = False
        return frames

    # -- receiving -------------------------------------------------------------------------

    def rcv(self, frame: bytes, pkt_type: int, now: float, indev=None) -> list[bytes]:
        """An Ethernet frame carrying IPv4 (ip_rcv), from device ``indev`` (an InDevice;
        None: the primary). Bad packets are counted, never raised."""
        c = self.c
        c.in_receives += 1
        n = len(frame) - ETH_HLEN
        if n < IP_HLEN:
            c.in_hdr_errors += 1
            return []
        vihl = frame[ETH_HLEN]
        ihl = (vihl & 15) * 4
        if vihl >> 4 != 4 or ihl < IP_HLEN or n < ihl:
            c.in_hdr_errors += 1
            return []
        if inet_checksum(frame[ETH_HLEN:ETH_HLEN + ihl]):
            c.in_csum_errors += 1
            c.in_hdr_errors += 1
            return []
        tot_len = _U16.unpack_from(frame, ETH_HLEN + 2)[0]
        if n < tot_len:
            c.in_truncated_pkts += 1
            return []
        if tot_len < ihl:
            c.in_hdr_errors += 1
            return []
        # Slicing to tot_len trims the Ethernet padding of short frames.
        return self._deliver(frame[ETH_HLEN:ETH_HLEN + tot_len], ihl, False, now,
                             indev or self.primary, pkt_type)

    def _deliver(self, packet: bytes, ihl: int, looped: bool, now: float, indev=None,
                 pkt_type: int = PACKET_HOST) -> list[bytes]:
        """ip_rcv_finish + ip_local_deliver (or ip_forward) for a checked packet."""
        c = self.c
        _, _, _, _, frag, ttl, proto, _, src, dst = IP_HDR.unpack_from(packet)
        local = self.local
        if dst in local:
            bcast = False
        elif dst in (indev.addrs.broadcasts if indev is not None else
                     {b for d in self.devs.values() for b in d.addrs.broadcasts}):
            bcast = True
            c.in_bcast_pkts += 1
        elif dst in self.mc_groups:
            # A group we are in: delivered like a broadcast (no ICMP errors back, echo
            # requests ignored as icmp_echo_ignore_broadcasts does for both).
            bcast = True
            c.in_mcast_pkts += 1
        elif self.forwarding and not looped and pkt_type == PACKET_HOST:
            return self._forward(packet, ihl, src, dst, ttl, indev, now)
        else:
            c.in_addr_errors += 1  # not ours, and not routed (ip_forward off: EHOSTUNREACH)
            return []
        if is_martian_src(src) or (src in local and not looped) or \
                (indev is not None and src in indev.addrs.broadcasts):
            c.in_addr_errors += 1
            return []
        if frag & (IP_MF | IP_OFFMASK):
            c.reasm_reqds += 1
            c.reasm_fails += 1
            return []
        handler = self.protocols.get(proto)
        if handler is None:
            c.in_unknown_protos += 1
            if not bcast and self.unreach is not None:
                return self.unreach(packet, ihl, 2, now)  # ICMP protocol unreachable
            return []
        c.in_delivers += 1
        return handler(packet, ihl, src, dst, ttl, bcast, now)

    # -- forwarding ------------------------------------------------------------------------

    def _error(self, packet: bytes, ihl: int, typ: int, code: int, now: float, info: int = 0,
               indev=None) -> list[bytes]:
        if self.icmp_error is None:
            return []
        return self.icmp_error(packet, ihl, typ, code, now, info, indev)

    def _forward(self, packet: bytes, ihl: int, src: bytes, dst: bytes, ttl: int, indev,
                 now: float) -> list[bytes]:
        """ip_route_input's forwarding case and ip_forward."""
        c = self.c
        if is_martian_src(src) or src == ZERO_IP or src in indev.addrs.broadcasts \
                or dst == ZERO_IP or dst[0] >= 224:
            c.in_addr_errors += 1  # a martian source or destination: never routed
            return []
        rt = self.fib.lookup(dst)
        if rt is None:
            c.in_no_routes += 1
            return self._error(packet, ihl, ICMP_DEST_UNREACH, ICMP_NET_UNREACH, now, 0, indev)
        out = self.devs[rt.dev]
        if dst in out.addrs.broadcasts:
            c.in_addr_errors += 1  # a directed broadcast: bc_forwarding is off
            return []
        if ttl <= 1:
            c.in_hdr_errors += 1
            return self._error(packet, ihl, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, now, 0, indev)
        mtu = out.dev.mtu
        if len(packet) > mtu:
            c.frag_fails += 1
            if packet[6] & (IP_DF >> 8):
                return self._error(packet, ihl, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, now, mtu,
                                   indev)
            return []  # vnet does not fragment
        if not out.dev.up:
            c.out_discards += 1
            return []
        fwd = bytearray(packet)
        fwd[8] = ttl - 1
        check = ((fwd[10] << 8) | fwd[11]) + 0x0100  # ip_decrease_ttl: RFC 1624 update
        check = (check + (check >= 0xFFFF)) & 0xFFFF
        fwd[10] = check >> 8
        fwd[11] = check & 0xFF
        c.forw_datagrams += 1
        return out.arp.output(rt.gw or dst, None, bytes(fwd), now)
