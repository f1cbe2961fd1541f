"""The sans-I/O switch core, wired by hand with a fake clock."""

import struct

import pytest

from vnet.proto import wire
from vnet.switch.core import SwitchCore, UnknownPort
from vnet.switch.fdb import Fdb

BCAST = b"\xff" * 6
MAC = {n: bytes([2, 0, 0, 0, 0, i]) for i, n in enumerate("abcd", 1)}
PEER = {n: f"peer-{n}".encode() for n in "abcd"}


def eth(dst: bytes, src: bytes, payload: bytes = b"x" * 46, vlan: int | None = None) -> bytes:
    tag = b"" if vlan is None else struct.pack("!HH", 0x8100, vlan)
    return dst + src + tag + b"\x08\x00" + payload


def frames(*fs: bytes) -> list[bytes]:
    return wire.frames_msg(fs)


def decode(msgs):
    """{peer: [frames...]} from FRAMES messages; asserts one message per peer."""
    out = {}
    for peer, parts in msgs:
        assert parts[0] == wire.MSG_FRAMES
        assert peer not in out, "more than one FRAMES message for a peer"
        out[peer] = [bytes(f) for f in wire.unpack_frames(parts[1])]
    return out


def attach(core: SwitchCore, name: str, now: float = 0.0, macs=None) -> None:
    out = core.handle(PEER[name], wire.hello(name, [] if macs is None else macs, 1500), now)
    assert [p for p, _ in out] == [PEER[name]]
    assert out[0][1][0] == wire.MSG_WELCOME


@pytest.fixture
def core():
    c = SwitchCore(mtu=1500, heartbeat_interval=1.0, heartbeat_timeout=3.0, fdb=Fdb(ageing_time=300))
    for n in "abc":
        attach(c, n)
    return c


def test_handshake_welcome_carries_port_and_timers():
    c = SwitchCore(heartbeat_interval=0.5, heartbeat_timeout=2.0, mtu=9000)
    [(peer, parts)] = c.handle(b"p1", wire.hello("n1", [MAC["a"]], 1500), 0.0)
    assert peer == b"p1" and parts[0] == wire.MSG_WELCOME
    w = wire.decode_map(parts[1], "WELCOME")
    assert w == {"version": wire.PROTOCOL_VERSION, "port": 1, "heartbeat_interval": 0.5,
                 "heartbeat_timeout": 2.0, "mtu": 9000}
    assert [p.name for p in c.ports] == ["n1"]
    assert c.totals.attached == 1
    # The declared MAC is known at once.
    assert c.fdb.lookup(MAC["a"], 0, 0.0) is c.port_by_name("n1")


def test_version_mismatch_refused_with_both_versions():
    c = SwitchCore()
    [(peer, parts)] = c.handle(b"p1", wire.hello("n1", [], 1500, version=99), 0.0)
    assert parts[0] == wire.MSG_REFUSE
    r = wire.decode_map(parts[1], "REFUSE")
    assert "99" in r["reason"] and str(wire.PROTOCOL_VERSION) in r["reason"]
    assert r["version"] == wire.PROTOCOL_VERSION
    assert c.totals.refused == 1 and c.ports == []


@pytest.mark.parametrize(
    "parts, words",
    [
        ([wire.MSG_HELLO], "2 message parts"),
        ([wire.MSG_HELLO, b"\xc1garbage"], "not msgpack"),
        ([wire.MSG_HELLO, wire.encode_map({"version": 1, "name": "", "macs": [], "mtu": 1500})], "name"),
        ([wire.MSG_HELLO, wire.encode_map({"version": 1, "name": "n", "macs": [b"abc"], "mtu": 1500})], "macs"),
        ([wire.MSG_HELLO, wire.encode_map({"version": 1, "name": "n", "macs": [], "mtu": 10})], "mtu"),
    ],
)
def test_bad_hello_refused(parts, words):
    c = SwitchCore()
    [(_, out)] = c.handle(b"p1", parts, 0.0)
    assert out[0] == wire.MSG_REFUSE and words in wire.decode_map(out[1], "REFUSE")["reason"]
    assert c.totals.refused == 1 and c.ports == []


