"""Whatever comes off the wire, receive() never raises: random and mutated frames."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings, strategies as st

from vnet.node.stack import HostStack, StackError
from vnet.node.stack.arp import ARPOP_REPLY, ARPOP_REQUEST, Nud, arp_frame
from vnet.node.stack.ether import BROADCAST_MAC, ETH_HDR, ETH_P_IP, ZERO_MAC
from vnet.node.stack.icmp import ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_ECHOREPLY, icmp_message
from vnet.node.stack.ipv4 import inet_checksum, ip_header, parse_ip
from vnet.node.stack.udp import udp_segment
from vnet.node.stack.testing import mac_of, make_lan

A, B = parse_ip("10.0.0.1"), parse_ip("10.0.0.2")
MA, MB = mac_of(1), mac_of(2)


def ip_frame(proto: int, payload: bytes, *, src=B, dst=A, dst_mac=MA, options=b"") -> bytes:
    hdr = ip_header(src, dst, proto, len(payload) + len(options), 7)
    if options:
        hdr = bytes([0x45 + len(options) // 4]) + hdr[1:10] + b"\0\0" + hdr[12:] + options
        hdr = hdr[:10] + inet_checksum(hdr).to_bytes(2, "big") + hdr[12:]
    return ETH_HDR.pack(dst_mac, MB, ETH_P_IP) + hdr + payload


def corpus() -> list[bytes]:
    echo = icmp_message(ICMP_ECHO, 0, 1, 2, b"payload!")
    quoted = ip_header(A, B, 17, 12, 3) + udp_segment(A, B, 4000, 9, b"abcd")
    return [
        arp_frame(BROADCAST_MAC, MB, ARPOP_REQUEST, MB, B, ZERO_MAC, A),
        arp_frame(MA, MB, ARPOP_REPLY, MB, B, MA, A),
        arp_frame(BROADCAST_MAC, MB, ARPOP_REQUEST, MB, parse_ip("0.0.0.0"), ZERO_MAC, A),
        arp_frame(BROADCAST_MAC, MB, ARPOP_REQUEST, MB, B, ZERO_MAC, B),
        arp_frame(BROADCAST_MAC, MB, ARPOP_REQUEST, MB, A, ZERO_MAC, A),
        ip_frame(1, echo),
        ip_frame(1, echo, options=b"\x01\x01\x01\x00"),
        ip_frame(1, echo, dst=parse_ip("10.0.0.255"), dst_mac=BROADCAST_MAC),
        ip_frame(1, icmp_message(ICMP_ECHOREPLY, 0, 1, 2, b"reply")),
        ip_frame(1, icmp_message(ICMP_DEST_UNREACH, 3, 0, 0, quoted)),
        ip_frame(17, udp_segment(B, A, 1000, 7, b"to a bound port")),
        ip_frame(17, udp_segment(B, A, 1000, 9999, b"to a closed port")),
        ip_frame(99, b"unknown protocol"),
    ]


CORPUS = corpus()


def fixup(frame: bytes) -> bytes:
    """Recompute the IP header and ICMP/UDP checksums of a mutated frame where the lengths
    still make sense, so that mutations also reach the layers above the checksums."""
    f = bytearray(frame)
    if len(f) < 34 or f[12:14] != b"\x08\x00":
        return frame
    ihl = (f[14] & 15) * 4
    if ihl < 20 or len(f) < 14 + ihl:
        return frame
    f[24:26] = b"\0\0"
    f[24:26] = inet_checksum(bytes(f[14:14 + ihl])).to_bytes(2, "big")
    tot = struct.unpack_from("!H", f, 16)[0]
    body = 14 + ihl
    end = min(len(f), 14 + tot)
    if f[23] == 1 and end - body >= 8:
        f[body + 2:body + 4] = b"\0\0"
        f[body + 2:body + 4] = inet_checksum(bytes(f[body:end])).to_bytes(2, "big")
    elif f[23] == 17 and end - body >= 8:
        f[body + 6:body + 8] = b"\0\0"
        pseudo = bytes(f[26:34]) + b"\0\x11" + (end - body).to_bytes(2, "big")
        f[body + 6:body + 8] = (inet_checksum(pseudo + bytes(f[body:end])) or 0xFFFF
                                ).to_bytes(2, "big")
    return bytes(f)


def fresh() -> HostStack:
    hub = make_lan(2)
    a = hub.stacks["a"]
    a.udp_bind(7)
    a.send_echo("10.0.0.2", 1, 1, 8, hub.now)  # an INCOMPLETE entry with a queue
    return a


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1600), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 1600), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 1600), st.just(0)),
    st.tuples(st.just("grow"), st.integers(0, 64), st.integers(0, 255)),
    st.tuples(st.just("len16"), st.sampled_from([16, 38, 42]), st.integers(0, 0xFFFF)),
)


def mutate(frame: bytes, ops) -> bytes:
    f = bytearray(frame)
    for op, i, v in ops:
        if op == "flip" and f:
            f[i % len(f)] ^= v
        elif op == "set" and f:
            f[i % len(f)] = v
        elif op == "cut":
            del f[i % (len(f) + 1):]
        elif op == "grow":
            f += bytes([v]) * i
        elif op == "len16" and len(f) >= i + 2:  # IP total length, UDP/ICMP fields
            f[i:i + 2] = v.to_bytes(2, "big")
    return bytes(f)


SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=1600), st.sampled_from([MA, BROADCAST_MAC, None]))
def test_random_bytes_never_raise(data, dst):
    a = fresh()
    frame = data if dst is None else dst + data
    out = a.receive(frame, 10.0)
    assert isinstance(out, list) and all(isinstance(f, bytes) for f in out)
    a.receive(memoryview(bytearray(frame)), 10.0)


@SETTINGS
@given(st.sampled_from(CORPUS), st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_mutated_frames_never_raise(frame, ops, fix):
    a = fresh()
    bad = mutate(frame, ops)
    if fix:
        bad = fixup(bad)
    for f in a.receive(bad, 10.0):
        assert len(f) >= 14
    a.tick(20.0)
    # The stack still works afterwards.
    a.next_events()
    a.send_echo("10.0.0.2", 1, 2, 8, 21.0)


def test_corpus_is_accepted_unmutated():
    a = fresh()
    before = a.counters()
    for f in CORPUS:
        a.receive(fixup(f), 10.0)
    c = a.counters()
    assert c["ip"]["in_hdr_errors"] == before["ip"]["in_hdr_errors"]
    assert c["icmp"]["in_errors"] == before["icmp"]["in_errors"]
    assert c["udp"]["in_errors"] == before["udp"]["in_errors"]
    assert c["udp"]["in_datagrams"] == 1 and c["udp"]["no_ports"] == 1


ops = st.lists(st.one_of(
    st.tuples(st.just("rx"), st.sampled_from(CORPUS), st.lists(mutation, max_size=2)),
    st.tuples(st.just("echo"), st.integers(1, 12), st.integers(0, 1500)),
    st.tuples(st.just("udp"), st.integers(1, 12), st.integers(0, 1500)),
    st.tuples(st.just("wait"), st.floats(0, 40), st.just(0)),
    st.tuples(st.just("flush"), st.just(0), st.just(0)),
    st.tuples(st.just("link"), st.booleans(), st.just(0)),
), max_size=40)


@SETTINGS
@given(ops)
def test_random_sequences_keep_invariants(seq):
    a = fresh()
    now = 10.0
    for op, x, y in seq:
        if op == "rx":
            a.receive(fixup(mutate(x, y)), now)
        elif op == "echo":
            try:
                a.send_echo(f"10.0.0.{x}", 1, 1, y, now)
            except StackError:
                pass
        elif op == "udp":
            try:
                a.send_udp(5, f"10.0.0.{x}", 6, bytes(y), now)
            except StackError:
                pass
        elif op == "wait":
            end = now + x
            while (d := a.next_deadline()) is not None and d <= end:
                now = max(now, d)
                a.tick(now)
            now = end
        elif op == "flush":
            a.neigh_flush()
        elif op == "link":
            (a.link_up if x else a.link_down)(now)
        for n in a.arp.neigh.entries.values():
            assert n.state in Nud and n.state != Nud.NONE
            assert len(n.queue) <= a.arp.p.unres_qlen
            assert (n.mac is None) == (n.state in (Nud.INCOMPLETE, Nud.FAILED))
            if n.state in (Nud.INCOMPLETE, Nud.REACHABLE, Nud.DELAY, Nud.PROBE):
                assert n.deadline is not None
        d = a.next_deadline()
        assert d is None or d >= now - 40  # nothing overdue is forgotten
