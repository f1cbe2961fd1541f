"""IPv4 and ICMP echo between HostStacks; header checks; caller errors."""

from __future__ import annotations

import pytest

from vnet.node.stack import parse_ip as ip  # wire-form addresses
from vnet.node.stack import DestUnreachable, EchoReply, HostStack, StackError, UdpDatagram
from vnet.node.stack.ether import ETH_HDR, ETH_P_IP, ETH_P_IPV6
from vnet.node.stack.icmp import ICMP_ECHO, icmp_message
from vnet.node.stack.ipv4 import IP_DF, IP_MF, inet_checksum, ip_header, parse_ip
from vnet.node.stack.testing import mac_of, make_lan

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def echo_frame(dst_mac: bytes, src_mac: bytes, src: str, dst: str, *, seq: int = 1,
               data: bytes = b"hello", ttl: int = 64, frag_off: int = IP_DF,
               proto: int = 1) -> bytes:
    msg = icmp_message(ICMP_ECHO, 0, 0x1234, seq, data)
    hdr = ip_header(parse_ip(src), parse_ip(dst), proto, len(msg), 1, ttl, 0, frag_off)
    return ETH_HDR.pack(dst_mac, src_mac, ETH_P_IP) + hdr + msg


def delta(stack: HostStack, before: dict) -> dict:
    """Counters changed since ``before`` (a ``counters()`` snapshot)."""
    now = stack.counters()
    return {g: {k: v - before[g][k] for k, v in now[g].items()} for g in now}


def resolved_lan():
    """a and b know each other's MACs (so frames can be injected straight at them)."""
    hub = make_lan(3)
    hub.call("a", "send_echo", B, 1, 0, 8)
    hub.call("b", "send_echo", A, 1, 0, 8)
    for n in "abc":
        hub.events(n)
    return hub


def test_ping_between_stacks():
    hub = make_lan(3)
    for seq in range(1, 4):
        hub.call("a", "send_echo", C, 0xBEEF, seq, 56)
        hub.advance(1.0)
    replies = [e for e in hub.events("a") if isinstance(e, EchoReply)]
    assert [(e.src, e.ident, e.seq, e.ttl, e.size) for e in replies] == [
        (ip(C), 0xBEEF, s, 64, 64) for s in (1, 2, 3)]
    assert replies[0].data == bytes(range(56))
    c = hub.stacks["c"].counters()
    assert c["icmp"]["in_echos"] == 3 and c["icmp"]["out_echo_reps"] == 3
    assert c["ip"]["in_delivers"] == 3 and c["ip"]["out_requests"] == 3
    a = hub.stacks["a"].counters()
    assert a["icmp"]["out_echos"] == 3 and a["icmp"]["in_echo_reps"] == 3


def test_ping_payload_bytes_and_sizes():
    hub = make_lan(2)
    hub.call("a", "send_echo", B, 1, 1, b"xyz")
    hub.call("a", "send_echo", B, 1, 2, 0)
    hub.call("a", "send_echo", B, 1, 3, 1472)  # the largest that fits in 1500
    replies = [e for e in hub.events("a") if isinstance(e, EchoReply)]
    assert [(e.seq, e.size, len(e.data)) for e in replies] == [(1, 11, 3), (2, 8, 0),
                                                               (3, 1480, 1472)]
    assert replies[0].data == b"xyz"


def test_received_ttl_is_reported():
    hub = resolved_lan()
    a = hub.stacks["a"]
    out = a.receive(echo_frame(mac_of(1), mac_of(2), B, A, ttl=3), hub.now)
    assert len(out) == 1
    # The reply we send uses TTL 64 and answers with the same id/seq/data.
    assert out[0][14 + 8] == 64
    hub.stacks["b"].receive(out[0], hub.now)
    [ev] = hub.events("b")
    assert (ev.ident, ev.seq, ev.ttl, ev.data) == (0x1234, 1, 64, b"hello")


def test_ping_self_is_looped_back():
    hub = make_lan(1)
    m = len(hub.trace)
    hub.call("a", "send_echo", A, 9, 1, 16)
    assert len(hub.trace) == m  # nothing on the wire
    [ev] = hub.events("a")
    assert (ev.src, ev.seq, ev.ttl) == (ip(A), 1, 64)


