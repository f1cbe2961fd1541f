"""ARP and the neighbour table, over a hub of HostStacks with a fake clock."""

from __future__ import annotations

import random

import pytest

from vnet.node.stack import parse_ip as ip, parse_mac as mac  # wire-form addresses
from vnet.node.stack import (
    ArpReply, EchoReply, HostStack, NeighFailed, NeighResolved, NeighStateError, Nud,
    StackError,
)
from vnet.node.stack.arp import (
    ARP_HDR, ARPOP_REPLY, ARPOP_REQUEST, NUD_TRANSITIONS, arp_frame,
)
from vnet.node.stack.ether import BROADCAST_MAC, ETH_P_ARP, ZERO_MAC
from vnet.node.stack.ipv4 import parse_ip
from vnet.node.stack.testing import Hub, mac_of, make_lan

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def arps(hub: Hub, name: str, mark: int = 0):
    """ARP packets sent by ``name`` since trace index ``mark``:
    (time, op, eth_dst, sha, spa, tha, tpa)."""
    out = []
    for t, n, f in hub.trace[mark:]:
        if n == name and f[12:14] == ETH_P_ARP.to_bytes(2, "big"):
            _, _, _, _, op, sha, spa, tha, tpa = ARP_HDR.unpack_from(f, 14)
            out.append((t, op, f[:6], sha, spa, tha, tpa))
    return out


def neigh(stack: HostStack, ip: str, now: float) -> dict | None:
    return next((r for r in stack.neigh_show(now) if r["ip"] == ip), None)


def test_resolution_across_three_stacks():
    hub = make_lan(3)
    a, b, c = (hub.stacks[n] for n in "abc")
    t0, m0 = hub.now, len(hub.trace)
    hub.call("a", "send_echo", B, 1, 1, 56)
    hub.call("a", "send_echo", C, 1, 2, 56)
    evs = hub.events("a")
    replies = [e for e in evs if isinstance(e, EchoReply)]
    assert [(e.src, e.seq) for e in replies] == [(ip(B), 1), (ip(C), 2)]
    assert NeighResolved(ip(B), mac("02:00:00:00:00:02")) in evs
    assert NeighResolved(ip(C), mac("02:00:00:00:00:03")) in evs
    # One broadcast request each, at once, from our address.
    reqs = arps(hub, "a", m0)
    assert [(op, dst, tpa) for _, op, dst, _, _, _, tpa in reqs] == [
        (ARPOP_REQUEST, BROADCAST_MAC, parse_ip(B)), (ARPOP_REQUEST, BROADCAST_MAC, parse_ip(C))]
    assert all(spa == parse_ip(A) and tha == ZERO_MAC for _, _, _, _, spa, tha, _ in reqs)
    # Replies are unicast: a's entries are REACHABLE.
    assert neigh(a, B, hub.now)["state"] == "REACHABLE"
    assert neigh(a, C, hub.now)["mac"] == "02:00:00:00:00:03"
    # b and c learned a from its request to them (STALE, as Linux), and nothing else; the
    # echo reply then used the entry: STALE -> DELAY.
    assert neigh(b, A, hub.now)["state"] == "DELAY"
    assert neigh(b, A, hub.now)["mac"] == "02:00:00:00:00:01"
    assert [r["ip"] for r in b.neigh_show(hub.now)] == [A]
    assert [r["ip"] for r in c.neigh_show(hub.now)] == [A]
    assert a.counters()["arp"]["requests_sent"] == 2
    assert a.counters()["arp"]["replies_received"] == 2
    assert b.counters()["arp"]["replies_sent"] == 1
    # c saw a's broadcast request for b, too.
    assert c.counters()["arp"]["requests_received"] >= 2


def test_request_retries_then_failed_with_queued_packets_dropped():
    hub = make_lan(2)
    a = hub.stacks["a"]
    t0, m0 = hub.now, len(hub.trace)
    hub.call("a", "send_echo", "10.0.0.9", 7, 1, 56)
    assert neigh(a, "10.0.0.9", hub.now)["state"] == "INCOMPLETE"
    assert a.next_deadline() == t0 + 1.0
    hub.run(t0 + 2.5)
    assert [t - t0 for t, *_ in arps(hub, "a", m0)] == [0.0, 1.0, 2.0]
    assert hub.events("a") == []
    hub.run(t0 + 3.0)
    assert hub.events("a") == [NeighFailed(ip("10.0.0.9"), 1)]
    assert neigh(a, "10.0.0.9", hub.now)["state"] == "FAILED"
    assert a.counters()["arp"]["failed_resolutions"] == 1
    assert len(arps(hub, "a", m0)) == 3  # no fourth request
    # Using a FAILED entry starts a new round.
    hub.call("a", "send_echo", "10.0.0.9", 7, 2, 56)
    assert neigh(a, "10.0.0.9", hub.now)["state"] == "INCOMPLETE"
    assert len(arps(hub, "a", m0)) == 4


