"""DhcpServer alone: messages in, replies out (RFC 2131 4.3 allocation and request rules)."""

from __future__ import annotations

import pytest

from vnet.node.stack import DhcpLeasesChanged, StackError
from vnet.node.stack import parse_ip as ip  # wire-form addresses
from vnet.node.stack.dhcp import (
    BOOTREQUEST, BROADCAST_FLAG, DhcpConfigError, DhcpMessage, DhcpPool, DhcpServer, MsgType,
    dhcp_options,
)
from vnet.node.stack.ipv4 import LIMITED_BROADCAST, ZERO_IP
from vnet.node.stack.testing import mac_of

SID = ip("10.0.0.1")


def server(**kw) -> tuple[DhcpServer, list]:
    events: list = []
    kw.setdefault("lease_time", 100)
    s = DhcpServer("10.0.0.1", 24, kw.pop("first", "10.0.0.1"), kw.pop("last", "10.0.0.5"),
                   emit=events.append, **kw)
    return s, events


def msg(mtype: MsgType, i: int, *, cid: bytes | None = None, ciaddr: str = "0.0.0.0",
        xid: int = 1, **opts) -> DhcpMessage:
    o = dhcp_options(msg_type=mtype, client_id=cid, **{
        k: ip(v) if k in ("requested_ip", "server_id") else v for k, v in opts.items()})
    return DhcpMessage(op=BOOTREQUEST, xid=xid, chaddr=mac_of(i), ciaddr=ip(ciaddr),
                       flags=BROADCAST_FLAG if ciaddr == "0.0.0.0" else 0, options=o)


def offer(s: DhcpServer, i: int, now: float, **kw) -> str | None:
    out = s.handle(msg(MsgType.DISCOVER, i, **kw), now)
    if out is None:
        return None
    reply, dst = out
    assert reply.msg_type is MsgType.OFFER and dst == LIMITED_BROADCAST
    return "%d.%d.%d.%d" % tuple(reply.yiaddr)


def bind(s: DhcpServer, i: int, now: float, **kw) -> str:
    a = offer(s, i, now, **kw)
    reply, _ = s.handle(msg(MsgType.REQUEST, i, requested_ip=a, server_id="10.0.0.1", **kw),
                        now)
    assert reply.msg_type is MsgType.ACK
    return a


def reply_type(out) -> MsgType | None:
    return None if out is None else out[0].msg_type


# -- allocation -----------------------------------------------------------------------------


def test_lowest_free_skipping_server_and_static():
    s, _ = server(static=["10.0.0.2"])
    assert [offer(s, i, 0) for i in (10, 11, 12)] == ["10.0.0.3", "10.0.0.4", "10.0.0.5"]
    assert offer(s, 13, 0) is None and s.c.pool_exhausted == 1
    assert s.pool_size() == 3


def test_offer_contents():
    s, _ = server(router="10.0.0.254")
    reply, _ = s.handle(msg(MsgType.DISCOVER, 10, cid=b"\0x", xid=42), 0)
    assert reply.xid == 42 and reply.chaddr == mac_of(10) and reply.flags == BROADCAST_FLAG
    assert reply.yiaddr == ip("10.0.0.2") and reply.ciaddr == ZERO_IP
    assert (reply.get("server_id"), reply.get("lease_time"), reply.get("t1"),
            reply.get("t2")) == (SID, 100, 50, 87)
    assert reply.get("subnet_mask") == ip("255.255.255.0")
    assert reply.get("router") == [ip("10.0.0.254")]
    assert reply.get("client_id") == b"\0x"  # RFC 6842


def test_offer_is_held_then_released():
    s, _ = server(offer_hold=30)
    assert offer(s, 10, 0) == "10.0.0.2"
    assert offer(s, 10, 5) == "10.0.0.2"  # the same client: the same offer
    assert offer(s, 11, 5) == "10.0.0.3"
    assert offer(s, 12, 40) == "10.0.0.2"  # 10's offer lapsed at 30


