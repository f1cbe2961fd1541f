"""The dialing side of the link protocol: a sans-I/O, table-driven state machine.

Used by a node's link (node/zmqlink.py) and by a switch's trunk to another switch
(switch/trunk.py, with ``bridge=True``: its HELLOs say it is a switch).

This is the node's PHY state machine (the kernel's phylib ``phy_state_machine``: it brings
the link up, watches it, and raises or drops carrier), for a cable that is the ZeroMQ
connection to the switch and a link partner that is the switch port. Messages come in as
typed wire messages (vnet.proto.wire), time comes in as ``now``, and what the shell must do
comes out as small frozen action objects; nothing here touches a socket, a clock or a task.

States (``LinkState``) and the events that move between them are in one table,
``LINK_TRANSITIONS`` (h11's _state.py rule: every transition in one place); an event a state
has no row for is a bug in the caller and raises ``LinkStateError``. Input from the wire
never raises: every wire message has a row in every open state.

- CLOSED: not opened (or closed). ``open(now)`` -> ATTACHING.
- ATTACHING: saying HELLO with a capped, jittered backoff (100 ms, doubling, up to
  ``backoff_max``, each wait times uniform [0.5, 1.5)) until WELCOME -> ATTACHED, or
  REFUSE -> REFUSED.
- ATTACHED: a HEARTBEAT every ``heartbeat_interval``; carrier is on while the switch port is
  administratively up (CARRIER 0/1, WELCOME's ``carrier``). BYE, NOT_ATTACHED (the switch
  restarted and forgot us) or silence for ``heartbeat_timeout`` -> ATTACHING, carrier off,
  HELLO at once, the backoff starting over from WELCOME's reset.
- REFUSED: final until closed (a protocol version mismatch, a bad name): carrier stays off.

Independent of the state: a switch silent for ``heartbeat_timeout`` also gets a new
connection (``Reconnect``, counted ``reconnects``), and again each timeout while it stays
silent, because a TCP connection whose far end vanished without a word would swallow the
HELLOs until the kernel gives up on it many minutes later.

WELCOME carries the switch's MTU: when it is smaller than the node's, the machine asks the
shell to clamp the device's MTU (``ClampMtu``), since the switch drops longer frames.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Callable, Sequence

from vnet.proto import wire
from vnet.proto.ether import ETH_HLEN, VLAN_HLEN

BACKOFF_MIN = 0.1  # seconds: the first HELLO retry; doubling from here up to backoff_max


class LinkStateError(RuntimeError):
    """An event the link's state has no transition for: the caller's bug, not bad input."""


class LinkState(enum.Enum):
    CLOSED = "closed"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    REFUSED = "refused"


# -- actions: what the shell must do -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Put ``message`` on the connection to the switch."""

    message: wire.Message


@dataclass(frozen=True, slots=True)
class SetCarrier:
    """Tell the NIC that carrier went on or off (``why``: a phrase for the log)."""

    up: bool
    why: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand this batch of frames (from one FRAMES message) to the NIC."""

    frames: Sequence[bytes | memoryview]


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Drop the connection to the switch and make a new one (it was silent ``silent_for``)."""

    silent_for: float


@dataclass(frozen=True, slots=True)
class Refused:
    """The switch refused this node, for good; ``reason`` is its sentence."""

    reason: str


@dataclass(frozen=True, slots=True)
class ClampMtu:
    """Lower the device's MTU from ``node_mtu`` to the switch's ``mtu``."""

    mtu: int
    node_mtu: int


Action = Send | SetCarrier | Deliver | Reconnect | Refused | ClampMtu

# -- the transition table ----------------------------------------------------------------------

OPEN, CLOSE, SILENCE = "open", "close", "silence"  # events that are not wire messages