def test_unresolved_queue_is_bounded_oldest_dropped():
    hub = make_lan(2)
    a = hub.stacks["a"]
    t0, m0 = hub.now, len(hub.trace)
    for seq in range(5):
        hub.call("a", "send_echo", "10.0.0.9", 7, seq, 56)
    assert a.counters()["arp"]["unres_discards"] == 2
    assert neigh(a, "10.0.0.9", hub.now)["queued"] == 3
    assert len(arps(hub, "a", m0)) == 1  # queueing does not send more requests
    hub.run(t0 + 3.0)
    assert hub.events("a") == [NeighFailed(ip("10.0.0.9"), 3)]


def test_queued_packets_go_out_when_resolved():
    hub = make_lan(2)
    t0, m0 = hub.now, len(hub.trace)
    hub.unplugged.add("b")
    hub.call("a", "send_echo", B, 7, 1, 56)
    hub.call("a", "send_echo", B, 7, 2, 56)
    hub.call("a", "send_echo", B, 7, 3, 56)
    hub.run(t0 + 0.5)
    hub.unplugged.discard("b")
    hub.run(t0 + 1.0)  # the retry gets through
    replies = [e.seq for e in hub.events("a") if isinstance(e, EchoReply)]
    assert replies == [1, 2, 3]  # in order: the newest queued last


def test_reachable_ages_to_stale_then_delay_probe_reconfirm():
    hub = make_lan(2)
    a = hub.stacks["a"]
    t0, m0 = hub.now, len(hub.trace)
    hub.call("a", "send_echo", B, 1, 1, 8)
    assert neigh(a, B, hub.now)["state"] == "REACHABLE"
    hub.run(t0 + 29.9)
    assert neigh(a, B, hub.now)["state"] == "REACHABLE"
    hub.run(t0 + 30.0)  # base_reachable_time, fixed without an rng
    assert neigh(a, B, hub.now)["state"] == "STALE"
    # Use: the packet goes out at once with the cached MAC; the entry goes to DELAY.
    t1, m1 = hub.now, len(hub.trace)
    hub.call("a", "send_echo", B, 1, 2, 8)
    assert [e.seq for e in hub.events("a") if isinstance(e, EchoReply)] == [1, 2]
    assert neigh(a, B, hub.now)["state"] == "DELAY"
    assert arps(hub, "a", m1) == []
    # After delay_first_probe_time: PROBE, a unicast request to the cached MAC; the unicast
    # reply re-confirms.
    hub.run(t1 + 5.0)
    probes = arps(hub, "a", m1)
    assert len(probes) == 1
    assert probes[0][1] == ARPOP_REQUEST and probes[0][2] == mac_of(2)
    assert neigh(a, B, hub.now)["state"] == "REACHABLE"
    assert neigh(a, B, hub.now)["confirmed"] == 0


def test_probe_unanswered_goes_failed():
    hub = make_lan(2)
    a = hub.stacks["a"]
    t0, m0 = hub.now, len(hub.trace)
    hub.call("a", "send_echo", B, 1, 1, 8)
    hub.run(t0 + 30)
    m1 = len(hub.trace)
    hub.call("a", "send_echo", B, 1, 2, 8)  # STALE -> DELAY
    hub.events("a")
    hub.unplugged.add("b")
    hub.run(t0 + 35)
    assert neigh(a, B, hub.now)["state"] == "PROBE"
    hub.run(t0 + 37.5)
    assert neigh(a, B, hub.now)["state"] == "PROBE"
    hub.run(t0 + 38)
    assert neigh(a, B, hub.now)["state"] == "FAILED"
    probes = arps(hub, "a", m1)
    assert [t - t0 for t, *_ in probes] == [35, 36, 37]
    assert all(p[2] == mac_of(2) for p in probes)  # unicast, ucast_solicit of them
    assert hub.events("a") == [NeighFailed(ip(B), 0)]


