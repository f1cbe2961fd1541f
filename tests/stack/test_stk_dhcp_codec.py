"""The DHCP codec: roundtrips, cross-checks with scapy's BOOTP/DHCP (tests only), malformed
input counted by reason and never raised out of the stack."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from vnet.node.stack import HostStack
from vnet.node.stack import parse_ip as ip  # wire-form addresses
from vnet.node.stack.dhcp import (
    BOOTP_HDR, BOOTREPLY, BOOTREQUEST, BROADCAST_FLAG, DECODE_REASONS, DHCP_MIN_LEN,
    MAGIC_COOKIE, OPTIONS, DhcpCounters, DhcpDecodeError, DhcpMessage, MsgType, decode_dhcp,
    dhcp_options, encode_dhcp,
)
from vnet.node.stack.ether import BROADCAST_MAC, ETH_HDR, ETH_P_IP
from vnet.node.stack.ipv4 import LIMITED_BROADCAST, ZERO_IP, ip_header
from vnet.node.stack.testing import Hub, mac_of
from vnet.node.stack.udp import udp_segment

MAC = mac_of(7)


def discover(**kw) -> DhcpMessage:
    opts = dhcp_options(msg_type=MsgType.DISCOVER, client_id=b"\0node7", hostname="node7",
                        requested_ip=ip("10.0.0.42"), param_req_list=[1, 3, 51, 54, 58, 59])
    return DhcpMessage(op=BOOTREQUEST, xid=0x12345678, chaddr=MAC, secs=3,
                       flags=BROADCAST_FLAG, options=opts, **kw)


def ack() -> DhcpMessage:
    opts = dhcp_options(msg_type=MsgType.ACK, server_id=ip("10.0.0.1"), lease_time=3600,
                        t1=1800, t2=3150, subnet_mask=ip("255.255.255.0"),
                        router=[ip("10.0.0.1")], client_id=b"\0node7")
    return DhcpMessage(op=BOOTREPLY, xid=0x12345678, chaddr=MAC, yiaddr=ip("10.0.0.42"),
                       flags=BROADCAST_FLAG, options=opts)


# -- roundtrip ------------------------------------------------------------------------------

_VALUES = {
    "ip": st.binary(min_size=4, max_size=4),
    "ips": st.integers(1, 70).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    "u8": st.binary(min_size=1, max_size=1),
    "u16": st.binary(min_size=2, max_size=2),
    "u32": st.binary(min_size=4, max_size=4),
    "u8s": st.binary(min_size=1, max_size=300),
    "str": st.binary(min_size=1, max_size=300).filter(lambda b: b[-1:] != b"\0"),
    "bytes": st.binary(min_size=2, max_size=300),
}
_known = st.sampled_from([c for c in OPTIONS if c not in (52, 53)]).flatmap(
    lambda c: st.tuples(st.just(c), _VALUES[OPTIONS[c][1]]))
_unknown = st.tuples(st.integers(1, 254).filter(lambda c: c not in OPTIONS),
                     st.binary(max_size=600))
_no_trailing_nul = st.binary(max_size=64).map(lambda b: b.rstrip(b"\0"))


@st.composite
def messages(draw) -> DhcpMessage:
    opts = {53: bytes([draw(st.integers(1, 8))])}
    for code, value in draw(st.lists(st.one_of(_known, _unknown), max_size=8)):
        opts.setdefault(code, value)
    addr = st.binary(min_size=4, max_size=4)
    return DhcpMessage(
        op=draw(st.sampled_from([BOOTREQUEST, BOOTREPLY])), xid=draw(st.integers(0, 2**32 - 1)),
        chaddr=draw(st.binary(min_size=6, max_size=6)), ciaddr=draw(addr),
        yiaddr=draw(addr), siaddr=draw(addr), giaddr=draw(addr),
        secs=draw(st.integers(0, 0xFFFF)), flags=draw(st.integers(0, 0xFFFF)),
        hops=draw(st.integers(0, 255)), sname=draw(_no_trailing_nul),
        file=draw(_no_trailing_nul), options=opts)


@settings(max_examples=300, deadline=None)
@given(messages())
def test_roundtrip(m):
    data = encode_dhcp(m)
    assert len(data) >= 300
    assert decode_dhcp(data) == m


def test_long_options_are_split_and_concatenated():
    m = DhcpMessage(op=BOOTREQUEST, xid=1, chaddr=MAC,
                    options={53: b"\x01", 200: bytes(range(256)) * 2})
    data = encode_dhcp(m)
    assert data.count(bytes((200, 255))) == 2 and bytes((200, 2)) in data  # 255+255+2
    assert decode_dhcp(data) == m


def test_typed_option_access():
    m = decode_dhcp(encode_dhcp(ack()))
    assert m.msg_type is MsgType.ACK
    assert m.get("lease_time") == 3600 and m.get("t1") == 1800 and m.get("t2") == 3150
    assert m.get("subnet_mask") == ip("255.255.255.0")
    assert m.get("router") == [ip("10.0.0.1")] and m.get("requested_ip") is None
    d = decode_dhcp(encode_dhcp(discover()))
    assert d.get("hostname") == "node7" and d.get("param_req_list") == [1, 3, 51, 54, 58, 59]
    assert d.get("client_id") == b"\0node7"


def test_overloaded_file_and_sname_fields():
    """Option 52: more options in ``file`` (1), ``sname`` (2), both (3), in that order."""
    hdr = BOOTP_HDR.pack(BOOTREPLY, 1, 6, 0, 9, 0, 0, ZERO_IP, ip("10.0.0.9"), ZERO_IP,
                         ZERO_IP, MAC, bytes((51, 4)) + (60).to_bytes(4, "big") + b"\xff",
                         bytes((56, 3)) + b"abc" + b"\xff")
    data = hdr + MAGIC_COOKIE + bytes((53, 1, 5, 52, 1, 3, 255))
    m = decode_dhcp(data)
    assert m.msg_type is MsgType.ACK and m.get("lease_time") == 60
    assert m.get("message") == "abc" and m.file == b"" and m.sname == b""


# -- scapy ----------------------------------------------------------------------------------


def test_our_discover_parses_in_scapy_and_matches_its_encoding():
    m = discover()
    data = encode_dhcp(m)
    p = BOOTP(data)
    assert (p.op, p.htype, p.hlen, p.xid, p.secs, p.flags) == (1, 1, 6, 0x12345678, 3, 0x8000)
    assert p.chaddr[:6] == MAC and p.ciaddr == "0.0.0.0"
    opts = dict(o for o in p[DHCP].options if isinstance(o, tuple))
    assert opts["message-type"] == 1 and opts["client_id"] == b"\0node7"
    assert opts["hostname"] == b"node7" and opts["requested_addr"] == "10.0.0.42"
    assert opts["param_req_list"] == [1, 3, 51, 54, 58, 59]
    ref = BOOTP(op=1, xid=0x12345678, secs=3, flags=0x8000, chaddr=MAC) / DHCP(options=[
        ("message-type", "discover"), ("client_id", b"\0node7"), ("hostname", b"node7"),
        ("requested_addr", "10.0.0.42"), ("param_req_list", [1, 3, 51, 54, 58, 59]), "end"])
    raw = bytes(ref)
    assert data == raw + bytes(len(data) - len(raw))  # we pad to 300 bytes


def test_scapy_ack_decodes():
    ref = BOOTP(op=2, xid=77, yiaddr="10.0.0.42", siaddr="10.0.0.1", chaddr=MAC,
                flags=0x8000) / DHCP(options=[
                    ("message-type", "ack"), ("server_id", "10.0.0.1"), ("lease_time", 3600),
                    ("renewal_time", 1800), ("rebinding_time", 3150),
                    ("subnet_mask", "255.255.255.0"), ("router", "10.0.0.1"),
                    ("error_message", b"fine"), "end", "pad"])
    m = decode_dhcp(bytes(ref))
    assert m.msg_type is MsgType.ACK and m.xid == 77 and m.yiaddr == ip("10.0.0.42")
    assert m.siaddr == ip("10.0.0.1") and m.chaddr == MAC
    assert (m.get("server_id"), m.get("lease_time"), m.get("t1"), m.get("t2")) == (
        ip("10.0.0.1"), 3600, 1800, 3150)
    assert m.get("subnet_mask") == ip("255.255.255.0") and m.get("message") == "fine"
    ours = encode_dhcp(ack())
    p = BOOTP(ours)
    opts = dict(o for o in p[DHCP].options if isinstance(o, tuple))
    assert opts["lease_time"] == 3600 and opts["renewal_time"] == 1800
    assert opts["rebinding_time"] == 3150 and opts["server_id"] == "10.0.0.1"
    assert opts["subnet_mask"] == "255.255.255.0" and opts["router"] == "10.0.0.1"


@settings(max_examples=100, deadline=None)
@given(messages())
def test_scapy_agrees_on_random_headers(m):
    p = BOOTP(encode_dhcp(m))
    assert (p.op, p.xid, p.secs, p.flags, p.hops) == (m.op, m.xid, m.secs, m.flags, m.hops)
    assert (p.ciaddr, p.yiaddr, p.siaddr, p.giaddr) == tuple(
        "%d.%d.%d.%d" % tuple(a) for a in (m.ciaddr, m.yiaddr, m.siaddr, m.giaddr))
    assert p.chaddr[:6] == m.chaddr


def test_frames_on_the_wire_parse_in_scapy():
    """The client's first frames: 0.0.0.0:68 -> 255.255.255.255:67, Ethernet broadcast,
    valid checksums; the server's reply: broadcast 67 -> 68."""
    hub = Hub()
    srv = hub.attach("srv", HostStack(mac_of(1)))
    hub.call("srv", "link_up")
    hub.call("srv", "add_address", "10.0.0.1/24")
    hub.run(1)
    srv.dhcp_server_start("10.0.0.1/24", "10.0.0.10", "10.0.0.20")
    c = hub.attach("c", HostStack(MAC))
    hub.call("c", "link_up")
    hub.send("c", c.dhcp_client_start(hub.now, b"node7", "node7"))
    frames = [(n, f) for _, n, f in hub.trace if f[12:14] == b"\x08\x00"]
    (n1, d), (n2, o) = frames[:2]
    assert (n1, n2) == ("c", "srv")
    p = Ether(d)
    assert p.dst == "ff:ff:ff:ff:ff:ff" and p[IP].src == "0.0.0.0"
    assert p[IP].dst == "255.255.255.255" and (p[UDP].sport, p[UDP].dport) == (68, 67)
    q = p.copy()
    del q[IP].chksum, q[UDP].chksum
    q = Ether(bytes(q))
    assert (q[IP].chksum, q[UDP].chksum) == (p[IP].chksum, p[UDP].chksum)
    assert dict(x for x in p[DHCP].options if isinstance(x, tuple))["message-type"] == 1
    r = Ether(o)
    assert r.dst == "ff:ff:ff:ff:ff:ff" and r[IP].src == "10.0.0.1"
    assert r[IP].dst == "255.255.255.255" and (r[UDP].sport, r[UDP].dport) == (67, 68)
    assert r[BOOTP].yiaddr == "10.0.0.10"
    assert dict(x for x in r[DHCP].options if isinstance(x, tuple))["message-type"] == 2


