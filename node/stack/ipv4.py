"""IPv4: address helpers, the header codec and checksum, on-link routing, and the IP layer.

Addresses are parsed once, at the API boundary, into 4-byte ``bytes`` (the wire form, also
used as dict keys); subnet tests use ints. There is no routing table: a destination is
reachable only if it is inside the subnet of one of the interface's usable addresses
("on-link"), which is all a single LAN needs. No fragmentation and no reassembly: oversize
sends raise, received fragments are counted (reasm_reqds, reasm_fails) and dropped.

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
from .ether import BROADCAST_MAC, ETH_HDR, ETH_HLEN, ETH_P_IP, Netdev, mac_str

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
    """The interface's addresses (an in_device's ifa_list) and the on-link route lookup.

    Lookups the receive path makes per packet (is this ours? a broadcast?) use dicts and
    sets rebuilt by ``refresh()`` whenever an address is added, removed or changes state.
    """

    def __init__(self) -> None:
        self.all: list[Ifaddr] = []
        self._by_ip: dict[bytes, Ifaddr] = {}
        self.local: dict[bytes, Ifaddr] = {}  # usable addresses only
        self.usable: list[Ifaddr] = []
        self.broadcasts: set[bytes] = {LIMITED_BROADCAST}

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

    def route(self, dst: bytes) -> tuple[Ifaddr, bool] | None:
        """(source address, is-broadcast) for an on-link ``dst``, else None."""
        if dst == LIMITED_BROADCAST:
            return (self.usable[0], True) if self.usable else None
        d = int.from_bytes(dst, "big")
        for ifa in self.usable:
            if d & ifa.mask == ifa.net:
                return ifa, dst == ifa.bcast
        return None

    def no_route_reason(self, dst: bytes) -> str:
        """Why ``route(dst)`` is None, phrased for the caller, with the fix."""
        d = ip_str(dst)
        if not self.all:
            return (f"cannot send to {d}: no IPv4 address is configured; "
                    "add one first, e.g. 10.0.0.1/24")
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
        have = ", ".join(a.cidr for a in self.all)
        return f"{d} is not on-link (addresses: {have}); vnet routes only within the LAN"


class InDevice:
    """One device's IPv4 side (the kernel's in_device): the device as the stack sees it, its
    addresses (connected routes) and its neighbour table's output (ARP runs per device)."""

    __slots__ = ("name", "dev", "addrs", "neigh_output")

    def __init__(self, name: str, dev: Netdev, addrs: AddrTable, neigh_output) -> None:
        self.name = name
        self.dev = dev
        self.addrs = addrs
        self.neigh_output = neigh_output


class IpCounters(Counters):
    """The IP MIB (RFC 4293 / Linux /proc/net/snmp "Ip:" and "IpExt:") in snake_case.

    in_hdr_errors: too short, not version 4, IHL < 5, total length < IHL, bad checksum.
    in_csum_errors: bad header checksum (also in in_hdr_errors, as Linux counts).
    in_truncated_pkts: total length beyond the frame. in_addr_errors: not addressed to one
    of our usable addresses or a broadcast (a promiscuous NIC, a tentative address), or a
    martian source. in_mcast_pkts: delivered to a multicast group we are a member of
    (InMcastPkts). reasm_reqds/reasm_fails: fragments, never reassembled here.
    out_no_routes: sends refused as off-link. frag_fails: sends refused as larger than the
    MTU. out_discards: sends dropped because the link is down.
    """

    __slots__ = (
        "in_receives", "in_hdr_errors", "in_csum_errors", "in_truncated_pkts",
        "in_addr_errors", "in_unknown_protos", "in_delivers", "in_bcast_pkts", "in_mcast_pkts",
        "out_requests", "out_discards", "out_no_routes", "out_bcast_pkts", "reasm_reqds",
        "reasm_fails", "frag_fails",
    )


# A transport's receive function: (packet, ihl, src, dst, ttl, is_broadcast, now) -> frames.
ProtoRcv = Callable[[bytes, int, bytes, bytes, int, bool, float], list]