def test_reply_in_delay_confirms_without_probe():
    hub = make_lan(2)
    a = hub.stacks["a"]
    t0, m0 = hub.now, len(hub.trace)
    hub.call("a", "send_echo", B, 1, 1, 8)
    hub.run(t0 + 30)
    m1 = len(hub.trace)
    hub.call("a", "send_echo", B, 1, 2, 8)
    assert neigh(a, B, hub.now)["state"] == "DELAY"
    hub.call("a", "arp_probe", B)  # anything that brings a unicast reply
    assert neigh(a, B, hub.now)["state"] == "REACHABLE"
    hub.run(t0 + 36)
    assert len(arps(hub, "a", m1)) == 1  # only the arping


def test_learning_from_requests():
    hub = make_lan(2)
    a, b = hub.stacks["a"], hub.stacks["b"]
    assert b.neigh_show(hub.now) == []
    hub.call("a", "arp_probe", B)
    assert neigh(b, A, hub.now)["state"] == "STALE"
    assert hub.events("b") == [NeighResolved(ip(A), mac("02:00:00:00:00:01"))]
    # b can now send to a without asking (a, which learned nothing from the reply to its
    # arping, has to ask for b to answer).
    t1, m1 = hub.now, len(hub.trace)
    hub.call("b", "send_echo", A, 1, 1, 8)
    assert [p[1] for p in arps(hub, "b", m1)] == [ARPOP_REPLY]
    assert [p[1] for p in arps(hub, "a", m1)] == [ARPOP_REQUEST]
    assert [e.seq for e in hub.events("b") if isinstance(e, EchoReply)] == [1]
    # A request from a REACHABLE neighbour with the same MAC leaves it REACHABLE.
    hub.call("a", "send_echo", B, 1, 1, 8)
    assert neigh(a, B, hub.now)["state"] == "REACHABLE"
    hub.call("b", "arp_probe", A)
    assert neigh(a, B, hub.now)["state"] == "REACHABLE"


def test_requests_not_for_us_do_not_create_entries():
    hub = make_lan(3)
    c = hub.stacks["c"]
    hub.call("a", "arp_probe", B)
    assert c.neigh_show(hub.now) == []


def test_gratuitous_arp_on_mac_change_updates_peers():
    hub = make_lan(3)
    a, b, c = (hub.stacks[n] for n in "abc")
    hub.call("a", "send_echo", B, 1, 1, 8)
    hub.call("c", "send_echo", B, 1, 1, 8)
    hub.events("a"), hub.events("c")
    new = bytes.fromhex("020000000099")
    t0, m0 = hub.now, len(hub.trace)
    hub.call("b", "set_mac", new)
    garps = arps(hub, "b", m0)
    assert len(garps) == 1
    _, op, dst, sha, spa, tha, tpa = garps[0]
    assert (op, dst, sha, spa, tpa) == (ARPOP_REQUEST, BROADCAST_MAC, new, parse_ip(B),
                                        parse_ip(B))
    for s, name in ((a, "a"), (c, "c")):
        row = neigh(s, B, hub.now)
        assert row["mac"] == "02:00:00:00:00:99" and row["state"] == "STALE"
        assert hub.events(name) == [NeighResolved(ip(B), mac("02:00:00:00:00:99"))]
    # Traffic follows: the hub delivers only to the new MAC now.
    hub.call("a", "send_echo", B, 1, 2, 8)
    assert [e.seq for e in hub.events("a") if isinstance(e, EchoReply)] == [2]
    # The second announcement (announce_num=2) comes a second later.
    hub.run(t0 + 1.0)
    assert len(arps(hub, "b", m0)) == 2


def test_gratuitous_arp_on_link_up_updates_peers():
    hub = make_lan(2)
    a, b = hub.stacks["a"], hub.stacks["b"]
    hub.call("a", "send_echo", B, 1, 1, 8)
    hub.call("b", "link_down")
    assert hub.call("b", "set_mac", "02:00:00:00:00:42") == []  # down: nothing sent
    assert neigh(a, B, hub.now)["mac"] == "02:00:00:00:00:02"
    hub.call("b", "link_up")
    assert neigh(a, B, hub.now)["mac"] == "02:00:00:00:00:42"
    assert b.counters()["arp"]["announcements_sent"] >= 3


def test_reply_with_new_mac_respects_locktime():
    hub = make_lan(2)
    a = hub.stacks["a"]
    t0, m0 = hub.now, len(hub.trace)
    hub.call("a", "send_echo", B, 1, 1, 8)
    other = bytes.fromhex("020000000077")
    reply = arp_frame(mac_of(1), other, ARPOP_REPLY, other, parse_ip(B), mac_of(1),
                      parse_ip(A))
    a.receive(reply, t0 + 0.5)  # within locktime of the last update: the first one wins
    assert neigh(a, B, t0 + 0.5)["mac"] == "02:00:00:00:00:02"
    a.receive(reply, t0 + 1.5)
    row = neigh(a, B, t0 + 1.5)
    assert row["mac"] == "02:00:00:00:00:77" and row["state"] == "REACHABLE"