def test_bad_ip_header_checksum_counted_and_dropped():
    hub = resolved_lan()
    a = hub.stacks["a"]
    f = bytearray(echo_frame(mac_of(1), mac_of(2), B, A))
    f[24] ^= 0xFF  # the header checksum
    before = a.counters()
    assert a.receive(bytes(f), hub.now) == []
    d = delta(a, before)
    assert d["ip"]["in_csum_errors"] == 1 and d["ip"]["in_hdr_errors"] == 1  # as Linux
    assert d["icmp"]["in_msgs"] == 0


@pytest.mark.parametrize("mutate, counter", [
    (lambda f: f[:14 + 19], "in_hdr_errors"),                          # shorter than 20
    (lambda f: f[:14] + bytes([0x65]) + f[15:], "in_hdr_errors"),     # version 6
    (lambda f: f[:14] + bytes([0x44]) + f[15:], "in_hdr_errors"),     # IHL 4
    (lambda f: f[:14] + bytes([0x4F]) + f[15:], "in_hdr_errors"),     # IHL beyond packet
    (lambda f: f[:-1], "in_truncated_pkts"),                           # total length lies
])
def test_header_errors_counted(mutate, counter):
    hub = resolved_lan()
    a = hub.stacks["a"]
    before = a.counters()
    assert a.receive(mutate(echo_frame(mac_of(1), mac_of(2), B, A)), hub.now) == []
    ip = delta(a, before)["ip"]
    assert ip[counter] == 1
    assert ip["in_delivers"] == 0


def test_total_length_smaller_than_header():
    hub = resolved_lan()
    a = hub.stacks["a"]
    f = bytearray(echo_frame(mac_of(1), mac_of(2), B, A))
    f[16:18] = (12).to_bytes(2, "big")
    f[24:26] = b"\0\0"
    f[24:26] = inet_checksum(bytes(f[14:34])).to_bytes(2, "big")
    assert a.receive(bytes(f), hub.now) == []
    assert a.counters()["ip"]["in_hdr_errors"] == 1


def test_ethernet_padding_is_trimmed():
    hub = resolved_lan()
    a = hub.stacks["a"]
    f = echo_frame(mac_of(1), mac_of(2), B, A, data=b"")  # 42 bytes
    out = a.receive(f + bytes(60 - len(f)), hub.now)
    assert len(out) == 1 and len(out[0]) == len(f)


def test_fragments_dropped_and_counted():
    hub = resolved_lan()
    a = hub.stacks["a"]
    before = a.counters()
    a.receive(echo_frame(mac_of(1), mac_of(2), B, A, frag_off=IP_MF), hub.now)
    a.receive(echo_frame(mac_of(1), mac_of(2), B, A, frag_off=185), hub.now)
    ip = delta(a, before)["ip"]
    assert ip["reasm_reqds"] == 2 and ip["reasm_fails"] == 2 and ip["in_delivers"] == 0


def test_packets_not_for_us():
    hub = resolved_lan()
    a = hub.stacks["a"]
    # Our MAC, another IP (what a promiscuous NIC or a stale cache delivers).
    assert a.receive(echo_frame(mac_of(1), mac_of(2), B, C), hub.now) == []
    assert a.counters()["ip"]["in_addr_errors"] == 1
    # Another host's MAC: dropped below IP.
    assert a.receive(echo_frame(mac_of(3), mac_of(2), B, A), hub.now) == []
    assert a.counters()["ether"]["rx_otherhost_dropped"] == 1
    # A multicast MAC we did not join (mDNS's; only all-hosts is joined), a multicast
    # source MAC, an IPv6 frame.
    a.receive(echo_frame(bytes.fromhex("01005e0000fb"), mac_of(2), B, A), hub.now)
    a.receive(echo_frame(mac_of(1), bytes.fromhex("01005e000001"), B, A), hub.now)
    a.receive(ETH_HDR.pack(mac_of(1), mac_of(2), ETH_P_IPV6) + bytes(40), hub.now)
    a.receive(b"\x01\x02", hub.now)
    e = a.counters()["ether"]
    assert (e["rx_multicast_dropped"], e["rx_bad_src"], e["rx_unknown_type"], e["rx_runts"]) \
        == (1, 1, 1, 1)
    # Martian sources.
    a.receive(echo_frame(mac_of(1), mac_of(2), "224.0.0.1", A), hub.now)
    a.receive(echo_frame(mac_of(1), mac_of(2), A, A), hub.now)  # our own address
    assert a.counters()["ip"]["in_addr_errors"] == 3


