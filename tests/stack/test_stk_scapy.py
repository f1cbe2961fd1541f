"""Cross-checks of the stack's encodings against scapy (tests only; never in the stack)."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import checksum as scapy_checksum

from vnet.node.stack import EchoReply, UdpDatagram
from vnet.node.stack import parse_ip as ip  # wire-form addresses
from vnet.node.stack.arp import ARPOP_REPLY, ARPOP_REQUEST, arp_frame
from vnet.node.stack.ether import BROADCAST_MAC, ZERO_MAC
from vnet.node.stack.ipv4 import inet_checksum, parse_ip
from vnet.node.stack.testing import mac_of, make_lan

A, B = "10.0.0.1", "10.0.0.2"
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def recomputed(frame: bytes) -> Ether:
    """``frame`` re-encoded by scapy with every checksum and length recomputed."""
    p = Ether(frame)
    for layer in (IP, ICMP, UDP):
        if layer in p:
            del p[layer].chksum
            if layer in (IP, UDP):
                del p[layer].len
    return Ether(bytes(p))


def sent_by(hub, name, mark):
    return [f for _, n, f in hub.trace[mark:] if n == name]


def test_arp_frames_parse_in_scapy():
    req = arp_frame(BROADCAST_MAC, mac_of(1), ARPOP_REQUEST, mac_of(1), parse_ip(A), ZERO_MAC,
                    parse_ip(B))
    p = Ether(req)
    assert p.dst == "ff:ff:ff:ff:ff:ff" and p.src == MAC_A and p.type == 0x0806
    a = p[ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen, a.op) == (1, 0x0800, 6, 4, 1)
    assert (a.hwsrc, a.psrc, a.hwdst, a.pdst) == (MAC_A, A, "00:00:00:00:00:00", B)
    assert bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC_A) / ARP(
        op=1, hwsrc=MAC_A, psrc=A, hwdst="00:00:00:00:00:00", pdst=B)) == req


def test_stack_answers_scapy_arp_request():
    hub = make_lan(2)
    a = hub.stacks["a"]
    req = Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC_B) / ARP(
        op="who-has", hwsrc=MAC_B, psrc=B, pdst=A)
    [out] = a.receive(bytes(req), hub.now)
    r = Ether(out)
    assert r.dst == MAC_B and r[ARP].op == ARPOP_REPLY
    assert (r[ARP].hwsrc, r[ARP].psrc, r[ARP].hwdst, r[ARP].pdst) == (MAC_A, A, MAC_B, B)


def test_echo_request_and_reply_checksums_match_scapy():
    hub = make_lan(2)
    m = len(hub.trace)
    hub.call("a", "send_echo", B, 0x4242, 7, 56)
    req = next(f for f in sent_by(hub, "a", m) if f[12:14] == b"\x08\x00")
    rep = next(f for f in sent_by(hub, "b", m) if f[12:14] == b"\x08\x00")
    for frame in (req, rep):
        p, q = Ether(frame), recomputed(frame)
        assert p[IP].chksum == q[IP].chksum and p[ICMP].chksum == q[ICMP].chksum
        assert p[IP].len == q[IP].len == len(frame) - 14
        assert (p[IP].version, p[IP].ihl, p[IP].ttl, p[IP].proto) == (4, 5, 64, 1)
        assert p[IP].flags == "DF"
    p = Ether(req)
    assert (p[IP].src, p[IP].dst, p[ICMP].type, p[ICMP].id, p[ICMP].seq) == (A, B, 8, 0x4242, 7)
    assert bytes(p[ICMP].payload) == bytes(range(56))
    r = Ether(rep)
    assert (r[IP].src, r[IP].dst, r[ICMP].type, r[ICMP].id, r[ICMP].seq) == (B, A, 0, 0x4242, 7)


def test_stack_replies_to_scapy_echo_request():
    hub = make_lan(2)
    a = hub.stacks["a"]
    a.neigh_add(B, MAC_B, hub.now)
    req = Ether(dst=MAC_A, src=MAC_B) / IP(src=B, dst=A, ttl=5, id=99) / ICMP(
        type="echo-request", id=0x77, seq=3) / b"scapy says hi"
    [out] = a.receive(bytes(req), hub.now)
    r = Ether(out)
    assert r.dst == MAC_B and r.src == MAC_A
    assert (r[IP].src, r[IP].dst, r[ICMP].type, r[ICMP].id, r[ICMP].seq) == (A, B, 0, 0x77, 3)
    assert bytes(r[ICMP].payload) == b"scapy says hi"
    q = recomputed(out)
    assert r[IP].chksum == q[IP].chksum and r[ICMP].chksum == q[ICMP].chksum
    # A scapy-built echo reply becomes an EchoReply event with the received TTL.
    rep = Ether(dst=MAC_A, src=MAC_B) / IP(src=B, dst=A, ttl=17) / ICMP(
        type="echo-reply", id=5, seq=6) / b"abcd"
    a.receive(bytes(rep), hub.now)
    assert a.next_events() == [EchoReply(ip(B), 5, 6, 17, 12, b"abcd")]


def test_udp_checksums_match_scapy_and_scapy_datagrams_accepted():
    hub = make_lan(2)
    hub.stacks["b"].udp_bind(5353)
    m = len(hub.trace)
    for payload in (b"", b"x", b"odd length!", bytes(range(256)) * 5):
        hub.call("a", "send_udp", 1234, B, 5353, payload)
    frames = [f for f in sent_by(hub, "a", m) if f[12:14] == b"\x08\x00"]
    assert len(frames) == 4
    for f in frames:
        p, q = Ether(f), recomputed(f)
        assert p[UDP].chksum == q[UDP].chksum != 0
        assert p[UDP].len == q[UDP].len and p[IP].chksum == q[IP].chksum
        assert (p[UDP].sport, p[UDP].dport) == (1234, 5353)
    a = hub.stacks["a"]
    a.udp_bind(9)
    dg = Ether(dst=MAC_A, src=MAC_B) / IP(src=B, dst=A) / UDP(sport=77, dport=9) / b"from scapy"
    a.receive(bytes(dg), hub.now)
    assert UdpDatagram(ip(B), 77, ip(A), 9, b"from scapy") in a.next_events()
    bad = Ether(dst=MAC_A, src=MAC_B) / IP(src=B, dst=A) / UDP(sport=77, dport=9,
                                                               chksum=0x1234) / b"x"
    before = a.counters()["udp"]["in_csum_errors"]
    a.receive(bytes(bad), hub.now)
    assert a.counters()["udp"]["in_csum_errors"] == before + 1


def test_port_unreachable_parses_in_scapy():
    hub = make_lan(2)
    m = len(hub.trace)
    hub.call("a", "send_udp", 1234, B, 9, b"closed?")
    err = next(f for f in sent_by(hub, "b", m) if f[12:14] == b"\x08\x00")
    p = Ether(err)
    assert (p[ICMP].type, p[ICMP].code) == (3, 3)
    assert p[ICMP].chksum == recomputed(err)[ICMP].chksum
    quoted = p[ICMP].payload  # scapy dissects the quoted datagram as IPerror/UDPerror
    assert quoted.src == A and quoted.dst == B
    assert (quoted.payload.sport, quoted.payload.dport) == (1234, 9)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_inet_checksum_matches_scapy(data):
    ours = inet_checksum(data)
    assert ours == scapy_checksum(data)
    if len(data) % 2 == 0:
        assert inet_checksum(data + ours.to_bytes(2, "big")) == 0


def test_stack_and_scapy_agree_on_a_session():
    """A whole exchange, every frame re-encoded by scapy byte for byte."""
    hub = make_lan(3)
    hub.stacks["c"].udp_bind(7)
    m = len(hub.trace)
    hub.call("a", "send_echo", B, 1, 1, 100)
    hub.call("a", "send_udp", 7, "10.0.0.3", 7, b"echo")
    for _, _, f in hub.trace[m:]:
        assert bytes(recomputed(f)) == f