def test_unknown_gratuitous_arp_not_learned_unless_arp_accept():
    garp = arp_frame(BROADCAST_MAC, mac_of(9), ARPOP_REQUEST, mac_of(9), parse_ip("10.0.0.9"),
                     ZERO_MAC, parse_ip("10.0.0.9"))
    hub = make_lan(1)
    a = hub.stacks["a"]
    a.receive(garp, hub.now)
    assert a.neigh_show(hub.now) == []
    hub = make_lan(1, arp_accept=True)
    a = hub.stacks["a"]
    a.receive(garp, hub.now)
    assert neigh(a, "10.0.0.9", hub.now)["state"] == "STALE"


def test_unsolicited_reply_from_unknown_ip_ignored():
    hub = make_lan(1)
    a = hub.stacks["a"]
    reply = arp_frame(mac_of(1), mac_of(9), ARPOP_REPLY, mac_of(9), parse_ip("10.0.0.9"),
                      mac_of(1), parse_ip(A))
    assert a.receive(reply, hub.now) == []
    assert a.neigh_show(hub.now) == []
    assert a.next_events() == []  # no ArpReply: we did not arping it


def test_arping_gives_arp_reply_events():
    hub = make_lan(3)
    hub.call("a", "arp_probe", C)
    evs = hub.events("a")
    assert ArpReply(ip(C), mac("02:00:00:00:00:03"), hub.now) in evs
    # Nobody answers for an absent host; no retries either (arping paces itself).
    t0, m0 = hub.now, len(hub.trace)
    hub.call("a", "arp_probe", "10.0.0.50")
    hub.run(t0 + 5)
    assert [e for e in hub.events("a") if isinstance(e, ArpReply)] == []
    assert len(arps(hub, "a", m0)) == 1


def test_static_entries():
    hub = make_lan(2)
    a = hub.stacks["a"]
    # Packets queued for an unresolved neighbour go out when it is added statically.
    hub.unplugged.add("b")
    hub.call("a", "send_echo", B, 1, 1, 8)
    hub.unplugged.discard("b")
    hub.call("a", "neigh_add", B, "02:00:00:00:00:02")
    assert [e.seq for e in hub.events("a") if isinstance(e, EchoReply)] == [1]
    assert neigh(a, B, hub.now)["state"] == "PERMANENT"
    # Neither gratuitous ARPs nor time change it; flush leaves it.
    hub.call("b", "set_mac", "02:00:00:00:00:55")
    hub.run(hub.now + 100)
    assert neigh(a, B, hub.now)["mac"] == "02:00:00:00:00:02"
    assert a.neigh_flush() == 0
    assert a.neigh_del(B) is True
    assert a.neigh_show(hub.now) == []
    assert a.neigh_del(B) is False
    with pytest.raises(StackError, match="MAC"):
        a.neigh_add(B, "zz:00", hub.now)


def test_flush_reports_queued_packets():
    hub = make_lan(3)
    a = hub.stacks["a"]
    hub.call("a", "send_echo", B, 1, 1, 8)
    hub.call("a", "send_echo", "10.0.0.9", 1, 2, 8)
    hub.events("a")
    assert a.neigh_flush() == 2
    assert hub.events("a") == [NeighFailed(ip("10.0.0.9"), 1)]
    assert a.neigh_show(hub.now) == []
    assert a.next_deadline() is None


def test_link_down_flushes_neighbours():
    hub = make_lan(2)
    a = hub.stacks["a"]
    hub.call("a", "send_echo", B, 1, 1, 8)
    hub.call("a", "send_echo", "10.0.0.9", 1, 2, 8)
    hub.events("a")
    hub.call("a", "link_down")
    assert a.neigh_show(hub.now) == []
    assert hub.events("a") == [NeighFailed(ip("10.0.0.9"), 1)]


def test_illegal_transition_raises_named_error():
    hub = make_lan(2)
    a = hub.stacks["a"]
    hub.call("a", "send_echo", B, 1, 1, 8)
    n = a.arp.neigh.entries[parse_ip(B)]
    assert n.state == Nud.REACHABLE
    with pytest.raises(NeighStateError, match="REACHABLE -> FAILED"):
        a.arp.neigh._set_state(n, Nud.FAILED, hub.now)
    assert Nud.FAILED not in NUD_TRANSITIONS[Nud.REACHABLE]
    assert NUD_TRANSITIONS[Nud.PERMANENT] == frozenset()


