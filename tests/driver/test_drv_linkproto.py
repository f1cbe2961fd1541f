"""The node's link protocol machine, driven by hand: messages in, actions out, a manual clock.

Only the public interface: ``open``/``receive``/``tick``/``close``, ``next_deadline``, the
state and the counters. No socket and no sleep: ``Clock`` runs ``tick`` at each deadline the
machine asks for, as the shell's timer does.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from vnet.proto.link import (
    BACKOFF_MIN,
    ClampMtu,
    Deliver,
    LinkMachine,
    LinkState,
    LinkStateError,
    Reconnect,
    Refused,
    Send,
    SetCarrier,
)
from vnet.proto import wire

MAC = bytes.fromhex("020000000001")
T0 = 1000.0


def machine(mtu: int = 1500, **kw) -> LinkMachine:
    kw.setdefault("heartbeat_interval", 1.0)
    kw.setdefault("heartbeat_timeout", 3.0)
    kw.setdefault("backoff_max", 2.0)
    kw.setdefault("rng", random.Random(1))
    return LinkMachine(lambda: ("n1", [MAC], mtu), **kw)


def welcome(mtu: int = 1500, carrier: bool = True, port: int = 7) -> wire.Welcome:
    return wire.Welcome(port, 1.0, 3.0, mtu, carrier)


def sent(actions) -> list:
    return [a.message for a in actions if type(a) is Send]


def carrier(actions) -> list[bool]:
    return [a.up for a in actions if type(a) is SetCarrier]


def attached(m: LinkMachine | None = None, now: float = T0) -> LinkMachine:
    m = m or machine()
    m.open(now)
    m.receive(welcome(), now)
    return m


def test_open_says_hello_and_welcome_raises_carrier():
    m = machine()
    out = m.open(T0)
    assert sent(out) == [wire.Hello("n1", (MAC,), 1500)]
    assert m.state is LinkState.ATTACHING and not m.carrier
    out = m.receive(welcome(port=7), T0 + 0.01)
    assert out == [SetCarrier(True, "attached")]
    assert m.attached and m.carrier and m.port == 7 and m.attaches == 1


def test_hello_carries_the_protocol_version_the_node_speaks():
    m = machine(protocol_version=99)
    assert sent(m.open(T0))[0].version == 99


@pytest.mark.parametrize("reason", [
    "protocol version mismatch: the node speaks version 99 and this switch speaks version 1; ...",
    "HELLO name must be a non-empty string of at most 255 characters, got ''",
])
def test_refuse_is_final_carrier_stays_down_and_nothing_more_is_sent(reason):
    m = machine()
    m.open(T0)
    out = m.receive(wire.Refuse(reason), T0 + 0.01)
    assert out == [Refused(reason)]
    assert m.state is LinkState.REFUSED and m.refused == reason and not m.carrier
    assert m.next_deadline() is None
    assert m.tick(T0 + 100) == []  # no more HELLOs, no reconnects
    assert m.receive(welcome(port=9, mtu=1000), T0 + 101) == []  # a late WELCOME changes nothing
    assert not m.attached and m.port is None and m.switch_mtu is None
    assert m.receive(wire.Frames([b"x" * 60]), T0 + 102) == [] and m.rx_not_attached == 1


def test_refuse_while_attached_drops_carrier():
    m = attached()
    out = m.receive(wire.Refuse("go away"), T0 + 0.5)
    assert out == [SetCarrier(False, "the switch refused this node"), Refused("go away")]
    assert m.carrier_losses == 1


def run_hellos(m: LinkMachine, start: float, n: int) -> list[float]:
    """The waits between HELLOs for ``n`` HELLOs after the first, following next_deadline."""
    now, last, waits = start, start, []
    while len(waits) < n:
        now = m.next_deadline()
        out = m.tick(now)
        assert m.next_deadline() > now, "a tick at its deadline left it due (a busy loop)"
        if any(type(x) is wire.Hello for x in sent(out)):
            waits.append(now - last)
            last = now
    return waits


def test_hello_backoff_doubles_from_100_ms_capped_with_jitter():
    """HELLO at 0.1, 0.2, 0.4, ... s, never more than ``backoff_max``, each times a jitter
    factor from [0.5, 1.5) drawn from the injected rng, so a restarted switch is not stampeded."""
    m = machine(backoff_max=1.0, heartbeat_timeout=100.0, rng=random.Random(7))
    m.open(T0)
    waits = run_hellos(m, T0, 6)
    rng = random.Random(7)
    jitter = [0.5 + rng.random() for _ in range(6)]
    assert waits == pytest.approx([b * j for b, j in zip([0.1, 0.2, 0.4, 0.8, 1.0, 1.0], jitter)])
    assert BACKOFF_MIN == 0.1


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_hello_waits_stay_within_the_jitter_bounds(seed):
    m = machine(backoff_max=2.0, heartbeat_timeout=100.0, rng=random.Random(seed))
    m.open(T0)
    for base, wait in zip([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0], run_hellos(m, T0, 7)):
        assert 0.5 * base <= wait + 1e-9 and wait < 1.5 * base


def test_welcome_resets_the_backoff():
    m = machine(backoff_max=2.0, heartbeat_timeout=100.0)
    m.open(T0)
    run_hellos(m, T0, 5)  # backed off to 1.6 s
    now = m.next_deadline() - 0.01
    m.receive(welcome(), now)
    out = m.receive(wire.Bye(), now + 1)  # detached: HELLO at once, then from 100 ms again
    assert sent(out) == [wire.Hello("n1", (MAC,), 1500)]
    wait = m.next_deadline() - (now + 1)
    assert 0.05 <= wait < 0.15


def test_heartbeats_every_interval_while_attached():
    m = attached()
    beats = []
    now = T0
    for _ in range(5):
        now = m.next_deadline()
        out = m.tick(now)
        if sent(out) == [wire.Heartbeat()]:
            beats.append(now)
        m.receive(wire.Heartbeat(), now)  # the switch answers
    assert beats == pytest.approx([T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5])
    assert m.attached


def test_heartbeat_timeout_drops_carrier_reconnects_and_says_hello():
    m = attached()
    now = T0
    while m.attached:
        now = m.next_deadline()
        out = m.tick(now)
    assert now == pytest.approx(T0 + 3.0)  # silent for the timeout
    assert [type(a) for a in out] == [Reconnect, SetCarrier, Send]
    assert carrier(out) == [False] and type(sent(out)[0]) is wire.Hello
    assert m.reconnects == 1 and m.carrier_losses == 1 and m.state is LinkState.ATTACHING


def test_a_silent_switch_gets_a_new_connection_every_timeout():
    m = machine()
    m.open(T0)
    reconnects = []
    now = T0
    while now < T0 + 10:
        now = m.next_deadline()
        if any(type(a) is Reconnect for a in m.tick(now)):
            reconnects.append(now)
    assert reconnects == pytest.approx([T0 + 3, T0 + 6, T0 + 9])
    assert m.reconnects == 3


def test_a_switch_that_talks_is_not_reconnected():
    m = attached()
    for k in range(1, 20):
        now = T0 + k * 0.5
        m.receive(wire.Heartbeat(), now)
        assert not any(type(a) is Reconnect for a in m.tick(now))
    assert m.reconnects == 0 and m.attached


def test_heard_without_a_message_keeps_the_link_up():
    """Messages waiting unread behind a PAUSE still prove the switch alive."""
    m = attached()
    m.heard(T0 + 2.5)
    out = m.tick(T0 + 3.5)  # 3.5 s after the last message, 1 s after the switch was heard
    assert carrier(out) == [] and m.attached and m.reconnects == 0
    assert m.next_deadline() <= T0 + 5.5


def test_not_attached_re_hellos_at_once():
    m = attached()
    out = m.receive(wire.NotAttached(), T0 + 1)
    assert carrier(out) == [False]
    assert [type(x) for x in sent(out)] == [wire.Hello]
    assert m.state is LinkState.ATTACHING
    m.receive(welcome(), T0 + 1.01)
    assert m.attached and m.attaches == 2 and m.carrier_losses == 1


def test_not_attached_while_attaching_keeps_the_backoff():
    m = machine()
    m.open(T0)
    deadline = m.next_deadline()
    assert m.receive(wire.NotAttached(), T0 + 0.01) == []
    assert m.next_deadline() == deadline


def test_bye_drops_carrier_and_says_hello():
    m = attached()
    out = m.receive(wire.Bye(), T0 + 1)
    assert out[0] == SetCarrier(False, "the switch said BYE")
    assert type(sent(out)[0]) is wire.Hello


def test_carrier_down_and_up_keeps_the_attachment():
    m = attached()
    out = m.receive(wire.Carrier(False), T0 + 1)
    assert carrier(out) == [False] and m.attached and m.cable_cuts == 1
    out = m.tick(T0 + 1.0)  # heartbeats go on: the port is down, not gone
    assert sent(out) == [wire.Heartbeat()]
    assert m.receive(wire.Carrier(False), T0 + 1.5) == []  # no change, no count
    out = m.receive(wire.Carrier(True), T0 + 2)
    assert carrier(out) == [True] and m.cable_cuts == 1 and m.carrier_losses == 1


def test_attaching_to_a_down_port_never_raises_carrier():
    m = machine()
    m.open(T0)
    assert m.receive(welcome(carrier=False), T0) == []
    assert m.receive(wire.Carrier(False), T0) == []
    assert m.attached and not m.carrier and m.cable_cuts == 0
    assert carrier(m.receive(wire.Carrier(True), T0 + 1)) == [True]


def test_carrier_while_attaching_is_remembered_for_the_welcome():
    m = machine()
    m.open(T0)
    m.receive(wire.Carrier(False), T0)
    m.receive(wire.Welcome(1, 1.0, 3.0, 1500), T0)  # an old switch without the carrier key
    assert m.port_up and m.carrier


def test_frames_are_delivered_only_when_attached():
    m = machine()
    m.open(T0)
    batch = wire.Frames([b"x" * 60, b"y" * 60])
    assert m.receive(batch, T0) == [] and m.rx_not_attached == 2
    m.receive(welcome(), T0)
    assert m.receive(batch, T0) == [Deliver(batch.frames)]
    assert (m.rx_batches, m.rx_frames, m.rx_not_attached) == (1, 2, 2)


def test_a_hello_from_the_switch_is_counted_not_obeyed():
    m = attached()
    assert m.receive(wire.Hello("sw", (), 1500), T0) == []
    assert m.rx_unexpected == 1 and m.attached


def test_close_says_bye_only_when_attached_and_can_open_again():
    m = attached()
    assert sent(m.close(T0 + 1)) == [wire.Bye()]
    assert m.state is LinkState.CLOSED and not m.carrier and m.next_deadline() is None
    assert type(sent(m.open(T0 + 2))[0]) is wire.Hello
    assert m.close(T0 + 3) == []


def test_welcome_with_a_smaller_mtu_clamps_the_node_once():
    m = machine(mtu=9000)
    m.open(T0)
    out = m.receive(welcome(mtu=1500), T0)
    assert ClampMtu(1500, 9000) in out
    assert m.switch_mtu == 1500 and m.max_frame == 1500 + 14 + 4
    assert not any(type(a) is ClampMtu for a in m.receive(welcome(mtu=1500), T0 + 1))


def test_welcome_with_an_equal_or_larger_mtu_changes_nothing():
    m = machine(mtu=1500)
    m.open(T0)
    assert not any(type(a) is ClampMtu for a in m.receive(welcome(mtu=9000), T0))


def test_illegal_transitions_raise():
    m = machine()
    with pytest.raises(LinkStateError, match="CLOSED on Welcome"):
        m.receive(welcome(), T0)
    with pytest.raises(LinkStateError, match="closed"):
        m.tick(T0)
    with pytest.raises(LinkStateError, match="CLOSED on close"):
        m.close(T0)
    m.open(T0)
    with pytest.raises(LinkStateError, match="ATTACHING on open"):
        m.open(T0)


def test_bad_timings_are_refused():
    with pytest.raises(ValueError, match="interval < timeout"):
        machine(heartbeat_interval=3.0, heartbeat_timeout=3.0)
    with pytest.raises(ValueError, match="backoff_max"):
        machine(backoff_max=0.01)


class Switch:
    """Just enough of a switch to answer a node: WELCOME to HELLO, HEARTBEAT to HEARTBEAT."""

    def __init__(self) -> None:
        self.up = True

    def answer(self, msg) -> list:
        if not self.up:
            return []
        if type(msg) is wire.Hello:
            return [welcome()]
        if type(msg) is wire.Heartbeat:
            return [wire.Heartbeat()]
        return []


@settings(max_examples=30, deadline=None)
@given(outages=st.lists(st.tuples(st.floats(0.5, 20), st.floats(0.1, 20)), max_size=5))
def test_against_a_switch_that_comes_and_goes_the_link_always_comes_back(outages):
    """Whatever the switch's outages, once it answers again the node is attached within the
    HELLO cap, and every carrier loss is paired with a new attachment."""
    m, sw = machine(), Switch()
    pending = list(m.open(T0))
    now = T0

    def settle():
        nonlocal pending
        while pending:
            a = pending.pop(0)
            if type(a) is Send:
                for reply in sw.answer(a.message):
                    pending += m.receive(reply, now)

    settle()
    for up_for, down_for in outages:
        for state, span in ((True, up_for), (False, down_for)):
            sw.up = state
            end = now + span
            while m.next_deadline() <= end:
                now = m.next_deadline()
                pending += m.tick(now)
                settle()
                assert m.next_deadline() > now, "a tick at its deadline left it due (a busy loop)"
            now = end
    sw.up = True
    end = now + 2.0 * 1.5 + 0.01  # the longest HELLO wait: backoff_max times the top jitter
    while m.next_deadline() <= end and not m.attached:
        now = m.next_deadline()
        pending += m.tick(now)
        settle()
    assert m.attached and m.carrier
    assert m.attaches == m.carrier_losses + 1


# -- the typed wire messages the machine consumes -----------------------------------------------

ALL_MESSAGES = [
    wire.Hello("n1", (MAC,), 1500),
    wire.Welcome(3, 1.0, 3.0, 1500),
    wire.Welcome(3, 0.5, 2.0, 9000, carrier=False),
    wire.Refuse("no"),
    wire.Frames([b"a" * 60, b"b" * 1514]),
    wire.Carrier(True),
    wire.Carrier(False),
    wire.Heartbeat(),
    wire.Bye(),
    wire.NotAttached(),
]


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_decodes_to_what_was_encoded(msg):
    back = wire.decode(msg.encode())
    if type(msg) is wire.Frames:
        assert [bytes(f) for f in back.frames] == [bytes(f) for f in msg.frames]
    else:
        assert back == msg


def test_the_bytes_on_the_wire_are_the_protocols():
    """The bench and the Docker image speak these bytes: the typed messages must not change them."""
    import msgpack

    pack = lambda d: msgpack.packb(d, use_bin_type=True)  # noqa: E731
    assert wire.Hello("n1", (MAC,), 1500).encode() == [
        b"H", pack({"version": 1, "name": "n1", "macs": [MAC], "mtu": 1500})]
    assert wire.Welcome(3, 1.0, 3.0, 1500).encode() == [b"W", pack(
        {"version": 1, "port": 3, "heartbeat_interval": 1.0, "heartbeat_timeout": 3.0, "mtu": 1500})]
    assert wire.Welcome(3, 1.0, 3.0, 1500, False).encode()[1] == pack(
        {"version": 1, "port": 3, "heartbeat_interval": 1.0, "heartbeat_timeout": 3.0, "mtu": 1500,
         "carrier": False})
    assert wire.Refuse("no").encode() == [b"R", pack({"reason": "no", "version": 1})]
    assert wire.Frames([b"ab"]).encode() == [b"F", b"\x00\x02ab"]
    assert wire.Carrier(False).encode() == [b"C", b"\x00"]
    assert (wire.Heartbeat().encode(), wire.Bye().encode(), wire.NotAttached().encode()) == ([b"K"], [b"B"], [b"N"])


@pytest.mark.parametrize("parts, says", [
    ([], "empty message"),
    ([b"Z"], "unknown message kind"),
    ([b"K", b"x"], "HEARTBEAT is 1 message part"),
    ([b"W", b"\xc1"], "WELCOME: payload is not msgpack"),
    ([b"W", wire.encode_map({"port": 1})], "WELCOME heartbeat_interval"),
    ([b"W", wire.encode_map({"port": -1})], "WELCOME port"),
    (wire.Welcome(1, 1.0, 3.0, 20).encode(), "WELCOME mtu"),
    ([b"R", wire.encode_map({})], "REFUSE reason"),
    ([b"C", b"\x02"], "CARRIER is 2 message parts"),
    ([b"F", b"\x00\x09ab"], "runs past the end"),
    (wire.Hello("n", (), 1500, version=99).encode(), "protocol version mismatch"),
    ([b"H", wire.encode_map({"version": 1, "name": "", "mtu": 1500})], "HELLO name"),
])
def test_bad_messages_raise_a_wire_error_with_a_sentence(parts, says):
    with pytest.raises(wire.WireError, match=says):
        wire.decode(parts)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from([b"H", b"W", b"R", b"F", b"C", b"K", b"B", b"N", b"?"]),
       rest=st.lists(st.binary(max_size=40), max_size=3))
def test_decode_raises_only_wire_errors(kind, rest):
    try:
        wire.decode([kind, *rest])
    except wire.WireError:
        pass
