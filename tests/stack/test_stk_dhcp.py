"""DHCP on the hub: a server and clients in HostStacks, fake time (RFC 2131 behaviour)."""

from __future__ import annotations

import json
import math
import random

import pytest

from vnet.node.stack import (
    AddressConflict, DhcpBound, DhcpLeasesChanged, DhcpLost, DhcpParams, EchoReply, HostStack,
    StackError, UdpDatagram,
)
from vnet.node.stack import parse_ip as ip  # wire-form addresses
from vnet.node.stack.dhcp import (
    DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DHCP_TRANSITIONS, MsgType, DhcpState,
    DhcpStateError, decode_dhcp,
)
from vnet.node.stack.ether import ETH_HLEN, ETH_P_IP
from vnet.node.stack.ipv4 import IP_HLEN
from vnet.node.stack.testing import Hub, mac_of

SERVER = "10.0.0.1"


def lan(*, pool=("10.0.0.10", "10.0.0.200"), **server_kw) -> Hub:
    """A hub with the DHCP server "srv" (10.0.0.1/24, MAC 02:..:01), DAD done."""
    hub = Hub()
    add_server(hub, pool=pool, **server_kw)
    return hub


def add_server(hub: Hub, *, pool=("10.0.0.10", "10.0.0.200"), lease_time=3600,
               **kw) -> HostStack:
    srv = hub.attach("srv", HostStack(mac_of(1)))
    hub.call("srv", "link_up")
    hub.call("srv", "add_address", f"{SERVER}/24")
    hub.run(hub.now + 1.0)
    srv.dhcp_server_start(f"{SERVER}/24", *pool, lease_time=lease_time, **kw)
    hub.events("srv")
    return srv


def client(hub: Hub, name: str, i: int, *, cid: bytes | None | str = "name",
           previous_ip: str | None = None, rng=None, start: bool = True,
           params: DhcpParams | None = None) -> HostStack:
    """Host ``name`` with MAC mac_of(i); its DHCP client id is its name by default."""
    s = hub.attach(name, HostStack(mac_of(i), rng=rng))
    hub.call(name, "link_up")
    if start:
        cid = name.encode() if cid == "name" else cid
        hub.send(name, s.dhcp_client_start(hub.now, cid, name, previous_ip, params=params))
    return s


def static_host(hub: Hub, name: str, i: int, cidr: str) -> HostStack:
    s = hub.attach(name, HostStack(mac_of(i)))
    hub.call(name, "link_up")
    hub.call(name, "add_address", cidr)
    hub.run(hub.now + 1.0)
    hub.events(name)
    return s


def kill(hub: Hub, name: str) -> HostStack:
    """The host disappears (a container stopped): no RELEASE, no more frames."""
    return hub.stacks.pop(name)


def address(s: HostStack) -> str | None:
    st = s.dhcp_client_state()
    return st["address"] if st["state"] == "bound" else None


def usable(s: HostStack) -> list[str]:
    return [a["address"] for a in s.addresses() if a["state"] == "ok"]


def dhcp_sent(hub: Hub, name: str, mark: int = 0) -> list[tuple[float, MsgType, bytes]]:
    """(time, message type, IP source) of the DHCP messages ``name`` put on the wire."""
    out = []
    for t, n, f in hub.trace[mark:]:
        if n != name or f[12:14] != ETH_P_IP.to_bytes(2, "big") or f[ETH_HLEN + 9] != 17:
            continue
        udp = ETH_HLEN + IP_HLEN
        dport = int.from_bytes(f[udp + 2:udp + 4], "big")
        if dport in (DHCP_SERVER_PORT, DHCP_CLIENT_PORT):
            m = decode_dhcp(f[udp + 8:])
            out.append((t, m.msg_type, f[ETH_HLEN + 12:ETH_HLEN + 16]))
    return out


def dhcp_events(hub: Hub, name: str) -> list:
    return [e for e in hub.events(name)
            if isinstance(e, (DhcpBound, DhcpLost, DhcpLeasesChanged))]


def all_addresses(hub: Hub) -> list[str]:
    return [a for s in hub.stacks.values() for a in usable(s)]


# -- many clients ---------------------------------------------------------------------------


