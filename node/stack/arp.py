"""ARP: the packet codec (RFC 826), the neighbour table (Linux's NUD state machine) and
duplicate address detection (RFC 5227).

Neighbour table (net/core/neighbour.c, simplified where noted)::

    (none) --send--> INCOMPLETE --reply--> REACHABLE --reachable_time--> STALE
                      |  broadcast request every retrans_time,            |
                      |  mcast_solicit of them, queue up to unres_qlen    | send (packet goes
                      v                                                   v  out at once)
                    FAILED <--ucast_solicit unanswered-- PROBE <--5 s-- DELAY
                      (queued packets dropped: NeighFailed)    unicast requests; a reply
                                                               in DELAY/PROBE -> REACHABLE

Updates follow neigh_update: a request addressed to us creates/updates the sender's entry
(STALE, or unchanged if valid with the same MAC); other ARP packets update only existing
entries: a unicast reply confirms (REACHABLE), anything else is STALE. A different MAC is
taken if the packet is a gratuitous ARP or the entry is older than ``locktime`` (1 s). Unlike
Linux, REACHABLE always ages to STALE (Linux may jump straight to DELAY when the entry was
used recently); the re-confirmation path STALE -> DELAY -> PROBE -> REACHABLE is Linux's.
Transitions are checked against ``NUD_TRANSITIONS``; anything else raises NeighStateError.

Unresolved queue: at most ``unres_qlen`` (3, Linux's historical default) packets wait per
INCOMPLETE entry; a new one beyond that pushes out the oldest (as Linux does), counted in
``unres_discards``. On FAILED the queue is dropped and reported as NeighFailed(ip, dropped).

Reachable time: ``base_reachable_time`` (30 s), multiplied by a uniform 0.5..1.5 drawn from
the injected ``rng`` at each confirmation; with no rng it is exactly 30 s (deterministic).

DAD (RFC 5227, timings shortened): an added address is tentative; after ``dad_probe_wait``
(0.2 s; uniform 0..0.2 s with an rng) ``dad_probes`` (3) probes go out ``dad_probe_interval``
(0.2 s) apart, then after ``dad_announce_wait`` (0.2 s) the address is ready (~0.8 s in all):
AddressReady, and ``announce_num`` (2) gratuitous ARPs ``announce_interval`` (1 s) apart. Any
ARP from another MAC with our address as sender, or a probe for it, is a conflict:
AddressConflict and the address becomes "conflict" (unusable until deleted). A conflict on a
usable address is defended (RFC 5227 2.4 (c)): AddressConflict and one announcement, at most
once per ``defend_interval`` (10 s); the address is kept. We answer probes for our usable
addresses (as Linux does), which is how a newcomer's DAD finds us.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import struct
from collections import deque
from dataclasses import dataclass, fields
from typing import Callable

from .common import Counters, NeighStateError, StackError
from .ether import (
    BROADCAST_MAC, ETH_HDR, ETH_HLEN, ETH_P_ARP, ETH_P_IP, PACKET_HOST, ZERO_MAC, Netdev,
    mac_str,
)
from .events import AddressConflict, AddressReady, ArpReply, NeighFailed, NeighResolved
from .ipv4 import IFA_CONFLICT, IFA_OK, IFA_TENTATIVE, ZERO_IP, AddrTable, Ifaddr, ip_str

ARP_FMT = "!HHBBH6s4s6s4s"  # htype, ptype, hlen, plen, op, sha, spa, tha, tpa
ARP_HDR = struct.Struct(ARP_FMT)
ARP_HLEN = ARP_HDR.size  # 28
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2


def arp_frame(eth_dst: bytes, eth_src: bytes, op: int, sha: bytes, spa: bytes, tha: bytes,
              tpa: bytes) -> bytes:
    """A whole Ethernet frame carrying one ARP packet (unpadded: 42 bytes)."""
    return ETH_HDR.pack(eth_dst, eth_src, ETH_P_ARP) + ARP_HDR.pack(
        ARPHRD_ETHER, ETH_P_IP, 6, 4, op, sha, spa, tha, tpa)


class Nud(enum.IntEnum):
    """Neighbour Unreachability Detection states, with Linux's values (NUD_*)."""

    NONE = 0x00
    INCOMPLETE = 0x01
    REACHABLE = 0x02
    STALE = 0x04
    DELAY = 0x08
    PROBE = 0x10
    FAILED = 0x20
    PERMANENT = 0x80