def test_requested_address_is_honoured_if_free():
    s, _ = server()
    bind(s, 10, 0)
    assert offer(s, 11, 0, requested_ip="10.0.0.4") == "10.0.0.4"
    assert offer(s, 12, 0, requested_ip="10.0.0.2") == "10.0.0.3"  # 10's: not free
    assert offer(s, 13, 0, requested_ip="10.0.0.1") == "10.0.0.5"  # the server's


def test_existing_lease_comes_back_even_expired_and_recycling_takes_the_oldest():
    s, _ = server()
    for i in (10, 11, 12, 13):
        bind(s, i, 0)  # .2 .3 .4 .5, all expire at 100
    s.handle(msg(MsgType.RELEASE, 12, ciaddr="10.0.0.4", server_id="10.0.0.1"), 50)
    assert offer(s, 11, 500) == "10.0.0.3"  # its own, expired
    # A newcomer: no address was never used; the longest-expired one is recycled (.4,
    # released at 50), and its old client forgets it.
    assert bind(s, 20, 500) == "10.0.0.4"
    assert offer(s, 12, 500) == "10.0.0.2"  # .2 expired at 100, before .3 and .5


def test_clients_are_keyed_by_client_id_else_mac():
    s, _ = server()
    a = bind(s, 10, 0, cid=b"\0node")
    assert offer(s, 11, 1, cid=b"\0node") == a  # another MAC, the same client id
    b = bind(s, 12, 0)
    assert list(s.leases_to_dict()) == [b"\0node".hex(), "01" + mac_of(12).hex()]
    assert b != a


# -- REQUEST --------------------------------------------------------------------------------


def test_selecting_request_for_another_servers_offer_frees_ours():
    s, _ = server()
    assert offer(s, 10, 0) == "10.0.0.2"
    assert s.handle(msg(MsgType.REQUEST, 10, requested_ip="10.0.0.9",
                        server_id="10.0.0.99"), 0) is None
    assert s.c.ignored == 1
    assert offer(s, 11, 0) == "10.0.0.2"


def test_selecting_request_for_an_address_offered_to_someone_else_is_naked():
    s, _ = server()
    assert offer(s, 10, 0) == "10.0.0.2"
    out = s.handle(msg(MsgType.REQUEST, 11, requested_ip="10.0.0.2", server_id="10.0.0.1"), 0)
    assert reply_type(out) is MsgType.NAK and out[1] == LIMITED_BROADCAST
    assert out[0].get("message") == "requested address not available"
    assert s.handle(msg(MsgType.REQUEST, 10, server_id="10.0.0.1"), 0) is None
    assert s.c.malformed_bad_fields == 1  # SELECTING without option 50


@pytest.mark.parametrize("who, requested, expect", [
    (10, "10.0.0.2", MsgType.ACK),  # its own lease (expired by then: t=500)
    (11, "10.0.0.2", None),  # someone else's, expired, and we know nothing of 11: silent
    (12, "10.0.0.2", MsgType.NAK),  # 12 has a lease elsewhere: "not your lease"
    (11, "10.0.0.3", MsgType.NAK),  # 12's, not expired (renewed at 450)
    (11, "10.0.0.1", MsgType.NAK),  # the server's
    (11, "10.1.0.7", MsgType.NAK),  # another network
    (11, "10.0.0.200", None),  # in the subnet, outside the pool, no record: silent
])
def test_init_reboot_rules(who, requested, expect):
    s, _ = server()
    bind(s, 10, 0)
    bind(s, 12, 0)
    s.handle(msg(MsgType.REQUEST, 12, ciaddr="10.0.0.3"), 450)  # 12 renews
    out = s.handle(msg(MsgType.REQUEST, who, requested_ip=requested), 500)
    assert reply_type(out) is expect
    if expect is MsgType.ACK:
        assert out[1] == LIMITED_BROADCAST and out[0].yiaddr == ip(requested)


def test_init_reboot_for_a_declined_address_is_naked():
    s, _ = server()
    a = bind(s, 10, 0)
    s.handle(msg(MsgType.DECLINE, 10, requested_ip=a, server_id="10.0.0.1"), 1)
    out = s.handle(msg(MsgType.REQUEST, 10, requested_ip=a), 2)
    assert reply_type(out) is MsgType.NAK


