"""802.1Q port VLANs on the sans-I/O switch core (switch/vlan.py, forward.py's VLAN path),
wired by hand with a fake clock: isolation, trunks, tag push and pop, the drop counters,
configuration by port name, and, for VLAN-transparent ports, the same decisions as the
general path."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vnet.proto import wire
from vnet.switch import forward
from vnet.switch.core import PORT_COUNTERS, SWITCH_COUNTERS, SwitchCore
from vnet.switch.vlan import PortVlan, parse_port_spec, parse_spec

NAMES = ("a", "b", "c", "d", "e")
MAC = {n: bytes([2, 0, 0, 0, 0, i]) for i, n in enumerate(NAMES, 1)}
PEER = {n: f"peer-{n}".encode() for n in NAMES}
BCAST = b"\xff" * 6
ETYPE = b"\x88\xb5"
NOW = 5.0


def eth(dst: bytes, src: bytes, vid: int | None = None, pcp: int = 0, body: bytes = b"x" * 46) -> bytes:
    tag = b"" if vid is None else struct.pack("!HH", 0x8100, pcp << 13 | vid)
    return dst + src + tag + ETYPE + body


def untag(frame: bytes) -> tuple[int | None, bytes]:
    """(VID or None, the frame without its tag)."""
    if frame[12:14] == b"\x81\x00":
        return struct.unpack("!H", frame[14:16])[0] & 0x0FFF, frame[:12] + frame[16:]
    return None, frame


def send(core: SwitchCore, name: str, *frames: bytes) -> dict[str, list[bytes]]:
    """Frames in from port ``name``; {port name: frames out}, one FRAMES message per port."""
    out = core.handle(PEER[name], wire.frames_msg(frames), NOW)
    got: dict[str, list[bytes]] = {}
    for peer, parts in out:
        assert parts[0] == wire.MSG_FRAMES
        port = core.port_by_peer(peer)
        assert port.name not in got, "more than one FRAMES message for a port"
        got[port.name] = [bytes(f) for f in wire.unpack_frames(parts[1])]
    return got


def attach(core: SwitchCore, name: str, now: float = 0.0) -> None:
    out = core.handle(PEER[name], wire.hello(name, [MAC[name]], 1500), now)
    assert out[0][1][0] == wire.MSG_WELCOME


def lan(**cfg: str) -> SwitchCore:
    """a, b access 10; c access 20; d trunk 10,20; e transparent; ``cfg`` overrides (spec
    strings, "" for transparent)."""
    specs = {"a": "access:10", "b": "access:10", "c": "access:20", "d": "trunk:10,20", "e": ""}
    specs.update(cfg)
    core = SwitchCore(vlans={n: parse_spec(s) for n, s in specs.items() if s})
    for n in NAMES:
        attach(core, n)
    return core


def counter(core: SwitchCore, name: str, what: str) -> int:
    return getattr(core.port_by_name(name).counters, what)


# -- the model -------------------------------------------------------------------------------


def test_specs_parse_to_port_configurations():
    assert parse_spec("access:10") == PortVlan("access", vlan=10)
    assert parse_spec("trunk:10,20") == PortVlan("trunk", allowed=(10, 20))
    t = parse_spec("trunk:20,30-32:native=10:native-tagged")
    assert t.allowed == (10, 20, 30, 31, 32) and t.native == 10 and t.native_tagged  # native is a member
    assert parse_port_spec("node1:vnet1=access:7") == ("node1:vnet1", PortVlan("access", vlan=7))


@pytest.mark.parametrize("spec, words", [
    ("access", "one VLAN id"),
    ("access:0", "1 to 4094"),
    ("access:4095", "1 to 4094"),
    ("access:ten", "not a VLAN id"),
    ("access:10,20", "one VLAN id"),
    ("trunk", "allowed VLANs"),
    ("trunk:20-10", "in order"),
    ("trunk:10:native=x", "not a VLAN id"),
    ("trunk:10:bogus", "unknown trunk option"),
    ("trunk:10:native-tagged", "needs a native VLAN"),
    ("hybrid:10", '"access" or "trunk"'),
])
def test_bad_specs_say_what_is_wrong_and_the_form(spec, words):
    with pytest.raises(ValueError) as e:
        parse_spec(spec)
    assert words in str(e.value) and "access:VID or trunk:" in str(e.value)


def test_bad_configurations_are_refused_by_name():
    for kwargs in ({"mode": "access"}, {"mode": "access", "vlan": 10, "native": 10},
                   {"mode": "trunk", "allowed": ()}, {"mode": "trunk", "allowed": (10,), "vlan": 10},
                   {"mode": "trunk", "allowed": "10"}, {"mode": "dynamic"}, {"mode": "access", "vlan": True}):
        with pytest.raises(ValueError):
            PortVlan(**kwargs)
    with pytest.raises(ValueError, match="PortVlan"):
        SwitchCore(vlans={"a": "access:10"})


def test_the_drop_counters_are_port_and_switch_counters():
    for name in ("vlan_tagged", "vlan_disallowed", "vlan_untagged"):
        assert name in PORT_COUNTERS and name in SWITCH_COUNTERS


# -- isolation and flooding ------------------------------------------------------------------


def test_a_flood_stays_in_its_vlan_and_leaves_each_port_as_its_mode_says():
    core = lan()
    frame = eth(BCAST, MAC["a"])
    got = send(core, "a", frame)
    assert set(got) == {"b", "d", "e"}  # not c (VLAN 20), not a
    assert got["b"] == [frame]  # access: untagged, as it came
    assert [untag(f) for f in got["d"]] == [(10, frame)]  # trunk: tagged 10
    assert [untag(f) for f in got["e"]] == [(10, frame)]  # transparent: tagged with its VLAN
    assert counter(core, "a", "flooded") == 1 and counter(core, "c", "tx_packets") == 0
    assert core.totals.forwarded == 3


def test_unicast_is_learned_and_looked_up_per_vlan():
    core = lan()
    send(core, "a", eth(BCAST, MAC["a"]))
    # b answers a: known in VLAN 10, goes to a only
    got = send(core, "b", eth(MAC["a"], MAC["b"]))
    assert list(got) == ["a"]
    # c (VLAN 20) sends to a's MAC: unknown in VLAN 20, flooded to VLAN 20's members only
    got = send(core, "c", eth(MAC["a"], MAC["c"]))
    assert set(got) == {"d", "e"} and [untag(f)[0] for f in got["d"]] == [20]
    entries = {(e["mac"], e["vlan"]) for e in core.fdb_view(NOW)}
    assert ("02:00:00:00:00:01", 10) in entries and ("02:00:00:00:00:03", 20) in entries
    assert not any(vlan == 0 for _, vlan in entries if _ != "02:00:00:00:00:05")  # only e is in VLAN 0


def test_a_trunk_delivers_tagged_frames_untagged_to_the_vlans_access_ports():
    core = lan()
    inner = eth(BCAST, MAC["d"])
    got = send(core, "d", eth(BCAST, MAC["d"], vid=20, pcp=5))
    assert got["c"] == [inner] and "a" not in got and "b" not in got
    assert [untag(f) for f in got["e"]] == [(20, inner)]
    assert got["e"][0][14] >> 5 == 5  # the pushed tag keeps the priority
    got = send(core, "d", eth(MAC["a"], MAC["d"], vid=10))  # a's MAC was declared in its HELLO
    assert got == {"a": [eth(MAC["a"], MAC["d"])]}


def test_tagged_frames_on_an_access_port_are_dropped_and_counted():
    core = lan()
    got = send(core, "a", eth(BCAST, MAC["a"], vid=10), eth(BCAST, MAC["a"], vid=20))
    assert got == {}
    assert counter(core, "a", "vlan_tagged") == 2 and core.totals.vlan_tagged == 2
    assert counter(core, "a", "rx_packets") == 0
    # a priority tag (VID 0) counts as untagged: it joins the access VLAN
    got = send(core, "a", eth(BCAST, MAC["a"], vid=0, pcp=3))
    assert got["b"] == [eth(BCAST, MAC["a"])] and untag(got["d"][0])[0] == 10 and got["d"][0][14] >> 5 == 3


def test_a_trunk_drops_vids_it_does_not_carry_and_untagged_frames_without_a_native_vlan():
    core = lan()
    assert send(core, "d", eth(BCAST, MAC["d"], vid=30), eth(BCAST, MAC["d"], vid=4095)) == {}
    assert counter(core, "d", "vlan_disallowed") == 2 and core.totals.vlan_disallowed == 2
    assert send(core, "d", eth(BCAST, MAC["d"])) == {}
    assert counter(core, "d", "vlan_untagged") == 1 and core.totals.vlan_untagged == 1
    assert core.fdb.port_count(core.port_by_name("d")) == 0  # dropped frames are not learned


def test_the_native_vlan_travels_untagged_unless_native_tagged():
    core = lan(d="trunk:20:native=10")
    frame = eth(BCAST, MAC["d"])
    got = send(core, "d", frame)  # untagged joins the native VLAN (a member though not listed)
    assert got["a"] == [frame] and got["b"] == [frame] and "c" not in got
    got = send(core, "a", eth(BCAST, MAC["a"]))
    assert got["d"] == [eth(BCAST, MAC["a"])]  # native: untagged out
    got = send(core, "c", eth(BCAST, MAC["c"]))
    assert untag(got["d"][0])[0] == 20  # the others tagged

    core.set_vlan("d", parse_spec("trunk:20:native=10:native-tagged"), NOW)
    got = send(core, "a", eth(BCAST, MAC["a"]))
    assert [untag(f) for f in got["d"]] == [(10, eth(BCAST, MAC["a"]))]
    got = send(core, "d", frame)  # untagged still joins the native VLAN
    assert got["a"] == [frame]


def test_a_transparent_port_is_a_trunk_of_every_vlan_with_vlan_0_untagged():
    core = lan()
    assert send(core, "e", eth(BCAST, MAC["e"])) == {}  # VLAN 0: no configured port carries it
    got = send(core, "e", eth(BCAST, MAC["e"], vid=10))
    assert got["a"] == [eth(BCAST, MAC["e"])] and got["d"] == [eth(BCAST, MAC["e"], vid=10)]


def test_a_mixed_batch_gives_one_message_per_port_in_order():
    core = lan()
    frames = [eth(BCAST, MAC["d"], vid=10, body=bytes([i]) * 50) for i in range(3)]
    frames += [eth(BCAST, MAC["d"], vid=20, body=bytes([9]) * 50), eth(BCAST, MAC["d"], vid=10, body=b"z" * 50)]
    got = send(core, "d", *frames)  # send() asserts one message per port
    assert got["a"] == [untag(f)[1] for f in frames if untag(f)[0] == 10]
    assert got["c"] == [untag(frames[3])[1]]
    assert got["e"] == frames
    c = core.port_by_name("a").counters
    assert c.tx_packets == 4 and c.tx_bytes == sum(len(f) for f in got["a"])


def test_a_pushed_tag_that_makes_a_frame_too_long_is_dropped_and_counted():
    core = lan()
    big = eth(BCAST, MAC["a"], body=b"x" * (core.max_frame - 14))  # legal untagged, +4 is not
    got = send(core, "a", big)
    assert got["b"] == [big] and "d" not in got and "e" not in got
    assert counter(core, "d", "oversize") == 1 and counter(core, "e", "oversize") == 1  # per copy, on egress
    assert counter(core, "a", "oversize") == 0 and core.totals.oversize == 2


# -- configuration by port name --------------------------------------------------------------


def test_configuration_set_before_attach_applies_and_survives_reattach():
    core = SwitchCore()
    row = core.set_vlan("a", parse_spec("access:10"), 0.0)
    assert row == {"port": "a", "mode": "access", "vlan": 10, "attached": False, "flushed": 0}
    assert core.vlan_ports == 0  # nothing attached has it: the plain paths
    for n in "abc":
        attach(core, n)
    assert core.vlan_ports == 1 and core.port_by_name("a").vlan == PortVlan("access", vlan=10)
    assert core.fdb.lookup(MAC["a"], 10, 0.0) is core.port_by_name("a")  # HELLO MACs in its VLAN
    assert core.fdb.lookup(MAC["b"], 0, 0.0) is core.port_by_name("b")
    assert send(core, "b", eth(BCAST, MAC["b"])) == {"c": [eth(BCAST, MAC["b"])]}  # b, c: VLAN 0
    core.handle(PEER["a"], wire.BYE, 1.0)
    assert core.vlan_ports == 0
    attach(core, "a", 2.0)
    assert core.vlan_ports == 1 and core.port_by_name("a").vlan.vlan == 10
    assert core.vlan_view() == [{"port": "a", "mode": "access", "vlan": 10, "attached": True}]


def test_changing_a_ports_vlan_flushes_its_fdb_entries():
    core = lan()
    send(core, "a", eth(BCAST, MAC["a"]), eth(BCAST, bytes([2, 9, 9, 9, 9, 9])))
    a = core.port_by_name("a")
    assert core.fdb.port_count(a) == 2
    row = core.set_vlan("a", parse_spec("access:20"), NOW)
    assert row["flushed"] == 2 and row["attached"]
    assert core.fdb.lookup(MAC["a"], 20, NOW) is a and core.fdb.lookup(MAC["a"], 10, NOW) is None
    assert core.set_vlan("a", parse_spec("access:20"), NOW)["flushed"] == 0  # no change, no flush
    got = send(core, "a", eth(BCAST, MAC["a"]))
    assert set(got) == {"c", "d", "e"}
    row = core.set_vlan("a", None, NOW)
    assert row == {"port": "a", "mode": None, "attached": True, "flushed": 1}
    assert a.vlan is None and core.fdb.lookup(MAC["a"], 0, NOW) is a


def test_clearing_every_port_returns_to_the_plain_paths(monkeypatch):
    core = lan()
    for n in "abcd":
        core.set_vlan(n, None, NOW)
    assert core.vlan_ports == 0 and core.vlan_view() == []

    def boom(*args):
        raise AssertionError("the VLAN path ran on a switch without VLAN configuration")

    monkeypatch.setattr(forward, "forward_vlan", boom)
    assert set(send(core, "a", eth(BCAST, MAC["a"]))) == {"b", "c", "d", "e"}


def test_port_security_shutdown_on_the_vlan_path():
    core = SwitchCore(max_macs=1, violation="shutdown", vlans={"a": parse_spec("access:10")})
    for n in "ab":
        attach(core, n)
    core.set_vlan("b", parse_spec("access:10"), NOW)
    out = core.handle(PEER["a"], wire.frames_msg([eth(BCAST, MAC["a"]), eth(BCAST, MAC["c"]),
                                                  eth(BCAST, MAC["a"]), eth(BCAST, MAC["a"])]), NOW)
    a = core.port_by_name("a").counters
    assert a.port_security == 1 and a.port_down == 2 and a.rx_packets == 1
    assert not core.port_by_name("a").admin_up
    assert [p for p, parts in out if parts[0] == wire.MSG_FRAMES] == [PEER["b"]]


# -- transparent ports: the VLAN path decides as the general path does -----------------------

dst_st = st.sampled_from([*MAC.values(), bytes([2, 0, 0, 0, 1, 1]), BCAST])
src_st = st.sampled_from([*MAC.values(), bytes([2, 0, 0, 0, 1, 2]), b"\x00" * 6, b"\x01\x02\x03\x04\x05\x06"])
tag_st = st.sampled_from([b"", b"\x81\x00\x00\x0a", b"\x81\x00\xa0\x14", b"\x81\x00\x00\x00", b"\x81\x00"])
frame_st = st.builds(lambda d, s, t, body: d + s + t + body, dst_st, src_st, tag_st, st.binary(max_size=120))


def _state(core: SwitchCore, out) -> tuple:
    msgs = sorted((peer, [bytes(p) for p in parts]) for peer, parts in out)
    ports = {p.name: (p.admin_up, p.counters.as_dict()) for p in core.ports}
    fdb = sorted((e.mac, e.vlan, e.port.name, e.updated) for e in core.fdb.entries(NOW))
    return msgs, ports, core.totals.as_dict(), fdb


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(frame_st, max_size=12), min_size=1, max_size=3),
       ingress=st.sampled_from(NAMES), max_macs=st.sampled_from([0, 0, 2]),
       violation=st.sampled_from(["drop", "shutdown"]))
def test_transparent_ports_on_the_vlan_path_match_the_general_path(batches, ingress, max_macs, violation):
    cores = []
    for _ in range(2):
        core = SwitchCore(mtu=100, max_macs=max_macs, violation=violation)
        for n in NAMES:
            attach(core, n)
        cores.append(core)
    vlan_core, plain = cores
    for frames in batches:
        pv = vlan_core.port_by_peer(PEER[ingress])
        pp = plain.port_by_peer(PEER[ingress])
        if not pv.admin_up:
            break
        payload = wire.pack_frames(frames)
        out_v = forward.forward_vlan(vlan_core, pv, payload, NOW)
        out_p = forward.forward_general(plain, pp, payload, NOW)
        assert _state(vlan_core, out_v) == _state(plain, out_p)


def test_the_number_of_configured_port_names_is_bounded(monkeypatch):
    from vnet.switch import core as core_mod

    monkeypatch.setattr(core_mod, "MAX_VLAN_CONFIGS", 2)
    core = SwitchCore()
    cfg = PortVlan("access", vlan=10)
    core.set_vlan("x", cfg, 0.0)
    core.set_vlan("y", cfg, 0.0)
    with pytest.raises(ValueError, match="clear some first"):
        core.set_vlan("z", cfg, 0.0)
    core.set_vlan("y", PortVlan("access", vlan=20), 0.0)  # changing one is always possible
    core.set_vlan("x", None, 0.0)
    core.set_vlan("z", cfg, 0.0)


def test_vlans_at_start_leave_the_switch_its_name():
    core = SwitchCore(name="core", vlans={"a1": parse_spec("access:10"), "edge1": parse_spec("trunk:10,20")})
    assert core.stats()["name"] == "core" and core.stp_show(0.0)["name"] == "core"