def test_twenty_clients_get_distinct_addresses_lowest_first():
    hub = lan()
    stacks = [client(hub, f"n{i}", i) for i in range(2, 22)]
    hub.run(hub.now + 5)
    got = [address(s) for s in stacks]
    assert got == [f"10.0.0.{10 + k}" for k in range(20)]
    for s in stacks:
        evs = [e for e in s.next_events() if isinstance(e, DhcpBound)]
        assert len(evs) == 1 and evs[0].prefixlen == 24 and evs[0].lease_time == 3600
        assert evs[0].server == ip(SERVER)
        c = s.counters()["dhcp"]
        assert (c["discovers_sent"], c["offers_received"], c["requests_sent"],
                c["acks_received"]) == (1, 1, 1, 1)
    rows = hub.stacks["srv"].dhcp_server_show(hub.now)
    assert [r["state"] for r in rows] == ["bound"] * 20
    assert sorted(r["hostname"] for r in rows) == sorted(f"n{i}" for i in range(2, 22))


def test_twenty_simultaneous_discovers_get_distinct_offers():
    """All DISCOVERs reach the server before any OFFER goes out (a compose --scale)."""
    hub = lan()
    srv = hub.stacks["srv"]
    discovers = []
    for i in range(2, 22):
        s = client(hub, f"n{i}", i, start=False)
        discovers += s.dhcp_client_start(hub.now, f"n{i}".encode(), f"n{i}")
    offers = []
    for f in discovers:
        offers += srv.receive(f, hub.now)
    assert len(offers) == 20
    hub.send("srv", offers)
    hub.run(hub.now + 5)
    got = [address(hub.stacks[f"n{i}"]) for i in range(2, 22)]
    assert None not in got and len(set(got)) == 20
    assert srv.counters()["dhcp"]["naks_sent"] == 0


def test_twenty_clients_with_jitter_and_rng_xids():
    hub = lan()
    stacks = [client(hub, f"n{i}", i, rng=random.Random(i)) for i in range(2, 22)]
    assert all(s.dhcp_client_state()["state"] == "init" for s in stacks)  # init_delay
    hub.run(hub.now + 10)
    got = {address(s) for s in stacks}
    assert None not in got and len(got) == 20
    assert len({s.dhcp_client_state()["xid"] for s in stacks}) == 20
    assert len(set(all_addresses(hub))) == len(all_addresses(hub)) == 21


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clients_converge_on_a_lossy_lan(seed):
    """20% of frames lost, both ways: retransmissions still give everyone one distinct
    address, and the server's view matches the hosts'."""
    hub = lan()
    loss = random.Random(seed)
    hub.drop = lambda src, frame: loss.random() < 0.2
    stacks = [client(hub, f"n{i}", i, rng=random.Random(seed * 100 + i))
              for i in range(2, 14)]
    hub.run(hub.now + 120)
    got = [address(s) for s in stacks]
    assert None not in got and len(set(got)) == 12
    assert sum(s.counters()["dhcp"]["retransmits"] for s in stacks) > 0
    bound = {r["ip"]: r["hostname"] for r in hub.stacks["srv"].dhcp_server_show(hub.now)
             if r["state"] == "bound"}
    assert bound == {address(s): n for s, n in zip(stacks, (f"n{i}" for i in range(2, 14)))}


# -- restarts -------------------------------------------------------------------------------


@pytest.mark.parametrize("previous", [False, True])
def test_restarted_client_gets_the_same_address(previous):
    hub = lan()
    for i in range(2, 6):
        client(hub, f"n{i}", i)
    hub.run(hub.now + 5)
    old = address(hub.stacks["n3"])
    kill(hub, "n3")
    hub.run(hub.now + 30)
    client(hub, "n9", 9)  # a newcomer meanwhile must not take it
    hub.run(hub.now + 5)
    mark = len(hub.trace)
    n3 = client(hub, "n3", 3, previous_ip=old if previous else None)
    hub.run(hub.now + 5)
    assert address(n3) == old == "10.0.0.11"
    types = [m for _, m, _ in dhcp_sent(hub, "n3", mark)]
    assert types == ([MsgType.REQUEST] if previous else [MsgType.DISCOVER, MsgType.REQUEST])
    assert address(hub.stacks["n9"]) == "10.0.0.14"
    assert len(set(all_addresses(hub))) == len(all_addresses(hub))


def test_restarted_client_keyed_by_mac_gets_the_same_address():
    hub = lan()
    a = client(hub, "a", 2, cid=None)
    client(hub, "b", 3, cid=None)
    hub.run(hub.now + 5)
    old = address(a)
    assert a.dhcp_client_state()["client_id"] == "01" + mac_of(2).hex()
    kill(hub, "a")
    a2 = client(hub, "a", 2, cid=None)
    hub.run(hub.now + 5)
    assert address(a2) == old


