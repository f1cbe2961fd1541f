"""Routing in the host stack, sans-I/O: the FIB (longest-prefix match, connected routes
following the addresses), forwarding between devices (TTL, checksum: scapy is the oracle),
the ICMP errors a router sends, and forwarding off. Time is the Net's manual clock."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.layers.l2 import Ether

from vnet.node.stack import (
    DestUnreachable, EchoReply, HostStack, StackError, TimeExceeded, UdpDatagram,
)
from vnet.node.stack import parse_ip as ip
from vnet.node.stack.ether import ETH_HDR, ETH_P_IP
from vnet.node.stack.icmp import icmp_message
from vnet.node.stack.ipv4 import ip_header
from vnet.node.stack.route import Fib, Route, parse_prefix
from vnet.node.stack.testing import Net, mac_of

A, R1, R2, B = "10.0.1.2", "10.0.1.1", "10.0.2.1", "10.0.2.2"


def routed(**router_kw) -> Net:
    """a (10.0.1.2) -- seg1 -- r: vnet0 10.0.1.1, vnet1 10.0.2.1 -- seg2 -- b (10.0.2.2);
    a and b route through r by default; r forwards. DAD done, events drained."""
    net = Net()
    a = net.plug("seg1", "a", HostStack(mac_of(1)))
    r = net.plug("seg1", "r", HostStack(mac_of(2), **router_kw))
    r.add_device("vnet1", mac_of(3))
    net.plug("seg2", "r", r, "vnet1")
    b = net.plug("seg2", "b", HostStack(mac_of(4)))
    for name, dev in (("a", None), ("r", None), ("r", "vnet1"), ("b", None)):
        net.call(name, "link_up", dev=dev)
    net.call("a", "add_address", A + "/24")
    net.call("r", "add_address", R1 + "/24")
    net.call("r", "add_address", R2 + "/24", dev="vnet1")
    net.call("b", "add_address", B + "/24")
    a.route_add("default", via=R1)
    b.route_add("default", via=R2)
    r.forwarding = True
    net.run(3.0)
    for name in "arb":
        net.events(name)
    return net


def ip_frames(net: Net, segment: str, since: float = 0.0) -> list[Ether]:
    return [Ether(f) for f in net.frames_on(segment, since) if f[12:14] == b"\x08\x00"]


def checksum_ok(pkt: Ether) -> bool:
    again = IP(bytes(pkt[IP]))
    del again.chksum
    return IP(bytes(again)).chksum == pkt[IP].chksum


# -- the table ----------------------------------------------------------------------------


def test_longest_prefix_then_metric_then_dead_routes_skipped():
    fib = Fib()
    fib.live = {"vnet0", "vnet1"}
    for dst, gw, dev, metric in (("default", "10.0.0.1", "vnet0", 0),
                                 ("10.0.0.0/8", "10.0.0.2", "vnet0", 0),
                                 ("10.1.0.0/16", "10.0.0.3", "vnet0", 10),
                                 ("10.1.0.0/16", "10.0.0.4", "vnet1", 5),
                                 ("10.1.2.0/24", "10.0.0.5", "vnet0", 0),
                                 ("10.1.2.3/32", None, "vnet1", 0)):
        net, plen = parse_prefix(dst)
        fib.add(Route(net, plen, dev, ip(gw) if gw else None, metric=metric))

    def via(dst):
        r = fib.lookup(ip(dst))
        return (r.gw and ".".join(map(str, r.gw)), r.dev)

    assert via("192.168.1.1") == ("10.0.0.1", "vnet0")
    assert via("10.200.0.1") == ("10.0.0.2", "vnet0")
    assert via("10.1.9.9") == ("10.0.0.4", "vnet1")  # the lower metric of two /16s
    assert via("10.1.2.4") == ("10.0.0.5", "vnet0")
    assert via("10.1.2.3") == (None, "vnet1")
    fib.live = {"vnet0"}  # vnet1 lost its addresses: its gateway route is dead
    assert via("10.1.9.9") == ("10.0.0.3", "vnet0")
    assert via("10.1.2.3") == (None, "vnet1")  # a device route has no gateway to lose
    with pytest.raises(StackError, match="File exists"):
        fib.add(Route(*parse_prefix("10.0.0.0/8"), "vnet0", ip("10.0.0.9")))
    with pytest.raises(StackError, match="host bits"):
        parse_prefix("10.1.2.3/24")
    fib.delete(*parse_prefix("default"))
    assert fib.lookup(ip("192.168.1.1")) is None
    with pytest.raises(StackError, match="No such process"):
        fib.delete(*parse_prefix("default"))


def test_connected_routes_follow_usable_addresses():
    net = Net()
    s = net.plug("seg", "s", HostStack(mac_of(1)))
    s.add_device("vnet1", mac_of(2))
    net.plug("seg2", "s", s, "vnet1")
    net.call("s", "link_up")
    net.call("s", "add_address", "10.0.1.1/24")
    assert s.route_show() == []  # tentative: no route until DAD passes
    net.run(2.0)
    assert s.route_show() == [{"dst": "10.0.1.0/24", "via": None, "dev": "vnet0",
                               "proto": "kernel", "scope": "link", "metric": 0,
                               "src": "10.0.1.1"}]
    net.call("s", "add_address", "10.0.9.1/24", dev="vnet1")  # vnet1 is down: DAD waits
    net.run(4.0)
    assert [r["dst"] for r in s.route_show()] == ["10.0.1.0/24"]
    net.call("s", "link_up", dev="vnet1")
    net.run(6.0)
    assert [(r["dst"], r["dev"]) for r in s.route_show()] == [("10.0.1.0/24", "vnet0"),
                                                              ("10.0.9.0/24", "vnet1")]
    s.route_add("default", via="10.0.9.254")
    assert s.route_get("8.8.8.8")["dev"] == "vnet1"
    assert s.route_get("8.8.8.8")["src"] == "10.0.9.1"
    s.del_address("10.0.9.1/24", dev="vnet1")
    assert [r["dst"] for r in s.route_show()] == ["default", "10.0.1.0/24"]
    with pytest.raises(StackError, match="no route leads there"):
        s.send_udp(1000, "8.8.8.8", 53, b"x", net.now)  # the default route is dead
    with pytest.raises(StackError, match="not on-link"):
        s.route_add("10.5.0.0/16", via="10.7.0.1")
    with pytest.raises(StackError, match="own addresses"):
        s.route_add("10.5.0.0/16", via="10.0.1.1")
    with pytest.raises(StackError, match="no device"):
        s.route_add("10.5.0.0/16", dev="vnet7")
    s.del_device("vnet1")
    assert [r["dst"] for r in s.route_show()] == ["10.0.1.0/24"]


# -- forwarding ---------------------------------------------------------------------------


def test_ping_through_router_ttl_decremented_checksum_right():
    net = routed()
    mark = net.now
    net.call("a", "send_echo", B, 7, 1, 56)
    fwd = [p for p in ip_frames(net, "seg2", mark) if p[IP].dst == B]
    assert len(fwd) == 1
    p = fwd[0]
    assert p.src == "02:00:00:00:00:03" and p.dst == "02:00:00:00:00:04"  # r vnet1 -> b
    assert p[IP].ttl == 63 and p[IP].src == A and checksum_ok(p)
    assert p[ICMP].type == 8 and p[ICMP].id == 7
    [reply] = [e for e in net.events("a") if isinstance(e, EchoReply)]
    assert reply.src == ip(B) and reply.ttl == 63
    c = net.stacks["r"].counters()["ip"]
    assert c["forw_datagrams"] == 2 and c["in_delivers"] == 0


def test_ttl_checksum_carry_case_matches_a_full_recompute():
    net = routed()
    net.call("a", "send_echo", B, 1, 1, 8)  # r learns b's MAC
    r = net.stacks["r"]
    for ttl in range(2, 256, 17):  # many checksums, some near the 0xFFFF wrap
        for ident in (0, 0xFEFF, 0xFFFF):
            frame = (ETH_HDR.pack(mac_of(2), mac_of(1), ETH_P_IP)
                     + ip_header(ip(A), ip(B), 17, 8, ident, ttl) + bytes(8))
            [out] = r.receive(frame, net.now)
            p = Ether(out)
            assert p[IP].ttl == ttl - 1 and checksum_ok(p), (ttl, ident)


def test_ttl_1_gets_time_exceeded_from_the_input_address():
    net = routed()
    mark = net.now
    net.call("a", "send_udp", 40000, B, 33434, b"probe", ttl=1)
    [err] = [p for p in ip_frames(net, "seg1", mark) if ICMP in p]
    assert err[IP].src == R1 and err[IP].dst == A
    assert (err[ICMP].type, err[ICMP].code) == (11, 0)
    quoted = err[IPerror]
    assert quoted.dst == B and quoted.ttl == 1 and err[UDPerror].dport == 33434
    [ev] = [e for e in net.events("a") if isinstance(e, TimeExceeded)]
    assert ev == TimeExceeded(ip(R1), 0, ip(B), 17, 40000, 33434)
    assert not [p for p in ip_frames(net, "seg2", mark)]  # not forwarded
    r = net.stacks["r"].counters()
    assert r["ip"]["in_hdr_errors"] == 1 and r["icmp"]["out_time_excds"] == 1


def test_traceroute_pattern_router_then_port_unreachable():
    net = routed()
    net.call("a", "send_udp", 40000, B, 33434, b"", ttl=1)
    net.call("a", "send_udp", 40000, B, 33435, b"", ttl=2)
    evs = [e for e in net.events("a") if isinstance(e, (TimeExceeded, DestUnreachable))]
    assert [(type(e).__name__, e.src, e.code, e.orig_dport) for e in evs] == [
        ("TimeExceeded", ip(R1), 0, 33434), ("DestUnreachable", ip(B), 3, 33435)]


def test_no_route_is_net_unreachable():
    net = routed()
    net.call("a", "send_echo", "192.168.9.9", 1, 1, 8)
    [ev] = [e for e in net.events("a") if isinstance(e, DestUnreachable)]
    assert (ev.src, ev.code, ev.orig_dst) == (ip(R1), 0, ip("192.168.9.9"))
    assert net.stacks["r"].counters()["ip"]["in_no_routes"] == 1


def test_arp_failure_for_next_hop_is_host_unreachable():
    net = routed()
    net.call("a", "send_udp", 40000, "10.0.2.77", 9, b"x")
    assert not [e for e in net.events("a") if isinstance(e, DestUnreachable)]
    net.advance(5.0)  # r's ARP retries for 10.0.2.77 run out
    [ev] = [e for e in net.events("a") if isinstance(e, DestUnreachable)]
    assert (ev.src, ev.code, ev.orig_dst, ev.orig_dport) == (ip(R1), 1, ip("10.0.2.77"), 9)


def test_df_and_too_big_is_frag_needed_with_next_hop_mtu():
    net = routed()
    net.stacks["r"].set_mtu(600, dev="vnet1")
    mark = net.now
    net.call("a", "send_echo", B, 1, 1, 1000)
    [err] = [p for p in ip_frames(net, "seg1", mark) if ICMP in p and p[ICMP].type == 3]
    assert err[ICMP].code == 4 and err[ICMP].nexthopmtu == 600
    [ev] = [e for e in net.events("a") if isinstance(e, DestUnreachable)]
    assert ev.code == 4
    assert net.stacks["r"].counters()["ip"]["frag_fails"] == 1


def test_no_icmp_error_about_an_icmp_error_nor_a_broadcast():
    net = routed()
    r = net.stacks["r"]
    inner = ip_header(ip(B), ip(A), 17, 8, 1, 64) + bytes(8)
    err = icmp_message(3, 3, 0, 0, inner)
    frame = (ETH_HDR.pack(mac_of(2), mac_of(1), ETH_P_IP)
             + ip_header(ip(A), ip(B), 1, len(err), 9, 1) + err)
    assert r.receive(frame, net.now) == []  # TTL 1, but it is an ICMP error: silence
    assert r.counters()["icmp"]["out_time_excds"] == 0
    assert r.counters()["ip"]["in_hdr_errors"] == 1
    bcast = (ETH_HDR.pack(mac_of(2), mac_of(1), ETH_P_IP)
             + ip_header(ip(A), ip("10.0.2.255"), 17, 8, 9, 5) + bytes(8))
    assert r.receive(bcast, net.now) == []  # a directed broadcast is not forwarded
    assert r.counters()["ip"]["forw_datagrams"] == 0


def test_icmp_errors_are_rate_limited():
    net = routed()
    for i in range(10):
        net.call("a", "send_udp", 40000, B, 33434 + i, b"", ttl=1)
    assert len([e for e in net.events("a") if isinstance(e, TimeExceeded)]) == 6
    assert net.stacks["r"].counters()["icmp"]["out_rate_limit_host"] == 4
    net.advance(1.0)
    net.call("a", "send_udp", 40000, B, 33434, b"", ttl=1)
    assert len([e for e in net.events("a") if isinstance(e, TimeExceeded)]) == 1


def test_forwarding_off_drops_and_counts():
    net = routed()
    r = net.stacks["r"]
    r.forwarding = False
    mark = net.now
    net.call("a", "send_udp", 40000, B, 9, b"x")
    assert not ip_frames(net, "seg2", mark)
    assert not [p for p in ip_frames(net, "seg1", mark) if ICMP in p]
    assert r.counters()["ip"]["in_addr_errors"] == 1
    assert r.counters()["ip"]["forw_datagrams"] == 0


def test_udp_through_the_router_and_source_by_route():
    net = routed()
    net.stacks["b"].udp_bind(9)
    net.call("a", "send_udp", 40000, B, 9, b"hello")
    [d] = [e for e in net.events("b") if isinstance(e, UdpDatagram)]
    assert d.src_ip == ip(A) and d.data == b"hello"
    # the router's own traffic picks the device and source by route
    r = net.stacks["r"]
    assert r.route_get(B)["src"] == R2 and r.route_get(A)["src"] == R1


def test_two_routers_static_route_chain():
    """a -- r (10.0.1.1 | 10.0.2.1) -- q (10.0.2.3 | 10.0.3.1) -- c: a static route on each
    router; a's TTL-limited probes see r, then q, then c's port unreachable."""
    net = routed()
    r = net.stacks["r"]
    q = net.plug("seg2", "q", HostStack(mac_of(5)))
    q.add_device("vnet1", mac_of(6))
    net.plug("seg3", "q", q, "vnet1")
    c = net.plug("seg3", "c", HostStack(mac_of(7)))
    for name, dev in (("q", None), ("q", "vnet1"), ("c", None)):
        net.call(name, "link_up", dev=dev)
    net.call("q", "add_address", "10.0.2.3/24")
    net.call("q", "add_address", "10.0.3.1/24", dev="vnet1")
    net.call("c", "add_address", "10.0.3.2/24")
    c.route_add("default", via="10.0.3.1")
    q.route_add("10.0.1.0/24", via=R2)
    r.route_add("10.0.3.0/24", via="10.0.2.3")
    q.forwarding = True
    net.advance(3.0)
    net.events("a")
    for ttl in (1, 2, 3):
        net.call("a", "send_udp", 40000, "10.0.3.2", 33433 + ttl, b"", ttl=ttl)
    evs = [e for e in net.events("a") if isinstance(e, (TimeExceeded, DestUnreachable))]
    assert [(e.src, e.code) for e in evs] == [(ip(R1), 0), (ip("10.0.2.3"), 0),
                                              (ip("10.0.3.2"), 3)]
    assert [r["dst"] for r in r.route_show()] == ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]
    assert [x["proto"] for x in r.route_show()] == ["kernel", "kernel", "static"]


def test_an_address_over_a_static_route_still_gets_its_connected_route():
    net = Net()
    s = net.plug("seg", "s", HostStack(mac_of(1)))
    net.call("s", "link_up")
    net.call("s", "add_address", "10.0.1.1/24")
    net.run(2.0)
    s.route_add("10.0.5.0/24", dev="vnet0")
    net.call("s", "add_address", "10.0.5.1/24")
    net.run(4.0)  # DAD ends inside the timer: no StackError may come out of it
    assert [(r["dst"], r["proto"]) for r in s.route_show()] == [
        ("10.0.1.0/24", "kernel"), ("10.0.5.0/24", "static"), ("10.0.5.0/24", "kernel")]
    with pytest.raises(StackError, match="File exists"):
        s.route_add("10.0.5.0/24", via="10.0.1.9")
    s.route_add("10.0.5.0/24", via="10.0.1.9", metric=100)
    assert s.route_del("10.0.5.0/24", via="10.0.1.9")["metric"] == 100