class Ipv4:
    """The IP layer: ``rcv`` for frames from the wire, ``send`` for the caller, ``reply``
    for packets the stack itself originates in answer to the wire (never raises).

    ``protocols`` (IP protocol -> transport rcv) is filled in by host.py, and so is
    ``unreach`` (the ICMP error sender, for unknown protocols). ``mc_groups`` holds the
    multicast groups the interface is a member of: the all-hosts group 224.0.0.1 only
    (ip_mc_up joins it on every interface; there is no IGMP here to join others).
    """

    def __init__(self, dev: Netdev, addrs: AddrTable, neigh_output, ttl: int = IP_DEFAULT_TTL,
                 name: str = "vnet0"):
        self.dev = dev  # the first device's (vnet0): DHCP and the size checks use it
        self.addrs = addrs
        self.neigh_output = neigh_output  # (dst, src, packet, now) -> frames: ARP resolution
        self.devices: list[InDevice] = [InDevice(name, dev, addrs, neigh_output)]
        self.ttl = ttl
        self.protocols: dict[int, ProtoRcv] = {}
        self.unreach: Callable[[bytes, int, int, float], list] | None = None
        self.c = IpCounters()
        self._ident = 0
        self._lo_queue: deque[bytes] = deque()
        self._lo_busy = False
        self.mc_groups: frozenset[bytes] = frozenset((INADDR_ALLHOSTS_GROUP,))

    # -- devices ---------------------------------------------------------------------------

    def add_device(self, indev: InDevice) -> None:
        """One more device (vnet1, ...): its addresses are ours too (the weak host model)."""
        self.devices.append(indev)

    def is_local(self, ip: bytes) -> bool:
        """A usable address on any device."""
        for d in self.devices:
            if ip in d.addrs.local:
                return True
        return False

    def is_broadcast(self, ip: bytes) -> bool:
        """The limited broadcast or a usable address's directed broadcast, on any device."""
        for d in self.devices:
            if ip in d.addrs.broadcasts:
                return True
        return False

    def connected(self, dst: bytes) -> tuple[InDevice, Ifaddr, bool] | None:
        """(device, source address, is-broadcast) for an on-link ``dst``: the longest of the
        devices' connected prefixes that holds it (the limited broadcast: the first device
        with a usable address), else None."""
        if len(self.devices) == 1:
            r = self.addrs.route(dst)
            return None if r is None else (self.devices[0], r[0], r[1])
        best = None
        for d in self.devices:
            r = d.addrs.route(dst)
            if r is not None and (best is None or r[0].prefixlen > best[1].prefixlen):
                best = (d, r[0], r[1])
                if dst == LIMITED_BROADCAST:
                    break
        return best

    def _out_device(self, src: bytes, dst: bytes) -> InDevice:
        """The device a packet from ``src`` to ``dst`` leaves by: the one ``dst`` is on-link
        on; for the limited broadcast (or off-link) the one holding ``src``; else the first."""
        devices = self.devices
        if len(devices) == 1:
            return devices[0]
        if dst != LIMITED_BROADCAST:
            r = self.connected(dst)
            if r is not None:
                return r[0]
        for d in devices:
            if d.addrs.find(src) is not None:
                return d
        return devices[0]

    def no_route_reason(self, dst: bytes) -> str:
        """Why ``connected(dst)`` is None, over every device's addresses, with the fix."""
        tables = [d for d in self.devices if d.addrs.all]
        if len(tables) <= 1:
            return (tables[0].addrs if tables else self.addrs).no_route_reason(dst)
        for d in tables:
            if any(a.state != IFA_OK and (a.contains(dst) or dst == LIMITED_BROADCAST) for a in d.addrs.all):
                return d.addrs.no_route_reason(dst)
        have = ", ".join(f"{a.cidr} dev {d.name}" for d in tables for a in d.addrs.all)
        return f"{ip_str(dst)} is not on-link (addresses: {have}); vnet routes only within the LAN"

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

    def route(self, dst: bytes) -> tuple[bytes, bool]:
        """(source address, is-broadcast) for sending to ``dst``; StackError, with the fix,
        if it is not on-link or there is no usable address."""
        r = self.connected(dst)
        if r is None:
            self.c.out_no_routes += 1
            raise StackError(self.no_route_reason(dst))
        return r[1].ip, r[2]

    def send(self, dst: bytes, proto: int, payload: bytes, now: float) -> list[bytes]:
        """Send for the caller (``route`` errors raise). The caller has checked the size
        with ``check_size``."""
        src, bcast = self.route(dst)
        return self.output(src, dst, proto, payload, bcast, now)

    def reply(self, dst: bytes, proto: int, payload: bytes, now: float,
              src: bytes | None = None) -> list[bytes]:
        """Send something the wire asked for (an echo reply, an ICMP error). Never raises:
        no route or no room is counted and dropped. ``src`` if it is one of ours."""
        r = self.connected(dst)
        if r is None or r[2] or len(payload) > r[0].dev.mtu - IP_HLEN:
            self.c.out_no_routes += 1
            return []
        if src is None or not self.is_local(src):
            src = r[1].ip
        return self.output(src, dst, proto, payload, False, now)

    def output(self, src: bytes, dst: bytes, proto: int, payload: bytes, bcast: bool,
               now: float) -> list[bytes]:
        """Build the header and hand the packet down: loopback, broadcast, or ARP."""
        c = self.c
        c.out_requests += 1
        self._ident = (self._ident + 1) & 0xFFFF
        packet = ip_header(src, dst, proto, len(payload), self._ident, self.ttl) + payload
        if self.is_local(dst):
            return self._loopback(packet, now)
        out = self._out_device(src, dst)
        if not out.dev.up:
            c.out_discards += 1  # like a qdisc with no carrier: the packet is lost, quietly
            return []
        if bcast:
            c.out_bcast_pkts += 1
            return [ETH_HDR.pack(BROADCAST_MAC, out.dev.mac, ETH_P_IP) + packet]
        return out.neigh_output(dst, src, packet, now)

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

    def rcv(self, frame: bytes, pkt_type: int, now: float) -> list[bytes]:
        """An Ethernet frame carrying IPv4 (ip_rcv). Bad packets are counted, never raised."""
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
        return self._deliver(frame[ETH_HLEN:ETH_HLEN + tot_len], ihl, False, now)

    def _deliver(self, packet: bytes, ihl: int, looped: bool, now: float) -> list[bytes]:
        """ip_rcv_finish + ip_local_deliver for a checked packet."""
        c = self.c
        _, _, _, _, frag, ttl, proto, _, src, dst = IP_HDR.unpack_from(packet)
        if self.is_local(dst):
            bcast = False
        elif self.is_broadcast(dst):
            bcast = True
            c.in_bcast_pkts += 1
        elif dst in self.mc_groups:
            # A group we are in: delivered like a broadcast (no ICMP errors back, echo
            # requests ignored as icmp_echo_ignore_broadcasts does for both).
            bcast = True
            c.in_mcast_pkts += 1
        else:
            c.in_addr_errors += 1
            return []
        if is_martian_src(src) or self.is_broadcast(src) or (not looped and self.is_local(src)):
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
