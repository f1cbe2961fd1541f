"""Fuzz target: the capture filter through its public entry point, ``Capture(expr)`` and
``Capture.offer``.

Contract: a filter string compiles or raises FilterError (a sentence, never another
exception); a compiled filter matches any frame bytes without raising, and the capture's
counters add up (seen = offers; matched <= seen; pending + dropped = matched)."""

from __future__ import annotations

import base64

from vnet.proto.capture import Capture, FilterError

from _fdp import Reader

WORDS = ("host", "src", "dst", "port", "ether", "proto", "arp", "ip", "icmp", "udp", "tcp",
         "vlan", "and", "or", "not", "&&", "||", "!", "(", ")", "10.0.0.1", "0.0.0.0",
         "02:00:00:00:00:01", "0x0806", "0x800", "2048", "0", "65535", "65536", "53", "-1",
         "1e3", "0x", "ff-ff-ff-ff-ff-ff", "", "((", "))", "\u0663", "\u00b2", "host(")
MAX_LEN = 2048

SEEDS = [
    bytes([0, 5, 0, 3, 20, 12, 1, 3, 21, 13, 19]),
    bytes([0, 4, 4, 5, 22, 7]) + b"\x02" * 60,
    # Found by the fuzzer: "port \u00b2 ..." raised ValueError instead of FilterError.
    base64.b64decode("pP8r9nYAAABsYW7jAv8CAtyjo6Ojo/Ly8vLy8qOjAgekAgJ9Qv8AAAAAAg=="),
]


def expr_of(r: Reader) -> str:
    n = r.int_in(0, 24)
    words = []
    for _ in range(n):
        if r.u8() % 8:
            words.append(r.pick(WORDS))
        else:
            words.append(r.sized_bytes(12).decode("utf-8", "replace"))
    return " ".join(words) if r.u8() % 4 else "".join(words)


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    expr = expr_of(r)
    try:
        cap = Capture(expr, buffer=4)
    except FilterError as e:
        assert str(e).startswith("capture filter"), e
        return
    frames = 0
    while r.remaining():
        cap.offer(0.0, "in", r.sized_bytes(200))
        frames += 1
    s = cap.stats()
    assert s["seen"] == frames and s["matched"] <= frames
    assert s["pending"] + s["dropped"] == s["matched"]