def test_reachable_time_is_randomised_with_an_rng():
    times = set()
    for seed in range(20):
        hub = make_lan(2, rng=random.Random(seed))
        a = hub.stacks["a"]
        t0, m0 = hub.now, len(hub.trace)
        hub.call("a", "send_echo", B, 1, 1, 8)
        deadline = a.arp.neigh.entries[parse_ip(B)].deadline
        assert 15.0 <= deadline - t0 <= 45.0
        times.add(deadline - t0)
    assert len(times) == 20


def test_table_limit_evicts_least_recently_used():
    hub = make_lan(1, max_entries=2)
    a = hub.stacks["a"]
    for i, t in ((5, 1.0), (6, 2.0), (7, 3.0)):
        req = arp_frame(BROADCAST_MAC, mac_of(i), ARPOP_REQUEST, mac_of(i),
                        parse_ip(f"10.0.0.{i}"), ZERO_MAC, parse_ip(A))
        a.receive(req, hub.now + t)
    assert [r["ip"] for r in a.neigh_show(hub.now + 3)] == ["10.0.0.6", "10.0.0.7"]
    # INCOMPLETE entries are never evicted: with only those, new ones are refused.
    hub = make_lan(1, max_entries=2)
    a = hub.stacks["a"]
    for i in (5, 6, 7):
        a.send_echo(f"10.0.0.{i}", 1, 1, 8, hub.now)
    assert len(a.neigh_show(hub.now)) == 2
    assert a.counters()["arp"]["table_fulls"] == 1


def test_malformed_arp_is_counted():
    hub = make_lan(1)
    a = hub.stacks["a"]
    good = arp_frame(BROADCAST_MAC, mac_of(5), ARPOP_REQUEST, mac_of(5), parse_ip("10.0.0.5"),
                     ZERO_MAC, parse_ip(A))
    a.receive(good[:30], hub.now)
    a.receive(good[:14] + b"\x00\x06" + good[16:], hub.now)  # htype 6
    a.receive(good[:20] + b"\x00\x09" + good[22:], hub.now)  # opcode 9
    mcast_sender = good[:28] + bytes([224, 0, 0, 1]) + good[32:]
    a.receive(mcast_sender, hub.now)
    own = arp_frame(BROADCAST_MAC, mac_of(1), ARPOP_REQUEST, mac_of(1), parse_ip("10.0.0.5"),
                    ZERO_MAC, parse_ip(A))
    a.receive(own, hub.now)
    c = a.counters()["arp"]
    assert (c["in_truncated"], c["in_hdr_errors"], c["in_martians"], c["in_own_mac"]) == \
        (1, 2, 1, 1)
    assert c["replies_sent"] == 0
    # Padded to the Ethernet minimum: still answered.
    assert len(a.receive(good + bytes(18), hub.now)) == 1


def test_arp_params_validated():
    with pytest.raises(StackError, match="unknown HostStack parameter"):
        HostStack(mac_of(1), retrans=3)
    with pytest.raises(StackError, match="retrans_time"):
        HostStack(mac_of(1), retrans_time=0)
    with pytest.raises(StackError, match="unicast"):
        HostStack(b"\xff" * 6)


def test_many_confirmations_keep_one_live_timer():
    hub = make_lan(2)
    a = hub.stacks["a"]
    t0 = hub.now
    hub.call("a", "send_echo", B, 1, 1, 8)
    reply = arp_frame(mac_of(1), mac_of(2), ARPOP_REPLY, mac_of(2), parse_ip(B), mac_of(1),
                      parse_ip(A))
    for i in range(500):
        a.receive(reply, t0 + i * 0.01)
    assert len(a.arp.neigh._timers) < 100  # re-armed timers are compacted
    assert a.next_deadline() == pytest.approx(t0 + 4.99 + 30.0)
    a.tick(t0 + 34.9)
    assert neigh(a, B, t0 + 34.9)["state"] == "REACHABLE"
    a.tick(t0 + 35.0)
    assert neigh(a, B, t0 + 35.0)["state"] == "STALE"


def test_zero_length_queue_drops_everything():
    hub = make_lan(1, unres_qlen=0)
    a = hub.stacks["a"]
    hub.call("a", "send_echo", "10.0.0.9", 1, 1, 8)
    assert a.counters()["arp"]["unres_discards"] == 1
    hub.advance(3)
    assert hub.events("a") == [NeighFailed(ip("10.0.0.9"), 0)]