def test_renewal_extends_and_is_unicast_to_ciaddr():
    s, events = server()
    a = bind(s, 10, 0)
    assert events == [DhcpLeasesChanged()]
    s.mark_saved()
    out = s.handle(msg(MsgType.REQUEST, 10, ciaddr=a), 60)
    assert reply_type(out) is MsgType.ACK and out[1] == ip(a) and out[0].ciaddr == ip(a)
    assert s.leases_to_dict()["01" + mac_of(10).hex()]["expires"] == 160
    assert events == [DhcpLeasesChanged()] * 2


def test_renewal_rules():
    s, _ = server(static=["10.0.0.5"])
    bind(s, 10, 0)  # .2
    bind(s, 11, 0)  # .3
    nak = MsgType.NAK
    assert reply_type(s.handle(msg(MsgType.REQUEST, 11, ciaddr="10.0.0.2"), 10)) is nak
    assert reply_type(s.handle(msg(MsgType.REQUEST, 12, ciaddr="10.0.0.2"), 10)) is nak
    assert reply_type(s.handle(msg(MsgType.REQUEST, 12, ciaddr="10.9.0.2"), 10)) is nak
    assert reply_type(s.handle(msg(MsgType.REQUEST, 12, ciaddr="10.0.0.5"), 10)) is nak
    assert s.handle(msg(MsgType.REQUEST, 12, ciaddr="10.0.0.77"), 10) is None  # not ours
    # No record but free (a server that lost its lease file): adopted.
    out = s.handle(msg(MsgType.REQUEST, 12, ciaddr="10.0.0.4"), 10)
    assert reply_type(out) is MsgType.ACK and out[1] == ip("10.0.0.4")
    # 10's lease expired at 100 and nobody took .2: renewing late still works.
    assert reply_type(s.handle(msg(MsgType.REQUEST, 10, ciaddr="10.0.0.2"), 300)) \
        is MsgType.ACK


def test_renewing_client_wins_over_a_decline_and_an_offer_of_its_address():
    """Without its lease file the server offers an address a client still uses; the
    newcomer's DAD meets that client and declines. The client's renewal must not be
    refused because of that decline."""
    s, _ = server()
    assert bind(s, 20, 0) == "10.0.0.2"  # the newcomer, ACKed .2 ...
    s.handle(msg(MsgType.DECLINE, 20, requested_ip="10.0.0.2", server_id="10.0.0.1"), 1)
    out = s.handle(msg(MsgType.REQUEST, 10, ciaddr="10.0.0.2"), 2)  # ... which 10 holds
    assert reply_type(out) is MsgType.ACK
    assert [r["state"] for r in s.show(2)] == ["bound"]
    assert offer(s, 21, 3) == "10.0.0.3"
    out = s.handle(msg(MsgType.REQUEST, 11, ciaddr="10.0.0.3"), 4)  # holds the offered .3
    assert reply_type(out) is MsgType.ACK
    out = s.handle(msg(MsgType.REQUEST, 21, requested_ip="10.0.0.3", server_id="10.0.0.1"),
                   4)
    assert reply_type(out) is MsgType.NAK


# -- DECLINE, RELEASE, INFORM ---------------------------------------------------------------


def test_decline_holds_the_address():
    s, events = server(decline_hold=600)
    a = bind(s, 10, 0)
    assert s.handle(msg(MsgType.DECLINE, 11, requested_ip=a, server_id="10.0.0.1"), 1) \
        is None  # not 11's to decline
    assert s.c.ignored == 1 and s.show(1)[0]["state"] == "bound"
    s.handle(msg(MsgType.DECLINE, 10, requested_ip=a, server_id="10.0.0.1"), 1)
    assert s.show(1) == [{"ip": a, "state": "declined", "client_id": None, "hostname": None,
                          "remaining": 600}]
    assert s.leases_to_dict() == {}
    assert offer(s, 10, 2) == "10.0.0.3" and offer(s, 11, 2, requested_ip=a) == "10.0.0.4"
    assert offer(s, 12, 602) == a