NUD_NONE = Nud.NONE
NUD_INCOMPLETE = Nud.INCOMPLETE
NUD_REACHABLE = Nud.REACHABLE
NUD_STALE = Nud.STALE
NUD_DELAY = Nud.DELAY
NUD_PROBE = Nud.PROBE
NUD_FAILED = Nud.FAILED
NUD_PERMANENT = Nud.PERMANENT
# Has a usable MAC; the packet goes out at once (STALE too, after moving to DELAY).
NUD_VALID = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT
NUD_SEND_NOW = NUD_REACHABLE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT

# old state -> the states it may move to. A state change is not a self-loop: refreshing a
# REACHABLE entry or changing a STALE entry's MAC keeps the state and is not a transition.
NUD_TRANSITIONS: dict[Nud, frozenset[Nud]] = {
    NUD_NONE: frozenset({NUD_INCOMPLETE, NUD_STALE, NUD_REACHABLE, NUD_PERMANENT}),
    NUD_INCOMPLETE: frozenset({NUD_REACHABLE, NUD_STALE, NUD_FAILED, NUD_PERMANENT}),
    NUD_REACHABLE: frozenset({NUD_STALE, NUD_PERMANENT}),
    NUD_STALE: frozenset({NUD_DELAY, NUD_REACHABLE, NUD_PERMANENT}),
    NUD_DELAY: frozenset({NUD_PROBE, NUD_REACHABLE, NUD_STALE, NUD_PERMANENT}),
    NUD_PROBE: frozenset({NUD_REACHABLE, NUD_STALE, NUD_FAILED, NUD_PERMANENT}),
    NUD_FAILED: frozenset({NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE, NUD_PERMANENT}),
    NUD_PERMANENT: frozenset(),
}


@dataclass(frozen=True)
class ArpParams:
    """Neighbour table and DAD knobs (Linux sysctl names where there is one)."""

    mcast_solicit: int = 3  # broadcast requests while INCOMPLETE before FAILED
    ucast_solicit: int = 3  # unicast requests while PROBE before FAILED
    retrans_time: float = 1.0  # between requests
    base_reachable_time: float = 30.0  # REACHABLE -> STALE (x0.5..1.5 with an rng)
    delay_first_probe_time: float = 5.0  # DELAY -> PROBE
    unres_qlen: int = 3  # packets queued per unresolved entry
    locktime: float = 1.0  # a non-gratuitous different MAC is ignored for this long
    max_entries: int = 1024  # gc_thresh3: beyond it the least recently used entry goes
    arp_accept: bool = False  # create entries from gratuitous ARPs of unknown hosts
    dad_probes: int = 3  # 0 disables DAD: added addresses are usable at once
    dad_probe_wait: float = 0.2  # before the first probe (RFC 5227 PROBE_WAIT is 1 s)
    dad_probe_interval: float = 0.2  # between probes (RFC: 1..2 s)
    dad_announce_wait: float = 0.2  # after the last probe (RFC ANNOUNCE_WAIT: 2 s)
    announce_num: int = 2  # gratuitous ARPs per announcement (RFC ANNOUNCE_NUM)
    announce_interval: float = 1.0  # between them (RFC: 2 s)
    defend_interval: float = 10.0  # at most one defence per this (RFC DEFEND_INTERVAL)
    arping_window: float = 10.0  # replies this long after arp_probe() give ArpReply

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or f.type == "bool":
                continue
            if not isinstance(v, (int, float)) or v < 0:
                raise StackError(f"ARP parameter {f.name}={v!r}: must be a number >= 0")
        if self.retrans_time <= 0 or self.base_reachable_time <= 0 or self.max_entries < 1:
            raise StackError("ARP parameters retrans_time, base_reachable_time and "
                             "max_entries must be > 0")
        if self.mcast_solicit < 1 or self.ucast_solicit < 1:
            raise StackError("ARP parameters mcast_solicit and ucast_solicit must be >= 1")


