"""Rapid spanning tree, sans-I/O (switch/stp.py): bridges wired by a tiny in-test harness that
carries each BPDU to the far end of its link, on a clock driven by hand."""

from __future__ import annotations

import pytest

from vnet.switch.stp import (
    STP_MULTICAST,
    Bpdu,
    BpduError,
    Bridge,
    Flush,
    PortState,
    Role,
    SendBpdu,
    State,
    bridge_mac,
    decode_bpdu,
    encode_bpdu,
    is_link_local,
)

HELLO, MAX_AGE, FWD = 1.0, 6.0, 4.0


class Net:
    """Bridges and point-to-point links between their ports; BPDUs cross a link at once
    (queued, so a reply to one is delivered after it), and never cross a cut one."""

    def __init__(self, **priorities: int) -> None:
        self.now = 0.0
        self.bridges = {name: Bridge(name, prio, HELLO, MAX_AGE, FWD) for name, prio in priorities.items()}
        self.peer: dict[tuple[str, str], tuple[str, str]] = {}
        self.up: dict[tuple[str, str], bool] = {}
        self.states: dict[tuple[str, str], State] = {}
        self.flushes: list[tuple[str, str]] = []
        self.queue: list[tuple[str, str, bytes]] = []
        self.numbers: dict[str, int] = {name: 0 for name in priorities}

    def link(self, a: str, b: str) -> None:
        pa, pb = f"to-{b}", f"to-{a}"
        self.peer[(a, pa)] = (b, pb)
        self.peer[(b, pb)] = (a, pa)
        for br, port in ((a, pa), (b, pb)):
            self.numbers[br] += 1
            self.up[(br, port)] = True
            self.apply(br, self.bridges[br].add_port(port, self.numbers[br], self.now))
        self.deliver()

    def edge(self, br: str, port: str) -> None:
        self.numbers[br] += 1
        self.apply(br, self.bridges[br].add_port(port, self.numbers[br], self.now, edge=True))

    def cut(self, a: str, b: str) -> None:
        """Both ends lose the link (a cable cut): each bridge's port is disabled."""
        for br, port in ((a, f"to-{b}"), (b, f"to-{a}")):
            self.up[(br, port)] = False
            self.apply(br, self.bridges[br].set_enabled(port, False, self.now))
        self.deliver()

    def silence(self, a: str, b: str) -> None:
        """The link stops carrying BPDUs but neither end sees carrier go (a silent failure)."""
        self.up[(a, f"to-{b}")] = self.up[(b, f"to-{a}")] = False

    def apply(self, br: str, actions: list) -> None:
        for act in actions:
            if isinstance(act, SendBpdu):
                far = self.peer.get((br, act.port))
                if far is not None and self.up[(br, act.port)] and self.up.get(far):
                    self.queue.append((*far, act.frame))
            elif isinstance(act, PortState):
                self.states[(br, act.port)] = act.state
            elif isinstance(act, Flush):
                self.flushes.append((br, act.port))

    def deliver(self) -> None:
        n = 0
        while self.queue:
            br, port, frame = self.queue.pop(0)
            if self.up.get((br, port)):
                self.apply(br, self.bridges[br].receive(port, frame, self.now))
            n += 1
            assert n < 10_000, "BPDUs never stop: a BPDU storm between the bridges"

    def run(self, seconds: float) -> None:
        """Advance the clock by ``seconds``, ticking each bridge at its deadlines."""
        end = self.now + seconds
        while True:
            deadlines = [d for b in self.bridges.values() if (d := b.next_deadline()) is not None]
            nxt = min(deadlines, default=end)
            if nxt > end:
                break
            self.now = max(self.now, nxt)
            for name, b in self.bridges.items():
                d = b.next_deadline()
                if d is not None and d <= self.now:
                    self.apply(name, b.tick(self.now))
            self.deliver()
        self.now = end

    def state(self, br: str, port: str) -> State:
        return self.states[(br, port)]

    def role(self, br: str, port: str) -> Role:
        return self.bridges[br].ports[port].role

    def blocked(self) -> list[tuple[str, str]]:
        return sorted(k for k, s in self.states.items() if s is not State.FORWARDING and self.up.get(k, True))


