"""A HostStack with two devices (vnet0 and vnet1) on two segments, each with one peer: the
frames for a peer leave with the MAC of the device whose connected prefix holds it, ARP runs
per device, and what comes in on either device is delivered. Frames are wired by hand, in
skbs classified by eth_type_trans as the driver hands them up; the clock is a number."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vnet.node.skbuff import eth_type_trans, skb_from_frame
from vnet.node.stack import EchoReply, HostStack, StackError
from vnet.node.stack.ether import BROADCAST_MAC

R0, R1 = bytes.fromhex("020000000a00"), bytes.fromhex("020000000a01")
A, B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


class TwoSegments:
    """Router stack r (vnet0 on segment 0 with peer a, vnet1 on segment 1 with peer b)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.r = HostStack(R0)
        self.r.add_device("vnet1", R1)
        self.a, self.b = HostStack(A), HostStack(B)
        self.devs = {"vnet0": SimpleNamespace(name="vnet0", dev_addr=R0, broadcast=BROADCAST_MAC),
                     "vnet1": SimpleNamespace(name="vnet1", dev_addr=R1, broadcast=BROADCAST_MAC)}
        self.sent = {"vnet0": 0, "vnet1": 0}
        for dev in ("vnet0", "vnet1"):
            self.r.link_up(self.now, dev=dev)
        self.a.link_up(self.now)
        self.b.link_up(self.now)

    def from_r(self, frames: list[bytes]) -> None:
        for f in frames:
            dev = {R0: "vnet0", R1: "vnet1"}[f[6:12]]  # the daemon's rule: the source MAC's NIC
            self.sent[dev] += 1
            peer = self.a if dev == "vnet0" else self.b
            self.from_peer(peer, peer.receive(f, self.now))

    def from_peer(self, peer: HostStack, frames: list[bytes]) -> None:
        dev = self.devs["vnet0" if peer is self.a else "vnet1"]
        for f in frames:
            skb = skb_from_frame(f)
            skb.protocol = eth_type_trans(skb, dev)
            self.from_r(self.r.receive_skb(skb, self.now))

    def run(self, until: float) -> None:
        while self.now < until:
            self.now = round(self.now + 0.05, 2)
            self.from_r(self.r.tick(self.now))
            for peer in (self.a, self.b):
                self.from_peer(peer, peer.tick(self.now))


def test_pings_leave_by_the_device_of_the_peers_segment():
    net = TwoSegments()
    net.from_r(net.r.add_address("10.0.0.254/24", net.now))
    net.from_r(net.r.add_address("10.1.0.254/24", net.now, dev="vnet1"))
    net.from_peer(net.a, net.a.add_address("10.0.0.1/24", net.now))
    net.from_peer(net.b, net.b.add_address("10.1.0.1/24", net.now))
    net.run(3.0)
    assert {(x["address"], x["dev"], x["state"]) for x in net.r.addresses()} == {
        ("10.0.0.254", "vnet0", "ok"), ("10.1.0.254", "vnet1", "ok")}
    assert [x["address"] for x in net.r.addresses("vnet1")] == ["10.1.0.254"]
    net.r.next_events()

    before = dict(net.sent)
    net.from_r(net.r.send_echo("10.1.0.1", 7, 1, 56, net.now))
    assert net.sent["vnet0"] == before["vnet0"] and net.sent["vnet1"] > before["vnet1"]
    net.from_r(net.r.send_echo("10.0.0.1", 7, 2, 56, net.now))
    assert net.sent["vnet0"] > before["vnet0"]
    replies = [e for e in net.r.next_events() if isinstance(e, EchoReply)]
    assert sorted(e.seq for e in replies) == [1, 2]
    neigh = {(n["ip"], n["dev"]) for n in net.r.neigh_show(net.now) if n["mac"]}
    assert neigh == {("10.0.0.1", "vnet0"), ("10.1.0.1", "vnet1")}

    # each peer pings the router's address on its segment: answered from that device
    net.from_peer(net.b, net.b.send_echo("10.1.0.254", 9, 1, 8, net.now))
    assert [e.seq for e in net.b.next_events() if isinstance(e, EchoReply)] == [1]


def test_device_mistakes_are_clear_errors():
    r = HostStack(R0)
    r.add_device("vnet1", R1)
    with pytest.raises(StackError, match="already"):
        r.add_device("vnet1", R1)
    with pytest.raises(StackError, match="no device 'vnet7'"):
        r.add_address("10.9.0.1/24", 0.0, dev="vnet7")
    r.add_address("10.0.0.1/24", 0.0)
    with pytest.raises(StackError, match="already assigned on vnet0"):
        r.add_address("10.0.0.1/24", 0.0, dev="vnet1")
    r.add_address("10.1.0.1/24", 0.0, dev="vnet1")
    r.del_address("10.1.0.1")  # found on vnet1 without naming it
    assert [x["dev"] for x in r.addresses()] == ["vnet0"]