class ArpCounters(Counters):
    """requests_sent: resolution and arping requests (not DAD probes: probes_sent; not
    gratuitous ARPs: announcements_sent). conflicts: ARP packets claiming one of our
    addresses from another MAC. in_truncated: shorter than an ARP packet. in_hdr_errors:
    not Ethernet/IPv4 ARP, or an unknown opcode. in_martians: multicast/loopback target,
    multicast sender IP or MAC. in_own_mac: our own MAC as sender (a loop or a MAC clash).
    table_fulls: no room for a new neighbour (all entries INCOMPLETE or permanent).
    """

    __slots__ = (
        "requests_sent", "replies_sent", "requests_received", "replies_received",
        "unres_discards", "failed_resolutions", "conflicts", "probes_sent",
        "announcements_sent", "in_truncated", "in_hdr_errors", "in_martians", "in_own_mac",
        "table_fulls",
    )


class Neighbour:
    """One neighbour table entry (a struct neighbour)."""

    __slots__ = ("ip", "mac", "state", "updated", "used", "confirmed", "probes", "deadline",
                 "queue", "src")

    def __init__(self, ip: bytes, now: float) -> None:
        self.ip = ip
        self.mac: bytes | None = None
        self.state = NUD_NONE
        self.updated = now  # last state or MAC change (the locktime reference)
        self.used = now  # last packet sent through it
        self.confirmed: float | None = None  # last proof of reachability
        self.probes = 0  # requests sent in the current INCOMPLETE/PROBE round
        self.deadline: float | None = None  # the state timer
        self.queue: deque[bytes] = deque()  # IP packets waiting for the MAC
        self.src: bytes | None = None  # source address of the packet that wants it