def test_decline_of_an_offer_only():
    s, _ = server()
    a = offer(s, 10, 0)
    s.handle(msg(MsgType.DECLINE, 10, requested_ip=a), 0)
    assert [r["state"] for r in s.show(0)] == ["declined"]


def test_release_rules():
    s, events = server()
    a = bind(s, 10, 0)
    s.mark_saved()
    s.handle(msg(MsgType.RELEASE, 10, ciaddr="10.0.0.3", server_id="10.0.0.1"), 5)
    s.handle(msg(MsgType.RELEASE, 10, ciaddr=a, server_id="10.0.0.9"), 5)
    assert s.c.ignored == 2 and s.show(5)[0]["state"] == "bound"
    s.handle(msg(MsgType.RELEASE, 10, ciaddr=a, server_id="10.0.0.1"), 5)
    assert s.show(5)[0]["state"] == "expired" and s.changed
    assert s.c.releases_received == 3


def test_inform_gets_parameters_without_a_lease():
    s, _ = server(router="10.0.0.254")
    out = s.handle(msg(MsgType.INFORM, 10, ciaddr="10.0.0.77"), 0)
    reply, dst = out
    assert reply.msg_type is MsgType.ACK and dst == ip("10.0.0.77")
    assert reply.yiaddr == ZERO_IP and reply.get("lease_time") is None
    assert reply.get("router") == [ip("10.0.0.254")]
    assert s.leases_to_dict() == {}
    assert s.handle(msg(MsgType.INFORM, 10, ciaddr="192.168.0.1"), 0) is None


@pytest.mark.parametrize("first, last, message", [
    ("10.0.0.0", "10.0.0.9", "includes 10.0.0.0, the network address of 10.0.0.0/24: a pool "
                             "holds host addresses only; start it at 10.0.0.1 or above"),
    ("10.0.0.200", "10.0.0.255", "includes 10.0.0.255, the broadcast address of 10.0.0.0/24: "
                                 "a pool holds host addresses only; end it at 10.0.0.254"),
    ("10.0.0.1", "10.0.0.1", "has only the server's own address 10.0.0.1; widen it"),
    ("10.0.1.2", "10.0.1.9", "the first address 10.0.1.2 is not inside the server's subnet "
                             "10.0.0.0/24 (the server is 10.0.0.1/24); use host addresses "
                             "within 10.0.0.1-10.0.0.254"),
    ("10.0.0.2", "10.0.1.9", "the last address 10.0.1.9 is not inside"),
    ("10.0.0.9", "10.0.0.2", "is empty: give the lower address first (10.0.0.2-10.0.0.9)"),
    ("10.0.0.2", "10.0.0.256", "DHCP pool last address: bad IPv4 address"),
])
def test_a_pool_that_cannot_work_is_refused_with_the_fix(first, last, message):
    with pytest.raises(DhcpConfigError) as info:
        DhcpPool.check("10.0.0.1", 24, first, last)
    assert isinstance(info.value, ValueError) and message in str(info.value), info.value
    with pytest.raises(DhcpConfigError):
        DhcpServer("10.0.0.1", 24, first, last)


def test_a_pool_check_counts_what_the_server_can_give():
    assert DhcpPool.check("10.0.0.1", 24, "10.0.0.1", "10.0.0.10", ["10.0.0.5"]).size() == 8
    assert DhcpPool.check("10.0.0.1", 30, "10.0.0.1", "10.0.0.2").size() == 1


def test_config_errors():
    with pytest.raises(StackError, match="prefix length"):
        DhcpServer("10.0.0.1", 31, "10.0.0.1", "10.0.0.1")
    with pytest.raises(StackError, match="offer hold"):
        DhcpServer("10.0.0.1", 24, "10.0.0.2", "10.0.0.9", offer_hold=-1)
    with pytest.raises(StackError, match="bad IPv4"):
        DhcpServer("10.0.0.1", 24, "10.0.0.2", "10.0.0.9", static=["nope"])
    with pytest.raises(StackError, match="host address"):
        DhcpServer("10.0.0.1", 24, "10.0.0.0", "10.0.0.9")
    with pytest.raises(StackError, match="host address"):
        DhcpServer("10.0.0.1", 24, "10.0.0.2", "10.0.0.255")
