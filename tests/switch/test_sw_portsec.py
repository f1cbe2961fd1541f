"""Port security in the sans-I/O core: a per-port limit of learned addresses, what a violation
does (drop, shutdown), and the FDB under a flood of random sources. Wired by hand, fake clock."""

from __future__ import annotations

import logging
import random
import struct

import pytest

from vnet.proto import wire
from vnet.switch.core import SwitchCore
from vnet.switch.fdb import Fdb

BCAST = b"\xff" * 6
MAC = {n: bytes([2, 0, 0, 0, 0, i]) for i, n in enumerate("abcd", 1)}
PEER = {n: f"peer-{n}".encode() for n in "abcd"}
H = [bytes([2, 0, 0, 1, 0, i]) for i in range(16)]  # hosts behind port a
VICTIMS = {n: [bytes([2, 0, 0, 2, j, i]) for i in range(10)] for j, n in enumerate("bc")}


def eth(dst: bytes, src: bytes, payload: bytes = b"x" * 46, vlan: int | None = None) -> bytes:
    tag = b"" if vlan is None else struct.pack("!HH", 0x8100, vlan)
    return dst + src + tag + b"\x08\x00" + payload


def frames(*fs: bytes) -> list[bytes]:
    return wire.frames_msg(fs)


def decode(msgs) -> dict:
    """{peer: [frames...]} from FRAMES messages, {peer: [("carrier", up)]} from CARRIER ones;
    asserts one message of a kind per peer."""
    out: dict = {}
    for peer, parts in msgs:
        if parts[0] == wire.MSG_CARRIER:
            got = [("carrier", wire.parse_carrier(parts))]
        else:
            assert parts[0] == wire.MSG_FRAMES
            got = [bytes(f) for f in wire.unpack_frames(parts[1])]
        assert not any(type(x) is type(got[0]) for x in out.get(peer, [])), "two messages of a kind"
        out.setdefault(peer, []).extend(got)
    return out


def make(max_macs: int = 2, violation: str = "drop", fdb: Fdb | None = None, victims: bool = False) -> SwitchCore:
    """Ports a, b, c: a declares no address; b and c their MAC (or their ten VICTIMS)."""
    c = SwitchCore(heartbeat_timeout=1e9, fdb=Fdb(ageing_time=300) if fdb is None else fdb, max_macs=max_macs,
                   violation=violation)
    for n in "abc":
        macs = [] if n == "a" else VICTIMS[n] if victims else [MAC[n]]
        out = c.handle(PEER[n], wire.hello(n, macs, 1500), 0.0)
        assert [parts[0] for _, parts in out] == [wire.MSG_WELCOME]
    return c


def counters(core: SwitchCore, name: str) -> dict:
    return core.port_by_name(name).counters.as_dict()


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vnet.switch.core" and r.levelno == logging.WARNING]


# -- the limit, violation "drop" --------------------------------------------------------------


def test_default_is_unlimited_and_settings_are_in_stats():
    core = make(max_macs=0)
    fs = [eth(BCAST, bytes([2, 0, 0, 3, i >> 8, i & 255])) for i in range(300)]
    out = decode(core.handle(PEER["a"], frames(*fs), 1.0))
    assert out == {PEER["b"]: fs, PEER["c"]: fs}
    assert core.fdb.port_count(core.port_by_name("a")) == 300
    stats = core.stats()
    assert stats["port_security"] == {"max_macs": 0, "violation": "drop"}
    assert stats["totals"]["port_security"] == 0 and stats["totals"]["psec_shutdowns"] == 0
    assert stats["per_port"]["a"]["port_security"] == 0