def test_stack_serves_a_scapy_client():
    hub = Hub()
    srv = hub.attach("srv", HostStack(mac_of(1)))
    hub.call("srv", "link_up")
    hub.call("srv", "add_address", "10.0.0.1/24")
    hub.run(1)
    srv.dhcp_server_start("10.0.0.1/24", "10.0.0.10", "10.0.0.20")
    mac = "02:00:00:00:00:07"
    pkt = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
           / UDP(sport=68, dport=67) / BOOTP(chaddr=MAC, xid=99, flags=0x8000)
           / DHCP(options=[("message-type", "discover"), "end"]))
    [offer] = srv.receive(bytes(pkt), hub.now)
    o = Ether(offer)
    assert o[BOOTP].xid == 99 and o[BOOTP].yiaddr == "10.0.0.10"
    pkt[DHCP].options = [("message-type", "request"), ("requested_addr", "10.0.0.10"),
                         ("server_id", "10.0.0.1"), "end"]
    [a] = srv.receive(bytes(Ether(bytes(pkt))), hub.now)
    opts = dict(x for x in Ether(a)[DHCP].options if isinstance(x, tuple))
    assert opts["message-type"] == 5 and opts["lease_time"] == 3600
    assert srv.dhcp_server_show(hub.now)[0]["client_id"] == "01" + MAC.hex()