def test_unknown_peer_gets_not_attached(core):
    for parts in (frames(eth(BCAST, MAC["d"])), wire.HEARTBEAT, [b"?"], []):
        assert core.handle(b"stranger", parts, 1.0) == [(b"stranger", wire.NOT_ATTACHED)]
    assert core.handle(b"stranger", wire.BYE, 1.0) == []  # no answer to a goodbye
    assert core.totals.not_attached == 5
    assert core.totals.unknown_peer == 1  # frames, not messages


def test_unknown_peer_counts_frames_of_a_batch(core):
    batch = frames(*(eth(MAC["a"], MAC["d"]) for _ in range(7)))
    core.handle(b"stranger", batch, 1.0)
    assert (core.totals.unknown_peer, core.totals.not_attached) == (7, 1)


def test_forwarded_counts_copies(core):
    core.handle(PEER["a"], frames(eth(BCAST, MAC["a"]), eth(BCAST, MAC["a"])), 1.0)  # 2 ports each
    core.handle(PEER["b"], frames(eth(MAC["a"], MAC["b"])), 1.0)  # known: 1 copy
    core.handle(PEER["a"], frames(eth(MAC["a"], MAC["a"])), 1.0)  # same port: none
    t = core.totals
    assert t.forwarded == 5 == t.tx_packets
    assert t.rx_packets - t.same_port == 3


def test_heartbeat_is_answered_and_refreshes(core):
    assert core.handle(PEER["a"], wire.HEARTBEAT, 2.5) == [(PEER["a"], wire.HEARTBEAT)]
    tick = core.tick(4.0)  # b and c silent since 0 > 3 s; a seen at 2.5
    assert sorted(p.name for p in tick.removed) == ["b", "c"]
    assert sorted(peer for peer, _ in tick.messages) == [PEER["b"], PEER["c"]]
    assert all(parts == wire.BYE for _, parts in tick.messages)
    assert [p.name for p in core.ports] == ["a"] and core.totals.timeouts == 2


def test_broadcast_floods_all_but_ingress(core):
    f = eth(BCAST, MAC["a"])
    out = decode(core.handle(PEER["a"], frames(f), 1.0))
    assert out == {PEER["b"]: [f], PEER["c"]: [f]}
    assert core.totals.flooded == 1
    assert core.port_by_name("a").counters.flooded == 1


def test_learned_unicast_goes_to_one_port(core):
    core.handle(PEER["b"], frames(eth(BCAST, MAC["b"])), 1.0)  # b's MAC learned
    f = eth(MAC["b"], MAC["a"])
    assert decode(core.handle(PEER["a"], frames(f), 2.0)) == {PEER["b"]: [f]}
    # and the reply from b goes to a alone (a was learned from f)
    g = eth(MAC["a"], MAC["b"])
    assert decode(core.handle(PEER["b"], frames(g), 2.0)) == {PEER["a"]: [g]}
    b = core.port_by_name("b").counters
    assert (b.rx_packets, b.tx_packets, b.tx_bytes) == (2, 1, len(f))


def test_unknown_unicast_floods(core):
    f = eth(MAC["d"], MAC["a"])
    assert decode(core.handle(PEER["a"], frames(f), 1.0)) == {PEER["b"]: [f], PEER["c"]: [f]}


def test_aged_out_mac_floods_again():
    c = SwitchCore(heartbeat_timeout=1e9, fdb=Fdb(ageing_time=10))
    for n in "abc":
        attach(c, n)
    c.handle(PEER["b"], frames(eth(BCAST, MAC["b"])), 0.0)
    f = eth(MAC["b"], MAC["a"])
    assert list(decode(c.handle(PEER["a"], frames(f), 5.0))) == [PEER["b"]]
    assert [e.mac for e in c.tick(11.0).aged] == [MAC["b"]]
    assert sorted(decode(c.handle(PEER["a"], frames(f), 11.0))) == [PEER["b"], PEER["c"]]


def test_same_port_unicast_dropped(core):
    core.handle(PEER["a"], frames(eth(BCAST, MAC["d"])), 1.0)  # d lives behind a
    assert core.handle(PEER["a"], frames(eth(MAC["d"], MAC["a"])), 1.0) == []
    assert core.port_by_name("a").counters.same_port == 1 and core.totals.same_port == 1


def test_mac_move_between_ports(core):
    core.handle(PEER["a"], frames(eth(BCAST, MAC["d"])), 1.0)
    core.handle(PEER["b"], frames(eth(BCAST, MAC["d"])), 2.0)
    assert core.fdb.moves == 1
    f = eth(MAC["d"], MAC["c"])
    assert list(decode(core.handle(PEER["c"], frames(f), 3.0))) == [PEER["b"]]