def test_new_source_over_the_limit_is_dropped_counted_and_not_learned():
    core = make(max_macs=2)
    a = core.port_by_name("a")
    f1, f2, f3 = (eth(BCAST, h) for h in H[1:4])
    assert decode(core.handle(PEER["a"], frames(f1), 1.0)) == {PEER["b"]: [f1], PEER["c"]: [f1]}
    assert decode(core.handle(PEER["a"], frames(f2), 1.0)) == {PEER["b"]: [f2], PEER["c"]: [f2]}
    assert core.handle(PEER["a"], frames(f3), 1.0) == []  # a third address: over the limit
    assert counters(core, "a")["port_security"] == 1 and core.totals.port_security == 1
    assert (counters(core, "a")["rx_packets"], counters(core, "a")["flooded"]) == (2, 2)
    assert core.fdb.lookup(H[3], 0, 1.0) is None and core.fdb.port_count(a) == 2
    assert core.stats()["per_port"]["a"]["port_security"] == 1
    # a known address is refreshed, never a violation
    assert decode(core.handle(PEER["a"], frames(f1), 2.0)) == {PEER["b"]: [f1], PEER["c"]: [f1]}
    # the dropped source was not learned: frames to it still flood
    g = eth(H[3], MAC["b"])
    assert decode(core.handle(PEER["b"], frames(g), 2.0)) == {PEER["a"]: [g], PEER["c"]: [g]}
    assert core.totals.port_security == 1 and core.totals.psec_shutdowns == 0
    assert core.port_by_name("a").admin_up


def test_violations_inside_a_batch_are_dropped_and_never_cached_as_forwardable():
    core = make(max_macs=2)
    core.handle(PEER["a"], frames(eth(BCAST, H[1]), eth(BCAST, H[2])), 1.0)
    to_b = eth(MAC["b"], H[1])
    bad = eth(MAC["b"], H[3])  # known unicast destination, new source
    batch = [to_b, bad, bad, to_b, eth(BCAST, H[4]), eth(MAC["c"], H[2]), bad, eth(BCAST, H[1])]
    out = decode(core.handle(PEER["a"], frames(*batch), 2.0))
    assert out == {PEER["b"]: [to_b, to_b, batch[7]], PEER["c"]: [batch[5], batch[7]]}
    a = counters(core, "a")
    assert (a["port_security"], a["rx_packets"], a["flooded"]) == (4, 2 + 4, 2 + 1)  # 2 before
    assert core.totals.port_security == 4 and core.totals.tx_packets == 2 * 2 + 5
    assert core.fdb.lookup(H[3], 0, 2.0) is None and core.fdb.lookup(H[4], 0, 2.0) is None


@pytest.mark.parametrize("uniform", [True, False], ids=["one-flow fast path", "general path"])
def test_a_whole_batch_from_a_new_source_is_dropped(uniform):
    core = make(max_macs=1)
    core.handle(PEER["a"], frames(eth(BCAST, H[1])), 1.0)
    fs = [eth(MAC["b"], H[2], b"x" * (46 if uniform else 46 + i)) for i in range(10)]
    assert core.handle(PEER["a"], frames(*fs), 2.0) == []
    assert counters(core, "a")["port_security"] == 10 and core.totals.port_security == 10
    assert counters(core, "b")["tx_packets"] == 1 and core.fdb.lookup(H[2], 0, 2.0) is None  # 1: H1's
    # the learned source still goes through, on either path
    ok = [eth(MAC["b"], H[1], b"x" * (46 if uniform else 46 + i)) for i in range(10)]
    assert decode(core.handle(PEER["a"], frames(*ok), 2.0)) == {PEER["b"]: ok}


