"""UDP between HostStacks: ports, checksums, ICMP port unreachable."""

from __future__ import annotations

import random

import pytest

from vnet.node.stack import parse_ip as ip  # wire-form addresses
from vnet.node.stack import DestUnreachable, HostStack, NeighResolved, StackError, UdpDatagram
from vnet.node.stack.ether import ETH_HDR, ETH_P_IP
from vnet.node.stack.ipv4 import ip_header, parse_ip
from vnet.node.stack.udp import UDP_HDR, udp_checksum, udp_segment
from vnet.node.stack.testing import mac_of, make_lan

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def udp_frame(segment: bytes, src: str = B, dst: str = A, dst_mac: bytes = mac_of(1)):
    hdr = ip_header(parse_ip(src), parse_ip(dst), 17, len(segment), 1)
    return ETH_HDR.pack(dst_mac, mac_of(2), ETH_P_IP) + hdr + segment


def delta(stack: HostStack, before: dict) -> dict:
    now = stack.counters()
    return {g: {k: v - before[g][k] for k, v in now[g].items()} for g in now}


def test_udp_exchange():
    hub = make_lan(3)
    assert hub.stacks["b"].udp_bind(5000) == 5000
    assert hub.stacks["a"].udp_bind(4000) == 4000
    hub.call("a", "send_udp", 4000, B, 5000, b"ping")
    [ev] = [e for e in hub.events("b") if isinstance(e, UdpDatagram)]
    assert ev == UdpDatagram(ip(A), 4000, ip(B), 5000, b"ping")
    hub.call("b", "send_udp", ev.dst_port, ev.src_ip, ev.src_port, b"pong" * 300)
    [back] = [e for e in hub.events("a") if isinstance(e, UdpDatagram)]
    assert back == UdpDatagram(ip(B), 5000, ip(A), 4000, b"pong" * 300)
    assert hub.stacks["a"].counters()["udp"]["out_datagrams"] == 1
    assert hub.stacks["a"].counters()["udp"]["in_datagrams"] == 1
    # Empty and maximum-size payloads.
    hub.call("a", "send_udp", 4000, B, 5000, b"")
    hub.call("a", "send_udp", 4000, B, 5000, bytes(1472))
    assert [len(e.data) for e in hub.events("b")] == [0, 1472]


def test_bind_errors_and_ephemeral_ports():
    s = HostStack(mac_of(1))
    s.udp_bind(53)
    with pytest.raises(StackError, match="already bound.*EADDRINUSE"):
        s.udp_bind(53)
    with pytest.raises(StackError, match="0..65535"):
        s.udp_bind(70000)
    with pytest.raises(StackError, match="not bound"):
        s.udp_unbind(54)
    s.udp_unbind(53)
    s.udp_bind(53)
    p1, p2 = s.udp_bind(0), s.udp_bind(0)
    assert 32768 <= p1 < 61000 and p2 == p1 + 1
    r = HostStack(mac_of(2), rng=random.Random(3))
    assert 32768 <= r.udp_bind(0) < 61000
    with pytest.raises(StackError, match="source port"):
        s.send_udp(0, B, 5, b"", 0)
    with pytest.raises(StackError, match="destination port"):
        s.send_udp(5, B, 0, b"", 0)
    with pytest.raises(StackError, match="bytes"):
        s.send_udp(5, B, 5, "text", 0)


def test_checksum_is_valid_and_verified():
    seg = udp_segment(parse_ip(A), parse_ip(B), 1, 2, b"abc")
    assert udp_checksum(parse_ip(A), parse_ip(B), seg) == 0
    assert UDP_HDR.unpack_from(seg)[3] != 0


def test_bad_udp_checksum_counted_and_dropped():
    hub = make_lan(2)
    a = hub.stacks["a"]
    a.udp_bind(7)
    seg = bytearray(udp_segment(parse_ip(B), parse_ip(A), 9, 7, b"data"))
    seg[-1] ^= 0x40
    before = a.counters()
    assert a.receive(udp_frame(bytes(seg)), hub.now) == []
    d = delta(a, before)["udp"]
    assert d["in_csum_errors"] == 1 and d["in_errors"] == 1 and d["in_datagrams"] == 0
    assert a.next_events() == []