# -- malformed ------------------------------------------------------------------------------


GOOD = encode_dhcp(discover())


@pytest.mark.parametrize("data, reason", [
    (GOOD[:239], "truncated"),
    (b"", "truncated"),
    (GOOD[:236] + b"\x63\x82\x53\x64" + GOOD[240:], "bad_cookie"),
    (b"\x03" + GOOD[1:], "bad_op"),
    (GOOD[:1] + b"\x06" + GOOD[2:], "bad_hw"),
    (GOOD[:2] + b"\x10" + GOOD[3:], "bad_hw"),
    (GOOD[:DHCP_MIN_LEN] + bytes((53, 1, 1, 12, 50, 1)), "bad_options"),  # overrun
    (GOOD[:DHCP_MIN_LEN] + bytes((53, 1, 1, 12)), "bad_options"),  # no length byte
    (GOOD[:DHCP_MIN_LEN] + bytes((53, 1, 1, 51, 2, 0, 1, 255)), "bad_options"),  # size
    (GOOD[:DHCP_MIN_LEN] + bytes((53, 2, 1, 1, 255)), "bad_options"),
    (GOOD[:DHCP_MIN_LEN] + bytes((53, 1, 1, 52, 1, 7, 255)), "bad_options"),
    (GOOD[:DHCP_MIN_LEN] + bytes((12, 1, 65, 255)), "not_dhcp"),  # plain BOOTP
    (GOOD[:DHCP_MIN_LEN] + bytes((53, 1, 9, 255)), "not_dhcp"),
    (GOOD[:DHCP_MIN_LEN] + bytes((53, 1, 0, 255)), "not_dhcp"),
])
def test_decode_errors_name_their_reason(data, reason):
    with pytest.raises(DhcpDecodeError) as e:
        decode_dhcp(data)
    assert e.value.reason == reason