def test_expired_lease_comes_back_if_nobody_took_it():
    hub = lan(lease_time=60)
    a = client(hub, "a", 2)
    hub.run(hub.now + 5)
    old = address(a)
    kill(hub, "a")
    hub.run(hub.now + 600)  # long expired
    assert hub.stacks["srv"].dhcp_server_show(hub.now)[0]["state"] == "expired"
    client(hub, "b", 3)
    hub.run(hub.now + 5)
    assert address(hub.stacks["b"]) != old  # a never-used address first
    a = client(hub, "a", 2)
    hub.run(hub.now + 5)
    assert address(a) == old


@pytest.mark.parametrize("with_file", [True, False])
def test_server_restart_keeps_every_address_and_never_duplicates(with_file):
    hub = lan(lease_time=120)
    srv = hub.stacks["srv"]
    names = [f"n{i}" for i in range(2, 12)]
    for i, n in enumerate(names, start=2):
        client(hub, n, i)
    hub.run(hub.now + 5)
    before = {n: address(hub.stacks[n]) for n in names}
    assert len(set(before.values())) == 10
    saved = json.loads(json.dumps(srv.dhcp_server_leases()))
    kill(hub, "srv")
    hub.run(hub.now + 20)
    srv2 = add_server(hub, lease_time=120, leases=saved if with_file else None)
    # A newcomer arrives before anyone renewed. Without the file the server does not know
    # .10 is taken and offers it: the newcomer's DAD finds it in use and declines (and
    # waits 10 s each time) until the renewals have taught the server what is taken.
    new = client(hub, "new", 40)
    # Running clients renew with the new server (T1 = 60 s) and keep their addresses;
    # without the file the server adopts the renewed bindings.
    hub.run(hub.now + 100)
    assert address(new) not in before.values() and address(new) is not None
    assert (new.counters()["dhcp"]["declines_sent"] > 0) == (not with_file)
    assert {n: address(hub.stacks[n]) for n in names} == before
    for n in names:
        assert not [e for e in hub.events(n) if isinstance(e, DhcpLost)]
    # And every client restarting (half with their previous address) gets it back.
    for k, (i, n) in enumerate(enumerate(names, start=2)):
        kill(hub, n)
        client(hub, n, i, previous_ip=before[n] if k % 2 else None)
    hub.run(hub.now + 20)
    assert {n: address(hub.stacks[n]) for n in names} == before
    addrs = all_addresses(hub)
    assert len(addrs) == len(set(addrs)) == 12
    assert srv2.counters()["dhcp"]["pool_exhausted"] == 0


# -- pool exhaustion, RELEASE -----------------------------------------------------------------


def test_pool_exhausted_then_recovers_after_release():
    hub = lan(pool=("10.0.0.10", "10.0.0.12"))
    srv = hub.stacks["srv"]
    a, b, c = (client(hub, n, i) for n, i in (("a", 2), ("b", 3), ("c", 4)))
    hub.run(hub.now + 5)
    assert [address(s) for s in (a, b, c)] == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    d = client(hub, "d", 5)
    hub.run(hub.now + 20)
    assert d.dhcp_client_state()["state"] == "selecting" and usable(d) == []
    assert srv.counters()["dhcp"]["pool_exhausted"] >= 3
    assert srv.counters()["dhcp"]["offers_sent"] == 3
    assert d.counters()["dhcp"]["retransmits"] >= 2
    hub.events("b")
    hub.send("b", b.dhcp_client_stop(hub.now, release=True))
    assert usable(b) == []
    assert dhcp_events(hub, "b") == [DhcpLost(ip("10.0.0.11"), "released")]
    assert srv.counters()["dhcp"]["releases_received"] == 1
    assert [r["state"] for r in srv.dhcp_server_show(hub.now)] == ["bound", "expired",
                                                                  "bound"]
    hub.run(hub.now + 20)  # d's next DISCOVER retransmission
    assert address(d) == "10.0.0.11"
    assert b.dhcp_client_state()["state"] == "stopped"
    # b's memory of .11 went with the recycling: b now finds the pool full.
    hub.send("b", b.dhcp_client_start(hub.now, b"b", "b"))
    hub.run(hub.now + 5)
    assert address(b) is None


# -- DECLINE ----------------------------------------------------------------------------------