def test_zero_checksum_means_none():
    hub = make_lan(2)
    a = hub.stacks["a"]
    a.udp_bind(7)
    seg = UDP_HDR.pack(9, 7, 12, 0) + b"data"
    a.receive(udp_frame(seg), hub.now)
    assert a.next_events() == [UdpDatagram(ip(B), 9, ip(A), 7, b"data")]


def test_udp_length_field_checked():
    hub = make_lan(2)
    a = hub.stacks["a"]
    a.udp_bind(7)
    before = a.counters()
    a.receive(udp_frame(UDP_HDR.pack(9, 7, 40, 0) + b"data"), hub.now)  # longer than sent
    a.receive(udp_frame(UDP_HDR.pack(9, 7, 4, 0) + b"data"), hub.now)  # shorter than header
    a.receive(udp_frame(b"\0\x09\0"), hub.now)  # not even a header
    assert delta(a, before)["udp"]["in_errors"] == 3
    # Shorter than the IP payload: the extra bytes are not part of the datagram.
    seg = udp_segment(parse_ip(B), parse_ip(A), 9, 7, b"data")
    a.receive(udp_frame(seg + b"trailer"), hub.now)
    assert a.next_events() == [UdpDatagram(ip(B), 9, ip(A), 7, b"data")]


def test_closed_port_gets_icmp_port_unreachable():
    hub = make_lan(2)
    a, b = hub.stacks["a"], hub.stacks["b"]
    hub.call("a", "send_udp", 4000, B, 9999, b"anyone?")
    assert b.counters()["udp"]["no_ports"] == 1
    assert b.counters()["icmp"]["out_dest_unreachs"] == 1
    assert [e for e in hub.events("a") if not isinstance(e, NeighResolved)] == [
        DestUnreachable(ip(B), 3, ip(B), 17, 4000, 9999)]
    assert a.counters()["icmp"]["in_dest_unreachs"] == 1
    assert hub.events("b") != []  # b learned a (NeighResolved) to answer


def test_port_unreachable_rate_limited_per_host():
    hub = make_lan(2)
    b = hub.stacks["b"]
    for i in range(10):
        hub.call("a", "send_udp", 4000, B, 9999, b"x")
    assert b.counters()["udp"]["no_ports"] == 10
    assert b.counters()["icmp"]["out_dest_unreachs"] == 6  # the burst
    assert b.counters()["icmp"]["out_rate_limit_host"] == 4
    hub.advance(1.0)
    hub.call("a", "send_udp", 4000, B, 9999, b"x")
    hub.call("a", "send_udp", 4000, B, 9999, b"x")
    assert b.counters()["icmp"]["out_dest_unreachs"] == 7  # one token per second
    unlimited = make_lan(2, icmp_ratelimit=0)
    for i in range(10):
        unlimited.call("a", "send_udp", 4000, B, 9999, b"x")
    assert unlimited.stacks["b"].counters()["icmp"]["out_dest_unreachs"] == 10


def test_broadcast_to_closed_port_is_ignored_quietly():
    hub = make_lan(2)
    b = hub.stacks["b"]
    hub.call("a", "send_udp", 4000, "10.0.0.255", 9999, b"x")
    assert b.counters()["udp"]["ignored_multi"] == 1
    assert b.counters()["udp"]["no_ports"] == 0
    assert b.counters()["icmp"]["out_msgs"] == 0


def test_event_queue_is_bounded_for_traffic():
    hub = make_lan(2, event_queue_len=2)
    b = hub.stacks["b"]
    b.udp_bind(7)
    for i in range(4):
        hub.call("a", "send_udp", 4000, B, 7, bytes([i]))
    evs = hub.events("b")
    assert len(evs) == 2  # NeighResolved(a) + one datagram; the rest dropped
    assert b.counters()["udp"]["rcvbuf_errors"] == 3