def test_moving_an_address_onto_a_full_port_is_a_violation():
    core = make(max_macs=2)
    a, b = core.port_by_name("a"), core.port_by_name("b")
    core.handle(PEER["a"], frames(eth(BCAST, H[1])), 1.0)
    # a holds 1: b's address may move onto it (the limit counts it as new and it fits)
    f = eth(BCAST, MAC["b"])
    assert decode(core.handle(PEER["a"], frames(f), 2.0)) == {PEER["b"]: [f], PEER["c"]: [f]}
    assert core.fdb.lookup(MAC["b"], 0, 2.0) is a and core.fdb.moves == 1
    assert (core.fdb.port_count(a), core.fdb.port_count(b)) == (2, 0)
    # c's address onto a, which is full: refused, and it stays on c
    assert core.handle(PEER["a"], frames(eth(BCAST, MAC["c"])), 3.0) == []
    assert core.fdb.lookup(MAC["c"], 0, 3.0) is core.port_by_name("c") and core.fdb.moves == 1
    assert counters(core, "a")["port_security"] == 1
    g = eth(MAC["c"], MAC["b"])
    assert decode(core.handle(PEER["b"], frames(g), 3.0)) == {PEER["c"]: [g]}  # still unicast to c


def test_vlans_count_together_toward_the_limit():
    core = make(max_macs=2)
    f0, f10 = eth(BCAST, H[1]), eth(BCAST, H[1], vlan=10)
    assert len(decode(core.handle(PEER["a"], frames(f0, f10), 1.0))) == 2  # two entries
    assert core.fdb.port_count(core.port_by_name("a")) == 2
    bad = eth(BCAST, H[1], vlan=20)  # the same address on a third VLAN is a third entry
    assert core.handle(PEER["a"], frames(bad, bad), 2.0) == []
    assert counters(core, "a")["port_security"] == 2
    assert decode(core.handle(PEER["a"], frames(f10), 3.0)) == {PEER["b"]: [f10], PEER["c"]: [f10]}


def test_lowering_the_limit_removes_nothing_and_zero_lifts_it():
    core = make(max_macs=4)
    a = core.port_by_name("a")
    core.handle(PEER["a"], frames(*(eth(BCAST, h) for h in H[1:5])), 1.0)
    assert core.set_port_security(max_macs=2) == {"max_macs": 2, "violation": "drop"}
    assert core.fdb.port_count(a) == 4
    f = eth(BCAST, H[1])
    assert len(decode(core.handle(PEER["a"], frames(f), 2.0))) == 2  # known: still forwarded
    assert core.handle(PEER["a"], frames(eth(BCAST, H[5])), 2.0) == []
    assert core.flush("a") == 4  # below the limit again: learns
    assert len(decode(core.handle(PEER["a"], frames(eth(BCAST, H[5])), 3.0))) == 2
    assert core.set_port_security(max_macs=0)["max_macs"] == 0
    core.handle(PEER["a"], frames(*(eth(BCAST, h) for h in H[6:16])), 4.0)
    assert core.fdb.port_count(a) == 11 and counters(core, "a")["port_security"] == 1


# -- bad sources ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_macs", [0, 1])
@pytest.mark.parametrize("uniform", [True, False], ids=["one-flow fast path", "general path"])
def test_bad_src_frames_are_not_learned_forwarded_or_counted_toward_the_limit(max_macs, uniform):
    core = make(max_macs=max_macs)
    a = core.port_by_name("a")
    bads = [BCAST, b"\x01\x00\x5e\x00\x00\x01", b"\x03" + bytes(5), bytes(6)]
    for src in bads:
        fs = [eth(MAC["b"], src, b"x" * (46 if uniform else 46 + i)) for i in range(10)]
        assert core.handle(PEER["a"], frames(*fs), 1.0) == []
    assert counters(core, "a")["bad_src"] == 40 and core.totals.bad_src == 40
    assert counters(core, "a")["port_security"] == 0 and core.totals.port_security == 0
    assert counters(core, "a")["rx_packets"] == 0 and core.totals.tx_packets == 0
    assert core.fdb.port_count(a) == 0 and all(core.fdb.lookup(m, 0, 1.0) is None for m in bads)
    # the limit is untouched: the first good source is learned and forwarded
    f = eth(MAC["b"], H[1])
    assert decode(core.handle(PEER["a"], frames(f), 2.0)) == {PEER["b"]: [f]}
    assert core.fdb.lookup(H[1], 0, 2.0) is a
    # and the second one is over a limit of 1
    assert bool(core.handle(PEER["a"], frames(eth(MAC["b"], H[2])), 2.0)) == (max_macs == 0)
    assert counters(core, "a")["port_security"] == max_macs


