"""The fallback matcher (vnet's pcap-filter subset, for where libpcap is missing) against
libpcap: random frames and random expressions of the subset must get the same verdict."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.capture.corpus import frames
from vnet.proto.bpf import libpcap
from vnet.proto.capture import FilterError, compile_filter

needs_libpcap = pytest.mark.skipif(libpcap() is None, reason="libpcap is the reference (apt-get install libpcap0.8)")

MACS = [bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b"), b"\xff" * 6]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
PORTS = [53, 80, 1000]
TPIDS = [0x8100, 0x88A8, 0x9100]


@st.composite
def frame(draw) -> bytes:
    """An Ethernet frame: 0-2 tags, then IPv4 (maybe fragmented, maybe with options), IPv6
    (maybe with a fragment header), ARP/RARP or another type; maybe cut short anywhere."""
    dst, src = draw(st.sampled_from(MACS)), draw(st.sampled_from(MACS[:2]))
    head = dst + src
    for _ in range(draw(st.integers(0, 2))):
        head += struct.pack("!HH", draw(st.sampled_from(TPIDS)), draw(st.sampled_from([5, 7, 4095])))
    kind = draw(st.sampled_from(["ip", "ip6", "arp", "rarp", "other"]))
    ip = lambda: bytes(int(x) for x in draw(st.sampled_from(IPS)).split("."))  # noqa: E731
    proto = draw(st.sampled_from([1, 6, 17, 132, 58, 44, 47]))
    l4 = struct.pack("!HH", draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS))) + bytes(16)
    if kind == "ip":
        ihl = draw(st.sampled_from([5, 6]))
        frag = draw(st.sampled_from([0, 0x2000, 0x0010, 0x2010]))
        body = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20, 1, frag, 64, proto, 0, ip(), ip())
        body += bytes(4 * (ihl - 5)) + l4
        etype = 0x0800
    elif kind == "ip6":
        nh = draw(st.sampled_from([6, 17, 58, 44, 0]))
        body = struct.pack("!IHBB", 0x60000000, 28, nh, 64) + bytes(32)
        body += (struct.pack("!BBHI", proto, 0, 0, 1) if nh == 44 else b"") + l4
        etype = 0x86DD
    elif kind in ("arp", "rarp"):
        body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src, ip(), bytes(6), ip())
        etype = 0x0806 if kind == "arp" else 0x8035
    else:
        etype = draw(st.sampled_from([0x88B5, 0x0800, 0x86DD, 0x8100, 100]))
        body = bytes(80)
    whole = head + struct.pack("!H", etype) + body
    cut = draw(st.one_of(st.none(), st.integers(0, len(whole))))
    return (whole, True) if cut is None else (whole[:cut], False)


def primitive():
    return st.one_of(
        st.builds(lambda d, h: f"{d}host {h}", st.sampled_from(["", "src ", "dst "]), st.sampled_from(IPS)),
        st.builds(lambda d, p: f"{d}port {p}", st.sampled_from(["", "src ", "dst "]), st.sampled_from(PORTS)),
        st.builds(lambda d, m: f"ether {d}host {m.hex(':')}", st.sampled_from(["", "src ", "dst "]),
                  st.sampled_from(MACS)),
        st.sampled_from(["arp", "ip", "ip6", "icmp", "icmp6", "udp", "tcp", "vlan", "vlan 5", "vlan 7",
                         "ether broadcast", "ether proto 0x88b5", "ether proto 0x8100", "ip proto 17",
                         "ip proto 47"]),
    )


expression = st.recursive(
    primitive(),
    lambda inner: st.one_of(
        st.builds(lambda e: f"not {e}", inner),
        st.builds(lambda e: f"( {e} )", inner),
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["and", "or", "&&", "||"]), inner),
    ),
    max_leaves=6,
)


@needs_libpcap
@settings(max_examples=int(os.environ.get("VNET_FALLBACK_EXAMPLES", "500")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expression, sample=st.lists(frame(), min_size=1, max_size=12))
def test_fallback_agrees_with_libpcap_on_its_subset(expr, sample):
    """Frame by frame. On a frame cut short inside a header the filter reads, BPF rejects the
    frame at the first read past its end, and which read comes first is the optimiser's
    choice (it merges and reorders loads): there the reference is libpcap's program as the
    expression reads, unoptimised (``tcpdump -O``); on whole frames, both must agree."""
    lib = libpcap()
    try:
        optimised = lib.compile(expr)
    except ValueError:
        assume(False)  # "expression rejects all packets" and the like: libpcap refuses it
    unoptimised = lib.compile(expr, optimize=False)
    mine = compile_filter(expr, engine="python")
    for f, whole in sample + [(f, False) for f in frames()]:
        got = mine(f)
        assert got == unoptimised(f), (expr, f.hex())
        if whole:
            assert got == optimised(f), (expr, f.hex())


def test_fallback_refuses_what_it_does_not_know_and_says_libpcap_would():
    for expr in ("net 10.0.0.0/24", "portrange 1-2", "ip[8] = 1", "greater 100", "ether proto 100",
                 "port domain", "host fd00::1"):
        with pytest.raises(FilterError, match="libpcap"):
            compile_filter(expr, engine="python")
    for bad in ("host", "host 10.0.0.300", "port 70000", "icmp and", "( icmp", "vlan 4096"):
        with pytest.raises(FilterError):
            compile_filter(bad, engine="python")


def test_fallback_runs_a_long_filter_without_recursion():
    arp = frames()[0]
    assert compile_filter(" or ".join(["arp"] * 3000), engine="python")(arp)
    assert compile_filter(" and ".join(["arp"] * 3000), engine="python")(arp)
    with pytest.raises(FilterError, match="nested deeper"):
        compile_filter("not " * 3000 + "arp", engine="python")
    with pytest.raises(FilterError, match="nested deeper"):
        compile_filter("( " * 3000 + "arp" + " )" * 3000, engine="python")