def test_timeout_removes_port_and_flushes_its_macs(core):
    core.handle(PEER["b"], frames(eth(BCAST, MAC["b"]), eth(BCAST, MAC["d"])), 1.0)
    for t in (2.0, 3.0, 4.0):
        core.handle(PEER["a"], wire.HEARTBEAT, t)
        core.handle(PEER["c"], wire.HEARTBEAT, t)
    tick = core.tick(4.01)
    assert [p.name for p in tick.removed] == ["b"]
    assert tick.messages == [(PEER["b"], wire.BYE)]
    assert core.fdb.lookup(MAC["b"], 0, 4.01) is None and core.fdb.port_count(tick.removed[0]) == 0
    # b is a stranger now
    assert core.handle(PEER["b"], wire.HEARTBEAT, 5.0) == [(PEER["b"], wire.NOT_ATTACHED)]


def test_bye_removes_at_once(core):
    core.handle(PEER["b"], frames(eth(BCAST, MAC["b"])), 1.0)
    assert core.handle(PEER["b"], wire.BYE, 1.5) == []
    assert [p.name for p in core.ports] == ["a", "c"]
    assert core.fdb.lookup(MAC["b"], 0, 1.5) is None
    assert core.totals.byes == 1
    f = eth(BCAST, MAC["a"])
    assert list(decode(core.handle(PEER["a"], frames(f), 2.0))) == [PEER["c"]]


def test_a_live_port_keeps_its_name(core):
    """A second node under a live port's name gets no answer and takes nothing over."""
    core.handle(PEER["b"], frames(eth(BCAST, MAC["b"])), 1.0)
    old = core.port_by_name("b")
    assert core.handle(b"impostor", wire.hello("b", [MAC["a"]], 1500), 2.5) == []
    assert core.port_by_name("b") is old and core.totals.name_in_use == 1 and core.totals.replaced == 0
    assert core.fdb.lookup(MAC["b"], 0, 2.5) is old
    assert core.fdb.lookup(MAC["a"], 0, 2.5) in (None, core.port_by_name("a"))  # the impostor learned nothing
    assert core.handle(PEER["b"], wire.HEARTBEAT, 2.5) != [(PEER["b"], wire.NOT_ATTACHED)]  # b still attached


def test_same_name_replaces_a_silent_old_port(core):
    core.handle(PEER["b"], frames(eth(BCAST, MAC["b"])), 1.0)
    old = core.port_by_name("b")
    core.handle(b"b-restarted", wire.hello("b", [], 1500), 3.01)  # b silent for two intervals: restarted
    new = core.port_by_name("b")
    assert new is not old and new.peer == b"b-restarted" and new.port_id != old.port_id
    assert core.fdb.lookup(MAC["b"], 0, 3.01) is None
    assert core.totals.replaced == 1 and len(core.ports) == 3
    assert core.handle(PEER["b"], wire.HEARTBEAT, 3.01) == [(PEER["b"], wire.NOT_ATTACHED)]


def test_drops_counted_by_reason(core):
    good = eth(BCAST, MAC["a"])
    batch = frames(
        b"\x01" * 13,  # runt
        eth(BCAST, MAC["a"], b"x" * 1501 + b"y" * 4),  # 14 + 2 + 1505 > 1500 + 18: oversize
        eth(BCAST, BCAST),  # multicast source
        eth(BCAST, bytes(6)),  # zero source
        eth(BCAST, MAC["a"], b"")[:14] + b"",  # exactly 14 bytes: fine
        MAC["b"] + MAC["a"] + b"\x81\x00\x00",  # tagged but 15 bytes: runt
        good,
    )
    out = decode(core.handle(PEER["a"], batch, 1.0))
    assert len(out[PEER["b"]]) == 2
    a = core.port_by_name("a").counters
    assert (a.runt, a.oversize, a.bad_src, a.rx_packets) == (2, 1, 2, 2)
    t = core.totals
    assert (t.runt, t.oversize, t.bad_src, t.malformed) == (2, 1, 2, 0)


def test_largest_frame_with_vlan_tag_passes(core):
    f = eth(BCAST, MAC["a"], b"z" * 1500, vlan=5)
    assert len(f) == 1500 + 18
    assert len(decode(core.handle(PEER["a"], frames(f), 1.0))) == 2