def triangle() -> Net:
    net = Net(a=4096, b=32768, c=36864)
    net.link("a", "b")
    net.link("a", "c")
    net.link("b", "c")
    return net


def test_root_election_by_priority() -> None:
    net = triangle()
    net.run(0.5)  # proposals and agreements: no forward delay needed
    root = net.bridges["a"].bridge_id
    for name, b in net.bridges.items():
        assert b.root_id == root, name
    assert net.bridges["a"].root_port is None
    assert net.bridges["b"].root_port.name == "to-a"
    assert net.bridges["c"].root_port.name == "to-a"
    assert net.bridges["b"].root_cost == 20000
    show = net.bridges["c"].show(net.now)
    assert show["root_id"] == show["ports"][0]["designated_bridge"] == f"1000.{bridge_mac('a').hex()}"
    assert show["root_port"] == "to-a" and show["root_path_cost"] == 20000


def test_one_port_blocks_in_a_triangle_and_the_rest_forward_without_forward_delay() -> None:
    net = triangle()
    net.run(0.5)  # well below one forward delay: the rapid handshake did it
    assert net.blocked() == [("c", "to-b")]
    assert net.role("c", "to-b") is Role.ALTERNATE
    assert net.role("b", "to-c") is Role.DESIGNATED
    assert net.state("b", "to-c") is State.FORWARDING
    net.run(5 * MAX_AGE)  # and it stays so: hellos keep the information fresh
    assert net.blocked() == [("c", "to-b")]


def test_failover_when_the_root_link_is_cut() -> None:
    net = triangle()
    net.run(0.5)
    net.cut("a", "c")
    # the alternate port takes over at once: no ageing, no forward delay
    assert net.role("c", "to-b") is Role.ROOT
    assert net.state("c", "to-b") is State.FORWARDING
    assert net.state("b", "to-c") is State.FORWARDING
    assert net.bridges["c"].root_cost == 40000
    net.run(3 * HELLO)
    assert net.blocked() == []


def test_failover_when_bpdus_stop_ages_the_information_in_three_hellos() -> None:
    net = triangle()
    net.run(HELLO)  # a hello time's BPDUs have just crossed
    net.silence("a", "c")
    net.run(2.5 * HELLO)
    assert net.state("c", "to-b") is not State.FORWARDING  # not yet: information still fresh
    net.run(0.6 * HELLO)  # three hello times without a BPDU
    assert net.role("c", "to-b") is Role.ROOT
    assert net.state("c", "to-b") is State.FORWARDING


def test_a_restored_link_blocks_again_without_a_loop() -> None:
    net = triangle()
    net.run(0.5)
    net.cut("a", "c")
    net.run(1.0)
    for br, port in (("a", "to-c"), ("c", "to-a")):
        net.up[(br, port)] = True
        net.apply(br, net.bridges[br].set_enabled(port, True, net.now))
    net.deliver()
    net.run(0.5)
    assert net.blocked() == [("c", "to-b")]
    assert net.role("c", "to-a") is Role.ROOT


def test_topology_change_flushes_non_edge_ports() -> None:
    net = triangle()
    net.edge("b", "node1")
    net.run(3 * HELLO)  # past the topology changes of the start
    changes = net.bridges["b"].topology_changes
    net.flushes.clear()
    net.cut("a", "c")
    net.run(0.1)
    # c's alternate became root and forwarding: a topology change, flushed on b's other trunk
    assert ("b", "to-a") in net.flushes
    assert ("b", "node1") not in net.flushes  # edge ports keep their entries
    assert net.bridges["b"].topology_changes > changes
    assert net.bridges["c"].topology_changes >= 1