def test_missing_end_is_tolerated():
    m = decode_dhcp(GOOD[:DHCP_MIN_LEN] + bytes((53, 1, 3, 0, 0)))
    assert m.msg_type is MsgType.REQUEST


def dhcp_frame(payload: bytes, *, sport=68, dport=67, src=ZERO_IP, dst=LIMITED_BROADCAST,
               mac=MAC) -> bytes:
    seg = udp_segment(src, dst, sport, dport, payload)
    return ETH_HDR.pack(BROADCAST_MAC, mac, ETH_P_IP) + ip_header(src, dst, 17, len(seg), 1) \
        + seg


def server_and_client():
    """A server stack and a client stack (client in SELECTING: no server answers it)."""
    srv = HostStack(mac_of(1), dad_probes=0)
    srv.link_up(0.0)
    srv.add_address("10.0.0.1/24", 0.0)
    srv.dhcp_server_start("10.0.0.1", "10.0.0.10", "10.0.0.20")
    cl = HostStack(mac_of(2), dad_probes=0)
    cl.link_up(0.0)
    cl.dhcp_client_start(0.0, b"c")
    return srv, cl


def test_malformed_messages_are_counted_by_reason_on_both_sides():
    srv, cl = server_and_client()
    srv.receive(dhcp_frame(GOOD[:100]), 1.0)
    srv.receive(dhcp_frame(encode_dhcp(ack())), 1.0)  # a reply sent to the server port
    cl.receive(dhcp_frame(GOOD, sport=67, dport=68), 1.0)  # a request at the client port
    cl.receive(dhcp_frame(b"\x02" + GOOD[1:236] + b"xxxx" + GOOD[240:], sport=67, dport=68),
               1.0)
    s, c = srv.counters()["dhcp"], cl.counters()["dhcp"]
    assert (s["malformed"], s["malformed_truncated"], s["malformed_bad_op"]) == (2, 1, 1)
    assert (c["malformed"], c["malformed_bad_op"], c["malformed_bad_cookie"]) == (2, 1, 1)
    assert s["offers_sent"] == 0 and srv.counters()["udp"]["in_datagrams"] == 2


