"""Frames for testing capture filters (scapy): VLAN, QinQ, IPv4 fragments, IPv6, LLC/SNAP,
ARP, broadcast and multicast, TCP flags, runts."""

from __future__ import annotations


def frames() -> list[bytes]:
    from scapy.all import (ARP, ICMP, IP, LLC, SNAP, TCP, UDP, Dot1AD, Dot1Q, Dot3, Ether, ICMPv6EchoRequest,
                           IPv6, IPv6ExtHdrFragment, Raw, fragment)

    a, b, bc = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "ff:ff:ff:ff:ff:ff"
    udp53 = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=53) / (b"q" * 1200)
    frags = [bytes(Ether(src=a, dst=b) / f) for f in fragment(udp53, fragsize=400)]
    out = [
        Ether(src=a, dst=bc) / ARP(psrc="10.0.0.1", pdst="10.0.0.2"),
        Ether(src=b, dst=a) / ARP(op=2, psrc="10.0.0.2", pdst="10.0.0.1"),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(),
        Ether(src=b, dst=a) / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=53) / b"dns",
        Ether(src=a, dst=b) / IP(src="10.0.1.7", dst="192.168.1.1", ttl=1) / UDP(sport=1500, dport=1999),
        Ether(src=a, dst=b) / IP(src="10.0.0.9", dst="10.0.0.3", ihl=6, options=b"\x01\x01\x01\x00") / UDP(dport=53),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.5") / TCP(sport=1234, dport=80, flags="S"),
        Ether(src=b, dst=a) / IP(src="10.0.0.5", dst="10.0.0.1") / TCP(sport=80, dport=1234, flags="SA"),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.5") / TCP(sport=1234, dport=80, flags="A") / (b"d" * 200),
        Ether(src=a, dst=b) / IP(src="10.0.0.1", dst="10.0.0.5") / TCP(sport=2000, dport=1000, flags="FA"),
        Ether(src=a, dst=b) / Dot1Q(vlan=5) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53),
        Ether(src=a, dst=b) / Dot1Q(vlan=7) / IP(src="10.0.0.3", dst="10.0.0.1") / ICMP(),
        Ether(src=a, dst=bc) / Dot1Q(vlan=5) / ARP(psrc="10.0.0.1", pdst="10.0.0.4"),
        Ether(src=a, dst=b) / Dot1AD(vlan=100) / Dot1Q(vlan=5) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53),
        Ether(src=a, dst=b) / Dot1Q(vlan=9) / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=53, dport=5353),
        Ether(src=a, dst=b) / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=40000, dport=53),
        Ether(src=a, dst=b) / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1000, dport=22, flags="S"),
        Ether(src=a, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6EchoRequest(),
        Ether(src=a, dst=b) / IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrFragment(offset=0, m=1) / UDP(dport=53),
        Ether(src=a, dst=b) / IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrFragment(offset=100) / Raw(b"x" * 20),
        Ether(src=a, dst="01:00:5e:00:00:fb") / IP(src="10.0.0.1", dst="224.0.0.251") / UDP(sport=5353, dport=5353),
        Ether(src=a, dst=bc) / IP(src="10.0.0.1", dst="10.0.0.255") / UDP(sport=137, dport=137),
        Dot3(src=a, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / Raw(b"\x00" * 35),
        Dot3(src=a, dst=b) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800)
        / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53),
        Ether(src=a, dst=b, type=0x88B5) / (b"\x01" * 46),
        Ether(src=a, dst=b, type=0x8100) / b"\x00",  # a tag cut short
    ]
    raw = [bytes(f) for f in out] + frags
    runts = [raw[4][:20], raw[4][:30], raw[7][:40], raw[16][:50], raw[11][:16], raw[0][:13], b"\xff" * 6, b""]
    return raw + runts


# Every expression here must mean to vnet what it means to tcpdump, frame by frame.
EXPRESSIONS = [
    "port 53", "udp", "tcp", "vlan", "vlan and udp", "vlan 5", "vlan and vlan and port 53", "ether proto 0x8100",
    "ip6", "ip proto 17", "ether broadcast", "ether multicast", "net 10.0.0.0/24", "portrange 1000-2000",
    "greater 100", "less 64", "ip[8] = 1", "tcp[tcpflags] & tcp-syn != 0", "arp", "icmp", "not arp",
    "host 10.0.0.1 and (udp or icmp)", "icmp6", "ip6 and udp port 53", "src host 10.0.0.2", "dst port 80",
    "ether src host 02:00:00:00:00:0a", "ip multicast", "llc", "ether proto 0x88b5", "ip[6:2] & 0x1fff != 0",
    "not port 53", "udp and not vlan", "tcp[13] = 18", "len >= 400", "",
]
