"""The node <-> switch wire protocol: a sans-I/O codec, used by both ends.

Transport: each node's link is a ZeroMQ DEALER connected to the switch's ROUTER over TCP
(default port ``DEFAULT_DATA_PORT``). Every ZeroMQ message has a first part of one byte, the
kind, and at most one more part, the payload:

=============  ===========  =============================================================
kind           direction    payload
=============  ===========  =============================================================
HELLO    b"H"  node->switch msgpack map: version, name, macs (list of 6-byte bin), mtu
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

Frames travel in batches because per-message cost dominates on this transport
(docs/performance.md): one FRAMES message carries as many frames as the sender has ready.
"""

from __future__ import annotations

import struct
from typing import Iterable, Sequence

import msgpack

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


def hello(name: str, macs: Sequence[bytes], mtu: int, version: int = PROTOCOL_VERSION) -> list[bytes]:
    return [MSG_HELLO, encode_map({"version": version, "name": name, "macs": list(macs), "mtu": mtu})]


def welcome(port: int, heartbeat_interval: float, heartbeat_timeout: float, mtu: int,
            carrier: bool = True) -> list[bytes]:
    info = {
        "version": PROTOCOL_VERSION,
        "port": port,
        "heartbeat_interval": heartbeat_interval,
        "heartbeat_timeout": heartbeat_timeout,
        "mtu": mtu,
    }
    if not carrier:
        info["carrier"] = False  # only when down: the common WELCOME stays as it was
    return [MSG_WELCOME, encode_map(info)]


def refuse(reason: str) -> list[bytes]:
    return [MSG_REFUSE, encode_map({"reason": reason, "version": PROTOCOL_VERSION})]


def frames_msg(frames: Iterable[bytes | bytearray | memoryview]) -> list[bytes]:
    return [MSG_FRAMES, pack_frames(frames)]


def carrier(up: bool) -> list[bytes]:
    return [MSG_CARRIER, b"\x01" if up else b"\x00"]


def parse_carrier(parts: Sequence[bytes]) -> bool:
    """A CARRIER message's state; WireError if it is not exactly one byte of 0 or 1."""
    if len(parts) != 2 or bytes(parts[1]) not in (b"\x00", b"\x01"):
        raise WireError("CARRIER is 2 message parts (kind, one byte 0 or 1)")
    return bytes(parts[1]) == b"\x01"


HEARTBEAT = [MSG_HEARTBEAT]
BYE = [MSG_BYE]
NOT_ATTACHED = [MSG_NOT_ATTACHED]