def test_replies_for_other_clients_and_bad_fields():
    srv, cl = server_and_client()
    xid = cl.dhcp.client.xid
    other = DhcpMessage(op=BOOTREPLY, xid=xid, chaddr=mac_of(9), yiaddr=ip("10.0.0.10"),
                        options=dhcp_options(msg_type=MsgType.OFFER, server_id=SERVER_ID))
    cl.receive(dhcp_frame(encode_dhcp(other), sport=67, dport=68), 1.0)
    assert cl.counters()["dhcp"]["not_for_us"] == 1
    no_sid = DhcpMessage(op=BOOTREPLY, xid=xid, chaddr=mac_of(2), yiaddr=ip("10.0.0.10"),
                         options=dhcp_options(msg_type=MsgType.OFFER))
    cl.receive(dhcp_frame(encode_dhcp(no_sid), sport=67, dport=68), 1.0)
    assert cl.counters()["dhcp"]["malformed_bad_fields"] == 1
    for sid, yi in ((ZERO_IP, "10.0.0.10"), (LIMITED_BROADCAST, "10.0.0.10"),
                    (SERVER_ID, "0.0.0.0"), (SERVER_ID, "224.0.0.1")):
        bad = DhcpMessage(op=BOOTREPLY, xid=xid, chaddr=mac_of(2), yiaddr=ip(yi),
                          options=dhcp_options(msg_type=MsgType.OFFER, server_id=sid))
        cl.receive(dhcp_frame(encode_dhcp(bad), sport=67, dport=68), 1.0)
    assert cl.counters()["dhcp"]["malformed_bad_fields"] == 5
    wrong_xid = DhcpMessage(op=BOOTREPLY, xid=xid ^ 1, chaddr=mac_of(2),
                            yiaddr=ip("10.0.0.10"),
                            options=dhcp_options(msg_type=MsgType.OFFER, server_id=SERVER_ID))
    cl.receive(dhcp_frame(encode_dhcp(wrong_xid), sport=67, dport=68), 1.0)
    assert cl.counters()["dhcp"]["ignored"] == 1
    assert cl.dhcp_client_state()["state"] == "selecting"


SERVER_ID = ip("10.0.0.1")

# -- fuzz: never raises ---------------------------------------------------------------------

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
mutation = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1,
                    max_size=6)


def mutate(data: bytes, ops, cut) -> bytes:
    b = bytearray(data)
    for i, v in ops:
        if b:
            b[i % len(b)] = v
    return bytes(b[:cut]) if cut is not None else bytes(b)


def _client_in(state: str):
    """A client stack in ``state`` talking to a server stack, wired by a hub."""
    hub = Hub()
    srv = hub.attach("srv", HostStack(mac_of(1)))
    hub.call("srv", "link_up")
    hub.call("srv", "add_address", "10.0.0.1/24")
    hub.run(1)
    srv.dhcp_server_start("10.0.0.1/24", "10.0.0.10", "10.0.0.20", lease_time=60)
    cl = hub.attach("c", HostStack(mac_of(2)))
    hub.call("c", "link_up")
    if state == "selecting":
        hub.unplugged.add("srv")
    hub.send("c", cl.dhcp_client_start(hub.now, b"c"))
    if state == "bound":
        hub.run(hub.now + 3)
    elif state == "rebinding":
        hub.run(hub.now + 3)
        hub.unplugged.add("srv")
        hub.run(hub.now + 54)
    return hub, srv, cl


def _delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def _one_counted_outcome(stack, frame: bytes, data: bytes, port: int) -> None:
    """Deliver ``frame`` (carrying DHCP payload ``data``) and check it moved exactly one
    outcome counter: a malformed_<reason> (the reason decode_dhcp gives, or bad_op for a
    message sent to the wrong port), a <type>s_received, or not_for_us."""
    before = stack.counters()["dhcp"]
    out = stack.receive(frame, 5.0)
    assert isinstance(out, list)
    d = _delta(before, stack.counters()["dhcp"])
    outcomes = {k: v for k, v in d.items()
                if k == "malformed" or k == "not_for_us" or k.endswith("s_received")}
    assert list(outcomes.values()) == [1], d
    try:
        msg = decode_dhcp(data)
        reason = None if msg.op == (BOOTREQUEST if port == 67 else BOOTREPLY) else "bad_op"
    except DhcpDecodeError as e:
        reason = e.reason
    if reason is None:
        assert "malformed" not in d, d
    else:
        assert outcomes == {"malformed": 1} and d[f"malformed_{reason}"] == 1, (reason, d)


