"""Fuzz target: the data-plane wire decoder ``vnet.proto.wire.decode``.

Contract: any multipart message decodes to a typed message or raises WireError; whatever
decodes encodes back to the same message (FRAMES: the same frame bytes)."""

from __future__ import annotations

import msgpack

from vnet.proto import wire
from vnet.proto.wire import WireError

from _fdp import Reader, fmap

KINDS = (wire.MSG_HELLO, wire.MSG_WELCOME, wire.MSG_REFUSE, wire.MSG_FRAMES, wire.MSG_CARRIER,
         wire.MSG_HEARTBEAT, wire.MSG_BYE, wire.MSG_NOT_ATTACHED, b"", b"HH", b"\xff")
KEYS = ("version", "name", "macs", "mtu", "port", "heartbeat_interval", "heartbeat_timeout",
        "carrier", "reason")
MAX_LEN = 4096

SEEDS = [
    b"\x00" + msgpack.packb({"version": 1, "name": "n1", "macs": [bytes(6)], "mtu": 1500}),
    b"\x01\x00" + msgpack.packb({"port": 3, "heartbeat_interval": 1.0,
                                  "heartbeat_timeout": 5.0, "mtu": 1500}),
    b"\x03\x00" + wire.pack_frames([b"x" * 60, b"", b"y" * 14]),
]


def parts_of(data: bytes) -> list[bytes]:
    """First byte: the kind; second: how the rest becomes parts (raw bytes, a fuzzed map,
    several raw parts, or the kind alone)."""
    r = Reader(data)
    kind = KINDS[r.u8() % len(KINDS)]
    shape = r.u8() % 5
    if shape == 0:
        return [kind, r.rest()]
    if shape == 1:
        return [kind, msgpack.packb(fmap(r, KEYS), use_bin_type=True)]
    if shape == 2:
        return [kind] + [r.sized_bytes(64) for _ in range(r.int_in(0, 3))]
    if shape == 3:
        return [kind]
    return [r.rest()]


def _same(a, b) -> bool:
    if isinstance(a, wire.Frames):
        return isinstance(b, wire.Frames) and [bytes(f) for f in a.frames] == [
            bytes(f) for f in b.frames]
    return a == b or repr(a) == repr(b)  # repr: NaN-free but float -0.0/inf compare by text


def TestOneInput(data: bytes) -> None:
    parts = parts_of(data)
    try:
        msg = wire.decode(parts)
    except WireError:
        return
    again = wire.decode(msg.encode())
    assert _same(msg, again), (msg, again)