def test_edge_ports_forward_at_once_and_send_no_bpdus() -> None:
    b = Bridge("solo", hello=HELLO, max_age=MAX_AGE, forward_delay=FWD)
    out = b.add_port("node1", 1, 0.0, edge=True)
    assert PortState("node1", State.FORWARDING) in out
    assert not [a for a in out if isinstance(a, SendBpdu)]
    assert b.next_deadline() is None
    assert b.tick(100.0) == []


def test_a_lone_designated_port_falls_back_on_forward_delay() -> None:
    b = Bridge("solo", hello=HELLO, max_age=MAX_AGE, forward_delay=FWD)
    out = b.add_port("trunk", 1, 0.0)
    assert PortState("trunk", State.DISCARDING) in out
    sent = [decode_bpdu(a.frame) for a in out if isinstance(a, SendBpdu)]
    assert sent and sent[0].proposal and sent[0].role is Role.DESIGNATED
    now = 0.0
    seen = []
    while now < 3 * FWD:
        now = b.next_deadline()
        seen += [a.state for a in b.tick(now) if isinstance(a, PortState)]
    assert seen == [State.LEARNING, State.FORWARDING]


def test_bpdu_round_trip() -> None:
    bpdu = Bpdu(root_id=bytes.fromhex("1000") + bridge_mac("a"), root_cost=40000,
                bridge_id=bytes.fromhex("8000") + bridge_mac("b"), port_id=0x8002, message_age=1.0, max_age=20.0,
                hello=2.0, forward_delay=15.0, role=Role.ROOT, tc=True, proposal=False, learning=True,
                forwarding=True, agreement=True)
    frame = encode_bpdu(bpdu, bridge_mac("b"))
    assert frame[:6] == STP_MULTICAST and is_link_local(frame[:6])
    assert frame[12:14] == (39).to_bytes(2, "big")  # 802.3 length: LLC + 36-byte RST BPDU
    assert frame[14:17] == b"\x42\x42\x03" and frame[17:21] == b"\x00\x00\x02\x02"
    assert len(frame) == 60
    assert decode_bpdu(frame) == bpdu


def test_scapy_dissects_an_encoded_bpdu() -> None:
    scapy_l2 = pytest.importorskip("scapy.layers.l2")
    bpdu = Bpdu(root_id=bytes.fromhex("1000") + bridge_mac("a"), root_cost=20000,
                bridge_id=bytes.fromhex("8000") + bridge_mac("b"), port_id=0x8001, message_age=1.0, max_age=20.0,
                hello=2.0, forward_delay=15.0, role=Role.DESIGNATED, proposal=True)
    pkt = scapy_l2.Dot3(encode_bpdu(bpdu, bridge_mac("b")))
    stp = pkt[scapy_l2.STP]
    assert pkt[scapy_l2.LLC].dsap == 0x42 and pkt[scapy_l2.LLC].ssap == 0x42 and pkt[scapy_l2.LLC].ctrl == 3
    assert stp.proto == 0 and stp.version == 2 and stp.bpdutype == 2
    assert stp.rootid == 0x1000 and stp.rootmac == bridge_mac("a").hex(":")
    assert stp.bridgeid == 0x8000 and stp.bridgemac == bridge_mac("b").hex(":")
    assert stp.pathcost == 20000 and stp.portid == 0x8001
    assert (stp.age, stp.maxage, stp.hellotime, stp.fwddelay) == (1.0, 20.0, 2.0, 15.0)
    assert stp.bpduflags == 0x02 | (3 << 2)  # proposal, role designated