def test_unknown_protocol_gets_protocol_unreachable():
    hub = resolved_lan()
    a = hub.stacks["a"]
    out = a.receive(echo_frame(mac_of(1), mac_of(2), B, A, proto=99), hub.now)
    assert a.counters()["ip"]["in_unknown_protos"] == 1
    hub.send("a", out)
    assert hub.events("b") == [DestUnreachable(ip(A), 2, ip(A), 99, 0, 0)]


def test_broadcast_ping_ignored_and_broadcast_udp_delivered():
    hub = make_lan(3)
    m = len(hub.trace)
    hub.call("a", "send_echo", "10.0.0.255", 1, 1, 8)
    assert [e for e in hub.events("a") if isinstance(e, EchoReply)] == []
    assert hub.stacks["b"].counters()["icmp"]["in_bcast_ignored"] == 1
    hub.stacks["b"].udp_bind(67)
    hub.stacks["c"].udp_bind(67)
    hub.call("a", "send_udp", 68, "255.255.255.255", 67, b"discover")
    hub.call("a", "send_udp", 68, "10.0.0.255", 67, b"again")
    # Sent straight to ff:ff:ff:ff:ff:ff, no ARP.
    sent = [f for t, n, f in hub.trace[m:] if n == "a"]
    assert all(f[:6] == b"\xff" * 6 and f[12:14] == b"\x08\x00" for f in sent)
    for n in "bc":
        assert [(e.dst_ip, e.data) for e in hub.events(n) if isinstance(e, UdpDatagram)] == [
            (ip("255.255.255.255"), b"discover"), (ip("10.0.0.255"), b"again")]
    assert hub.stacks["b"].counters()["ip"]["in_bcast_pkts"] == 3


def test_broadcast_ping_answered_when_not_ignoring():
    hub = make_lan(3, icmp_echo_ignore_broadcasts=False)
    hub.call("a", "send_echo", "10.0.0.255", 1, 1, 8)
    assert sorted(e.src for e in hub.events("a") if isinstance(e, EchoReply)) == [ip(B), ip(C)]


def test_off_link_oversize_and_no_address_raise():
    hub = make_lan(1)
    a = hub.stacks["a"]
    with pytest.raises(StackError) as ei:
        a.send_echo("10.1.2.3", 1, 1, 56, hub.now)
    assert str(ei.value) == ("10.1.2.3 is not on-link and no route leads there (Network is "
                             "unreachable; addresses: 10.0.0.1/24); add a route or a default "
                             "gateway (ip route add)")
    assert a.counters()["ip"]["out_no_routes"] == 1
    with pytest.raises(StackError, match="does not fragment"):
        a.send_echo(B, 1, 1, 1473, hub.now)
    with pytest.raises(StackError, match=r"at most 1472 bytes"):
        a.send_udp(1, B, 2, bytes(1473), hub.now)
    assert a.counters()["ip"]["frag_fails"] == 2
    a.set_mtu(576)
    with pytest.raises(StackError, match="MTU of 576"):
        a.send_echo(B, 1, 1, 549, hub.now)
    a.send_echo(B, 1, 1, 548, hub.now)
    with pytest.raises(StackError, match="MTU"):
        a.set_mtu(10)
    with pytest.raises(StackError, match="bad IPv4 address"):
        a.send_echo("10.0.0.256", 1, 1, 56, hub.now)
    with pytest.raises(StackError, match="bad IPv4 address"):
        a.send_echo("10.1", 1, 1, 56, hub.now)
    with pytest.raises(StackError, match="seq"):
        a.send_echo(B, 1, 70000, 56, hub.now)
    bare = HostStack(mac_of(5))
    bare.link_up(0)
    with pytest.raises(StackError, match="no IPv4 address is configured"):
        bare.send_echo(B, 1, 1, 56, 0)
    with pytest.raises(StackError, match="no IPv4 address is configured"):
        bare.send_udp(1, B, 2, b"", 0)