# -- HELLO ----------------------------------------------------------------------------------


@pytest.mark.parametrize("violation", ["drop", "shutdown"])
def test_hello_declaring_more_macs_than_the_limit_learns_only_the_limit(violation, caplog):
    core = make(max_macs=2, violation=violation)
    declared = [BCAST, H[1], H[2], H[3], H[4]]  # the broadcast one is unusable and does not count
    with caplog.at_level(logging.WARNING, "vnet.switch.core"):
        out = core.handle(PEER["d"], wire.hello("d", declared, 1500), 1.0)
    assert [parts[0] for _, parts in out] == [wire.MSG_WELCOME]  # no shutdown for a HELLO
    d = core.port_by_name("d")
    assert [core.fdb.lookup(m, 0, 1.0) for m in H[1:5]] == [d, d, None, None]
    assert core.fdb.port_count(d) == 2 and d.admin_up
    assert counters(core, "d")["port_security"] == 0 and core.totals.port_security == 0
    assert warnings(caplog) == ["port 4 'd' declared 2 macs over its port security limit of 2: not learned"]
    # a frame from a declared address that did not fit is a violation
    out = core.handle(PEER["d"], frames(eth(BCAST, H[3])), 2.0)
    assert counters(core, "d")["port_security"] == 1
    if violation == "drop":
        assert out == [] and d.admin_up
    else:
        assert out == [(PEER["d"], wire.carrier(False))] and not d.admin_up


def test_hello_macs_already_on_another_port_count_as_new():
    core = make(max_macs=1)
    out = core.handle(PEER["d"], wire.hello("d", [MAC["b"], MAC["c"]], 1500), 1.0)
    assert [parts[0] for _, parts in out] == [wire.MSG_WELCOME]
    d = core.port_by_name("d")
    assert core.fdb.lookup(MAC["b"], 0, 1.0) is d  # moved: 1 of 1
    assert core.fdb.lookup(MAC["c"], 0, 1.0) is core.port_by_name("c")  # refused: stays on c


# -- violation "shutdown" ----------------------------------------------------------------------