def test_client_declines_an_address_in_use_and_server_holds_it():
    hub = lan(pool=("10.0.0.10", "10.0.0.20"))
    srv = hub.stacks["srv"]
    static_host(hub, "st", 50, "10.0.0.10/24")  # in the pool, unknown to the server
    t0 = hub.now
    a = client(hub, "a", 2)
    hub.run(t0 + 5)
    assert a.dhcp_client_state()["state"] == "init"  # waiting decline_wait
    evs = hub.events("a")
    assert AddressConflict(ip("10.0.0.10"), mac_of(50)) in evs
    assert not [e for e in evs if isinstance(e, (DhcpBound, DhcpLost))]
    assert a.counters()["dhcp"]["declines_sent"] == 1
    assert srv.counters()["dhcp"]["declines_received"] == 1
    assert usable(a) == [] and a.addresses() == []
    rows = {r["ip"]: r["state"] for r in srv.dhcp_server_show(hub.now)}
    assert rows == {"10.0.0.10": "declined"}
    hub.run(t0 + 15)  # RFC 2131: wait 10 s, then DISCOVER
    assert address(a) == "10.0.0.11"
    assert usable(hub.stacks["st"]) == ["10.0.0.10"]  # the static host kept it
    # Within the hold, nobody is offered .10 again (even asking for it).
    others = [client(hub, f"o{i}", i, previous_ip="10.0.0.10" if i == 3 else None)
              for i in range(3, 8)]
    hub.run(hub.now + 20)
    assert "10.0.0.10" not in [address(s) for s in others]
    assert srv.counters()["dhcp"]["declines_received"] == 1
    assert len(set(all_addresses(hub))) == len(all_addresses(hub)) == 8
    assert hub.now < t0 + 600
    hub.run(t0 + 601)
    assert "declined" not in [r["state"] for r in srv.dhcp_server_show(hub.now)]


# -- renewal, rebinding, expiry ---------------------------------------------------------------


def test_renewal_at_t1_keeps_the_address_and_traffic_flows():
    hub = lan(lease_time=60)
    b = static_host(hub, "b", 9, "10.0.0.5/24")
    t_req = hub.now  # the lease runs from the REQUEST
    a = client(hub, "a", 2)
    hub.run(hub.now + 3)
    hub.events("a")
    evs = []
    for seq in range(1, 200):  # a ping a second across six renewals
        hub.call("a", "send_echo", "10.0.0.5", 7, seq, 8)
        hub.run(hub.now + 1.0)
        evs += hub.events("a")
        assert usable(a) == ["10.0.0.10"], hub.now
    assert [e.seq for e in evs if isinstance(e, EchoReply)] == list(range(1, 200))
    bounds = [e for e in evs if isinstance(e, DhcpBound)]
    assert len(bounds) >= 6 and all(e.renewal for e in bounds)
    assert not [e for e in evs if isinstance(e, DhcpLost)]
    assert b.counters()["icmp"]["in_echos"] == 199
    assert a.counters()["icmp"]["in_echo_reps"] == 199
    # Renewals are unicast from the bound address (RENEWING), about every T1 = 30 s.
    reqs = [(t, src) for t, m, src in dhcp_sent(hub, "a") if m == MsgType.REQUEST]
    assert all(src == ip("10.0.0.10") for _, src in reqs[1:])
    assert [round(t - t_req, 6) for t, _ in reqs[1:4]] == [30, 60, 90]
    assert a.counters()["dhcp"]["retransmits"] == 0


def test_vanished_server_leads_to_rebinding_then_expiry():
    hub = lan(lease_time=80)
    a = client(hub, "a", 2)
    t0 = hub.now  # the REQUEST went out now: the lease runs from here
    hub.run(t0 + 3)
    hub.events("a")
    hub.unplugged.add("srv")
    seen = {}
    while hub.now < t0 + 90:
        hub.run(hub.now + 0.5)
        seen.setdefault(a.dhcp_client_state()["state"], hub.now - t0)
    assert list(seen) == ["bound", "renewing", "rebinding", "selecting"]
    assert 40 <= seen["renewing"] < 41  # T1 = 40
    assert 70 <= seen["rebinding"] < 71  # T2 = 70
    assert 80 <= seen["selecting"] < 81  # expiry
    assert usable(a) == [] and a.addresses() == []
    evs = hub.events("a")
    assert DhcpLost(ip("10.0.0.10"), "expired") in evs
    # RENEWING unicasts to the server: with it gone ARP fails and nothing reaches the
    # wire; REBINDING broadcasts from the bound address.
    sent = dhcp_sent(hub, "a")
    assert not [t for t, m, _ in sent if 40 <= t - t0 < 70]
    rebinding = [(round(t - t0, 6), src) for t, m, src in sent
                 if m == MsgType.REQUEST and 70 <= t - t0 < 80]
    assert rebinding == [(70, ip("10.0.0.10")), (75, ip("10.0.0.10"))]  # halving, 4 s floor
    assert a.counters()["dhcp"]["requests_sent"] == 1 + 3 + 2  # T1, then 55, 62.5 (halving)
    assert a.counters()["arp"]["failed_resolutions"] >= 1
    # The server comes back: the client's DISCOVER asks for its old address, and gets it.
    hub.unplugged.discard("srv")
    hub.run(hub.now + 20)
    assert address(a) == "10.0.0.10"


