"""Duplicate address detection (RFC 5227) and address conflicts."""

from __future__ import annotations

import random

import pytest

from vnet.node.stack import parse_ip as ip, parse_mac as mac  # wire-form addresses
from vnet.node.stack import AddressConflict, AddressReady, HostStack, StackError
from vnet.node.stack.arp import ARP_HDR, ARPOP_REPLY, ARPOP_REQUEST, arp_frame
from vnet.node.stack.ether import BROADCAST_MAC, ETH_P_ARP, ZERO_MAC
from vnet.node.stack.ipv4 import ZERO_IP, parse_ip
from vnet.node.stack.testing import Hub, mac_of, make_lan


def arps(hub: Hub, name: str, mark: int = 0):
    out = []
    for t, n, f in hub.trace[mark:]:
        if n == name and f[12:14] == ETH_P_ARP.to_bytes(2, "big"):
            _, _, _, _, op, sha, spa, tha, tpa = ARP_HDR.unpack_from(f, 14)
            out.append((t, op, f[:6], sha, spa, tha, tpa))
    return out


def garps(hub: Hub, name: str, mark: int = 0):
    return [p for p in arps(hub, name, mark) if p[4] == p[6] and p[2] == BROADCAST_MAC]


def state(stack: HostStack, ip: str) -> str:
    return next(a["state"] for a in stack.addresses() if a["address"] == ip)


def newcomer(hub: Hub, name: str, i: int, **kw) -> HostStack:
    s = hub.attach(name, HostStack(mac_of(i), **kw))
    hub.call(name, "link_up")
    return s


def test_clean_add_probes_then_becomes_usable_and_announces():
    hub = make_lan(2)
    d = newcomer(hub, "d", 4)
    t0, m0 = hub.now, len(hub.trace)
    assert hub.call("d", "add_address", "10.0.0.4/24") == []
    assert state(d, "10.0.0.4") == "tentative"
    with pytest.raises(StackError, match="tentative"):
        d.send_echo("10.0.0.1", 1, 1, 8, hub.now)
    hub.run(t0 + 0.79)
    assert state(d, "10.0.0.4") == "tentative"
    assert hub.events("d") == []
    hub.run(t0 + 0.8 + 1e-9)
    assert state(d, "10.0.0.4") == "ok"
    assert hub.events("d") == [AddressReady(ip("10.0.0.4"))]
    hub.run(t0 + 3)
    sent = arps(hub, "d", m0)
    times = [round(t - t0, 6) for t, *_ in sent]
    assert times == [0.2, 0.4, 0.6, 0.8, 1.8]
    for _, op, dst, sha, spa, tha, tpa in sent[:3]:  # probes: sender IP 0.0.0.0
        assert (op, dst, sha, spa, tha, tpa) == (
            ARPOP_REQUEST, BROADCAST_MAC, mac_of(4), ZERO_IP, ZERO_MAC, parse_ip("10.0.0.4"))
    for _, op, dst, sha, spa, tha, tpa in sent[3:]:  # announcements: sender = target = us
        assert (op, dst, spa, tpa) == (ARPOP_REQUEST, BROADCAST_MAC, parse_ip("10.0.0.4"),
                                       parse_ip("10.0.0.4"))
    c = d.counters()["arp"]
    assert (c["probes_sent"], c["announcements_sent"], c["conflicts"]) == (3, 2, 0)
    hub.call("d", "send_echo", "10.0.0.1", 1, 1, 8)
    assert any(e.__class__.__name__ == "EchoReply" for e in hub.events("d"))