def test_shutdown_downs_the_port_like_set_admin_and_up_brings_back_the_limit(caplog):
    core = make(max_macs=2, violation="shutdown")
    a = core.port_by_name("a")
    f1, f2, f3 = (eth(BCAST, h) for h in H[1:4])
    core.handle(PEER["a"], frames(f1, f2), 1.0)
    # general path: the frames before the violation are forwarded, then the port goes down
    batch = [f1, eth(MAC["b"], H[2]), f3, f1, f2, eth(MAC["c"], H[1])]
    with caplog.at_level(logging.INFO, "vnet.switch.core"):
        out = core.handle(PEER["a"], frames(*batch), 2.0)
    assert decode(out) == {PEER["b"]: [f1, batch[1]], PEER["c"]: [f1], PEER["a"]: [("carrier", False)]}
    assert out.count((PEER["a"], wire.carrier(False))) == 1
    ca = counters(core, "a")
    assert (ca["rx_packets"], ca["port_security"], ca["port_down"]) == (4, 1, 3)
    t = core.totals
    assert (t.port_security, t.port_down, t.psec_shutdowns) == (1, 3, 1)
    assert not a.admin_up and [r["admin"] for r in core.ports_view(2.0)] == ["down", "up", "up"]
    assert warnings(caplog) == ["port 1 'a': dropped 1 port_security",  # the offence, rate-limited
                                "port 1 'a' shut down by port security: a new source over its limit of 2 macs"]
    assert core.fdb.lookup(H[3], 0, 2.0) is None and core.fdb.port_count(a) == 2  # nothing flushed
    # later frames from it and to it count port_down, as after set_admin(name, False)
    assert core.handle(PEER["a"], frames(f1, f3, f1), 3.0) == []
    assert core.handle(PEER["b"], frames(eth(H[1], MAC["b"])), 3.0) == []
    ca = counters(core, "a")
    assert (ca["port_down"], ca["port_security"], t.port_down, t.psec_shutdowns) == (7, 1, 7, 1)
    assert core.set_admin("a", False)[1] == []  # already down, as set_admin left it
    assert core.handle(PEER["a"], wire.HEARTBEAT, 3.0) == [(PEER["a"], wire.HEARTBEAT)]  # still attached
    # up again: carrier on; known sources pass, the limit applies again
    row, msgs = core.set_admin("a", True)
    assert row == {"name": "a", "admin": "up", "attached": True} and msgs == [(PEER["a"], wire.carrier(True))]
    assert decode(core.handle(PEER["a"], frames(f2), 4.0)) == {PEER["b"]: [f2], PEER["c"]: [f2]}
    caplog.clear()
    with caplog.at_level(logging.WARNING, "vnet.switch.core"):
        out = core.handle(PEER["a"], frames(f3), 4.0)
    assert out == [(PEER["a"], wire.carrier(False))] and not a.admin_up
    assert (counters(core, "a")["port_security"], t.psec_shutdowns, t.port_down) == (2, 2, 7)
    assert len([w for w in warnings(caplog) if "shut down" in w]) == 1


def test_shutdown_on_the_one_flow_fast_path():
    core = make(max_macs=1, violation="shutdown")
    core.handle(PEER["a"], frames(eth(BCAST, H[1])), 1.0)
    fs = [eth(BCAST, H[2])] * 10
    assert core.handle(PEER["a"], frames(*fs), 2.0) == [(PEER["a"], wire.carrier(False))]
    ca = counters(core, "a")
    assert (ca["port_security"], ca["port_down"], ca["rx_packets"]) == (1, 9, 1)
    assert (core.totals.psec_shutdowns, counters(core, "b")["tx_packets"]) == (1, 1)
    assert core.handle(PEER["a"], frames(*fs), 3.0) == []
    assert counters(core, "a")["port_down"] == 19 and core.totals.psec_shutdowns == 1


def test_a_port_shut_down_stays_down_when_its_node_attaches_again():
    core = make(max_macs=1, violation="shutdown")
    core.handle(PEER["a"], frames(eth(BCAST, H[1]), eth(BCAST, H[2])), 1.0)
    assert not core.port_by_name("a").admin_up
    core.handle(PEER["a"], wire.BYE, 2.0)
    out = core.handle(PEER["a"], wire.hello("a", [], 1500), 3.0)
    assert [parts[0] for _, parts in out] == [wire.MSG_WELCOME, wire.MSG_CARRIER]
    assert wire.parse_carrier(out[1][1]) is False


def test_switching_to_shutdown_at_run_time():
    core = make(max_macs=1)
    core.handle(PEER["a"], frames(eth(BCAST, H[1])), 1.0)
    assert core.handle(PEER["a"], frames(eth(BCAST, H[2])), 2.0) == []  # drop
    assert core.set_port_security(violation="shutdown") == {"max_macs": 1, "violation": "shutdown"}
    assert core.stats()["port_security"] == {"max_macs": 1, "violation": "shutdown"}
    assert core.handle(PEER["a"], frames(eth(BCAST, H[2])), 3.0) == [(PEER["a"], wire.carrier(False))]
    assert counters(core, "a")["port_security"] == 2 and core.totals.psec_shutdowns == 1


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, True, 1.5, "3"])
def test_max_macs_is_validated(bad):
    with pytest.raises(ValueError, match=r"max_macs must be an integer >= 0 \(0 = unlimited\), got "):
        SwitchCore(max_macs=bad)
    core = make(max_macs=3)
    with pytest.raises(ValueError, match="max_macs must be"):
        core.set_port_security(max_macs=bad)
    with pytest.raises(ValueError, match="max_macs must be"):
        core.set_port_security(max_macs=bad, violation="shutdown")
    assert core.stats()["port_security"] == {"max_macs": 3, "violation": "drop"}  # nothing changed


