"""What the host stack tells the application: events, drained with ``HostStack.next_events()``.

Events are frozen dataclasses (h11 style). Addresses in them are in wire form, as the stack
keeps them: an IPv4 address is 4 bytes, a MAC 6 bytes (``ip_str``/``mac_str`` format them,
``parse_ip``/``parse_mac`` make them). Times are the ``now`` the stack was called with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class EchoReply:
    """An ICMP echo reply addressed to us. ``size`` is the ICMP message length (header +
    data), the "64 bytes from" of ping(8); ``ttl`` is the received IP TTL."""

    src: bytes
    ident: int
    seq: int
    ttl: int
    size: int
    data: bytes


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A UDP datagram for a bound port."""

    src_ip: bytes
    src_port: int
    dst_ip: bytes
    dst_port: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ArpReply:
    """An ARP reply from an address we asked about with ``arp_probe`` (arping)."""

    ip: bytes
    mac: bytes
    now: float


@dataclass(frozen=True, slots=True)
class NeighResolved:
    """A neighbour's MAC became known, or changed (its entry left INCOMPLETE/FAILED, was
    learned, or was updated by a gratuitous ARP or reply)."""

    ip: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class NeighFailed:
    """Resolving ``ip`` failed (FAILED after the retries, or its entry was flushed or lost
    with the link); ``dropped`` packets were waiting in its queue and are gone. A ping
    client reports them as "Destination Host Unreachable"."""

    ip: bytes
    dropped: int


@dataclass(frozen=True, slots=True)
class AddressConflict:
    """Another host (``mac``) claims our address ``ip``: during duplicate address detection
    (the address is then unusable, state "conflict") or later (we defend it)."""

    ip: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class AddressReady:
    """Duplicate address detection passed: ``ip`` is usable and has been announced."""

    ip: bytes


@dataclass(frozen=True, slots=True)
class DestUnreachable:
    """An ICMP destination unreachable (type 3) about a packet we sent. ``code`` 3 is port
    unreachable, 2 protocol, 1 host. ``orig_sport``/``orig_dport`` are the UDP ports of the
    quoted datagram, or the ident/seq of a quoted ICMP echo, else 0."""

    src: bytes
    code: int
    orig_dst: bytes
    proto: int
    orig_sport: int
    orig_dport: int


@dataclass(frozen=True, slots=True)
class TimeExceeded:
    """An ICMP time exceeded (type 11) about a packet we sent: ``code`` 0 is TTL exceeded in
    transit (a router on the way, what traceroute collects). The other fields are
    DestUnreachable's."""

    src: bytes
    code: int
    orig_dst: bytes
    proto: int
    orig_sport: int
    orig_dport: int


@dataclass(frozen=True, slots=True)
class DhcpBound:
    """The DHCP client holds ``ip``/``prefixlen`` (DAD passed) for ``lease_time`` seconds
    (0xFFFFFFFF: infinite) from ``server``. ``renewal``: an existing lease was extended
    (RENEWING/REBINDING); the address never left the interface. ``router``: the lease's
    first router (option 3), or None."""

    ip: bytes
    prefixlen: int
    lease_time: int
    server: bytes
    renewal: bool = False
    router: bytes | None = None


@dataclass(frozen=True, slots=True)
class DhcpLost:
    """The DHCP client gave up ``ip`` (after a DhcpBound for it) and removed it from the
    interface. ``reason``: "nak", "expired", "released" or "stopped" (dhcp_client_stop),
    "changed" (a renewal ACK gave another address)."""

    ip: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class DhcpLeasesChanged:
    """The DHCP server's leases changed: save ``dhcp_server_leases()``. Emitted once until
    they are read."""


Event = Union[
    EchoReply, UdpDatagram, ArpReply, NeighResolved, NeighFailed, AddressConflict,
    AddressReady, DestUnreachable, TimeExceeded, DhcpBound, DhcpLost, DhcpLeasesChanged,
]

# Events carrying traffic, dropped (and counted) when the application stops draining; the
# others are rare control events and always queued.
DATA_EVENTS = (EchoReply, UdpDatagram, ArpReply)