def test_nak_on_renewal_removes_the_address():
    hub = lan(lease_time=60)
    a = client(hub, "a", 2)
    hub.run(hub.now + 3)
    hub.events("a")
    srv = hub.stacks["srv"]
    # The administrator shrinks the pool: .10 is no longer served.
    kill(hub, "srv")
    srv2 = add_server(hub, pool=("10.0.0.100", "10.0.0.110"), lease_time=60,
                      leases=srv.dhcp_server_leases(), static=["10.0.0.10"])
    hub.run(hub.now + 40)
    evs = hub.events("a")
    assert DhcpLost(ip("10.0.0.10"), "nak") in evs
    assert srv2.counters()["dhcp"]["naks_sent"] == 1
    assert address(a) == "10.0.0.100"


# -- INIT-REBOOT ------------------------------------------------------------------------------


def test_init_reboot_with_a_foreign_address_is_naked():
    hub = lan()
    a = client(hub, "a", 2)
    hub.run(hub.now + 5)
    assert address(a) == "10.0.0.10"
    b = client(hub, "b", 3, previous_ip="10.0.0.10")
    hub.run(hub.now + 5)
    assert b.counters()["dhcp"]["naks_received"] == 1
    assert hub.stacks["srv"].counters()["dhcp"]["naks_sent"] == 1
    assert address(b) == "10.0.0.11" and address(a) == "10.0.0.10"
    assert not [e for e in hub.events("a") if isinstance(e, DhcpLost)]


def test_init_reboot_outside_the_subnet_is_naked():
    hub = lan()
    c = client(hub, "c", 4, previous_ip="192.168.7.7")
    hub.run(hub.now + 5)
    assert c.counters()["dhcp"]["naks_received"] == 1
    assert address(c) == "10.0.0.10"


def test_init_reboot_unknown_to_the_server_is_silent_then_discovers():
    hub = lan()
    mark = len(hub.trace)
    t0 = hub.now
    c = client(hub, "c", 4, previous_ip="10.0.0.77")
    hub.run(t0 + 14)
    assert c.dhcp_client_state()["state"] == "rebooting"
    assert hub.stacks["srv"].counters()["dhcp"]["acks_sent"] == 0
    hub.run(t0 + 20)
    sent = dhcp_sent(hub, "c", mark)
    assert [(round(t - t0), m) for t, m, _ in sent[:5]] == [
        (0, MsgType.REQUEST), (1, MsgType.REQUEST), (3, MsgType.REQUEST),
        (7, MsgType.REQUEST), (15, MsgType.DISCOVER)]
    assert address(c) == "10.0.0.77"  # asked for in the DISCOVER, and free


# -- traffic over DHCP addresses --------------------------------------------------------------


def test_ping_and_udp_between_dhcp_hosts():
    hub = lan()
    a, b = client(hub, "a", 2), client(hub, "b", 3)
    hub.run(hub.now + 5)
    hub.events("a"), hub.events("b")
    hub.call("a", "send_echo", address(b), 1, 1, 56)
    [r] = [e for e in hub.events("a") if isinstance(e, EchoReply)]
    assert isinstance(r, EchoReply) and r.src == ip(address(b)) and r.size == 64
    b.udp_bind(5000)
    hub.call("a", "send_udp", 4000, address(b), 5000, b"over dhcp")
    got = [e for e in hub.events("b") if isinstance(e, UdpDatagram)]
    assert got == [UdpDatagram(ip(address(a)), 4000, ip(address(b)), 5000, b"over dhcp")]
    hub.call("srv", "send_echo", address(a), 2, 1, 8)
    assert [e for e in hub.events("srv") if isinstance(e, EchoReply)]


