"""DHCP (RFC 2131, options RFC 2132): the BOOTP/DHCP codec, a server and a client, sans-I/O.

Three parts, one per concern, and the layer that binds them to the stack:

- the codec: ``DhcpMessage`` (a frozen dataclass), ``encode_dhcp``/``decode_dhcp`` and the
  option table ``OPTIONS`` (code -> name and value kind: declared, not coded). Decoding
  raises ``DhcpDecodeError(reason)``; the layer counts it as ``malformed_<reason>``.
- ``DhcpServer``: pure, message in -> (reply, destination) out. Leases are keyed by client
  identifier (option 61, else hardware type 1 + chaddr) and survive expiry as a memory of
  who had which address; ``leases_to_dict()`` / ``leases=`` persist them.
- ``DhcpClient``: the RFC 2131 client state machine (plus CHECKING: the ACKed address is on
  the interface and RFC 5227 DAD from arp.py runs before we call it bound). It talks to the
  stack through the ``Dhcp`` layer (send a message, add/remove/inspect an address).
- ``Dhcp``: the layer on one interface (like ``Udp``/``Icmp``): UDP port 67 (server) and 68
  (client) handlers, decode and count, send from 0.0.0.0 or our address, timers.

Time is a parameter everywhere; nothing here reads a clock or touches a socket.

Addressing (RFC 2131 4.1). The client always sets the broadcast flag while it has no
address (ciaddr 0), so every server reply to it is broadcast: Ethernet ff:ff:ff:ff:ff:ff,
IP 255.255.255.255, 67 -> 68. Once bound (RENEWING, RELEASE) it sends from its address with
ciaddr set, unicast to the server (resolved by ARP); REBINDING and DECLINE are broadcast.
The server unicasts an ACK to ``ciaddr`` when it is set (renewals, INFORM; resolved by ARP),
and broadcasts everything else, NAKs included. Relay agents (giaddr) are not supported: a
relayed message is ignored (counted).

Client timings (DhcpParams), shortened for an emulated LAN where a reply takes microseconds:
retransmissions 1, 2, 4, 8, 16, 16... s (RFC 2131 4.1 suggests 4, 8, ... 64 s), each
multiplied by uniform(1 - jitter, 1 + jitter) when the stack has an ``rng``; a REQUEST is sent
``request_tries`` (4) times before going back to INIT. T1 = 0.5 and T2 = 0.875 of the lease
unless options 58/59 say otherwise; retransmissions in RENEWING/REBINDING halve the time left
to T2/expiry with a floor of ``renew_min`` (4 s; RFC: 60 s). After a DECLINE the client waits
``decline_wait`` (10 s, RFC 2131 3.1.5) before DISCOVER; consecutive NAKs back off too.

Server allocation (RFC 2131 4.3.1): the client's current offer, else its lease (also expired,
as long as nobody else has had the address since), else the address it asks for (option 50)
if free, else the lowest address never leased, else the address of the longest-expired lease
of another client (which that client then forgets). Never: an address bound to another
client and unexpired, offered to another client (for ``offer_hold``), DECLINEd (for
``decline_hold``), the server's own or a static one. The server does not ping before
offering (RFC 2131's SHOULD); the client's DAD catches a static host in the pool.
"""

from __future__ import annotations

import enum
import math
import struct
import zlib
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable

from .common import Counters, StackError
from .events import DhcpBound, DhcpLeasesChanged, DhcpLost
from .ether import ETH_ALEN
from .ipv4 import IFA_CONFLICT, IFA_OK, LIMITED_BROADCAST, ZERO_IP, ip_str, parse_ip

DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
BOOTREQUEST = 1
BOOTREPLY = 2
HTYPE_ETHER = 1
BROADCAST_FLAG = 0x8000

# op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file
BOOTP_FMT = "!BBBBIHH4s4s4s4s16s64s128s"
BOOTP_HDR = struct.Struct(BOOTP_FMT)  # 236 bytes
MAGIC_COOKIE = bytes((99, 130, 83, 99))
DHCP_MIN_LEN = BOOTP_HDR.size + len(MAGIC_COOKIE)  # 240: header and cookie, no options
BOOTP_MIN_LEN = 300  # RFC 1542 2.1: what relays and old BOOTP expect; we pad to it
INFINITE_LEASE = 0xFFFFFFFF