@SETTINGS
@given(st.one_of(st.binary(max_size=700),
                 st.binary(max_size=400).map(lambda b: GOOD[:DHCP_MIN_LEN] + b)),
       st.booleans())
def test_random_payloads_are_each_one_counted_outcome(data, to_server):
    srv, cl = server_and_client()
    if to_server:
        _one_counted_outcome(srv, dhcp_frame(data), data, 67)
    else:
        _one_counted_outcome(cl, dhcp_frame(data, sport=67, dport=68, src=SERVER_ID), data, 68)


# -- fuzz: the decoder alone ----------------------------------------------------------------


def _overloaded() -> bytes:
    hdr = BOOTP_HDR.pack(BOOTREPLY, 1, 6, 0, 9, 0, 0, ZERO_IP, ip("10.0.0.9"), ZERO_IP,
                         ZERO_IP, MAC, bytes((51, 4)) + (60).to_bytes(4, "big") + b"\xff",
                         bytes((56, 3)) + b"abc" + b"\xff")
    return hdr + MAGIC_COOKIE + bytes((53, 1, 5, 54, 4, 10, 0, 0, 1, 52, 1, 3, 255))


SEEDS = [
    GOOD,
    encode_dhcp(ack()),
    _overloaded(),
    encode_dhcp(DhcpMessage(op=BOOTREQUEST, xid=1, chaddr=MAC,
                            options={53: b"\x03", 200: bytes(range(256)) * 2, 61: b"\0c"})),
    encode_dhcp(DhcpMessage(op=BOOTREPLY, xid=2, chaddr=MAC, options=dhcp_options(
        msg_type=MsgType.NAK, server_id=SERVER_ID, message="no")))[:DHCP_MIN_LEN + 12],
]
_pos = st.one_of(st.integers(0, 800), st.integers(DHCP_MIN_LEN - 4, DHCP_MIN_LEN + 80))
_edit = st.one_of(
    st.tuples(st.just("set"), _pos, st.integers(0, 255)),
    st.tuples(st.just("set"), _pos, st.sampled_from([0, 1, 2, 3, 4, 52, 53, 255])),
    st.tuples(st.just("insert"), _pos, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), _pos, st.integers(1, 8)),
    st.tuples(st.just("cut"), _pos, st.none()),
)


def edit(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, pos, arg in edits:
        i = pos % (len(b) + 1)
        if kind == "set" and b:
            b[min(i, len(b) - 1)] = arg
        elif kind == "insert":
            b[i:i] = arg
        elif kind == "delete":
            del b[i:i + arg]
        elif kind == "cut":
            del b[i:]
    return bytes(b)


def _decode_or_reason(data: bytes):
    """decode_dhcp's message, or the reason it named; any other exception fails the test."""
    try:
        return decode_dhcp(data)
    except DhcpDecodeError as e:
        assert e.reason in DECODE_REASONS and f"malformed_{e.reason}" in DhcpCounters.__slots__
        return e.reason


def _check_accepted(m: DhcpMessage, data: bytes) -> None:
    """What the decoder accepted is what the bytes say, and it encodes back to itself."""
    assert m.xid == int.from_bytes(data[4:8], "big") and m.chaddr == data[28:34]
    assert (m.ciaddr, m.yiaddr, m.siaddr, m.giaddr) == (data[12:16], data[16:20],
                                                        data[20:24], data[24:28])
    assert m.msg_type is not None and decode_dhcp(encode_dhcp(m)) == m


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=700))
def test_decoder_on_arbitrary_bytes_names_every_refusal(data):
    out = _decode_or_reason(data)
    if isinstance(out, DhcpMessage):
        _check_accepted(out, data)


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(range(len(SEEDS))), st.lists(_edit, min_size=1, max_size=5))
def test_decoder_on_mutated_messages_names_every_refusal(which, edits):
    data = edit(SEEDS[which], edits)
    out = _decode_or_reason(data)
    if not isinstance(out, DhcpMessage):
        return
    _check_accepted(out, data)
    if 52 in out.options:  # scapy does not follow option overload (RFC 2132 9.3)
        return
    # differential: scapy reads the same header and the same single message type
    pkt = BOOTP(data)
    assert (pkt.xid, pkt.op, bytes(pkt.chaddr)[:6]) == (out.xid, out.op, out.chaddr)
    if pkt.haslayer(DHCP):
        types = [o[1] for o in pkt[DHCP].options if isinstance(o, tuple)
                 and o[0] == "message-type"]
        if len(types) == 1 and isinstance(types[0], int):
            assert types[0] == out.msg_type