@pytest.mark.parametrize("frame", [
    b"",
    bytes(60),
    STP_MULTICAST + bytes(6) + b"\x08\x00" + bytes(46),  # Ethernet II, not 802.3
    STP_MULTICAST + bytes(6) + b"\x00\x27" + b"\xaa\xaa\x03" + bytes(43),  # not the STP LLC
    STP_MULTICAST + bytes(6) + b"\x00\x27" + b"\x42\x42\x03" + b"\x00\x00\x02\x07" + bytes(39),  # unknown type
    STP_MULTICAST + bytes(6) + b"\x00\x0a" + b"\x42\x42\x03" + b"\x00\x00\x02\x02" + bytes(3),  # cut short
])
def test_bad_bpdus_are_refused_and_counted(frame: bytes) -> None:
    with pytest.raises(BpduError):
        decode_bpdu(frame)
    b = Bridge("solo", hello=HELLO, max_age=MAX_AGE, forward_delay=FWD)
    b.add_port("trunk", 1, 0.0)
    assert [a for a in b.receive("trunk", frame, 0.1) if not isinstance(a, PortState)] == []
    assert b.ports["trunk"].bpdu_bad == 1


def test_a_config_bpdu_and_a_tcn_decode() -> None:
    body = b"\x00\x00\x00\x00" + b"\x01" + bytes.fromhex("1000") + bridge_mac("a") + (4).to_bytes(4, "big") \
        + bytes.fromhex("8000") + bridge_mac("b") + b"\x80\x01" + b"\x01\x00\x14\x00\x02\x00\x0f\x00"
    frame = STP_MULTICAST + bridge_mac("b") + (3 + len(body)).to_bytes(2, "big") + b"\x42\x42\x03" + body
    bpdu = decode_bpdu(frame)
    assert bpdu.role is Role.DESIGNATED and bpdu.tc and bpdu.root_cost == 4 and bpdu.max_age == 20.0
    tcn = STP_MULTICAST + bridge_mac("b") + b"\x00\x07" + b"\x42\x42\x03" + b"\x00\x00\x00\x80"
    assert decode_bpdu(tcn).tcn


def test_settings_are_checked() -> None:
    for kwargs in ({"priority": 1000}, {"priority": 65536}, {"hello": 0}, {"max_age": 300.0},
                   {"hello": 2.0, "max_age": 3.0}, {"forward_delay": -1}):
        with pytest.raises(ValueError):
            Bridge("x", **kwargs)


# -- the switch core with spanning tree -------------------------------------------------------

from vnet.proto import wire  # noqa: E402
from vnet.switch.core import SwitchCore  # noqa: E402

NODE_MAC = bytes.fromhex("020000000001")


def _eth(dst: bytes, src: bytes) -> bytes:
    return dst + src + b"\x88\xb5" + bytes(46)


def _frames_to(out, peer: bytes) -> list[bytes]:
    return [bytes(f) for p, parts in out if p == peer and parts[0] == wire.MSG_FRAMES
            for f in wire.unpack_frames(parts[1])]


def _core_with_trunk() -> tuple[SwitchCore, list]:
    c = SwitchCore(name="sw", stp=Bridge("sw", hello=HELLO, max_age=MAX_AGE, forward_delay=FWD))
    c.handle(b"node", wire.hello("node", [], 1500), 0.0)
    out = c.handle(b"trunk", wire.Hello("other", (), 1500, bridge=True).encode(), 0.0)
    return c, out


def test_hello_bridge_field_is_optional_and_tolerant() -> None:
    plain = wire.hello("n", [], 1500)
    assert b"bridge" not in plain[1]
    assert wire.Hello.decode(plain).bridge is False
    assert wire.Hello.decode(wire.Hello("s", (), 1500, bridge=True).encode()).bridge is True
    odd = [wire.MSG_HELLO, wire.encode_map({"version": wire.PROTOCOL_VERSION, "name": "n", "mtu": 1500,
                                            "bridge": "yes"})]
    assert wire.Hello.decode(odd).bridge is False