_C, _AG, _AD, _R = LinkState.CLOSED, LinkState.ATTACHING, LinkState.ATTACHED, LinkState.REFUSED
_W = wire
LINK_TRANSITIONS: dict[tuple[LinkState, object], LinkState] = {
    (_C, OPEN): _AG,
    # ATTACHING: HELLO is on the timer; only WELCOME or REFUSE end it
    (_AG, _W.Welcome): _AD,
    (_AG, _W.Refuse): _R,
    (_AG, _W.Bye): _AG,
    (_AG, _W.NotAttached): _AG,
    (_AG, _W.Frames): _AG,  # counted rx_not_attached
    (_AG, _W.Heartbeat): _AG,
    (_AG, _W.Carrier): _AG,  # remembered for when attached
    (_AG, _W.Hello): _AG,  # never sent by a switch: counted rx_unexpected
    (_AG, CLOSE): _C,
    # ATTACHED
    (_AD, _W.Welcome): _AD,  # may change the port's administrative state
    (_AD, _W.Refuse): _R,
    (_AD, _W.Bye): _AG,
    (_AD, _W.NotAttached): _AG,
    (_AD, SILENCE): _AG,
    (_AD, _W.Frames): _AD,
    (_AD, _W.Heartbeat): _AD,
    (_AD, _W.Carrier): _AD,
    (_AD, _W.Hello): _AD,
    (_AD, CLOSE): _C,
    # REFUSED: nothing more from the switch matters (frames count rx_not_attached)
    (_R, _W.Welcome): _R,
    (_R, _W.Refuse): _R,
    (_R, _W.Bye): _R,
    (_R, _W.NotAttached): _R,
    (_R, _W.Frames): _R,
    (_R, _W.Heartbeat): _R,
    (_R, _W.Carrier): _R,
    (_R, _W.Hello): _R,
    (_R, CLOSE): _C,
}

COUNTERS = (
    "attaches",  # WELCOMEs that attached the link
    "carrier_losses",  # carrier went off, for any reason
    "cable_cuts",  # the switch took the port down while attached
    "reconnects",  # new connections made while the switch was silent
    "rx_batches",  # FRAMES messages delivered to the NIC
    "rx_frames",  # their frames
    "rx_not_attached",  # frames that arrived while not attached: dropped
    "rx_unexpected",  # well-formed messages a switch never sends (HELLO): dropped
)