def test_duplicate_detected_newcomer_gets_conflict_holder_defends():
    hub = make_lan(3)
    a, b = hub.stacks["a"], hub.stacks["b"]
    hub.call("a", "send_echo", "10.0.0.2", 1, 1, 8)
    hub.events("a"), hub.events("b")
    d = newcomer(hub, "d", 4)
    t0, m0 = hub.now, len(hub.trace)
    hub.call("d", "add_address", "10.0.0.2/24")
    hub.run(t0 + 5)
    # The first probe is answered by the holder, unicast: conflict, no more probes.
    assert hub.events("d") == [AddressConflict(ip("10.0.0.2"), mac("02:00:00:00:00:02"))]
    assert state(d, "10.0.0.2") == "conflict"
    assert len(arps(hub, "d", m0)) == 1
    defence = [p for p in arps(hub, "b", m0) if p[1] == ARPOP_REPLY]
    assert [(op, dst, spa, tha, tpa) for _, op, dst, _, spa, tha, tpa in defence] == [
        (ARPOP_REPLY, mac_of(4), parse_ip("10.0.0.2"), mac_of(4), ZERO_IP)]
    assert d.counters()["arp"]["conflicts"] == 1
    # The address is unusable on the newcomer, with a clear reason.
    with pytest.raises(StackError, match="in use by 02:00:00:00:00:02"):
        d.send_udp(5000, "10.0.0.1", 5000, b"x", hub.now)
    with pytest.raises(StackError, match="delete it"):
        d.send_echo("10.0.0.1", 1, 1, 8, hub.now)
    # ... and nothing of it leaks: it does not answer for it.
    assert d.receive(arp_frame(BROADCAST_MAC, mac_of(1), ARPOP_REQUEST, mac_of(1),
                               parse_ip("10.0.0.1"), ZERO_MAC, parse_ip("10.0.0.2")),
                     hub.now) == []
    # The holder keeps its address, raises nothing, and the LAN still reaches it.
    assert hub.events("b") == []
    assert state(b, "10.0.0.2") == "ok"
    row = next(r for r in a.neigh_show(hub.now) if r["ip"] == "10.0.0.2")
    assert row["mac"] == "02:00:00:00:00:02"
    # Deleting the conflicting address and adding another works.
    d.del_address("10.0.0.2/24")
    hub.call("d", "add_address", "10.0.0.4/24")
    hub.run(hub.now + 1)
    assert hub.events("d") == [AddressReady(ip("10.0.0.4"))]


def test_later_conflict_both_sides_report_and_holder_defends():
    hub = make_lan(3)
    a, b = hub.stacks["a"], hub.stacks["b"]
    hub.call("a", "send_echo", "10.0.0.2", 1, 1, 8)
    hub.events("a"), hub.events("b")
    # A misconfigured host without DAD takes b's address and announces it.
    rogue = newcomer(hub, "r", 9, dad_probes=0)
    t0, m0 = hub.now, len(hub.trace)
    hub.call("r", "add_address", "10.0.0.2/24")
    assert hub.events("b") == [AddressConflict(ip("10.0.0.2"), mac("02:00:00:00:00:09"))]
    # b defended with one announcement, which the rogue sees as a conflict too; the rogue
    # defends once, and b (within defend_interval) stays quiet: no storm.
    assert AddressConflict(ip("10.0.0.2"), mac("02:00:00:00:00:02")) in hub.events("r")
    assert len(garps(hub, "b", m0)) == 1
    assert state(b, "10.0.0.2") == "ok"  # we keep our address (RFC 5227 2.4 (c))
    assert b.counters()["arp"]["conflicts"] >= 1
    # A second conflicting announcement within defend_interval: counted, not reported.
    hub.run(t0 + 1.0)  # the rogue's second announcement
    assert hub.events("b") == []
    before = b.counters()["arp"]["conflicts"]
    assert before >= 2
    # After defend_interval the next conflict is reported and defended again.
    m1 = len(hub.trace)
    hub.run(t0 + 11)
    hub.call("r", "link_down")
    hub.call("r", "link_up")  # announces again
    assert hub.events("b") == [AddressConflict(ip("10.0.0.2"), mac("02:00:00:00:00:09"))]
    assert len(garps(hub, "b", m1)) == 1


def test_handcrafted_announcement_of_our_address_is_a_conflict():
    hub = make_lan(1)
    a = hub.stacks["a"]
    ours = parse_ip("10.0.0.1")
    garp = arp_frame(BROADCAST_MAC, mac_of(7), ARPOP_REQUEST, mac_of(7), ours, ZERO_MAC, ours)
    out = a.receive(garp, hub.now)
    assert a.next_events() == [AddressConflict(ip("10.0.0.1"), mac("02:00:00:00:00:07"))]
    assert len(out) == 1  # the defence
    _, _, _, _, op, sha, spa, _, tpa = ARP_HDR.unpack_from(out[0], 14)
    assert (op, sha, spa, tpa) == (ARPOP_REQUEST, mac_of(1), ours, ours)
    # A reply claiming it is a conflict as well (outside the defend interval).
    reply = arp_frame(mac_of(1), mac_of(7), ARPOP_REPLY, mac_of(7), ours, mac_of(1), ours)
    a.receive(reply, hub.now + 20)
    assert a.next_events() == [AddressConflict(ip("10.0.0.1"), mac("02:00:00:00:00:07"))]


