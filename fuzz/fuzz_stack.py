"""Fuzz target: the host stack's receive path, ``HostStack.receive(frame, now)`` and, for
frames of at least a header, ``receive_skb`` of the skb the driver's eth_type_trans makes.

Frames are random bytes, or the receive-path corpus of tests/stack/test_stk_fuzz.py and the
DHCP messages of tests/stack/test_stk_dhcp_codec.py (to port 67) mutated and (optionally) given correct checksums again by its ``fixup`` so that mutations reach the
layers above the checksums. The stack is the one ``fresh()`` builds there (a bound UDP port,
an INCOMPLETE neighbour with a queue), plus a DHCP server so that port 67 is served.

Contract: receive never raises, returns frames to send (each at least an Ethernet header),
and every frame moves exactly one outcome counter at each layer it reaches: at Ethernet
a drop reason or the ARP/IPv4 handler; in ARP in_truncated, in_hdr_errors,
requests_received or replies_received; in IPv4 a drop reason or in_delivers; in ICMP
in_msgs; in UDP in_datagrams, no_ports, in_errors or ignored_multi; at the DHCP server
a decode refusal, not_for_us or <type>s_received. The stack keeps working
(ticks, sends) afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.stack.test_stk_dhcp_codec import SEEDS as DHCP_SEEDS, dhcp_frame  # noqa: E402
from tests.stack.test_stk_fuzz import CORPUS, MA, fixup, fresh  # noqa: E402

from vnet.node.netdevice import alloc_etherdev, eth_hw_addr_set  # noqa: E402
from vnet.node.skbuff import ETH_HLEN, eth_type_trans, skb_from_frame  # noqa: E402
from vnet.node.stack.dhcp import DECODE_REASONS  # noqa: E402
from vnet.node.stack.ether import BROADCAST_MAC  # noqa: E402
from vnet.node.stack.events import UdpDatagram  # noqa: E402

from _fdp import Reader  # noqa: E402

MAX_LEN = 1600
ETHER_DROPS = ("rx_runts", "rx_link_down", "rx_otherhost_dropped", "rx_multicast_dropped",
               "rx_bad_src", "rx_unknown_type")
# in_martians and in_own_mac are counted after requests/replies_received, as details.
ARP_OUTCOMES = ("requests_received", "replies_received", "in_truncated", "in_hdr_errors")
IP_OUTCOMES = ("in_hdr_errors", "in_truncated_pkts", "in_addr_errors", "reasm_fails",
               "in_unknown_protos", "in_delivers")
UDP_OUTCOMES = ("in_datagrams", "no_ports", "in_errors", "ignored_multi")
# What the DHCP server makes of a datagram to port 67: a decode refusal (malformed_<reason>),
# not_for_us, or <type>s_received; after receipt, ignored or malformed_bad_fields may follow
# as details (as ICMP counts in_msgs and then in_errors).
DHCP_OUTCOMES = tuple(f"malformed_{r}" for r in DECODE_REASONS) + ("not_for_us",) + tuple(
    f"{t}s_received" for t in ("discover", "request", "decline", "release", "inform", "offer",
                               "ack", "nak"))
DHCP_DETAILS = ("ignored", "malformed_bad_fields")
# The receive-path corpus, and DHCP messages to the server's port 67.
FRAMES = tuple(CORPUS) + tuple(dhcp_frame(m) for m in DHCP_SEEDS)
PREFIXES = (MA, BROADCAST_MAC, bytes.fromhex("01005e000001"), bytes.fromhex("020000000009"))

SEEDS = [bytes([k, 1, i, 0, 0]) for i in range(len(FRAMES)) for k in (0, 1)]


def netdev():
    dev = alloc_etherdev()
    eth_hw_addr_set(dev, MA)
    return dev


def stack():
    a = fresh()
    a.dhcp_server_start("10.0.0.1/24", "10.0.0.100", "10.0.0.110", lease_time=60)
    return a


def frame_of(r: Reader) -> bytes:
    mode = r.u8() % 4
    if mode == 0:
        return r.rest()
    if mode == 2:
        return r.pick(PREFIXES) + r.rest()
    f = bytearray(r.pick(FRAMES))
    fix = r.u8() & 1
    for _ in range(r.int_in(0, 8)):
        op, i, v = r.u8() % 5, r.u16(), r.u8()
        if op == 0 and f:
            f[i % len(f)] ^= v or 1
        elif op == 1 and f:
            f[i % len(f)] = v
        elif op == 2:
            del f[i % (len(f) + 1):]
        elif op == 3:
            f += r.bytes(v % 64)
        elif len(f) >= 4:
            j = i % (len(f) - 1)
            f[j:j + 2] = r.bytes(2).ljust(2, b"\0")
    if mode == 3:
        f += r.rest()
    return fixup(bytes(f)) if fix else bytes(f)


def _delta(before: dict, after: dict, names) -> dict:
    return {k: after[k] - before[k] for k in names if after[k] != before[k]}


def check_one_outcome(before: dict, after: dict, events: list) -> None:
    e = _delta(before["ether"], after["ether"], ETHER_DROPS)
    arp = _delta(before["arp"], after["arp"], ARP_OUTCOMES)
    ip_in = after["ip"]["in_receives"] - before["ip"]["in_receives"]
    assert after["ether"]["rx_frames"] - before["ether"]["rx_frames"] == 1
    handled = (1 if arp else 0) + ip_in
    assert len(e) + handled == 1 and sum(e.values()) + sum(arp.values()) + ip_in == 1, (
        e, arp, ip_in)
    if not ip_in:
        return
    ip = _delta(before["ip"], after["ip"], IP_OUTCOMES)
    assert list(ip.values()) == [1], ip
    if "in_delivers" in ip:
        icmp = after["icmp"]["in_msgs"] - before["icmp"]["in_msgs"]
        udp = _delta(before["udp"], after["udp"], UDP_OUTCOMES)
        assert icmp + sum(udp.values()) == 1 and len(udp) <= 1, (icmp, udp)
        dhcp = _delta(before["dhcp"], after["dhcp"], DHCP_OUTCOMES)
        details = _delta(before["dhcp"], after["dhcp"], DHCP_DETAILS)
        assert not details or any(k.endswith("s_received") for k in dhcp), (dhcp, details)
        to_app = any(isinstance(e, UdpDatagram) for e in events) or (
            after["udp"]["rcvbuf_errors"] != before["udp"]["rcvbuf_errors"])
        if "in_datagrams" in udp and not to_app:  # a service's port: the DHCP server's
            assert list(dhcp.values()) == [1], dhcp
        else:
            assert not dhcp, dhcp


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    a = stack()  # a fresh stack per input: a crash replays from its input alone
    via_skb = r.u8() & 1
    frame = frame_of(r)
    before = a.counters()
    if via_skb and len(frame) >= ETH_HLEN:
        skb = skb_from_frame(frame)
        eth_type_trans(skb, netdev())
        out = a.receive_skb(skb, 10.0)
    else:
        out = a.receive(frame, 10.0)
    assert isinstance(out, list) and all(isinstance(f, bytes) and len(f) >= 14 for f in out)
    check_one_outcome(before, a.counters(), a.next_events())
    a.tick(20.0)
    a.send_echo("10.0.0.2", 1, 2, 8, 21.0)

