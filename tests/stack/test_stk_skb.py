"""The stack on a vnet NIC, glued as the node daemon does: ptype handlers hand it skbs.

The frames are classified once, by the driver's eth_type_trans; the stack takes
``skb.protocol`` and ``skb.pkt_type`` as they are. Multicast to the all-hosts group
(the one the stack asks the device to join) reaches it as PACKET_MULTICAST; frames for
another host (a promiscuous NIC) are dropped as ip_rcv drops them, in the device's
rx_otherhost_dropped.
"""

from __future__ import annotations

from vnet.node.link import wire_pair
from vnet.node.loop import ManualLoop
from vnet.node.netdevice import (
    ETH_P_ARP, ETH_P_IP, IFF_ALLMULTI, IFF_PROMISC, IFF_UP, DeviceNamespace, dev_add_pack,
    dev_change_flags, dev_get_flags, dev_get_stats, dev_mc_add, dev_open,
)
from vnet.node.skbuff import PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST, skb_from_frame, \
    eth_type_trans
from vnet.node.stack import HostStack, UdpDatagram
from vnet.node.stack.ether import ETH_HDR
from vnet.node.stack.ipv4 import IPPROTO_UDP, ip_header, parse_ip
from vnet.node.stack.udp import udp_segment
from vnet.node.vnic import vnic_probe

PEER_MAC = b"\x02\x00\x00\x00\x00\x02"
PEER = parse_ip("10.0.0.2")
ME = "10.0.0.1"
ALL_HOSTS_MAC = bytes.fromhex("01005e000001")


def udp_frame(dst_mac: bytes, dst: bytes, dport: int, payload: bytes = b"hi",
              src_mac: bytes = PEER_MAC) -> bytes:
    seg = udp_segment(PEER, dst, 4000, dport, payload)
    return ETH_HDR.pack(dst_mac, src_mac, ETH_P_IP) + \
        ip_header(PEER, dst, IPPROTO_UDP, len(seg), 1) + seg


class Node:
    """One vnet NIC with a HostStack bound as node/daemon.py binds it."""

    def __init__(self) -> None:
        self.loop = ManualLoop()
        self.far, near = wire_pair(self.loop)
        self.far.open(lambda frames: None, lambda up: None)
        self.ns = DeviceNamespace("n")
        self.dev = vnic_probe(self.ns, self.loop, near, node_name="n")
        self.stack = HostStack(bytes(self.dev.dev_addr))
        self.seen: list[tuple[int, int]] = []  # (protocol, pkt_type) the handlers got
        dev_add_pack(self.ns, ETH_P_ARP, self.rcv)
        dev_add_pack(self.ns, ETH_P_IP, self.rcv)
        for mc in self.stack.mc_list():
            dev_mc_add(self.dev, mc)
        dev_open(self.dev)
        self.loop.run_ready()  # carrier
        self.stack.link_up(self.loop.time())
        self.stack.add_address(f"{ME}/24", self.loop.time())
        self.stack.udp_bind(5000)
        for _ in range(100):  # DAD, unanswered: the address becomes usable
            if self.stack.addresses()[0]["state"] == "ok":
                break
            self.loop.advance(max(0.0, self.stack.next_deadline() - self.loop.time()))
            self.stack.tick(self.loop.time())
        assert self.stack.addresses()[0]["state"] == "ok"
        self.stack.next_events()

    def rcv(self, skb, dev) -> None:
        self.seen.append((skb.protocol, skb.pkt_type))
        self.stack.receive_skb(skb, self.loop.time())

    def inject(self, *frames: bytes) -> None:
        assert self.far.send(list(frames))
        self.loop.run_ready()

    def datagrams(self) -> list[UdpDatagram]:
        return [e for e in self.stack.next_events() if isinstance(e, UdpDatagram)]