class MsgType(enum.IntEnum):
    """Option 53 values."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_HOSTNAME = 12
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MSG_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_REQ = 55
OPT_MESSAGE = 56
OPT_MAX_SIZE = 57
OPT_T1 = 58
OPT_T2 = 59
OPT_CLIENT_ID = 61
OPT_END = 255

# code -> (name, kind). Kinds: ip (4 bytes), ips (n x 4), u8/u16/u32, u8s (list of codes),
# str (text), bytes (opaque, at least 2: the client identifier's type and value).
OPTIONS: dict[int, tuple[str, str]] = {
    OPT_SUBNET_MASK: ("subnet_mask", "ip"),
    OPT_ROUTER: ("router", "ips"),
    OPT_HOSTNAME: ("hostname", "str"),
    OPT_REQUESTED_IP: ("requested_ip", "ip"),
    OPT_LEASE_TIME: ("lease_time", "u32"),
    OPT_OVERLOAD: ("overload", "u8"),
    OPT_MSG_TYPE: ("msg_type", "u8"),
    OPT_SERVER_ID: ("server_id", "ip"),
    OPT_PARAM_REQ: ("param_req_list", "u8s"),
    OPT_MESSAGE: ("message", "str"),
    OPT_MAX_SIZE: ("max_msg_size", "u16"),
    OPT_T1: ("t1", "u32"),
    OPT_T2: ("t2", "u32"),
    OPT_CLIENT_ID: ("client_id", "bytes"),
}
OPTION_CODES = {name: code for code, (name, _) in OPTIONS.items()}
_KIND_OK: dict[str, Callable[[int], bool]] = {
    "ip": lambda n: n == 4,
    "ips": lambda n: n >= 4 and n % 4 == 0,
    "u8": lambda n: n == 1,
    "u16": lambda n: n == 2,
    "u32": lambda n: n == 4,
    "u8s": lambda n: n >= 1,
    "str": lambda n: n >= 1,
    "bytes": lambda n: n >= 2,
}
# What a client asks for (option 55).
CLIENT_PARAM_REQ = (OPT_SUBNET_MASK, OPT_ROUTER, OPT_LEASE_TIME, OPT_SERVER_ID, OPT_T1, OPT_T2)


class DhcpDecodeError(ValueError):
    """Bad input from the wire; ``reason`` names the counter (``malformed_<reason>``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DhcpStateError(RuntimeError):
    """An illegal client state transition: a bug in the client, not bad input."""


# -- the codec ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """One BOOTP/DHCP message. Addresses are 4 wire bytes, ``chaddr`` the 6-byte MAC,
    ``sname``/``file`` without their NUL padding, ``options`` raw values by code (in wire
    order; build them with ``dhcp_options``, read them typed with ``get``)."""

    op: int
    xid: int
    chaddr: bytes
    ciaddr: bytes = ZERO_IP
    yiaddr: bytes = ZERO_IP
    siaddr: bytes = ZERO_IP
    giaddr: bytes = ZERO_IP
    secs: int = 0
    flags: int = 0
    hops: int = 0
    htype: int = HTYPE_ETHER
    sname: bytes = b""
    file: bytes = b""
    options: dict = field(default_factory=dict)

    @property
    def msg_type(self) -> MsgType | None:
        v = self.options.get(OPT_MSG_TYPE)
        if v is None or len(v) != 1 or not 1 <= v[0] <= 8:
            return None
        return MsgType(v[0])

    def get(self, name: str):
        """Option ``name`` (an ``OPTIONS`` name) decoded by its kind, or None if absent."""
        code = OPTION_CODES[name]
        raw = self.options.get(code)
        if raw is None:
            return None
        return _decode_value(OPTIONS[code][1], raw)


def _decode_value(kind: str, raw: bytes):
    if kind == "ip":
        return raw
    if kind == "ips":
        return [raw[i:i + 4] for i in range(0, len(raw), 4)]
    if kind in ("u8", "u16", "u32"):
        return int.from_bytes(raw, "big")
    if kind == "u8s":
        return list(raw)
    if kind == "str":
        return raw.rstrip(b"\0").decode("utf-8", "replace")
    return raw


def _encode_value(name: str, kind: str, value) -> bytes:
    if kind == "ip":
        return parse_ip(value)
    if kind == "ips":
        return b"".join(parse_ip(v) for v in value)
    if kind in ("u8", "u16", "u32"):
        return int(value).to_bytes({"u8": 1, "u16": 2, "u32": 4}[kind], "big")
    if kind == "u8s":
        return bytes(value)
    if kind == "str":
        return value.encode() if isinstance(value, str) else bytes(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise StackError(f"DHCP option {name} wants bytes, not {type(value).__name__}")


def dhcp_options(**named) -> dict[int, bytes]:
    """Raw options from typed values by name, in the order given; None values are left out.
    ``dhcp_options(msg_type=MsgType.ACK, server_id=b"...", lease_time=3600)``."""
    out: dict[int, bytes] = {}
    for name, value in named.items():
        if value is None:
            continue
        code = OPTION_CODES.get(name)
        if code is None:
            raise StackError(f"unknown DHCP option {name!r}; known: "
                             f"{', '.join(sorted(OPTION_CODES))}")
        out[code] = _encode_value(name, OPTIONS[code][1], value)
    return out


def encode_dhcp(m: DhcpMessage) -> bytes:
    """The UDP payload for ``m``: header, cookie, options (split at 255 bytes, RFC 3396),
    END, zero padding up to 300 bytes."""
    parts = [BOOTP_HDR.pack(m.op, m.htype, len(m.chaddr), m.hops, m.xid, m.secs, m.flags,
                            m.ciaddr, m.yiaddr, m.siaddr, m.giaddr, m.chaddr, m.sname,
                            m.file), MAGIC_COOKIE]
    for code, value in m.options.items():
        for i in range(0, max(len(value), 1), 255):
            chunk = value[i:i + 255]
            parts.append(bytes((code, len(chunk))) + chunk)
    parts.append(bytes((OPT_END,)))
    out = b"".join(parts)
    if len(out) < BOOTP_MIN_LEN:
        out += bytes(BOOTP_MIN_LEN - len(out))
    return out


def _parse_options(buf: bytes, start: int, opts: dict[int, bytes]) -> None:
    """Options from ``buf[start:]`` into ``opts``; repeated codes concatenate (RFC 3396).
    A missing END is tolerated (trailing bytes are taken as padding), an overrun is not."""
    i, end = start, len(buf)
    while i < end:
        code = buf[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return
        if i + 1 >= end or i + 2 + buf[i + 1] > end:
            raise DhcpDecodeError("bad_options")
        n = buf[i + 1]
        opts[code] = opts.get(code, b"") + buf[i + 2:i + 2 + n]
        i += 2 + n


def decode_dhcp(data: bytes) -> DhcpMessage:
    """A DHCP message from a UDP payload; DhcpDecodeError(reason) if it is not one:
    truncated, bad_cookie, bad_op, bad_hw (not Ethernet), bad_options (overrun, bad
    overload, a known option of the wrong size), not_dhcp (plain BOOTP or an unknown
    message type)."""
    data = bytes(data)
    if len(data) < DHCP_MIN_LEN:
        raise DhcpDecodeError("truncated")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file) = BOOTP_HDR.unpack_from(data)
    if data[BOOTP_HDR.size:DHCP_MIN_LEN] != MAGIC_COOKIE:
        raise DhcpDecodeError("bad_cookie")
    if op != BOOTREQUEST and op != BOOTREPLY:
        raise DhcpDecodeError("bad_op")
    if htype != HTYPE_ETHER or hlen != ETH_ALEN:
        raise DhcpDecodeError("bad_hw")
    opts: dict[int, bytes] = {}
    _parse_options(data, DHCP_MIN_LEN, opts)
    overload = opts.get(OPT_OVERLOAD)
    if overload is not None:  # RFC 2132 9.3: more options in file, then sname
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise DhcpDecodeError("bad_options")
        if overload[0] & 1:
            _parse_options(file, 0, opts)
            file = b""
        if overload[0] & 2:
            _parse_options(sname, 0, opts)
            sname = b""
    for code, value in opts.items():
        spec = OPTIONS.get(code)
        if spec is not None and not _KIND_OK[spec[1]](len(value)):
            raise DhcpDecodeError("bad_options")
    mt = opts.get(OPT_MSG_TYPE)
    if mt is None or not 1 <= mt[0] <= 8:
        raise DhcpDecodeError("not_dhcp")
    return DhcpMessage(op=op, xid=xid, chaddr=chaddr[:hlen], ciaddr=ciaddr, yiaddr=yiaddr,
                       siaddr=siaddr, giaddr=giaddr, secs=secs, flags=flags, hops=hops,
                       htype=htype, sname=sname.rstrip(b"\0"), file=file.rstrip(b"\0"),
                       options=opts)


# -- counters -------------------------------------------------------------------------------


class DhcpCounters(Counters):
    """<type>s_sent / <type>s_received per message type, for the client and the server of
    this stack together. malformed: not a DHCP message we can use, also counted by reason
    in malformed_<reason> (the decode reasons, and bad_fields: a well-formed message
    missing what its type requires, such as an OFFER without a server identifier).
    <type>s_sent counts messages handed to IP (dropped there, out_discards, if the link is
    down).
    not_for_us: server replies for another client (they are broadcast). ignored: valid
    messages that do not fit (wrong xid or state, another server's transaction, a relayed
    message, a request the server stays silent about, the server address not usable yet).
    pool_exhausted: DISCOVERs left unanswered for want of an address. retransmits: client
    messages sent again after a timeout."""

    __slots__ = (
        "discovers_sent", "discovers_received", "offers_sent", "offers_received",
        "requests_sent", "requests_received", "acks_sent", "acks_received", "naks_sent",
        "naks_received", "declines_sent", "declines_received", "releases_sent",
        "releases_received", "informs_sent", "informs_received", "retransmits",
        "pool_exhausted", "not_for_us", "ignored", "malformed", "malformed_truncated",
        "malformed_bad_cookie", "malformed_bad_op", "malformed_bad_hw",
        "malformed_bad_options", "malformed_not_dhcp", "malformed_bad_fields",
    )

    def count(self, mtype: MsgType, direction: str) -> None:
        name = f"{mtype.name.lower()}s_{direction}"
        setattr(self, name, getattr(self, name) + 1)

    def bad(self, reason: str) -> None:
        self.malformed += 1
        name = f"malformed_{reason}"
        setattr(self, name, getattr(self, name) + 1)


# -- helpers --------------------------------------------------------------------------------


def _u32(ip: bytes) -> int:
    return int.from_bytes(ip, "big")


def _ip(n: int) -> bytes:
    return n.to_bytes(4, "big")


def _is_unicast(ip: bytes) -> bool:
    return ip != ZERO_IP and ip[0] != 0 and ip[0] != 127 and ip[0] < 224


def _mask(prefixlen: int) -> int:
    return (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF


def prefix_from_mask(mask: bytes | None, ip: bytes) -> int:
    """The prefix length of a contiguous netmask; classful for a missing or bad one."""
    if mask is not None and len(mask) == 4:
        inv = ~_u32(mask) & 0xFFFFFFFF
        if inv & (inv + 1) == 0 and inv != 0xFFFFFFFF:
            return 32 - inv.bit_length()
    return 8 if ip[0] < 128 else 16 if ip[0] < 192 else 24


def client_key(msg: DhcpMessage) -> bytes:
    """What the server keys a lease by: option 61, else hardware type 1 + chaddr (the same
    bytes a client identifier of type 1 would carry, RFC 2132 9.14)."""
    return msg.options.get(OPT_CLIENT_ID) or bytes((HTYPE_ETHER,)) + msg.chaddr


def _num(v, what: str, lo: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v < lo:
        raise StackError(f"DHCP {what} {v!r} must be a number >= {lo}")
    return v


# -- the server -----------------------------------------------------------------------------


class Lease:
    """A binding: client identifier -> address until ``expires`` (absolute, the clock of
    ``now``). Kept after expiry as the memory of who had the address."""

    __slots__ = ("client_id", "ip", "expires", "hostname")

    def __init__(self, client_id: bytes, ip: bytes, expires: float, hostname: str | None):
        self.client_id = client_id
        self.ip = ip
        self.expires = expires
        self.hostname = hostname


class DhcpServer:
    """An RFC 2131 server for one subnet, pure: ``handle(msg, now)`` returns the reply and
    where to send it (``LIMITED_BROADCAST`` or the client's ``ciaddr``), or None.

    The pool is ``pool_first..pool_last`` minus the server's address and ``static`` ones.
    ``lease_time`` (s, >= 10), ``offer_hold`` (how long an OFFER reserves its address),
    ``decline_hold`` (how long a DECLINEd address stays out of the pool). ``router``: an
    address for option 3, or None. ``leases``: a dict from ``leases_to_dict()``.

    ``changed`` turns True when the leases change (a binding, renewal, release, decline)
    and ``emit(DhcpLeasesChanged())`` is called then, once until ``mark_saved()``.
    """

    def __init__(self, server_ip: bytes | str, prefixlen: int, pool_first: bytes | str,
                 pool_last: bytes | str, *, lease_time: float = 3600,
                 offer_hold: float = 60.0, decline_hold: float = 600.0,
                 static: Iterable = (), router: bytes | str | None = None,
                 leases: dict | None = None, counters: DhcpCounters | None = None,
                 emit: Callable | None = None) -> None:
        self.ip = parse_ip(server_ip)
        if isinstance(prefixlen, bool) or not isinstance(prefixlen, int) \
                or not 1 <= prefixlen <= 30:
            raise StackError(f"DHCP server prefix length {prefixlen!r} must be 1..30")
        self.prefixlen = prefixlen
        self.mask = _mask(prefixlen)
        self.net = _u32(self.ip) & self.mask
        self.bcast = self.net | (~self.mask & 0xFFFFFFFF)
        first, last = _u32(parse_ip(pool_first)), _u32(parse_ip(pool_last))
        cidr = f"{ip_str(self.ip)}/{prefixlen}"
        for name, v in (("first", first), ("last", last)):
            if v & self.mask != self.net or v == self.net or v == self.bcast:
                raise StackError(f"DHCP pool {name} address {ip_str(_ip(v))} must be a host "
                                 f"address inside the server's subnet {cidr}")
        if first > last:
            raise StackError(f"DHCP pool {ip_str(_ip(first))}..{ip_str(_ip(last))} is empty: "
                             "give the lower address first")
        self.first, self.last = first, last
        self.excluded = {self.ip} | {parse_ip(s) for s in static}
        if sum(1 for x in self.excluded if first <= _u32(x) <= last) > last - first:
            raise StackError("the DHCP pool has no address left once the server's own and "
                             "the static addresses are excluded; widen it")
        self.lease_time = int(_num(lease_time, "lease time", 10))
        if self.lease_time >= INFINITE_LEASE:
            raise StackError(f"DHCP lease time must be below {INFINITE_LEASE} s")
        self.offer_hold = _num(offer_hold, "offer hold time", 0)
        self.decline_hold = _num(decline_hold, "decline hold time", 0)
        self.router = None if router is None else parse_ip(router)
        self.c = counters if counters is not None else DhcpCounters()
        self.emit = emit
        self.leases: dict[bytes, Lease] = {}  # client id -> lease, bound or expired
        self.by_ip: dict[bytes, Lease] = {}  # the same leases by address
        self.offers: dict[bytes, tuple[bytes, float]] = {}  # client id -> (ip, until)
        self.offered: dict[bytes, bytes] = {}  # ip -> client id
        self.declined: dict[bytes, float] = {}  # ip -> until
        self.changed = False
        self.leases_skipped = 0  # entries of ``leases`` outside the pool or duplicated
        if leases:
            self._load(leases)

    # -- persistence -----------------------------------------------------------------------

    def leases_to_dict(self) -> dict[str, dict]:
        """{client id hex: {"ip": "10.0.0.10", "expires": <absolute time>, "hostname":
        str | None}}, JSON-serialisable, expired leases included."""
        return {cid.hex(): {"ip": ip_str(ls.ip), "expires": ls.expires,
                            "hostname": ls.hostname}
                for cid, ls in sorted(self.leases.items(), key=lambda kv: kv[1].ip)}

    def mark_saved(self) -> None:
        self.changed = False

    def _load(self, leases: dict) -> None:
        if not isinstance(leases, dict):
            raise StackError("DHCP leases must be a dict as leases_to_dict() returns")
        for key, entry in leases.items():
            try:
                cid = bytes.fromhex(key)
                ip = parse_ip(entry["ip"])
                expires = entry["expires"]
                hostname = entry.get("hostname")
                if isinstance(expires, bool) or not isinstance(expires, (int, float)) \
                        or not math.isfinite(expires) or not cid:
                    raise ValueError
                if hostname is not None and not isinstance(hostname, str):
                    raise ValueError
            except (TypeError, ValueError, KeyError, AttributeError):
                raise StackError(
                    f"bad DHCP lease entry {key!r}: {entry!r}; each is client id hex -> "
                    '{"ip": "a.b.c.d", "expires": <seconds>, "hostname": str or null}'
                ) from None
            if not self._in_pool(ip):
                self.leases_skipped += 1  # the pool changed since it was saved
                continue
            old = self.by_ip.get(ip)
            if old is not None:
                self.leases_skipped += 1
                if old.expires >= expires:
                    continue
                del self.leases[old.client_id]
            self.leases[cid] = self.by_ip[ip] = Lease(cid, ip, float(expires), hostname)

    def _changed(self) -> None:
        if not self.changed:
            self.changed = True
            if self.emit is not None:
                self.emit(DhcpLeasesChanged())

    # -- the pool --------------------------------------------------------------------------

    def _in_subnet(self, ip: bytes) -> bool:
        n = _u32(ip)
        return n & self.mask == self.net and n != self.net and n != self.bcast

    def _in_pool(self, ip: bytes) -> bool:
        return self.first <= _u32(ip) <= self.last and ip not in self.excluded

    def _expire(self, now: float) -> None:
        for cid, (ip, until) in list(self.offers.items()):
            if until < now:
                self._drop_offer(cid)
        for ip, until in list(self.declined.items()):
            if until < now:
                del self.declined[ip]

    def _drop_offer(self, cid: bytes) -> None:
        o = self.offers.pop(cid, None)
        if o is not None and self.offered.get(o[0]) == cid:
            del self.offered[o[0]]

    def _taken_by_other(self, ip: bytes, cid: bytes, now: float) -> bool:
        """Someone else has ``ip``: static, ours, declined, offered or bound (unexpired)."""
        if ip in self.excluded or ip in self.declined:
            return True
        o = self.offered.get(ip)
        if o is not None and o != cid:
            return True
        ls = self.by_ip.get(ip)
        return ls is not None and ls.client_id != cid and ls.expires > now

    def _available(self, ip: bytes, cid: bytes, now: float) -> bool:
        return self._in_pool(ip) and not self._taken_by_other(ip, cid, now)

    def _own_lease(self, cid: bytes, ip: bytes) -> bool:
        """``ip`` is ``cid``'s lease (bound or expired: nobody has had it since) and still
        ours to give."""
        ls = self.leases.get(cid)
        return ls is not None and ls.ip == ip and self._in_pool(ip) \
            and ip not in self.declined and self.offered.get(ip, cid) == cid

    def _pick(self, cid: bytes, requested: bytes | None, now: float) -> bytes | None:
        o = self.offers.get(cid)
        if o is not None and self._available(o[0], cid, now):
            return o[0]
        ls = self.leases.get(cid)
        if ls is not None and self._own_lease(cid, ls.ip):
            return ls.ip
        if requested is not None and self._available(requested, cid, now):
            return requested
        used = self.by_ip.keys() | self.offered.keys() | self.declined.keys() | self.excluded
        free = self.last - self.first + 1 - sum(
            1 for x in used if self.first <= _u32(x) <= self.last)
        for n in range(self.first, self.last + 1) if free > 0 else ():  # lowest never leased
            ip = _ip(n)
            if ip not in self.by_ip and ip not in self.offered and ip not in self.declined \
                    and ip not in self.excluded:
                return ip
        old = [ls for ls in self.by_ip.values() if ls.expires <= now
               and ls.ip not in self.offered and ls.ip not in self.declined]
        if old:  # recycle the longest-expired lease of another client
            return min(old, key=lambda ls: (ls.expires, ls.ip)).ip
        return None

    def _bind(self, cid: bytes, ip: bytes, now: float, hostname: str | None) -> Lease:
        self._drop_offer(cid)
        other = self.by_ip.get(ip)
        if other is not None and other.client_id != cid:
            del self.leases[other.client_id]  # a recycled address: its old client forgets
        ls = self.leases.get(cid)
        if ls is not None and ls.ip != ip:
            del self.by_ip[ls.ip]
        if ls is not None and hostname is None:
            hostname = ls.hostname
        ls = self.leases[cid] = self.by_ip[ip] = Lease(cid, ip, now + self.lease_time,
                                                       hostname)
        self._changed()
        return ls

    # -- messages --------------------------------------------------------------------------

    def _reply(self, req: DhcpMessage, mtype: MsgType, *, yiaddr: bytes = ZERO_IP,
               ciaddr: bytes = ZERO_IP, lease: bool = True,
               message: str | None = None) -> DhcpMessage:
        cid = req.options.get(OPT_CLIENT_ID)
        if mtype == MsgType.NAK:
            opts = dhcp_options(msg_type=mtype, server_id=self.ip, message=message,
                                client_id=cid)
        else:
            lt = self.lease_time if lease else None
            opts = dhcp_options(
                msg_type=mtype, server_id=self.ip, lease_time=lt,
                t1=lt // 2 if lt else None, t2=lt * 7 // 8 if lt else None,
                subnet_mask=_ip(self.mask), router=[self.router] if self.router else None,
                client_id=cid)
        return DhcpMessage(op=BOOTREPLY, xid=req.xid, chaddr=req.chaddr, ciaddr=ciaddr,
                           yiaddr=yiaddr, giaddr=req.giaddr, flags=req.flags, options=opts)

    def _nak(self, req: DhcpMessage, why: str) -> tuple[DhcpMessage, bytes]:
        return self._reply(req, MsgType.NAK, message=why), LIMITED_BROADCAST

    def _ack(self, req: DhcpMessage, ls: Lease) -> tuple[DhcpMessage, bytes]:
        ack = self._reply(req, MsgType.ACK, yiaddr=ls.ip, ciaddr=req.ciaddr)
        return ack, (req.ciaddr if req.ciaddr != ZERO_IP else LIMITED_BROADCAST)

    def handle(self, msg: DhcpMessage, now: float) -> tuple[DhcpMessage, bytes] | None:
        """A BOOTREQUEST from a client: (reply, destination IP) or None (silence)."""
        c = self.c
        mtype = msg.msg_type
        if msg.op != BOOTREQUEST or mtype is None:
            c.bad("bad_op" if msg.op != BOOTREQUEST else "not_dhcp")
            return None
        c.count(mtype, "received")
        if msg.giaddr != ZERO_IP:
            c.ignored += 1  # relayed: vnet is one LAN, no relay agents
            return None
        self._expire(now)
        cid = client_key(msg)
        handler = {MsgType.DISCOVER: self._discover, MsgType.REQUEST: self._request,
                   MsgType.DECLINE: self._decline, MsgType.RELEASE: self._release,
                   MsgType.INFORM: self._inform}.get(mtype)
        out = handler(msg, cid, now) if handler is not None else None
        if out is None and mtype in (MsgType.OFFER, MsgType.ACK, MsgType.NAK):
            c.ignored += 1  # server messages sent as requests
        return out

    def _discover(self, msg: DhcpMessage, cid: bytes, now: float):
        requested = msg.get("requested_ip")
        ip = self._pick(cid, requested, now)
        if ip is None:
            self.c.pool_exhausted += 1
            return None
        self._drop_offer(cid)
        self.offers[cid] = (ip, now + self.offer_hold)
        self.offered[ip] = cid
        return self._reply(msg, MsgType.OFFER, yiaddr=ip), LIMITED_BROADCAST

    def _request(self, msg: DhcpMessage, cid: bytes, now: float):
        c = self.c
        server_id = msg.get("server_id")
        requested = msg.get("requested_ip")
        hostname = msg.get("hostname")
        if server_id is not None:  # SELECTING
            if server_id != self.ip:
                self._drop_offer(cid)  # it took another server's offer
                c.ignored += 1
                return None
            if requested is None:
                c.bad("bad_fields")
                return None
            o = self.offers.get(cid)
            if (o is not None and o[0] == requested) or self._own_lease(cid, requested) \
                    or self._available(requested, cid, now):
                return self._ack(msg, self._bind(cid, requested, now, hostname))
            return self._nak(msg, "requested address not available")
        if msg.ciaddr != ZERO_IP:  # RENEWING (unicast) or REBINDING (broadcast)
            return self._renew(msg, cid, msg.ciaddr, hostname, now)
        if requested is None:  # INIT-REBOOT
            c.bad("bad_fields")
            return None
        ip = requested
        if not self._in_subnet(ip):
            return self._nak(msg, "wrong network")
        if self._own_lease(cid, ip):
            return self._ack(msg, self._bind(cid, ip, now, hostname))
        if self._taken_by_other(ip, cid, now):
            return self._nak(msg, "address in use")
        if cid in self.leases:
            return self._nak(msg, "not your lease")
        c.ignored += 1  # RFC 2131 4.3.2: no record of this client, remain silent
        return None

    def _renew(self, msg: DhcpMessage, cid: bytes, ip: bytes, hostname, now: float):
        """A bound client extending its lease on ``ip`` (its ciaddr, which it uses)."""
        if not self._in_subnet(ip):
            return self._nak(msg, "wrong network")
        ls = self.leases.get(cid)
        if ls is not None and ls.ip != ip:
            return self._nak(msg, "not your lease")
        if not self._in_pool(ip):
            if ip in self.excluded:
                return self._nak(msg, "address reserved")
            self.c.ignored += 1  # in the subnet, not ours to manage
            return None
        other = self.by_ip.get(ip)
        if other is not None and other.client_id != cid and other.expires > now:
            return self._nak(msg, "address in use")
        # The client holds the address and defends it: a server that lost its lease file
        # adopts the binding, and a DECLINE of it (by a newcomer whose DAD met this very
        # client) or an offer of it to someone else was the mistake, not this lease.
        self.declined.pop(ip, None)
        o = self.offered.get(ip)
        if o is not None and o != cid:
            self._drop_offer(o)
        return self._ack(msg, self._bind(cid, ip, now, hostname))

    def _decline(self, msg: DhcpMessage, cid: bytes, now: float):
        ip = msg.get("requested_ip")
        sid = msg.get("server_id")
        ls = self.leases.get(cid)
        o = self.offers.get(cid)
        if ip is None or (sid is not None and sid != self.ip) or not (
                (ls is not None and ls.ip == ip) or (o is not None and o[0] == ip)):
            self.c.ignored += 1  # only the client an address was given to can decline it
            return None
        self.declined[ip] = now + self.decline_hold
        self._drop_offer(cid)
        if ls is not None and ls.ip == ip:
            del self.leases[cid]
            del self.by_ip[ip]
            self._changed()
        return None

    def _release(self, msg: DhcpMessage, cid: bytes, now: float):
        sid = msg.get("server_id")
        ls = self.leases.get(cid)
        if (sid is not None and sid != self.ip) or ls is None or ls.ip != msg.ciaddr:
            self.c.ignored += 1
            return None
        self._drop_offer(cid)
        if ls.expires > now:
            ls.expires = now  # remembered, so the client gets it back if still free
            self._changed()
        return None

    def _inform(self, msg: DhcpMessage, cid: bytes, now: float):
        if not self._in_subnet(msg.ciaddr):
            self.c.ignored += 1
            return None
        return self._reply(msg, MsgType.ACK, ciaddr=msg.ciaddr, lease=False), msg.ciaddr

    # -- display ---------------------------------------------------------------------------

    def show(self, now: float) -> list[dict]:
        """Leases, offers and declined addresses, by address: [{ip, state (bound, expired,
        offered, declined), client_id (hex), hostname, remaining (s, < 0 if expired)}]."""
        self._expire(now)
        rows: dict[bytes, dict] = {}
        for ls in self.by_ip.values():
            rows[ls.ip] = {"ip": ip_str(ls.ip),
                           "state": "bound" if ls.expires > now else "expired",
                           "client_id": ls.client_id.hex(), "hostname": ls.hostname,
                           "remaining": ls.expires - now}
        for cid, (ip, until) in self.offers.items():
            ls = self.leases.get(cid)
            rows[ip] = {"ip": ip_str(ip), "state": "offered", "client_id": cid.hex(),
                        "hostname": ls.hostname if ls else None, "remaining": until - now}
        for ip, until in self.declined.items():
            rows[ip] = {"ip": ip_str(ip), "state": "declined", "client_id": None,
                        "hostname": None, "remaining": until - now}
        return [rows[ip] for ip in sorted(rows)]

    def pool_size(self) -> int:
        return self.last - self.first + 1 - sum(
            1 for x in self.excluded if self.first <= _u32(x) <= self.last)


# -- the client -----------------------------------------------------------------------------


class DhcpState(enum.Enum):
    """RFC 2131 figure 5, plus STOPPED and CHECKING (the ACKed address is on the interface,
    tentative, while DAD runs; RFC 2131 3.1.5's ARP check)."""

    STOPPED = "stopped"
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    CHECKING = "checking"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    INIT_REBOOT = "init-reboot"
    REBOOTING = "rebooting"


_S = DhcpState
DHCP_TRANSITIONS: dict[DhcpState, frozenset[DhcpState]] = {
    _S.STOPPED: frozenset({_S.INIT, _S.INIT_REBOOT}),
    _S.INIT: frozenset({_S.SELECTING, _S.STOPPED}),
    _S.SELECTING: frozenset({_S.REQUESTING, _S.STOPPED}),
    _S.REQUESTING: frozenset({_S.CHECKING, _S.INIT, _S.STOPPED}),
    _S.INIT_REBOOT: frozenset({_S.REBOOTING, _S.STOPPED}),
    _S.REBOOTING: frozenset({_S.CHECKING, _S.INIT, _S.STOPPED}),
    _S.CHECKING: frozenset({_S.BOUND, _S.INIT, _S.STOPPED}),
    _S.BOUND: frozenset({_S.RENEWING, _S.STOPPED}),
    _S.RENEWING: frozenset({_S.BOUND, _S.REBINDING, _S.CHECKING, _S.INIT, _S.STOPPED}),
    _S.REBINDING: frozenset({_S.BOUND, _S.CHECKING, _S.INIT, _S.STOPPED}),
}
_WAITING_REPLY = frozenset({_S.SELECTING, _S.REQUESTING, _S.REBOOTING})
_HAS_LEASE = frozenset({_S.BOUND, _S.RENEWING, _S.REBINDING})


@dataclass(frozen=True)
class DhcpParams:
    """Client timings (seconds); see the module docstring for the reasoning."""

    retrans_initial: float = 1.0  # first retransmission timeout (RFC 2131: 4 s)
    retrans_max: float = 16.0  # backoff cap (RFC 2131: 64 s)
    jitter: float = 0.25  # timeouts x uniform(1 - jitter, 1 + jitter), with an rng
    request_tries: int = 4  # REQUESTs in REQUESTING/REBOOTING before INIT
    init_delay: float = 1.0  # before the first DISCOVER: uniform(0, this), with an rng
    decline_wait: float = 10.0  # after a DECLINE, before DISCOVER (RFC 2131 3.1.5)
    renew_min: float = 4.0  # floor of RENEWING/REBINDING retransmissions (RFC: 60 s)
    min_lease: float = 10.0  # ACKs with shorter leases are refused (bad_fields)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise StackError(f"DHCP parameter {f.name}={v!r}: must be a number >= 0")
        if self.retrans_initial <= 0 or self.request_tries < 1 or self.jitter >= 1:
            raise StackError("DHCP parameters: retrans_initial must be > 0, request_tries "
                             ">= 1 and jitter < 1")


class DhcpClient:
    """The client state machine on one interface. ``link`` is the ``Dhcp`` layer: it sends
    messages and adds, removes and inspects addresses. Every method returns frames."""

    def __init__(self, link: Dhcp, client_id: bytes, hostname: str | None,
                 previous_ip: bytes | None, params: DhcpParams, rng, counters: DhcpCounters,
                 emit: Callable) -> None:
        self.link = link
        self.client_id = client_id  # the whole option 61 value, type byte included
        self.hostname = hostname
        self.p = params
        self.rng = rng
        self.c = counters
        self.emit = emit
        self.state = _S.STOPPED
        self.deadline: float | None = None
        self.xid = 0
        self._xids = 0
        self.tries = 0  # transmissions of the current message
        self.started = 0.0  # when the current exchange began (secs field)
        self.sent_at = 0.0  # first transmission of the current REQUEST (lease start)
        self.wanted = previous_ip  # the address to ask for (INIT-REBOOT, DISCOVER opt 50)
        self.ip: bytes | None = None  # offered / requested / bound address
        self.prefixlen = 0
        self.server: bytes | None = None
        self.lease_time: int | None = None
        self.t1 = self.t2 = self.expiry = None  # absolute; None: infinite lease
        self.added = False  # we put self.ip on the interface (and so take it off)
        self.bound = False  # DhcpBound was emitted for self.ip (DhcpLost pairs with it)
        self.naks = 0  # consecutive NAKs, for the back-off
        self.last_now = 0.0

    # -- the state machine -----------------------------------------------------------------

    def _set_state(self, new: DhcpState) -> None:
        if new not in DHCP_TRANSITIONS[self.state]:
            raise DhcpStateError(f"DHCP client: illegal transition {self.state.name} -> "
                                 f"{new.name}")
        self.state = new

    def _new_xid(self) -> None:
        if self.rng is not None:
            self.xid = self.rng.getrandbits(32)
        else:
            self._xids += 1
            self.xid = (zlib.crc32(self.client_id + self.link.mac) + self._xids * 0x9E3779B9) \
                & 0xFFFFFFFF

    def _timeout(self, tries: int) -> float:
        d = min(self.p.retrans_max, self.p.retrans_initial * 2 ** min(tries - 1, 30))
        if self.rng is not None and self.p.jitter:
            d *= self.rng.uniform(1 - self.p.jitter, 1 + self.p.jitter)
        return d

    def _halving(self, now: float, until: float) -> float:
        """RFC 2131 4.4.5: wait half the time left to ``until``, not less than renew_min."""
        left = until - now
        return now + left / 2 if left / 2 >= self.p.renew_min else until

    def start(self, now: float) -> list[bytes]:
        self.last_now = now
        delay = 0.0
        if self.rng is not None and self.p.init_delay:
            delay = self.rng.uniform(0, self.p.init_delay)
        if self.wanted is not None:
            self._set_state(_S.INIT_REBOOT)
        else:
            self._set_state(_S.INIT)
        self.deadline = now + delay
        return self.tick(now) if delay <= 0 else []

    def stop(self, now: float, release: bool) -> list[bytes]:
        self.last_now = now
        frames: list[bytes] = []
        if self.state in _HAS_LEASE and release and self.ip is not None:
            msg = self._msg(MsgType.RELEASE, now, ciaddr=self.ip, server_id=self.server)
            frames = self.link.send(msg, self.ip, self.server or LIMITED_BROADCAST, now)
        self._drop_address("released" if release else "stopped")
        self._set_state(_S.STOPPED)
        self.deadline = None
        return frames

    # -- sending ---------------------------------------------------------------------------

    def _msg(self, mtype: MsgType, now: float, *, ciaddr: bytes = ZERO_IP,
             requested: bytes | None = None, server_id: bytes | None = None) -> DhcpMessage:
        asking = mtype in (MsgType.DISCOVER, MsgType.REQUEST)
        opts = dhcp_options(
            msg_type=mtype, requested_ip=requested, server_id=server_id,
            client_id=self.client_id, hostname=self.hostname if asking else None,
            param_req_list=CLIENT_PARAM_REQ if asking else None)
        # No address yet: ask for broadcast replies (RFC 2131 4.1).
        flags = BROADCAST_FLAG if asking and ciaddr == ZERO_IP else 0
        return DhcpMessage(op=BOOTREQUEST, xid=self.xid, chaddr=self.link.mac, ciaddr=ciaddr,
                           secs=max(0, min(0xFFFF, int(now - self.started))), flags=flags,
                           options=opts)

    def _transmit(self, now: float) -> list[bytes]:
        """(Re)send the message of the current state and arm the retransmission timer."""
        st = self.state
        self.tries += 1
        if self.tries > 1:
            self.c.retransmits += 1
        if st == _S.SELECTING:
            msg = self._msg(MsgType.DISCOVER, now, requested=self.wanted)
            self.deadline = now + self._timeout(self.tries)
            return self.link.send(msg, ZERO_IP, LIMITED_BROADCAST, now)
        if st == _S.REQUESTING or st == _S.REBOOTING:
            msg = self._msg(MsgType.REQUEST, now, requested=self.ip,
                            server_id=self.server if st == _S.REQUESTING else None)
            self.deadline = now + self._timeout(self.tries)
            return self.link.send(msg, ZERO_IP, LIMITED_BROADCAST, now)
        if st == _S.RENEWING:
            msg = self._msg(MsgType.REQUEST, now, ciaddr=self.ip)
            self.deadline = self._halving(now, self.t2)
            return self.link.send(msg, self.ip, self.server, now)
        if st == _S.REBINDING:
            msg = self._msg(MsgType.REQUEST, now, ciaddr=self.ip)
            self.deadline = self._halving(now, self.expiry)
            return self.link.send(msg, self.ip, LIMITED_BROADCAST, now)
        raise DhcpStateError(f"DHCP client: nothing to transmit in {st.name}")

    def _begin(self, state: DhcpState, now: float, *, new_exchange: bool = True) -> list:
        self._set_state(state)
        if new_exchange:
            self._new_xid()
            self.started = now
        self.tries = 0
        self.sent_at = now
        return self._transmit(now)

    def _discover(self, now: float) -> list[bytes]:
        if self.state != _S.INIT:
            self._set_state(_S.INIT)
        self.ip = self.server = None
        return self._begin(_S.SELECTING, now)

    def _restart(self, now: float, wait: float) -> list[bytes]:
        """Back to INIT; DISCOVER after ``wait``."""
        self._set_state(_S.INIT)
        self.ip = self.server = None
        self.deadline = now + wait
        return self._discover(now) if wait <= 0 else []

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[bytes]:
        self.last_now = now
        frames = self.check(now)
        for _ in range(8):  # a late tick may pass T1, T2 and the expiry at once
            if self.deadline is None or self.deadline > now:
                break
            frames += self._timer(now)
        return frames

    def _timer(self, now: float) -> list[bytes]:
        st = self.state
        self.deadline = None
        if st == _S.INIT:
            return self._discover(now)
        if st == _S.INIT_REBOOT:
            self.ip = self.wanted
            return self._begin(_S.REBOOTING, now)
        if st == _S.SELECTING:
            return self._transmit(now)
        if st == _S.REQUESTING or st == _S.REBOOTING:
            if self.tries >= self.p.request_tries:  # no answer: start over (RFC 2131 3.1)
                return self._restart(now, 0)
            return self._transmit(now)
        if st == _S.BOUND:
            return self._begin(_S.RENEWING, now)
        if st == _S.RENEWING:
            if now >= self.t2:
                self._set_state(_S.REBINDING)
                return self._transmit(now)
            return self._transmit(now)
        if st == _S.REBINDING:
            if now >= self.expiry:
                self._drop_address("expired")
                return self._restart(now, 0)
            return self._transmit(now)
        return []

    def next_deadline(self) -> float | None:
        return self.deadline

    def link_up(self, now: float) -> list[bytes]:
        """Carrier back: a client waiting for a reply sends again now, backoff restarted
        (what was sent while the link was down was lost)."""
        if self.state in _WAITING_REPLY:
            self.tries = 0
            return self._transmit(now)
        return []

    # -- receiving -------------------------------------------------------------------------

    def receive(self, msg: DhcpMessage, src: bytes, now: float) -> list[bytes]:
        """A BOOTREPLY (decoded, from ``src``) that arrived on port 68."""
        self.last_now = now
        c = self.c
        if msg.chaddr != self.link.mac:
            c.not_for_us += 1
            return []
        mtype = msg.msg_type
        c.count(mtype, "received")
        if msg.xid != self.xid:
            c.ignored += 1
            return []
        st = self.state
        if mtype == MsgType.OFFER and st == _S.SELECTING:
            sid = msg.get("server_id")
            if sid is None or not _is_unicast(sid) or not _is_unicast(msg.yiaddr):
                c.bad("bad_fields")
                return []
            self.ip, self.server = msg.yiaddr, sid
            return self._begin(_S.REQUESTING, now, new_exchange=False)
        if mtype == MsgType.ACK and st in (_S.REQUESTING, _S.REBOOTING, _S.RENEWING, _S.REBINDING):
            sid = msg.get("server_id")
            if sid is not None and not _is_unicast(sid):
                c.bad("bad_fields")
                return []
            if st == _S.REQUESTING and sid is not None and sid != self.server:
                c.ignored += 1
                return []
            return self._ack(msg, sid or self.server or src, now)
        if mtype == MsgType.NAK and st in (_S.REQUESTING, _S.REBOOTING, _S.RENEWING,
                                           _S.REBINDING):
            sid = msg.get("server_id")
            if st == _S.REQUESTING and sid is not None and sid != self.server:
                c.ignored += 1
                return []
            return self._nak(now)
        c.ignored += 1
        return []

    def _ack(self, msg: DhcpMessage, server: bytes, now: float) -> list[bytes]:
        lease = msg.get("lease_time")
        ip = msg.yiaddr
        if lease is None or lease < self.p.min_lease or not _is_unicast(ip):
            self.c.bad("bad_fields")
            return []
        plen = prefix_from_mask(msg.get("subnet_mask"), ip)
        self.server = server
        self.lease_time = lease
        if lease == INFINITE_LEASE:
            self.t1 = self.t2 = self.expiry = None
        else:
            t1, t2 = lease * 0.5, lease * 0.875
            o1, o2 = msg.get("t1"), msg.get("t2")
            if o1 is not None and o2 is not None and 0 < o1 < o2 < lease:
                t1, t2 = o1, o2
            elif o1 is not None and 0 < o1 < t2:
                t1 = o1
            elif o2 is not None and t1 < o2 < lease:
                t2 = o2
            start = self.sent_at  # RFC 2131 4.4.1: the lease runs from the request
            self.t1, self.t2, self.expiry = start + t1, start + t2, start + lease
        renewal = self.state in (_S.RENEWING, _S.REBINDING)
        if renewal and ip == self.ip and self.link.address_state(ip) == IFA_OK:
            self._set_state(_S.BOUND)
            self.deadline = self.t1
            self.emit(DhcpBound(ip, self.prefixlen, lease, server, renewal=True))
            return []
        if renewal:  # another address, or ours went missing: set it up afresh
            self._drop_address("changed")
        self._set_state(_S.CHECKING)
        self.deadline = None
        self.ip, self.prefixlen = ip, plen
        state = self.link.address_state(ip)
        frames: list[bytes] = []
        if state is None:
            try:
                frames = self.link.add_address(ip, plen, now)
            except StackError:
                self.c.bad("bad_fields")  # e.g. the subnet's broadcast address
                self.ip = None
                return frames + self._restart(now, self.p.decline_wait)
            self.added = True
        else:
            self.added = False  # configured by hand: adopt it, never delete it
        return frames + self.check(now)

    def check(self, now: float) -> list[bytes]:
        """In CHECKING: bound once DAD passes; DECLINE if it found the address in use."""
        if self.state != _S.CHECKING:
            return []
        state = self.link.address_state(self.ip)
        if state == IFA_OK:
            self._set_state(_S.BOUND)
            self.naks = 0
            self.wanted = self.ip
            self.deadline = self.t1
            self.bound = True
            self.emit(DhcpBound(self.ip, self.prefixlen, self.lease_time, self.server))
            return []
        if state == IFA_CONFLICT:  # RFC 2131 3.1.5: DECLINE, wait, start over
            ip = self.ip
            msg = self._msg(MsgType.DECLINE, now, requested=ip, server_id=self.server)
            frames = self.link.send(msg, ZERO_IP, LIMITED_BROADCAST, now)
            self._drop_address("declined")
            if self.wanted == ip:
                self.wanted = None
            return frames + self._restart(now, self.p.decline_wait)
        if state is None:  # deleted by hand while DAD ran: start over, nothing to decline
            self.added = False
            return self._restart(now, self.p.retrans_initial)
        return []

    def _nak(self, now: float) -> list[bytes]:
        if self.state in _HAS_LEASE:
            self._drop_address("nak")
        if self.wanted == self.ip:
            self.wanted = None
        self.naks += 1
        wait = 0.0 if self.naks == 1 else self._timeout(self.naks - 1)
        return self._restart(now, wait)

    def _drop_address(self, reason: str) -> None:
        ip = self.ip
        if ip is not None and self.added and self.link.address_state(ip) is not None:
            self.link.del_address(ip)
        if ip is not None and self.bound:
            self.emit(DhcpLost(ip, reason))
        self.added = self.bound = False
        self.lease_time = self.t1 = self.t2 = self.expiry = None

    # -- display ---------------------------------------------------------------------------

    def show(self, now: float | None = None) -> dict:
        now = self.last_now if now is None else now

        def left(t):
            return None if t is None else t - now

        has = self.state in _HAS_LEASE
        return {
            "state": self.state.value,
            "address": ip_str(self.ip) if self.ip is not None else None,
            "prefixlen": self.prefixlen if self.ip is not None and has else None,
            "server": ip_str(self.server) if self.server is not None else None,
            "lease_time": self.lease_time if has else None,
            "lease_remaining": left(self.expiry) if has else None,
            "renew_in": left(self.t1) if self.state == _S.BOUND else None,
            "rebind_in": left(self.t2) if has else None,
            "client_id": self.client_id.hex(),
            "hostname": self.hostname,
            "xid": self.xid,
            "next_timeout": left(self.deadline),
        }


# -- the layer on the interface -------------------------------------------------------------


class Dhcp:
    """DHCP on one interface: the UDP port 67/68 handlers (``server_rcv``/``client_rcv``),
    sending with an explicit source (0.0.0.0 before we have an address), and the address
    operations the client needs. host.py binds it; ``server``/``client`` are None when not
    running."""

    def __init__(self, dev, addrs, arp, udp, emit: Callable, rng=None) -> None:
        self.dev = dev
        self.addrs = addrs
        self.arp = arp
        self.udp = udp
        self.emit = emit
        self.rng = rng
        self.c = DhcpCounters()
        self.server: DhcpServer | None = None
        self.client: DhcpClient | None = None

    @property
    def mac(self) -> bytes:
        return self.dev.mac

    # -- what the client needs from the stack ----------------------------------------------

    def send(self, msg: DhcpMessage, src: bytes, dst: bytes, now: float) -> list[bytes]:
        self.c.count(msg.msg_type, "sent")
        sport, dport = (DHCP_SERVER_PORT, DHCP_CLIENT_PORT) if msg.op == BOOTREPLY \
            else (DHCP_CLIENT_PORT, DHCP_SERVER_PORT)
        return self.udp.output(src, sport, dst, dport, encode_dhcp(msg),
                               dst == LIMITED_BROADCAST, now)

    def add_address(self, ip: bytes, prefixlen: int, now: float) -> list[bytes]:
        ifa = self.addrs.add(ip, prefixlen)
        return self.arp.start_dad(ifa, now)

    def del_address(self, ip: bytes) -> None:
        self.addrs.remove(ip)

    def address_state(self, ip: bytes) -> str | None:
        ifa = self.addrs.find(ip)
        return None if ifa is None else ifa.state

    # -- the wire --------------------------------------------------------------------------

    def _decode(self, payload: bytes, op: int) -> DhcpMessage | None:
        try:
            msg = decode_dhcp(payload)
        except DhcpDecodeError as e:
            self.c.bad(e.reason)
            return None
        if msg.op != op:
            self.c.bad("bad_op")
            return None
        return msg

    def server_rcv(self, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes,
                   now: float) -> list[bytes]:
        server = self.server
        msg = self._decode(payload, BOOTREQUEST)
        if msg is None or server is None:
            return []
        if server.ip not in self.addrs.local:
            self.c.count(msg.msg_type, "received")
            self.c.ignored += 1  # our address is tentative or in conflict: not serving
            return []
        out = server.handle(msg, now)
        if out is None:
            return []
        reply, to = out
        return self.send(reply, server.ip, to, now)

    def client_rcv(self, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes,
                   now: float) -> list[bytes]:
        client = self.client
        msg = self._decode(payload, BOOTREPLY)
        if msg is None or client is None:
            return []
        return client.receive(msg, src, now)

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[bytes]:
        return self.client.tick(now) if self.client is not None else []

    def poll(self, now: float) -> list[bytes]:
        """After ARP ran (a received frame, a tick): the client's DAD check."""
        client = self.client
        if client is not None and client.state == _S.CHECKING:
            return client.check(now)
        return []

    def next_deadline(self) -> float | None:
        return self.client.next_deadline() if self.client is not None else None

    def link_up(self, now: float) -> list[bytes]:
        return self.client.link_up(now) if self.client is not None else []


def client_id_option(client_id: bytes | str | None, mac: bytes) -> bytes:
    """Option 61's value: type 0 + ``client_id`` (e.g. the node's name), or type 1 + MAC
    when it is None."""
    if client_id is None:
        return bytes((HTYPE_ETHER,)) + mac
    if isinstance(client_id, str):
        client_id = client_id.encode()
    if not isinstance(client_id, (bytes, bytearray)) or not 1 <= len(client_id) <= 254:
        raise StackError(f"DHCP client id {client_id!r} must be 1..254 bytes (e.g. the "
                         "node's name), or None to use the MAC address")
    return b"\0" + bytes(client_id)


__all__ = [
    "BOOTP_FMT", "DHCP_CLIENT_PORT", "DHCP_SERVER_PORT", "Dhcp", "DhcpClient",
    "DhcpCounters", "DhcpDecodeError", "DhcpMessage", "DhcpParams", "DhcpServer",
    "DhcpState", "DhcpStateError", "MsgType", "OPTIONS", "client_id_option", "client_key",
    "decode_dhcp", "dhcp_options", "encode_dhcp",
]