def test_hosts_without_dhcp_treat_its_ports_as_before():
    hub = lan()
    quiet = hub.attach("q", HostStack(mac_of(30)))  # no address, no DHCP client
    hub.call("q", "link_up")
    plain = static_host(hub, "p", 31, "10.0.0.6/24")  # an address, no DHCP server
    client(hub, "a", 2)
    hub.run(hub.now + 3)
    for s in (quiet, plain):
        assert s.counters()["dhcp"] == dict.fromkeys(s.counters()["dhcp"], 0)
        assert s.counters()["udp"]["ignored_multi"] >= 4  # DISCOVER, OFFER, REQUEST, ACK
        assert s.counters()["udp"]["in_datagrams"] == 0
    hub.call("a", "send_udp", 68, "10.0.0.6", DHCP_SERVER_PORT, b"x")  # unicast, port closed
    assert plain.counters()["udp"]["no_ports"] == 1
    assert plain.counters()["icmp"]["out_dest_unreachs"] == 1


# -- link, stop, API --------------------------------------------------------------------------


def test_start_with_link_down_sends_on_link_up():
    hub = lan()
    s = hub.attach("a", HostStack(mac_of(2)))
    assert s.dhcp_client_start(hub.now, b"a") == []
    assert s.counters()["ip"]["out_discards"] == 1
    hub.run(hub.now + 0.5)
    hub.call("a", "link_up")
    hub.run(hub.now + 2)
    assert address(s) == "10.0.0.10"


def test_stop_without_release_keeps_the_lease_on_the_server():
    hub = lan()
    a = client(hub, "a", 2)
    hub.run(hub.now + 5)
    hub.events("a")
    hub.send("a", a.dhcp_client_stop(hub.now, release=False))
    assert hub.events("a") == [DhcpLost(ip("10.0.0.10"), "stopped")]
    assert a.addresses() == [] and a.dhcp_client_state()["state"] == "stopped"
    rows = hub.stacks["srv"].dhcp_server_show(hub.now)
    assert rows[0]["state"] == "bound"
    assert hub.stacks["srv"].counters()["dhcp"]["releases_received"] == 0
    assert a.dhcp_client_stop(hub.now) == []  # not running: nothing
    hub.send("a", a.dhcp_client_start(hub.now, b"a", previous_ip="10.0.0.10"))
    hub.run(hub.now + 3)
    assert address(a) == "10.0.0.10"


def test_client_state_report():
    hub = lan(lease_time=100)
    a = client(hub, "a", 2)
    t0 = hub.now
    hub.run(t0 + 10)
    st = a.dhcp_client_state(hub.now)
    assert st["state"] == "bound" and st["address"] == "10.0.0.10" and st["prefixlen"] == 24
    assert st["server"] == SERVER and st["lease_time"] == 100 and st["hostname"] == "a"
    assert st["lease_remaining"] == pytest.approx(90)
    assert st["renew_in"] == pytest.approx(40)
    assert st["rebind_in"] == pytest.approx(77)  # T2 from option 59: 100 * 7 // 8
    assert st["client_id"] == (b"\0a").hex()
    assert HostStack(mac_of(3)).dhcp_client_state()["state"] == "stopped"


def test_api_errors():
    hub = lan()
    srv = hub.stacks["srv"]
    a = client(hub, "a", 2)
    with pytest.raises(StackError, match="already running"):
        a.dhcp_client_start(hub.now, b"a")
    with pytest.raises(StackError, match="already running"):
        srv.dhcp_server_start(SERVER, "10.0.0.10", "10.0.0.20")
    with pytest.raises(StackError, match="in use by the stack's DHCP"):
        a.udp_bind(DHCP_CLIENT_PORT)
    b = HostStack(mac_of(3))
    b.udp_bind(DHCP_CLIENT_PORT)
    with pytest.raises(StackError, match="already bound"):
        b.dhcp_client_start(0.0, b"b")
    for bad in (b"", "x" * 300, 5):
        with pytest.raises(StackError, match="client id"):
            HostStack(mac_of(4)).dhcp_client_start(0.0, bad)
    with pytest.raises(StackError, match="unicast"):
        HostStack(mac_of(4)).dhcp_client_start(0.0, b"x", previous_ip="255.255.255.255")
    with pytest.raises(StackError, match="not on the interface"):
        HostStack(mac_of(4)).dhcp_server_start("10.0.0.1/24", "10.0.0.10", "10.0.0.20")
    c = HostStack(mac_of(5))
    c.add_address("10.0.0.2/24", 0.0)
    with pytest.raises(StackError, match="not on the interface"):
        c.dhcp_server_start("10.0.0.2/16", "10.0.0.10", "10.0.0.20")
    with pytest.raises(StackError, match="inside the server's subnet"):
        c.dhcp_server_start("10.0.0.2", "10.0.1.10", "10.0.1.20")
    with pytest.raises(StackError, match="empty"):
        c.dhcp_server_start("10.0.0.2", "10.0.0.20", "10.0.0.10")
    with pytest.raises(StackError, match="no address left"):
        c.dhcp_server_start("10.0.0.2", "10.0.0.2", "10.0.0.3", static=["10.0.0.3"])
    with pytest.raises(StackError, match="lease time"):
        c.dhcp_server_start("10.0.0.2", "10.0.0.10", "10.0.0.20", lease_time=5)
    with pytest.raises(StackError, match="not running"):
        c.dhcp_server_leases()
    with pytest.raises(StackError, match="DHCP parameter"):
        DhcpParams(retrans_initial=-1)
    c.dhcp_server_start("10.0.0.2", "10.0.0.10", "10.0.0.20")
    c.dhcp_server_stop()
    c.udp_bind(DHCP_SERVER_PORT)  # free again