def test_link_down_drops_sends_and_receives():
    hub = resolved_lan()
    a = hub.stacks["a"]
    hub.call("a", "link_down")
    assert a.send_echo(B, 1, 1, 8, hub.now) == []
    assert a.counters()["ip"]["out_discards"] == 1
    assert a.receive(echo_frame(mac_of(1), mac_of(2), B, A), hub.now) == []
    assert a.counters()["ether"]["rx_link_down"] == 1
    assert a.link_down(hub.now) == []  # idempotent
    hub.call("a", "link_up")
    hub.call("a", "send_echo", B, 1, 2, 8)
    assert [e.seq for e in hub.events("a") if isinstance(e, EchoReply)] == [2]


def test_icmp_bad_checksum_and_short_counted():
    hub = resolved_lan()
    a = hub.stacks["a"]
    f = bytearray(echo_frame(mac_of(1), mac_of(2), B, A))
    f[36] ^= 0x01  # ICMP checksum
    before = a.counters()
    assert a.receive(bytes(f), hub.now) == []
    msg = b"\x08\x00"
    hdr = ip_header(parse_ip(B), parse_ip(A), 1, len(msg), 1)
    a.receive(ETH_HDR.pack(mac_of(1), mac_of(2), ETH_P_IP) + hdr + msg, hub.now)
    icmp = delta(a, before)["icmp"]
    assert icmp["in_csum_errors"] == 1 and icmp["in_errors"] == 2 and icmp["out_msgs"] == 0


def test_frames_are_counted():
    hub = make_lan(2)
    a = hub.stacks["a"]
    before = a.counters()["ether"]
    out = hub.call("a", "send_echo", B, 1, 1, 8)
    after = a.counters()["ether"]
    assert after["tx_frames"] - before["tx_frames"] >= len(out)
    assert after["rx_frames"] > before["rx_frames"]


def test_icmp_errors_quoting_and_rules():
    from vnet.node.stack.icmp import ICMP_DEST_UNREACH

    hub = resolved_lan()
    a = hub.stacks["a"]

    def unreach(quoted: bytes) -> bytes:
        msg = icmp_message(ICMP_DEST_UNREACH, 1, 0, 0, quoted)
        hdr = ip_header(parse_ip(B), parse_ip(A), 1, len(msg), 1)
        return ETH_HDR.pack(mac_of(1), mac_of(2), ETH_P_IP) + hdr + msg

    # A quoted echo request reports its ident/seq.
    echo = icmp_message(ICMP_ECHO, 0, 0x55, 9, b"")
    a.receive(unreach(ip_header(parse_ip(A), parse_ip(C), 1, len(echo), 1) + echo), hub.now)
    assert a.next_events() == [DestUnreachable(ip(B), 1, ip(C), 1, 0x55, 9)]
    before = a.counters()
    a.receive(unreach(b"\x45\0\0"), hub.now)  # quoted header cut short
    a.receive(unreach(b"\x65" + bytes(27)), hub.now)  # not IPv4
    assert delta(a, before)["icmp"]["in_errors"] == 2
    assert a.next_events() == []
    # No error about a packet from a non-unicast source, nor for a broadcast.
    before = a.counters()
    f = echo_frame(mac_of(1), mac_of(2), "0.0.0.0", A, proto=17)
    assert a.receive(f, hub.now) == []
    f = echo_frame(b"\xff" * 6, mac_of(2), B, "10.0.0.255", proto=99)
    assert a.receive(f, hub.now) == []
    assert delta(a, before)["icmp"]["out_msgs"] == 0


def test_no_reply_to_off_link_source():
    hub = resolved_lan()
    a = hub.stacks["a"]
    before = a.counters()
    assert a.receive(echo_frame(mac_of(1), mac_of(2), "192.168.7.7", A), hub.now) == []
    assert delta(a, before)["ip"]["out_no_routes"] == 1


def test_echo_replies_dropped_when_events_not_drained():
    hub = make_lan(2, event_queue_len=3)
    for seq in range(6):
        hub.call("a", "send_echo", B, 1, seq, 8)
    assert len(hub.events("a")) == 3
    assert hub.stacks["a"].counters()["icmp"]["rcvbuf_errors"] == 4  # NeighResolved + 2 fit