def test_simultaneous_probing_both_back_off():
    # Two probes in flight at once: each side sees the other's probe for the address it is
    # probing (RFC 5227 2.1.1), so both give it up.
    d = HostStack(mac_of(4))
    e = HostStack(mac_of(5))
    for s in (d, e):
        s.link_up(0.0)
        s.add_address("10.0.0.7/24", 0.0)
    assert d.next_deadline() == e.next_deadline() == 0.2
    pd, pe = d.tick(0.2), e.tick(0.2)
    assert len(pd) == len(pe) == 1
    assert e.receive(pd[0], 0.2) == [] and d.receive(pe[0], 0.2) == []
    assert d.next_events() == [AddressConflict(ip("10.0.0.7"), mac("02:00:00:00:00:05"))]
    assert e.next_events() == [AddressConflict(ip("10.0.0.7"), mac("02:00:00:00:00:04"))]
    assert state(d, "10.0.0.7") == state(e, "10.0.0.7") == "conflict"
    assert d.next_deadline() is None and e.next_deadline() is None


def test_probing_in_turn_first_one_wins():
    hub = make_lan(1)
    d = newcomer(hub, "d", 4)
    e = newcomer(hub, "e", 5)
    t0 = hub.now
    hub.call("d", "add_address", "10.0.0.7/24")
    hub.call("e", "add_address", "10.0.0.7/24")
    hub.run(t0 + 3)
    # On a zero-latency hub d's first probe reaches e before e sends its own.
    assert hub.events("e") == [AddressConflict(ip("10.0.0.7"), mac("02:00:00:00:00:04"))]
    assert hub.events("d") == [AddressReady(ip("10.0.0.7"))]
    assert (state(d, "10.0.0.7"), state(e, "10.0.0.7")) == ("ok", "conflict")


def test_dad_waits_for_link_and_restarts_after_link_flap():
    hub = Hub()
    d = hub.attach("d", HostStack(mac_of(4)))
    hub.call("d", "add_address", "10.0.0.4/24")
    hub.run(5)
    assert state(d, "10.0.0.4") == "tentative"
    assert d.next_deadline() is None
    assert hub.trace == []
    hub.call("d", "link_up")
    hub.run(5.5)
    hub.call("d", "link_down")  # mid-DAD
    hub.run(10)
    assert state(d, "10.0.0.4") == "tentative"
    m = len(hub.trace)
    hub.call("d", "link_up")
    hub.run(10.8)
    assert state(d, "10.0.0.4") == "ok"
    assert len([a for a in arps(hub, "d", m) if a[4] == ZERO_IP]) == 3  # all probes again


def test_dad_disabled_is_immediate():
    hub = make_lan(1, dad_probes=0)
    a = hub.stacks["a"]
    m = len(hub.trace)
    out = hub.call("a", "add_address", "10.0.1.1/24")
    assert len(out) == 1  # the announcement
    assert state(a, "10.0.1.1") == "ok"
    assert hub.events("a") == [AddressReady(ip("10.0.1.1"))]
    assert arps(hub, "a", m)[0][4] == parse_ip("10.0.1.1")


def test_dad_start_randomised_with_rng():
    hub = Hub()
    d = hub.attach("d", HostStack(mac_of(4), rng=random.Random(1)))
    hub.call("d", "link_up")
    hub.call("d", "add_address", "10.0.0.4/24")
    first = d.next_deadline()
    assert 0.0 <= first <= 0.2


def test_address_management_errors():
    s = HostStack(mac_of(1))
    s.add_address("10.0.0.1/24", 0)
    with pytest.raises(StackError, match="already assigned"):
        s.add_address("10.0.0.1/16", 0)
    with pytest.raises(StackError, match="prefix"):
        s.add_address("10.0.0.5", 0)
    with pytest.raises(StackError, match="prefix length"):
        s.add_address("10.0.0.5/33", 0)
    with pytest.raises(StackError, match="bad IPv4 address"):
        s.add_address("10.0.0/24", 0)
    with pytest.raises(StackError, match="broadcast address"):
        s.add_address("10.0.1.255/24", 0)
    with pytest.raises(StackError, match="cannot be an interface address"):
        s.add_address("224.0.0.1/24", 0)
    with pytest.raises(StackError, match="no address 10.0.0.9"):
        s.del_address("10.0.0.9/24")
    with pytest.raises(StackError, match="no address"):
        s.del_address("10.0.0.1/16")
    s.del_address("10.0.0.1")
    assert s.addresses() == []
    assert issubclass(StackError, ValueError)