def test_server_answers_only_once_its_address_is_usable():
    hub = Hub()
    srv = hub.attach("srv", HostStack(mac_of(1)))
    hub.call("srv", "link_up")
    hub.call("srv", "add_address", f"{SERVER}/24")
    srv.dhcp_server_start(SERVER, "10.0.0.10", "10.0.0.20")  # still tentative
    a = client(hub, "a", 2)
    assert srv.counters()["dhcp"]["ignored"] == 1 and address(a) is None
    hub.run(hub.now + 3)
    assert address(a) == "10.0.0.10"


def test_illegal_transition_raises():
    hub = lan()
    a = client(hub, "a", 2)
    hub.run(hub.now + 3)
    cl = a.dhcp.client
    assert cl.state is DhcpState.BOUND
    assert DhcpState.SELECTING not in DHCP_TRANSITIONS[DhcpState.BOUND]
    with pytest.raises(DhcpStateError, match="BOUND -> SELECTING"):
        cl._set_state(DhcpState.SELECTING)


# -- timing -----------------------------------------------------------------------------------


def test_discover_backoff_without_and_with_rng():
    hub = Hub()
    a = client(hub, "a", 2)
    hub.run(100)
    times = [round(t, 6) for t, m, _ in dhcp_sent(hub, "a")]
    assert times == [0, 1, 3, 7, 15, 31, 47, 63, 79, 95]  # 1, 2, 4, 8, 16, 16...
    assert a.counters()["dhcp"]["retransmits"] == 9
    hub = Hub()
    client(hub, "b", 3, rng=random.Random(7))
    hub.run(100)
    times = [t for t, m, _ in dhcp_sent(hub, "b")]
    assert 0 <= times[0] <= 1.0  # init_delay
    gaps = [b - a for a, b in zip(times, times[1:])]
    for k, g in enumerate(gaps):
        nominal = min(16, 2 ** k)
        assert 0.75 * nominal <= g <= 1.25 * nominal
    assert len(set(gaps)) == len(gaps)


def test_consecutive_naks_back_off():
    """A broken server that offers what it then refuses: no NAK storm."""
    hub = lan()
    srv = hub.stacks["srv"]
    real = srv.dhcp.server._request

    def always_nak(msg, cid, now):
        return srv.dhcp.server._nak(msg, "no")

    srv.dhcp.server._request = always_nak
    a = client(hub, "a", 2)
    hub.run(hub.now + 60)
    naks = a.counters()["dhcp"]["naks_received"]
    assert 4 <= naks <= 10
    srv.dhcp.server._request = real
    hub.run(hub.now + 20)
    assert address(a) == "10.0.0.10"


# -- persistence ------------------------------------------------------------------------------


def test_leases_dict_format_and_change_events():
    hub = lan(lease_time=100)
    srv = hub.stacks["srv"]
    a = client(hub, "a", 2)
    t_req = hub.now
    client(hub, "b", 3, cid=None)
    hub.run(hub.now + 3)
    assert dhcp_events(hub, "srv") == [DhcpLeasesChanged()]  # once, until read
    leases = srv.dhcp_server_leases()
    assert leases == {
        (b"\0a").hex(): {"ip": "10.0.0.10", "expires": t_req + 100, "hostname": "a"},
        "01" + mac_of(3).hex(): {"ip": "10.0.0.11", "expires": t_req + 100,
                                 "hostname": "b"},
    }
    assert json.loads(json.dumps(leases)) == leases
    hub.run(hub.now + 60)  # renewals
    assert dhcp_events(hub, "srv") == [DhcpLeasesChanged()]
    assert srv.dhcp_server_leases()[(b"\0a").hex()]["expires"] > t_req + 100
    hub.send("a", a.dhcp_client_stop(hub.now))
    hub.run(hub.now + 1)
    assert dhcp_events(hub, "srv") == [DhcpLeasesChanged()]
    assert srv.dhcp_server_leases()[(b"\0a").hex()]["expires"] <= hub.now


