"""Shared input builders for the fuzz targets: a byte-driven reader that works with or
without atheris (the CI smoke test runs the targets without it), and fuzzed msgpack values."""

from __future__ import annotations

import struct


class Reader:
    """A FuzzedDataProvider subset over ``data``: consumes from the front, returns zeros
    (and empty bytes) once the input is used up, so every input is a valid program."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return self.u8() << 8 | self.u8()

    def int_in(self, lo: int, hi: int) -> int:
        span = hi - lo + 1
        v = self.u16() if span > 256 else self.u8()
        return lo + v % span

    def pick(self, seq):
        return seq[self.int_in(0, len(seq) - 1)]

    def bytes(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def sized_bytes(self, max_len: int) -> bytes:
        return self.bytes(self.int_in(0, max_len))

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


def value(r: Reader, keys: tuple[str, ...] = (), depth: int = 0):
    """A msgpack-able value of any kind the decoders may meet, biased to edge cases."""
    kind = r.u8() % (12 if depth < 3 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return bool(r.u8() & 1)
    if kind == 2:
        return r.pick((0, 1, -1, 2, 255, 256, 1500, 65535, 65536, 2**31, 2**63 - 1, -2**63,
                       2**64 - 1, 68, 67, 1))
    if kind == 3:
        return int.from_bytes(r.bytes(8), "big", signed=True)
    if kind == 4:
        return r.pick((0.0, -0.0, 0.5, 1.0, 1e6, 1e-300, float("inf"), float("-inf"),
                       float("nan"), 1e300))
    if kind == 5:
        raw = r.bytes(8)
        return struct.unpack("!d", raw.ljust(8, b"\0"))[0]
    if kind == 6:
        return r.sized_bytes(300).decode("utf-8", "replace")
    if kind == 7:
        return r.pick(keys) if keys else ""
    if kind == 8:
        return r.sized_bytes(16)
    if kind == 9:
        return [value(r, keys, depth + 1) for _ in range(r.int_in(0, 5))]
    if kind == 10:
        return fmap(r, keys, depth + 1)
    return {r.pick((1, -1, b"k", 1.5, None, True, 2**64 - 1)): value(r, keys, depth + 1)}


def fmap(r: Reader, keys: tuple[str, ...], depth: int = 0) -> dict:
    """A map whose keys are mostly the decoder's field names."""
    out = {}
    for _ in range(r.int_in(0, 7)):
        k = r.pick(keys) if keys and r.u8() % 4 else r.sized_bytes(8).decode("latin-1")
        out[k] = value(r, keys, depth)
    return out