class NeighTable:
    """IP -> MAC cache with Linux's states. Methods take ``now`` and return frames.

    ``solicit(entry, now)`` (arp_solicit, from Arp) builds the ARP request for an entry:
    broadcast while INCOMPLETE, unicast to the cached MAC while PROBE.
    """

    def __init__(self, dev: Netdev, params: ArpParams, counters: ArpCounters,
                 emit: Callable, rng, solicit: Callable[[Neighbour, float], list]) -> None:
        self.dev = dev
        self.p = params
        self.c = counters
        self.emit = emit
        self.rng = rng
        self.solicit = solicit
        # (packet, now) -> frames: what a packet lost to a failed resolution causes (the
        # host stack sends ICMP host unreachable for forwarded ones), or None
        self.error_report: Callable[[bytes, float], list] | None = None
        self.entries: dict[bytes, Neighbour] = {}
        self._timers: list = []  # heap of (deadline, seq, entry); stale items skipped
        self._seq = itertools.count()

    # -- state machine ---------------------------------------------------------------------

    def _set_state(self, n: Neighbour, new: Nud, now: float) -> None:
        old = n.state
        if new not in NUD_TRANSITIONS[old]:
            raise NeighStateError(
                f"neighbour {ip_str(n.ip)}: illegal transition {old.name} -> {new.name}")
        n.state = new
        n.updated = now
        if new == NUD_REACHABLE:
            self._arm(n, now + self._reachable_time())
        elif new == NUD_DELAY:
            self._arm(n, now + self.p.delay_first_probe_time)
        elif new == NUD_INCOMPLETE or new == NUD_PROBE:
            n.probes = 0
            self._arm(n, now + self.p.retrans_time)
        else:
            n.deadline = None
        if new == NUD_INCOMPLETE or new == NUD_FAILED:
            n.mac = None  # not valid: a new resolution must report the MAC again

    def _reachable_time(self) -> float:
        base = self.p.base_reachable_time
        return base * self.rng.uniform(0.5, 1.5) if self.rng is not None else base

    def _arm(self, n: Neighbour, deadline: float) -> None:
        n.deadline = deadline
        heap = self._timers
        heapq.heappush(heap, (deadline, next(self._seq), n))
        if len(heap) > 64 + 4 * len(self.entries):  # re-armed timers leave stale items
            self._timers = [(e.deadline, next(self._seq), e) for e in self.entries.values()
                            if e.deadline is not None]
            heapq.heapify(self._timers)

    def _probe(self, n: Neighbour, now: float) -> list[bytes]:
        n.probes += 1
        return self.solicit(n, now)

    def _fail(self, n: Neighbour, now: float) -> list[bytes]:
        queued = list(n.queue)
        n.queue.clear()
        self._set_state(n, NUD_FAILED, now)
        self.c.failed_resolutions += 1
        self.emit(NeighFailed(n.ip, len(queued)))
        frames: list[bytes] = []
        if self.error_report is not None:  # arp_error_report -> ipv4_link_failure
            for packet in queued:
                frames += self.error_report(packet, now)
        return frames

    def _timer(self, n: Neighbour, now: float) -> list[bytes]:
        st = n.state
        if st == NUD_REACHABLE:
            self._set_state(n, NUD_STALE, now)
            return []
        if st == NUD_DELAY:
            self._set_state(n, NUD_PROBE, now)
            return self._probe(n, now)
        if st == NUD_INCOMPLETE or st == NUD_PROBE:
            limit = self.p.mcast_solicit if st == NUD_INCOMPLETE else self.p.ucast_solicit
            if n.probes >= limit:
                return self._fail(n, now)
            self._arm(n, now + self.p.retrans_time)
            return self._probe(n, now)
        return []

    # -- entries ---------------------------------------------------------------------------

    def _create(self, ip: bytes, now: float) -> Neighbour | None:
        if len(self.entries) >= self.p.max_entries:
            victims = [e for e in self.entries.values()
                       if e.state != NUD_PERMANENT and e.state != NUD_INCOMPLETE]
            if not victims:
                self.c.table_fulls += 1
                return None
            self._remove(min(victims, key=lambda e: e.used))
        n = self.entries[ip] = Neighbour(ip, now)
        return n

    def _remove(self, n: Neighbour) -> None:
        del self.entries[n.ip]
        n.deadline = None
        if n.queue:
            self.emit(NeighFailed(n.ip, len(n.queue)))
            n.queue.clear()

    def output(self, ip: bytes, src: bytes, packet: bytes, now: float) -> list[bytes]:
        """Send IP ``packet`` to on-link ``ip`` (neigh_output / __neigh_event_send)."""
        n = self.entries.get(ip)
        if n is None:
            n = self._create(ip, now)
            if n is None:
                return []
        n.used = now
        st = n.state
        if st & NUD_SEND_NOW:
            return [self.dev.out(ETH_HDR.pack(n.mac, self.dev.mac, ETH_P_IP) + packet)]
        if st == NUD_STALE:
            self._set_state(n, NUD_DELAY, now)
            return [self.dev.out(ETH_HDR.pack(n.mac, self.dev.mac, ETH_P_IP) + packet)]
        n.src = src
        if self.p.unres_qlen == 0:
            self.c.unres_discards += 1
        else:
            if len(n.queue) >= self.p.unres_qlen:
                n.queue.popleft()  # the oldest goes, as in Linux
                self.c.unres_discards += 1
            n.queue.append(packet)
        if st == NUD_INCOMPLETE:
            return []
        self._set_state(n, NUD_INCOMPLETE, now)  # from NONE or FAILED: a new round
        return self._probe(n, now)

    def update(self, ip: bytes, mac: bytes, new: Nud, now: float, *, override: bool,
               create: bool) -> list[bytes]:
        """What an ARP packet says about ``ip`` (neigh_update). Returns the queued packets
        that can now go out."""
        n = self.entries.get(ip)
        if n is None:
            if not create:
                return []
            n = self._create(ip, now)
            if n is None:
                return []
        old = n.state
        if old == NUD_PERMANENT:
            return []  # only the administrator changes static entries
        confirmed = new == NUD_REACHABLE
        if confirmed:
            n.confirmed = now
        if old & NUD_VALID:
            if mac != n.mac:
                if not override:
                    return []
            elif new == NUD_STALE:
                new = old  # nothing new: keep REACHABLE/DELAY/PROBE as it is
        if new != old:
            self._set_state(n, new, now)
        elif confirmed:
            self._arm(n, now + self._reachable_time())  # REACHABLE, confirmed again
        if mac != n.mac:
            n.mac = mac
            n.updated = now
            self.emit(NeighResolved(ip, mac))
        if n.queue and not old & NUD_VALID:
            head = ETH_HDR.pack(mac, self.dev.mac, ETH_P_IP)
            out = self.dev.out
            frames = [out(head + p) for p in n.queue]
            n.queue.clear()
            return frames
        return []

    def add_static(self, ip: bytes, mac: bytes, now: float) -> list[bytes]:
        """A PERMANENT entry (``ip neigh replace ... nud permanent``); flushes its queue."""
        n = self.entries.get(ip) or self._create(ip, now)
        if n is None:
            raise StackError(f"neighbour table full ({self.p.max_entries} entries)")
        if n.state != NUD_PERMANENT:
            self._set_state(n, NUD_PERMANENT, now)
        n.mac = mac
        n.updated = n.confirmed = now
        frames = [self.dev.out(ETH_HDR.pack(mac, self.dev.mac, ETH_P_IP) + p) for p in n.queue]
        n.queue.clear()
        return frames

    def delete(self, ip: bytes) -> bool:
        n = self.entries.get(ip)
        if n is None:
            return False
        self._remove(n)
        return True

    def flush(self) -> int:
        """Remove every entry but the permanent ones; queued packets are reported dropped."""
        gone = [n for n in self.entries.values() if n.state != NUD_PERMANENT]
        for n in gone:
            self._remove(n)
        return len(gone)

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[bytes]:
        frames: list[bytes] = []
        heap = self._timers
        while heap and heap[0][0] <= now:
            deadline, _, n = heapq.heappop(heap)
            if n.deadline != deadline or self.entries.get(n.ip) is not n:
                continue  # re-armed or removed since
            n.deadline = None
            frames += self._timer(n, now)
            heap = self._timers  # _arm may have rebuilt it
        return frames

    def next_deadline(self) -> float | None:
        heap = self._timers
        while heap:
            deadline, _, n = heap[0]
            if n.deadline == deadline and self.entries.get(n.ip) is n:
                return deadline
            heapq.heappop(heap)
        return None

    def show(self, now: float) -> list[dict]:
        rows = []
        for ip in sorted(self.entries):
            n = self.entries[ip]
            rows.append({
                "ip": ip_str(ip),
                "mac": mac_str(n.mac) if n.mac is not None else None,
                "state": n.state.name,
                "age": now - n.updated,
                "used": now - n.used,
                "confirmed": None if n.confirmed is None else now - n.confirmed,
                "probes": n.probes,
                "queued": len(n.queue),
            })
        return rows