GOOD = {"0061": {"ip": "10.0.0.10", "expires": 50.0, "hostname": "a"}}


@pytest.mark.parametrize("bad, reason", [
    ({"zz": {"ip": "10.0.0.12", "expires": 1e12}}, "zz: client id is not hex"),
    ({"": {"ip": "10.0.0.12", "expires": 1}}, "client id is empty"),
    ({"0062": {"ip": "junk", "expires": 1}}, "0062: ip 'junk' is not an IPv4 address"),
    ({"0062": {"ip": "10.0.0.300", "expires": 1}}, "is not an IPv4 address"),
    ({"0062": {"ip": None, "expires": 1}}, "ip None is not an IPv4 address"),
    ({"0062": {"expires": 1}}, "0062: no ip"),
    ({"0062": {"ip": "10.0.0.12", "expires": math.inf}}, "expires inf is not a finite number"),
    ({"0062": {"ip": "10.0.0.12", "expires": math.nan}}, "expires nan is not a finite"),
    ({"0062": {"ip": "10.0.0.12"}}, "expires None is not a finite"),
    ({"0062": {"ip": "10.0.0.12", "expires": "soon"}}, "expires 'soon' is not a finite"),
    ({"0062": {"ip": "10.0.0.12", "expires": True}}, "expires True is not a finite"),
    ({"0062": {"ip": "10.0.0.12", "expires": 1, "hostname": 7}}, "hostname 7 is not a string"),
    ({"0062": "10.0.0.12"}, "0062: entry '10.0.0.12' is not a map"),
    ({"0062": ["10.0.0.12", 1]}, "is not a map"),
    ({"0062": {"ip": "10.0.0.99", "expires": 1}}, "0062: 10.0.0.99 is not in the pool"),
    ({"0062": {"ip": "10.0.0.1", "expires": 1}}, "0062: 10.0.0.1 is not in the pool"),
    ({"0062": {"ip": "10.0.0.10", "expires": 10}},
     "0062: 10.0.0.10 is also leased to 0061, which expires later"),
    ({"0061 ": {"ip": "10.0.0.12", "expires": 10}}, "a second entry for client 0061"),
])
def test_a_bad_saved_lease_is_skipped_counted_and_named(bad, reason):
    c = HostStack(mac_of(5))
    c.add_address("10.0.0.1/24", 0.0)
    c.dhcp_server_start("10.0.0.1", "10.0.0.10", "10.0.0.20", leases={**GOOD, **bad})
    server = c.dhcp.server
    assert server.leases_skipped == 1 and c.counters()["dhcp"]["leases_skipped"] == 1
    assert len(server.skipped) == 1 and reason in server.skipped[0], server.skipped
    assert c.dhcp_server_leases() == GOOD  # the good entry is kept


def test_two_clients_with_one_address_the_later_expiry_wins():
    c = HostStack(mac_of(5))
    c.add_address("10.0.0.1/24", 0.0)
    c.dhcp_server_start("10.0.0.1", "10.0.0.10", "10.0.0.20", leases={
        "0061": {"ip": "10.0.0.10", "expires": 50, "hostname": "a"},
        "0062": {"ip": "10.0.0.99", "expires": 50, "hostname": None},  # outside the pool
        "0063": {"ip": "10.0.0.10", "expires": 70, "hostname": None},  # same ip, later
    })
    assert c.dhcp.server.leases_skipped == 2
    assert c.dhcp.server.skipped == ["0062: 10.0.0.99 is not in the pool",
                                     "0061: 10.0.0.10 is also leased to 0063, which expires later"]
    assert c.dhcp_server_leases() == {
        "0063": {"ip": "10.0.0.10", "expires": 70.0, "hostname": None}}


def test_leases_that_are_not_a_dict_are_the_callers_mistake():
    c = HostStack(mac_of(5))
    c.add_address("10.0.0.1/24", 0.0)
    with pytest.raises(StackError, match="must be a dict as leases_to_dict"):
        c.dhcp_server_start("10.0.0.1", "10.0.0.10", "10.0.0.20", leases=["0061"])