class LinkMachine:
    """The link protocol, node side. ``hello()`` returns ``(name, macs, mtu)`` at each HELLO,
    so the switch always learns the device's current addresses and MTU; ``rng`` draws the
    HELLO jitter (inject a seeded one for repeatable tests).

    Interface: ``open(now)``, ``receive(message, now)``, ``tick(now)``, ``close(now)`` each
    return a list of actions; ``heard(now)`` notes that the switch is alive without a message
    (messages wait unread while the NIC pauses); ``next_deadline()`` is when ``tick`` has
    work next (None: never). State: ``state``, ``attached``, ``carrier``, ``port``,
    ``port_up``, ``switch_mtu``, ``refused``; counters: ``COUNTERS``.
    """

    def __init__(
        self,
        hello: Callable[[], tuple[str, Sequence[bytes], int]],
        *,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 3.0,
        backoff_max: float = 2.0,
        protocol_version: int = wire.PROTOCOL_VERSION,
        rng: random.Random | None = None,
        bridge: bool = False,
    ) -> None:
        if heartbeat_interval <= 0 or heartbeat_timeout <= heartbeat_interval:
            raise ValueError(
                f"heartbeat: need 0 < interval < timeout, got interval={heartbeat_interval} "
                f"timeout={heartbeat_timeout}"
            )
        if backoff_max < BACKOFF_MIN:
            raise ValueError(f"backoff_max {backoff_max}: must be at least {BACKOFF_MIN} s")
        self._hello = hello
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.backoff_max = backoff_max
        self.protocol_version = protocol_version
        self.bridge = bridge  # HELLOs say the sender is a switch (a trunk: switch/trunk.py)
        self._rng = rng if rng is not None else random.Random()
        self.state = LinkState.CLOSED
        self.port_up = True  # the switch port's administrative state (CARRIER, WELCOME)
        self.carrier = False
        self.port: int | None = None
        self.switch_mtu: int | None = None  # from the last WELCOME
        self.refused: str | None = None
        for name in COUNTERS:
            setattr(self, name, 0)
        self._node_mtu: int | None = None  # the MTU the last HELLO declared
        self._backoff = 0.0
        self._next_hello = 0.0
        self._next_beat = 0.0
        self._last_heard = 0.0
        self._last_reconnect = 0.0

    # -- state --------------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self.state is LinkState.ATTACHED

    @property
    def max_frame(self) -> int | None:
        """The longest frame the switch forwards (its MTU plus Ethernet and VLAN headers)."""
        return None if self.switch_mtu is None else self.switch_mtu + ETH_HLEN + VLAN_HLEN

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}

    def _go(self, event: object) -> LinkState:
        """Take the transition for ``event``; return the state left."""
        old = self.state
        new = LINK_TRANSITIONS.get((old, event))
        if new is None:
            what = event if isinstance(event, str) else event.__name__
            raise LinkStateError(f"link: no transition from {old.name} on {what}")
        self.state = new
        return old

    # -- events -------------------------------------------------------------------------------

    def open(self, now: float) -> list[Action]:
        """Start attaching: the first HELLO goes out now."""
        self._go(OPEN)
        self.refused = None
        self.port_up = True
        self._backoff = 0.0
        self._next_hello = now
        self._last_heard = self._last_reconnect = now
        return self.tick(now)

    def close(self, now: float) -> list[Action]:
        """Stop; say BYE if attached. Carrier goes off without a ``SetCarrier``: the NIC is
        going away with the link."""
        old = self._go(CLOSE)
        self.carrier = False
        return [Send(wire.Bye())] if old is LinkState.ATTACHED else []

    def heard(self, now: float) -> None:
        """The switch is alive (something arrived, whether or not it is read yet)."""
        if now > self._last_heard:
            self._last_heard = now

    def receive(self, message: wire.Message, now: float) -> list[Action]:
        """One message from the switch."""
        kind = type(message)
        old = self._go(kind)
        self.heard(now)
        if old is LinkState.REFUSED and kind is not wire.Frames and kind is not wire.Hello:
            return []  # refused for good: only the counters still move
        return self._HANDLERS[kind](self, message, old, now)

    def tick(self, now: float) -> list[Action]:
        """Timers: reconnect a silent switch, time out, heartbeat, HELLO."""
        state = self.state
        if state is LinkState.CLOSED:
            raise LinkStateError("link: tick on a closed link; open() it first")
        out: list[Action] = []
        if state is LinkState.REFUSED:
            return out
        # Deadlines are compared as next_deadline() computes them (a sum, not a difference),
        # so that a tick at the deadline it gave always acts: float rounding never makes a
        # timer fire and find nothing to do, again and again.
        silent_for = now - self._last_heard
        silent = now >= self._last_heard + self.heartbeat_timeout
        if silent and now >= self._last_reconnect + self.heartbeat_timeout:
            self._last_reconnect = now
            self.reconnects += 1
            out.append(Reconnect(silent_for))
        if state is LinkState.ATTACHED:
            if silent:
                self._go(SILENCE)
                self._detached(now, f"switch silent for {silent_for:.1f} s", out)
            elif now >= self._next_beat:
                out.append(Send(wire.Heartbeat()))
                self._next_beat = now + self.heartbeat_interval
        if self.state is LinkState.ATTACHING and now >= self._next_hello:
            out.append(self._say_hello(now))
        return out

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do; None when nothing ever will."""
        state = self.state
        if state is LinkState.CLOSED or state is LinkState.REFUSED:
            return None
        timeout = self.heartbeat_timeout
        silence = self._last_heard + timeout  # ATTACHED: the timeout; both: a Reconnect
        if state is LinkState.ATTACHED:
            return min(silence, self._next_beat)
        return min(max(silence, self._last_reconnect + timeout), self._next_hello)

    # -- message handlers ---------------------------------------------------------------------

    def _welcome(self, msg: wire.Welcome, old: LinkState, now: float) -> list[Action]:
        out: list[Action] = []
        self.port = msg.port
        self.port_up = msg.carrier
        self.switch_mtu = msg.mtu
        if old is LinkState.ATTACHING:
            self.attaches += 1
            self._backoff = 0.0
            self._next_beat = now + self.heartbeat_interval
            if self._node_mtu is not None and msg.mtu < self._node_mtu:
                out.append(ClampMtu(msg.mtu, self._node_mtu))
                self._node_mtu = msg.mtu
        self._update_carrier("the switch port is administratively down", out)
        return out

    def _refuse(self, msg: wire.Refuse, old: LinkState, now: float) -> list[Action]:
        out: list[Action] = []
        self.refused = msg.reason
        self._update_carrier("the switch refused this node", out)
        out.append(Refused(msg.reason))
        return out

    def _gone(self, msg: wire.Bye | wire.NotAttached, old: LinkState, now: float) -> list[Action]:
        out: list[Action] = []
        if old is LinkState.ATTACHED:
            why = "the switch said BYE" if type(msg) is wire.Bye else "the switch forgot this port"
            self._detached(now, why, out)
            out.append(self._say_hello(now))
        return out

    def _frames(self, msg: wire.Frames, old: LinkState, now: float) -> list[Action]:
        frames = msg.frames
        if old is not LinkState.ATTACHED:
            self.rx_not_attached += len(frames)
            return []
        self.rx_batches += 1
        self.rx_frames += len(frames)
        return [Deliver(frames)] if frames else []

    def _heartbeat(self, msg: wire.Heartbeat, old: LinkState, now: float) -> list[Action]:
        return []

    def _carrier(self, msg: wire.Carrier, old: LinkState, now: float) -> list[Action]:
        out: list[Action] = []
        if not msg.up and self.port_up and old is LinkState.ATTACHED:
            self.cable_cuts += 1
        self.port_up = msg.up
        self._update_carrier("the switch set this port administratively down", out)
        return out

    def _unexpected(self, msg: wire.Message, old: LinkState, now: float) -> list[Action]:
        self.rx_unexpected += 1
        return []

    _HANDLERS = {
        wire.Welcome: _welcome,
        wire.Refuse: _refuse,
        wire.Bye: _gone,
        wire.NotAttached: _gone,
        wire.Frames: _frames,
        wire.Heartbeat: _heartbeat,
        wire.Carrier: _carrier,
        wire.Hello: _unexpected,
    }

    # -- helpers ------------------------------------------------------------------------------

    def _detached(self, now: float, why: str, out: list[Action]) -> None:
        """Left ATTACHED for ATTACHING: carrier off, HELLO due at once."""
        self._next_hello = now
        self._update_carrier(why, out)

    def _update_carrier(self, why_down: str, out: list[Action]) -> None:
        up = self.state is LinkState.ATTACHED and self.port_up
        if up == self.carrier:
            return
        self.carrier = up
        if not up:
            self.carrier_losses += 1
        out.append(SetCarrier(up, "attached" if up else why_down))

    def _say_hello(self, now: float) -> Send:
        name, macs, mtu = self._hello()
        self._node_mtu = mtu
        # capped exponential backoff with jitter, so a restarted switch is not stampeded
        self._backoff = min(self.backoff_max, max(BACKOFF_MIN, self._backoff * 2))
        self._next_hello = now + self._backoff * (0.5 + self._rng.random())
        return Send(wire.Hello(name, tuple(bytes(m) for m in macs), mtu, self.protocol_version,
                               self.bridge))