class Arp:
    """The ARP protocol on one interface: ``rcv`` (arp_process), resolution through the
    neighbour table (``output``), arping (``probe``), and DAD/announcements of addresses."""

    def __init__(self, dev: Netdev, addrs: AddrTable, params: ArpParams, emit: Callable,
                 rng=None) -> None:
        self.dev = dev
        self.addrs = addrs
        self.p = params
        self.emit = emit
        self.rng = rng
        self.c = ArpCounters()
        self.neigh = NeighTable(dev, params, self.c, emit, rng, self._solicit)
        self.output = self.neigh.output
        self._arping: dict[bytes, float] = {}  # target -> when arp_probe last asked

    # -- frames we send --------------------------------------------------------------------

    def _source_for(self, ip: bytes, hint: bytes | None) -> bytes | None:
        """The sender address for a request about ``ip`` (inet_select_addr)."""
        if hint is not None and hint in self.addrs.local:
            return hint
        r = self.addrs.route(ip)
        if r is not None:
            return r[0].ip
        return self.addrs.usable[0].ip if self.addrs.usable else None

    def _solicit(self, n: Neighbour, now: float) -> list[bytes]:
        if not self.dev.up:
            return []
        src = self._source_for(n.ip, n.src)
        if src is None:
            return []
        self.c.requests_sent += 1
        mac = self.dev.mac
        dst = n.mac if n.state == NUD_PROBE and n.mac else BROADCAST_MAC
        return [self.dev.out(arp_frame(dst, mac, ARPOP_REQUEST, mac, src, ZERO_MAC, n.ip))]

    def _garp(self, ifa: Ifaddr) -> bytes:
        """An ARP announcement: a broadcast request with sender = target = our address."""
        self.c.announcements_sent += 1
        mac = self.dev.mac
        return self.dev.out(arp_frame(BROADCAST_MAC, mac, ARPOP_REQUEST, mac, ifa.ip, ZERO_MAC,
                                      ifa.ip))

    def probe(self, ip: bytes, now: float) -> list[bytes]:
        """arping: one broadcast request for ``ip``; replies for the next ``arping_window``
        seconds come out as ArpReply events."""
        if len(self._arping) >= 64:
            self._arping = {k: t for k, t in self._arping.items()
                            if now - t <= self.p.arping_window}
        self._arping[ip] = now
        if not self.dev.up:
            return []
        src = self._source_for(ip, None) or ZERO_IP
        self.c.requests_sent += 1
        mac = self.dev.mac
        return [self.dev.out(arp_frame(BROADCAST_MAC, mac, ARPOP_REQUEST, mac, src, ZERO_MAC, ip))]

    # -- receive ---------------------------------------------------------------------------

    def rcv(self, frame: bytes, pkt_type: int, now: float) -> list[bytes]:
        """An Ethernet frame carrying ARP (arp_rcv + arp_process). Never raises."""
        c = self.c
        if len(frame) < ETH_HLEN + ARP_HLEN:
            c.in_truncated += 1
            return []
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = ARP_HDR.unpack_from(frame, ETH_HLEN)
        if htype != ARPHRD_ETHER or ptype != ETH_P_IP or hlen != 6 or plen != 4 \
                or (op != ARPOP_REQUEST and op != ARPOP_REPLY):
            c.in_hdr_errors += 1
            return []
        if op == ARPOP_REQUEST:
            c.requests_received += 1
        else:
            c.replies_received += 1
        if tpa[0] >= 224 or tpa[0] == 127 or spa[0] >= 224 or sha[0] & 1:
            c.in_martians += 1
            return []
        mac = self.dev.mac
        if sha == mac:
            c.in_own_mac += 1
            return []
        addrs = self.addrs

        ifa = addrs.find(spa)
        if ifa is not None:  # another host uses one of our addresses as its own
            return self._conflict(ifa, sha, now)

        if spa == ZERO_IP:  # an RFC 5227 probe: someone's DAD
            if op == ARPOP_REQUEST:
                ifa = addrs.find(tpa)
                if ifa is not None and ifa.state == IFA_TENTATIVE:
                    return self._conflict(ifa, sha, now)  # probing for it at the same time
                if ifa is not None and ifa.state == IFA_OK:
                    c.replies_sent += 1  # defend: tell the prober the address is taken
                    return [self.dev.out(arp_frame(sha, mac, ARPOP_REPLY, mac, tpa, sha, ZERO_IP))]
            return []

        if op == ARPOP_REQUEST and tpa in addrs.local:
            # A request for us: learn the sender (neigh_event_ns) and answer.
            frames = self.neigh.update(spa, sha, NUD_STALE, now, override=True, create=True)
            c.replies_sent += 1
            frames.append(self.dev.out(arp_frame(sha, mac, ARPOP_REPLY, mac, tpa, sha, spa)))
            return frames

        # Anything else only refreshes what we already know about the sender.
        is_garp = spa == tpa and (op == ARPOP_REQUEST or tha == sha)
        frames: list[bytes] = []
        n = self.neigh.entries.get(spa)
        if n is not None or (is_garp and self.p.arp_accept):
            # Broadcast replies and requests do not prove reachability.
            state = NUD_REACHABLE if op == ARPOP_REPLY and pkt_type == PACKET_HOST \
                else NUD_STALE
            override = is_garp or n is None or now > n.updated + self.p.locktime
            frames = self.neigh.update(spa, sha, state, now, override=override, create=True)
        if op == ARPOP_REPLY:
            asked = self._arping.get(spa)
            if asked is not None and now - asked <= self.p.arping_window:
                self.emit(ArpReply(spa, sha, now))
        return frames

    # -- addresses: DAD, announcements, conflicts ------------------------------------------

    def _conflict(self, ifa: Ifaddr, sha: bytes, now: float) -> list[bytes]:
        self.c.conflicts += 1
        if ifa.state == IFA_TENTATIVE:
            ifa.conflict_mac = sha
            ifa.dad_deadline = None
            self.addrs.set_state(ifa, IFA_CONFLICT)
            self.emit(AddressConflict(ifa.ip, sha))
            return []
        if ifa.state == IFA_CONFLICT:
            return []
        # In use: defend (RFC 5227 2.4 (c)), at most once per defend_interval.
        if ifa.last_conflict is not None and now - ifa.last_conflict < self.p.defend_interval:
            return []
        ifa.last_conflict = now
        ifa.conflict_mac = sha
        self.emit(AddressConflict(ifa.ip, sha))
        return [self._garp(ifa)] if self.dev.up else []

    def start_dad(self, ifa: Ifaddr, now: float) -> list[bytes]:
        """Begin duplicate address detection for a (tentative) address."""
        if self.p.dad_probes == 0:
            return self._ready(ifa, now)
        ifa.dad_probes = 0
        ifa.announce_deadline = None
        if not self.dev.up:
            ifa.dad_deadline = None  # starts at link up
            return []
        wait = self.p.dad_probe_wait
        if self.rng is not None:
            wait = self.rng.uniform(0.0, wait)
        ifa.dad_deadline = now + wait
        return self._dad_step(ifa, now) if wait <= 0 else []

    def _dad_step(self, ifa: Ifaddr, now: float) -> list[bytes]:
        p = self.p
        if ifa.dad_probes >= p.dad_probes:
            return self._ready(ifa, now)
        ifa.dad_probes += 1
        self.c.probes_sent += 1
        ifa.dad_deadline = now + (p.dad_probe_interval if ifa.dad_probes < p.dad_probes
                                  else p.dad_announce_wait)
        mac = self.dev.mac
        return [self.dev.out(arp_frame(BROADCAST_MAC, mac, ARPOP_REQUEST, mac, ZERO_IP, ZERO_MAC,
                                       ifa.ip))]

    def _ready(self, ifa: Ifaddr, now: float) -> list[bytes]:
        ifa.dad_deadline = None
        self.addrs.set_state(ifa, IFA_OK)
        self.emit(AddressReady(ifa.ip))
        return self.announce(ifa, now)

    def announce(self, ifa: Ifaddr, now: float) -> list[bytes]:
        """Gratuitous ARP for a usable address: one now, ``announce_num - 1`` more later."""
        if not self.dev.up or self.p.announce_num == 0 or ifa.state != IFA_OK:
            return []
        ifa.announce_left = self.p.announce_num - 1
        ifa.announce_deadline = now + self.p.announce_interval if ifa.announce_left else None
        return [self._garp(ifa)]

    def link_up(self, now: float) -> list[bytes]:
        frames: list[bytes] = []
        for ifa in list(self.addrs.all):
            if ifa.state == IFA_OK:
                frames += self.announce(ifa, now)
            elif ifa.state == IFA_TENTATIVE:
                frames += self.start_dad(ifa, now)
        return frames

    def link_down(self, now: float) -> None:
        """Carrier lost: DAD and announcements stop (DAD restarts at link up) and the
        neighbour table is flushed (neigh_carrier_down), queued packets reported dropped."""
        for ifa in self.addrs.all:
            ifa.dad_deadline = None
            ifa.announce_deadline = None
        self.neigh.flush()

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[bytes]:
        frames = self.neigh.tick(now)
        for ifa in list(self.addrs.all):
            if ifa.dad_deadline is not None and ifa.dad_deadline <= now \
                    and ifa.state == IFA_TENTATIVE:
                frames += self._dad_step(ifa, now)
            if ifa.announce_deadline is not None and ifa.announce_deadline <= now:
                ifa.announce_left -= 1
                ifa.announce_deadline = now + self.p.announce_interval \
                    if ifa.announce_left > 0 else None
                if ifa.state == IFA_OK and self.dev.up:
                    frames.append(self._garp(ifa))
        return frames

    def next_deadline(self) -> float | None:
        best = self.neigh.next_deadline()
        for ifa in self.addrs.all:
            for d in (ifa.dad_deadline, ifa.announce_deadline):
                if d is not None and (best is None or d < best):
                    best = d
        return best