def test_a_bridge_port_starts_discarding_and_proposes_node_ports_forward_at_once() -> None:
    c, out = _core_with_trunk()
    node, trunk = c.port_by_name("node"), c.port_by_name("other")
    assert node.forwarding and not node.bridge
    assert trunk.bridge and not trunk.forwarding and trunk.stp_state == "discarding"
    [bpdu] = _frames_to(out, b"trunk")  # after the WELCOME, the proposal
    assert decode_bpdu(bpdu).proposal and c.port_by_name("other").counters.bpdu_tx == 1
    assert _frames_to(out, b"node") == []  # edge ports hear no BPDUs
    # frames both ways are dropped at the discarding port, and counted there
    out = c.handle(b"node", wire.frames_msg([_eth(b"\xff" * 6, NODE_MAC)]), 0.1)
    assert _frames_to(out, b"trunk") == [] and trunk.counters.stp_discarding == 1
    out = c.handle(b"trunk", wire.frames_msg([_eth(b"\xff" * 6, bytes.fromhex("020000000002"))]), 0.1)
    assert out == [] and trunk.counters.stp_discarding == 2 and node.counters.rx_packets == 1


def test_bpdus_are_consumed_and_link_local_frames_never_flooded() -> None:
    c, _ = _core_with_trunk()
    other = Bridge("other", priority=4096, hello=HELLO, max_age=MAX_AGE, forward_delay=FWD)
    [send] = [a for a in other.add_port("to-sw", 1, 0.0) if isinstance(a, SendBpdu)]
    out = c.handle(b"trunk", wire.frames_msg([send.frame]), 0.1)
    trunk, node = c.port_by_name("other"), c.port_by_name("node")
    assert trunk.counters.bpdu_rx == 1 and c.totals.bpdu_rx == 1
    assert _frames_to(out, b"node") == []  # consumed: not flooded to the node
    reply = [decode_bpdu(f) for f in _frames_to(out, b"trunk")]
    assert reply and reply[-1].agreement and reply[-1].role is Role.ROOT  # the better root's proposal agreed
    assert trunk.forwarding and c.stp.root_port.name == "other"
    lldp = _eth(bytes.fromhex("0180c200000e"), NODE_MAC)
    out = c.handle(b"node", wire.frames_msg([lldp, lldp]), 0.2)
    assert _frames_to(out, b"trunk") == [] and node.counters.link_local == 2
    bpdu_from_node = encode_bpdu(Bpdu(role=Role.DESIGNATED), NODE_MAC)
    out = c.handle(b"node", wire.frames_msg([bpdu_from_node]), 0.3)
    assert _frames_to(out, b"trunk") == [] and node.counters.bpdu_rx == 1  # an edge port's: ignored
    assert c.stp.root_port.name == "other"


def test_a_trunk_port_that_times_out_is_removed_from_the_tree() -> None:
    c, _ = _core_with_trunk()
    tick = c.tick(10.0)
    assert [p.name for p in tick.removed] == ["node", "other"]
    assert c.stp.ports == {}
    assert "other" not in [p["port"] for p in c.stp_show(10.0)["ports"]]


def test_a_learning_port_learns_but_forwards_nothing() -> None:
    c, _ = _core_with_trunk()
    trunk = c.port_by_name("other")
    while trunk.stp_state != "learning":  # nobody agrees: forward delay
        now = c.stp_deadline()
        c.stp_tick(now)
    far = bytes.fromhex("020000000009")
    out = c.handle(b"trunk", wire.frames_msg([_eth(b"\xff" * 6, far)]), now)
    assert out == [] and trunk.counters.stp_discarding == 1
    assert c.fdb.lookup(far, 0, now) is trunk


def test_the_root_bridge_going_away_elects_the_next_best() -> None:
    net = triangle()
    net.run(0.5)
    net.cut("a", "b")
    net.cut("a", "c")
    net.run(0.5)
    b, c = net.bridges["b"], net.bridges["c"]
    assert b.root_id == c.root_id == b.bridge_id and b.root_port is None
    assert c.root_port.name == "to-b" and c.root_cost == 20000
    assert net.state("c", "to-b") is State.FORWARDING and net.state("b", "to-c") is State.FORWARDING
    net.run(5 * MAX_AGE)  # and it holds: no stale information of the old root comes back
    assert c.root_id == b.bridge_id
