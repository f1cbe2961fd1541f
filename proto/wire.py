"""The node <-> switch wire protocol: a sans-I/O codec, used by both ends.

Transport: each node's link is a ZeroMQ DEALER connected to the switch's ROUTER over TCP
(default port ``DEFAULT_DATA_PORT``). Every ZeroMQ message has a first part of one byte, the
kind, and at most one more part, the payload:

=============  ===========  =============================================================
kind           direction    payload
=============  ===========  =============================================================
HELLO    b"H"  node->switch msgpack map: version, name, macs (list of 6-byte bin), mtu,
                            bridge (optional, true: the sender is another switch's
                            trunk, so spanning tree runs on the port; absent means false)
WELCOME  b"W"  switch->node msgpack map: version, port, heartbeat_interval,
                            heartbeat_timeout, mtu, carrier (false only when the
                            port is down; absent means up)
REFUSE   b"R"  switch->node msgpack map: reason (a sentence for a human), version
FRAMES   b"F"  both         a batch: records of a 2-byte big-endian length, then that
                            many bytes of Ethernet frame (destination MAC first, no FCS)
HEARTBEAT b"K" both         none; any message proves the sender alive
BYE      b"B"  both         none; the sender is going away on purpose
NOT_ATTACHED b"N" switch->node none; "send HELLO first" (e.g. after a switch restart)
CARRIER  b"C"  switch->node 1 byte: 0 = the port is administratively down (a cut cable:
                            carrier off, the link stays attached and keeps its heartbeats),
                            1 = up again. Sent when the state changes and, while the port
                            is down, right after each WELCOME.
=============  ===========  =============================================================

WELCOME's ``carrier`` is false while the port is down, so a node attaching to a down port never
raises carrier at all; the CARRIER that follows says the same to nodes that ignore the key.

Each kind is a frozen dataclass here (``Hello``, ``Welcome``, ``Refuse``, ``Frames``,
``Carrier``, ``Heartbeat``, ``Bye``, ``NotAttached``) with ``encode()``; ``decode(parts)`` turns
any message into one of them or raises ``WireError`` with a sentence. The node's link and the
switch build and read messages only through these; the switch's FRAMES path alone reads the
payload in place, so that no object is made per frame.

Frames travel in batches because per-message cost dominates on this transport
(docs/performance.md): one FRAMES message carries as many frames as the sender has ready.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Iterable, Sequence, Union

import msgpack

from vnet.proto.ether import ETH_HLEN, ETH_MIN_MTU, VLAN_HLEN

PROTOCOL_VERSION = 1
DEFAULT_DATA_PORT = 5540
DEFAULT_CONTROL_PORT = 5541

MSG_HELLO = b"H"
MSG_WELCOME = b"W"
MSG_REFUSE = b"R"
MSG_FRAMES = b"F"
MSG_HEARTBEAT = b"K"
MSG_BYE = b"B"
MSG_NOT_ATTACHED = b"N"
MSG_CARRIER = b"C"

FRAME_HDR = struct.Struct("!H")
MAX_FRAME = 0xFFFF
MAX_MTU = MAX_FRAME - ETH_HLEN - VLAN_HLEN  # the 16-bit length bounds a frame, so an MTU


class WireError(ValueError):
    """A message from the wire that does not follow this protocol (the peer's fault)."""


# The length prefixes of ordinary frames, made once: a tuple index is several times cheaper
# than packing a struct per frame. Longer (jumbo) frames are packed as they come.
_HDR = tuple(FRAME_HDR.pack(n) for n in range(1523))
_HDR_MAX = len(_HDR) - 1


def pack_frames(frames: Iterable[bytes | bytearray | memoryview]) -> bytes:
    """Encode a batch of frames as one FRAMES payload."""
    parts = []
    append = parts.append
    hdr = _HDR
    pack = FRAME_HDR.pack
    for frame in frames:
        n = len(frame)
        if n <= _HDR_MAX:
            append(hdr[n])
        elif n <= MAX_FRAME:
            append(pack(n))
        else:
            raise ValueError(f"frame of {n} bytes does not fit the wire's 16-bit length")
        append(frame)
    return b"".join(parts)


def unpack_frames(payload: bytes | memoryview) -> list[memoryview]:
    """Decode a FRAMES payload into zero-copy views of its frames.

    Raises WireError when a record runs past the end of the payload; the frames before the
    bad record are lost with it, since nothing after a bad length can be trusted.
    """
    view = memoryview(payload)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    end = len(view)
    out = []
    append = out.append
    off = 0
    while off < end:
        if off + 2 > end:
            raise WireError(f"truncated frame header at offset {off} of {end}")
        s = off + 2
        off = s + (view[off] << 8 | view[off + 1])
        if off > end:
            raise WireError(f"frame of {off - s} bytes at offset {s} runs past the end ({end})")
        append(view[s:off])
    return out


def encode_map(obj: dict) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def decode_map(payload: bytes | memoryview, what: str) -> dict:
    """Decode a msgpack map payload; anything else is a WireError naming ``what``."""
    try:
        obj = msgpack.unpackb(bytes(payload), raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise WireError(f"{what}: payload is not msgpack ({exc.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise WireError(f"{what}: payload is a {type(obj).__name__}, not a map")
    return obj


# -- typed messages ---------------------------------------------------------------------------
#
# One frozen dataclass per kind, each with ``encode() -> list[bytes]`` (the ZeroMQ message
# parts); ``decode(parts)`` is the one way back. The switch's per-frame path does not go
# through here: it reads FRAMES payloads in place (switch/core.py), one object per batch at
# most, never one per frame.


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _map_payload(parts: Sequence[bytes], what: str) -> dict:
    if len(parts) != 2:
        raise WireError(f"{what} is 2 message parts (kind, map), got {len(parts)}")
    return decode_map(parts[1], what)


def _no_payload(parts: Sequence[bytes], what: str) -> None:
    if len(parts) != 1:
        raise WireError(f"{what} is 1 message part (the kind alone), got {len(parts)}")


def _check_mtu(mtu: object, what: str) -> int:
    if not _is_int(mtu) or not ETH_MIN_MTU <= mtu <= MAX_MTU:
        raise WireError(f"{what} mtu must be an integer from {ETH_MIN_MTU} to {MAX_MTU}, got {mtu!r}")
    return mtu


@dataclass(frozen=True, slots=True)
class Hello:
    """node->switch: attach me. ``macs`` are the addresses the node's device answers to;
    ``bridge`` true: the sender is another switch dialing in over a trunk (spanning tree runs
    on the port). The key is sent only when true, so a node's HELLO is as it always was."""

    name: str
    macs: tuple[bytes, ...]
    mtu: int
    version: int = PROTOCOL_VERSION
    bridge: bool = False
    kind: ClassVar[bytes] = MSG_HELLO

    def encode(self) -> list[bytes]:
        info = {"version": self.version, "name": self.name, "macs": [bytes(m) for m in self.macs], "mtu": self.mtu}
        if self.bridge:
            info["bridge"] = True
        return [MSG_HELLO, encode_map(info)]

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> "Hello":
        """The version is checked first: a HELLO of another version may carry other fields,
        and the sentence is what the switch's REFUSE says."""
        msg = _map_payload(parts, "HELLO")
        version = msg.get("version")
        if version != PROTOCOL_VERSION:
            raise WireError(
                f"protocol version mismatch: the node speaks version {version!r} and this switch "
                f"speaks version {PROTOCOL_VERSION}; run a node and a switch of the same release"
            )
        name = msg.get("name")
        if not isinstance(name, str) or not name or len(name) > 255:
            raise WireError(f"HELLO name must be a non-empty string of at most 255 characters, got {name!r}")
        macs = msg.get("macs", [])
        if not isinstance(macs, list) or not all(isinstance(m, bytes) and len(m) == 6 for m in macs):
            raise WireError("HELLO macs must be a list of 6-byte binary addresses")
        bridge = msg.get("bridge") is True  # tolerant: anything but true is a node's HELLO
        return cls(name, tuple(macs), _check_mtu(msg.get("mtu"), "HELLO"), version, bridge)


@dataclass(frozen=True, slots=True)
class Welcome:
    """switch->node: attached on ``port``. ``mtu`` is the switch's (frames longer than it
    plus the Ethernet and VLAN headers are dropped there); ``carrier`` false: the port is
    administratively down (a CARRIER 0 follows)."""

    port: int
    heartbeat_interval: float
    heartbeat_timeout: float
    mtu: int
    carrier: bool = True
    version: int = PROTOCOL_VERSION
    kind: ClassVar[bytes] = MSG_WELCOME

    def encode(self) -> list[bytes]:
        info = {
            "version": self.version,
            "port": self.port,
            "heartbeat_interval": self.heartbeat_interval,
            "heartbeat_timeout": self.heartbeat_timeout,
            "mtu": self.mtu,
        }
        if not self.carrier:
            info["carrier"] = False  # only when down: the common WELCOME stays as it was
        return [MSG_WELCOME, encode_map(info)]

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> "Welcome":
        msg = _map_payload(parts, "WELCOME")
        port = msg.get("port")
        if not _is_int(port) or port < 0:
            raise WireError(f"WELCOME port must be an integer >= 0, got {port!r}")
        hb = []
        for key in ("heartbeat_interval", "heartbeat_timeout"):
            v = msg.get(key)
            if not _is_number(v) or not 0 < v < 1e6:
                raise WireError(f"WELCOME {key} must be a number of seconds above 0, got {v!r}")
            hb.append(v)
        carrier = msg.get("carrier", True)
        if not isinstance(carrier, bool):
            raise WireError(f"WELCOME carrier must be true or false, got {carrier!r}")
        version = msg.get("version", PROTOCOL_VERSION)
        if not _is_int(version):
            raise WireError(f"WELCOME version must be an integer, got {version!r}")
        return cls(port, hb[0], hb[1], _check_mtu(msg.get("mtu"), "WELCOME"), carrier, version)


@dataclass(frozen=True, slots=True)
class Refuse:
    """switch->node: not attached, and saying HELLO again will not help (``reason`` is a
    sentence for a human). Its shape never changes between versions: it is how a version
    mismatch is told."""

    reason: str
    version: int = PROTOCOL_VERSION
    kind: ClassVar[bytes] = MSG_REFUSE

    def encode(self) -> list[bytes]:
        return [MSG_REFUSE, encode_map({"reason": self.reason, "version": self.version})]

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> "Refuse":
        msg = _map_payload(parts, "REFUSE")
        reason = msg.get("reason")
        if not isinstance(reason, str):
            raise WireError(f"REFUSE reason must be a string, got {reason!r}")
        version = msg.get("version", PROTOCOL_VERSION)
        return cls(reason, version if _is_int(version) else PROTOCOL_VERSION)


@dataclass(frozen=True, slots=True)
class Frames:
    """Both ways: a batch of whole Ethernet frames (decoded as zero-copy views)."""

    frames: Sequence[bytes | bytearray | memoryview]
    kind: ClassVar[bytes] = MSG_FRAMES

    def encode(self) -> list[bytes]:
        return [MSG_FRAMES, pack_frames(self.frames)]

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> "Frames":
        if len(parts) != 2:
            raise WireError(f"FRAMES is 2 message parts (kind, records), got {len(parts)}")
        return cls(unpack_frames(parts[1]))


@dataclass(frozen=True, slots=True)
class Carrier:
    """switch->node: the switch port was set administratively down (``up`` false: a cut
    cable) or up again."""

    up: bool
    kind: ClassVar[bytes] = MSG_CARRIER

    def encode(self) -> list[bytes]:
        return [MSG_CARRIER, b"\x01" if self.up else b"\x00"]

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> "Carrier":
        if len(parts) != 2 or bytes(parts[1]) not in (b"\x00", b"\x01"):
            raise WireError("CARRIER is 2 message parts (kind, one byte 0 or 1)")
        return cls(bytes(parts[1]) == b"\x01")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Both ways: I am alive (any message proves it; this one says nothing else)."""

    kind: ClassVar[bytes] = MSG_HEARTBEAT

    def encode(self) -> list[bytes]:
        return [MSG_HEARTBEAT]

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> "Heartbeat":
        _no_payload(parts, "HEARTBEAT")
        return cls()


@dataclass(frozen=True, slots=True)
class Bye:
    """Both ways: the sender is going away on purpose."""

    kind: ClassVar[bytes] = MSG_BYE

    def encode(self) -> list[bytes]:
        return [MSG_BYE]

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> "Bye":
        _no_payload(parts, "BYE")
        return cls()


@dataclass(frozen=True, slots=True)
class NotAttached:
    """switch->node: I do not know you (I restarted); say HELLO first."""

    kind: ClassVar[bytes] = MSG_NOT_ATTACHED

    def encode(self) -> list[bytes]:
        return [MSG_NOT_ATTACHED]

    @classmethod
    def decode(cls, parts: Sequence[bytes]) -> "NotAttached":
        _no_payload(parts, "NOT_ATTACHED")
        return cls()


Message = Union[Hello, Welcome, Refuse, Frames, Carrier, Heartbeat, Bye, NotAttached]

_BY_KIND: dict[bytes, type] = {
    cls.kind: cls for cls in (Hello, Welcome, Refuse, Frames, Carrier, Heartbeat, Bye, NotAttached)
}


def decode(parts: Sequence[bytes]) -> Message:
    """The typed message in ``parts`` (a ZeroMQ multipart message, routing envelope already
    removed); WireError with a sentence when it is not one this protocol knows."""
    if not parts:
        raise WireError("an empty message: no kind part")
    kind = bytes(parts[0])
    cls = _BY_KIND.get(kind)
    if cls is None:
        raise WireError(f"unknown message kind {kind[:16]!r}")
    return cls.decode(parts)


# Shorthands for the encoded messages (the bench and tests build raw messages with them).

def hello(name: str, macs: Sequence[bytes], mtu: int, version: int = PROTOCOL_VERSION) -> list[bytes]:
    return Hello(name, tuple(macs), mtu, version).encode()


def welcome(port: int, heartbeat_interval: float, heartbeat_timeout: float, mtu: int,
            carrier: bool = True) -> list[bytes]:
    return Welcome(port, heartbeat_interval, heartbeat_timeout, mtu, carrier).encode()


def refuse(reason: str) -> list[bytes]:
    return Refuse(reason).encode()


def frames_msg(frames: Iterable[bytes | bytearray | memoryview]) -> list[bytes]:
    return [MSG_FRAMES, pack_frames(frames)]


def carrier(up: bool) -> list[bytes]:
    return Carrier(up).encode()


def parse_carrier(parts: Sequence[bytes]) -> bool:
    return Carrier.decode(parts).up


HEARTBEAT = Heartbeat().encode()
BYE = Bye().encode()
NOT_ATTACHED = NotAttached().encode()