@pytest.mark.parametrize("bad", ["DROP", "restrict", "", 0, ["drop"]])
def test_violation_is_validated(bad):
    with pytest.raises(ValueError, match=r'violation must be "drop" or "shutdown", got '):
        SwitchCore(violation=bad)
    core = make(max_macs=3)
    with pytest.raises(ValueError, match="violation must be"):
        core.set_port_security(max_macs=7, violation=bad)
    assert core.set_port_security() == {"max_macs": 3, "violation": "drop"}  # nothing changed


# -- flooding -------------------------------------------------------------------------------


def _random_sources(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out: dict[bytes, None] = {}
    while len(out) < n:
        mac = bytes([rng.randrange(256) & 0xFE | 0x02]) + rng.randbytes(5)
        if mac[:4] != bytes([2, 0, 0, 2]):  # never one of the victims'
            out[mac] = None
    return list(out)


def _flood(core: SwitchCore, sources: list[bytes]) -> dict:
    """Port a sends one broadcast from each source, 100 a batch; what each peer received."""
    got: dict = {}
    for i in range(0, len(sources), 100):
        batch = frames(*(eth(BCAST, s) for s in sources[i : i + 100]))
        for peer, fs in decode(core.handle(PEER["a"], batch, 1.0 + i / 1e4)).items():
            got.setdefault(peer, []).extend(fs)
    return got


def _assert_victims_unicast(core: SwitchCore, now: float) -> None:
    for n, other in (("b", "c"), ("c", "b")):
        port = core.port_by_name(n)
        assert [core.fdb.lookup(m, 0, now) for m in VICTIMS[n]] == [port] * 10
        fs = [eth(m, VICTIMS[other][0]) for m in VICTIMS[n]]
        assert decode(core.handle(PEER[other], frames(*fs), now)) == {PEER[n]: fs}  # not flooded
    assert counters(core, "b")["flooded"] == counters(core, "c")["flooded"] == 0


def test_a_flooding_port_cannot_evict_the_other_ports_addresses():
    core = make(max_macs=0, fdb=Fdb(ageing_time=300, max_entries=64), victims=True)
    got = _flood(core, _random_sources(10_000))
    a = core.port_by_name("a")
    assert len(got[PEER["b"]]) == len(got[PEER["c"]]) == 10_000  # unlimited: all flooded
    assert len(core.fdb) == 64 and core.fdb.port_count(a) == 64 - 20
    assert core.fdb.evictions == 10_000 - 44  # every one of them from a's own entries
    assert core.totals.port_security == 0
    _assert_victims_unicast(core, 2.0)


def test_with_a_limit_the_flooders_extra_frames_are_dropped_not_flooded():
    core = make(max_macs=12, fdb=Fdb(ageing_time=300, max_entries=64), victims=True)
    sources = _random_sources(10_000)
    got = _flood(core, sources)
    first12 = [eth(BCAST, s) for s in sources[:12]]
    assert got == {PEER["b"]: first12, PEER["c"]: first12}
    ca = counters(core, "a")
    assert (ca["rx_packets"], ca["flooded"], ca["port_security"]) == (12, 12, 10_000 - 12)
    assert core.totals.port_security == 10_000 - 12 and core.totals.tx_packets == 24
    assert core.fdb.port_count(core.port_by_name("a")) == 12
    assert len(core.fdb) == 32 and core.fdb.evictions == 0
    assert core.port_by_name("a").admin_up
    _assert_victims_unicast(core, 2.0)
