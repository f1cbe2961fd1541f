"""The BOOTP/DHCP codec (RFC 2131 section 2, options RFC 2132): ``DhcpMessage`` (a frozen
dataclass), ``encode_dhcp``/``decode_dhcp`` and the option table ``OPTIONS`` (code -> name
and value kind: declared, not coded), as the kernel's header codecs are. Decoding raises
``DhcpDecodeError(reason)``; the layer counts it as ``malformed_<reason>``. Also the address
arithmetic the server and the client share, and the client identifier (option 61)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Callable

from ..common import StackError
from ..ether import ETH_ALEN
from ..ipv4 import ZERO_IP, parse_ip

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


# Why decode_dhcp refuses a payload; each has a counter, malformed_<reason>.
DECODE_REASONS = ("truncated", "bad_cookie", "bad_op", "bad_hw", "bad_options", "not_dhcp")


class DhcpDecodeError(ValueError):
    """Bad input from the wire; ``reason`` (one of DECODE_REASONS) names the counter
    (``malformed_<reason>``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason



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



# -- address arithmetic, shared by the server and the client --------------------------------


def ip_to_u32(ip: bytes) -> int:
    """4 wire bytes -> the address as an integer (for ranges and masks)."""
    return int.from_bytes(ip, "big")


def u32_to_ip(n: int) -> bytes:
    """The inverse of ip_to_u32."""
    return n.to_bytes(4, "big")


def is_unicast(ip: bytes) -> bool:
    """A usable host address: not 0.0.0.0/8, loopback, multicast or class E."""
    return ip != ZERO_IP and ip[0] != 0 and ip[0] != 127 and ip[0] < 224


def prefix_mask(prefixlen: int) -> int:
    """/prefixlen as a 32-bit mask."""
    return (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF


def prefix_from_mask(mask: bytes | None, ip: bytes) -> int:
    """The prefix length of a contiguous netmask; classful for a missing or bad one."""
    if mask is not None and len(mask) == 4:
        inv = ~ip_to_u32(mask) & 0xFFFFFFFF
        if inv & (inv + 1) == 0 and inv != 0xFFFFFFFF:
            return 32 - inv.bit_length()
    return 8 if ip[0] < 128 else 16 if ip[0] < 192 else 24


def client_key(msg: DhcpMessage) -> bytes:
    """What the server keys a lease by: option 61, else hardware type 1 + chaddr (the same
    bytes a client identifier of type 1 would carry, RFC 2132 9.14)."""
    return msg.options.get(OPT_CLIENT_ID) or bytes((HTYPE_ETHER,)) + msg.chaddr



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