def test_malformed_payload_counted_and_dropped(core):
    good = wire.pack_frames([eth(BCAST, MAC["a"])])
    for payload in (good + b"\x00", good + b"\x05\x00abc", b"\xff\xff"):
        assert core.handle(PEER["a"], [wire.MSG_FRAMES, payload], 1.0) == []
    for parts in ([wire.MSG_FRAMES], [b"Z", b""], [wire.MSG_HEARTBEAT, b"extra"], [wire.MSG_WELCOME, b""]):
        assert core.handle(PEER["a"], parts, 1.0) == []
    assert core.port_by_name("a").counters.malformed == 7 and core.totals.malformed == 7
    assert core.fdb.lookup(MAC["a"], 0, 1.0) is None  # nothing learned from a bad batch


def test_vlan_tag_separates_learning(core):
    core.handle(PEER["b"], frames(eth(BCAST, MAC["b"], vlan=10)), 1.0)
    assert core.fdb.lookup(MAC["b"], 10, 1.0) is core.port_by_name("b")
    # untagged to b's MAC is unknown in vlan 0: flooded
    assert len(decode(core.handle(PEER["a"], frames(eth(MAC["b"], MAC["a"])), 1.0))) == 2
    # tagged with 10: straight to b
    f = eth(MAC["b"], MAC["a"], vlan=10)
    assert decode(core.handle(PEER["a"], frames(f), 1.0)) == {PEER["b"]: [f]}


def test_batch_of_n_frames_to_m_ports_is_one_message_per_port():
    c = SwitchCore()
    names = "abcd"
    for n in names:
        attach(c, n, macs=[MAC[n]])
    batch = []
    for i in range(100):
        dst = MAC["bcd"[i % 3]] if i % 10 else BCAST
        batch.append(eth(dst, MAC["a"], bytes([i]) * 50))
    out = c.handle(PEER["a"], frames(*batch), 1.0)
    assert sorted(p for p, _ in out) == [PEER["b"], PEER["c"], PEER["d"]]
    got = decode(out)
    for n in "bcd":
        want = [f for f in batch if f[:6] in (MAC[n], BCAST)]
        assert got[PEER[n]] == want  # order kept per port
    assert c.totals.tx_packets == sum(len(v) for v in got.values())
    assert c.totals.rx_packets == 100 and c.totals.flooded == 10


def test_send_failed_moves_tx_to_drop_counters(core):
    f = eth(BCAST, MAC["a"])
    out = core.handle(PEER["a"], frames(f, f), 1.0)
    peer, parts = out[0]
    core.send_failed(peer, parts, "hwm")
    port = core.port_by_peer(peer)
    assert (port.counters.tx_packets, port.counters.hwm) == (0, 2)
    core.send_failed(out[1][0], out[1][1], "unroutable")
    assert core.totals.unroutable == 2 and core.totals.tx_packets == 0
    core.send_failed(PEER["a"], wire.HEARTBEAT, "hwm")
    assert core.totals.ctrl_lost == 1
    with pytest.raises(ValueError):
        core.send_failed(peer, parts, "bogus")


def test_shutdown_says_bye_to_everyone(core):
    out = core.shutdown()
    assert sorted(p for p, _ in out) == sorted(PEER[n] for n in "abc")
    assert all(parts == wire.BYE for _, parts in out)
    assert core.ports == [] and len(core.fdb) == 0


def test_views(core):
    core.handle(PEER["a"], frames(eth(BCAST, MAC["a"])), 1.0)
    [row] = core.fdb_view(3.0)
    assert row == {"mac": "02:00:00:00:00:01", "vlan": 0, "port": "a", "port_id": 1, "age": 2.0, "static": False}
    ports = core.ports_view(3.0)
    assert [p["name"] for p in ports] == ["a", "b", "c"]
    assert ports[0]["last_seen_ago"] == 2.0 and ports[0]["attached_for"] == 3.0
    assert ports[0]["counters"]["rx_packets"] == 1
    stats = core.stats()
    assert stats["ports"] == 3 and stats["totals"]["flooded"] == 1
    assert stats["per_port"]["b"]["tx_packets"] == 1 and stats["fdb"]["entries"] == 1
    assert core.flush("b") == 0 and core.flush("a") == 1
    with pytest.raises(UnknownPort, match="no port named 'zz'; attached: a, b, c"):
        core.flush("zz")