def test_the_stack_asks_for_the_all_hosts_group():
    n = Node()
    assert n.stack.mc_list() == [ALL_HOSTS_MAC]
    assert ALL_HOSTS_MAC in n.dev.mc


def test_all_hosts_multicast_reaches_a_bound_udp_port_as_packet_multicast():
    n = Node()
    n.inject(udp_frame(ALL_HOSTS_MAC, parse_ip("224.0.0.1"), 5000, b"to all"))
    assert n.seen == [(ETH_P_IP, PACKET_MULTICAST)]
    got = n.datagrams()
    assert [(e.dst_port, e.data) for e in got] == [(5000, b"to all")]
    assert n.stack.counters()["ip"]["in_mcast_pkts"] == 1
    assert dev_get_stats(n.dev).multicast == 1
    # To a port nobody bound: ignored quietly, no ICMP error for a group.
    n.inject(udp_frame(ALL_HOSTS_MAC, parse_ip("224.0.0.1"), 5001))
    assert n.stack.counters()["udp"]["ignored_multi"] == 1


def test_a_group_not_joined_is_filtered_by_the_nic_or_dropped_by_the_stack():
    n = Node()
    mdns_mac = bytes.fromhex("01005e0000fb")
    n.inject(udp_frame(mdns_mac, parse_ip("224.0.0.251"), 5000))
    assert n.seen == []  # the NIC's filter: not on the dev_mc_add list
    dev_change_flags(n.dev, dev_get_flags(n.dev) | IFF_UP | IFF_ALLMULTI)
    n.inject(udp_frame(mdns_mac, parse_ip("224.0.0.251"), 5000))
    assert n.seen == [(ETH_P_IP, PACKET_MULTICAST)]  # allmulti passes every group up
    assert n.stack.counters()["ether"]["rx_multicast_dropped"] == 1
    assert n.datagrams() == []


def test_otherhost_ipv4_is_dropped_and_counted_in_the_device_stats():
    n = Node()
    dev_change_flags(n.dev, dev_get_flags(n.dev) | IFF_UP | IFF_PROMISC)
    other = b"\x02\x00\x00\x00\x00\x33"
    n.inject(udp_frame(other, parse_ip(ME), 5000))
    assert n.seen == [(ETH_P_IP, PACKET_OTHERHOST)]
    assert n.datagrams() == []
    assert dev_get_stats(n.dev).rx_otherhost_dropped == 1  # what `ip -s link` shows
    assert dev_get_stats(n.dev).as_dict()["rx_otherhost_dropped"] == 1
    assert n.stack.counters()["ether"]["rx_otherhost_dropped"] == 1
    # The same datagram to our MAC is delivered: only the classification differed.
    n.inject(udp_frame(n.dev.dev_addr, parse_ip(ME), 5000))
    assert [e.dst_port for e in n.datagrams()] == [5000]
    assert dev_get_stats(n.dev).rx_otherhost_dropped == 1


def test_the_stack_takes_the_skbs_classification_instead_of_reparsing():
    n = Node()
    frame = udp_frame(n.dev.dev_addr, parse_ip(ME), 5000)
    skb = skb_from_frame(frame)
    skb.dev = n.dev
    eth_type_trans(skb, n.dev)
    assert (skb.protocol, skb.pkt_type) == (ETH_P_IP, PACKET_HOST)
    skb.pkt_type = PACKET_OTHERHOST  # as if the device had said so
    assert n.stack.receive_skb(skb, n.loop.time()) == []
    assert n.datagrams() == []
    assert n.stack.counters()["ether"]["rx_otherhost_dropped"] == 1
    skb = skb_from_frame(frame)
    skb.dev = n.dev
    eth_type_trans(skb, n.dev)
    skb.protocol = ETH_P_ARP  # the ethertype the skb carries is the one dispatched on
    n.stack.receive_skb(skb, n.loop.time())
    assert n.datagrams() == []
    assert n.stack.counters()["ip"]["in_receives"] == 0