def test_every_decode_reason_has_a_counter():
    assert DECODE_REASONS == ("truncated", "bad_cookie", "bad_op", "bad_hw", "bad_options",
                              "not_dhcp")
    for reason in DECODE_REASONS:
        assert f"malformed_{reason}" in DhcpCounters.__slots__


CORPUS = [encode_dhcp(discover()), encode_dhcp(ack()),
          encode_dhcp(discover(ciaddr=ip("10.0.0.10")))]


@SETTINGS
@given(st.sampled_from(["selecting", "checking", "bound", "rebinding"]),
       st.sampled_from(range(6)), mutation, st.one_of(st.none(), st.integers(0, 400)))
def test_mutated_messages_never_raise_in_any_client_state(state, which, ops, cut):
    hub, srv, cl = _client_in(state)
    xid = cl.dhcp.client.xid
    base = [
        encode_dhcp(discover()),
        encode_dhcp(ack()),
        encode_dhcp(DhcpMessage(op=BOOTREPLY, xid=xid, chaddr=mac_of(2),
                                yiaddr=ip("10.0.0.10"), options=dict(ack().options))),
        encode_dhcp(DhcpMessage(op=BOOTREPLY, xid=xid, chaddr=mac_of(2), options=dhcp_options(
            msg_type=MsgType.NAK, server_id=SERVER_ID))),
        encode_dhcp(DhcpMessage(op=BOOTREQUEST, xid=5, chaddr=mac_of(3), options=dhcp_options(
            msg_type=MsgType.REQUEST, requested_ip=ip("10.0.0.10")))),
        encode_dhcp(DhcpMessage(op=BOOTREQUEST, xid=5, chaddr=mac_of(2), ciaddr=ip(
            "10.0.0.10"), options=dhcp_options(msg_type=MsgType.RELEASE,
                                               client_id=b"\0c"))),
    ][which]
    data = mutate(base, ops, cut)
    hub.send("x", [dhcp_frame(data, sport=67, dport=68, src=SERVER_ID, mac=mac_of(1))])
    hub.send("x", [dhcp_frame(data, mac=mac_of(3))])
    hub.run(hub.now + 120)
    # Whatever happened, the client is in a legal state and the LAN has no duplicate.
    st_ = cl.dhcp_client_state()["state"]
    assert st_ in {"init", "selecting", "requesting", "checking", "bound", "renewing",
                   "rebinding", "rebooting"}
    addrs = [a["address"] for s in hub.stacks.values() for a in s.addresses()]
    assert len(addrs) == len(set(addrs))


def test_server_handle_rejects_non_requests_without_raising():
    srv, _ = server_and_client()
    server = srv.dhcp.server
    assert server.handle(ack(), 1.0) is None
    assert server.handle(DhcpMessage(op=BOOTREQUEST, xid=1, chaddr=MAC), 1.0) is None
    c = srv.counters()["dhcp"]
    assert c["malformed_bad_op"] == 1 and c["malformed_not_dhcp"] == 1
    relayed = discover(giaddr=ip("10.9.9.9"))
    assert server.handle(relayed, 1.0) is None and c["ignored"] == 0
    assert srv.counters()["dhcp"]["ignored"] == 1


def test_struct_format_is_the_bootp_header():
    assert BOOTP_HDR.size == 236 and DHCP_MIN_LEN == 240 and len(GOOD) == 300
