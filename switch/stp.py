"""Rapid spanning tree (IEEE 802.1w, as folded into 802.1D-2004 clause 17): a sans-I/O bridge.

One ``Bridge`` per switch. Ports are added by name as they attach (``add_port``), taken
away when they go (``remove_port``) and enabled or disabled as their cable is cut or restored
(``set_enabled``); received BPDUs go in (``receive``), time goes in (``tick(now)``,
``next_deadline()``), and every call returns the actions the switch must take:

- ``SendBpdu(port, frame)``: put this BPDU (a whole Ethernet frame) out of ``port``;
- ``PortState(port, state)``: the port's forwarding state is now ``state`` (discarding,
  learning, forwarding); only forwarding passes data frames;
- ``Flush(port)``: forget the FDB entries learned on ``port`` (a topology change).

What is modelled, after 802.1D-2004 clause 17:

- Bridge identifier: the 4-bit priority (a multiple of 4096, default 32768) and a 12-bit
  system id extension of 0, then a MAC derived from the switch's name (``bridge_mac``: a
  locally administered unicast address, the same name always gives the same MAC).
  Port identifier: priority 128 and the port's number. Path cost 20000 (1 Gb/s, 802.1t).
- Priority vectors (root id, root path cost, designated bridge, designated port, receiving
  port) compared as tuples; the best one received (plus the receiving port's cost) that is
  better than the bridge's own makes the root port (17.21.25 updtRolesTree). Every other
  enabled port is designated when the vector it would send is better than the one it
  received, else alternate (backup when the better one is this bridge's own, from another
  of its ports). A disabled port (cut cable, carrier lost) has the role disabled.
- Port states discarding, learning, forwarding. Edge ports (a switch's node ports) forward at
  once, never send BPDUs and never cause a topology change. A root port forwards at once
  (the old root port has already stopped: 17.29.2 reRooted). A designated port forwards at
  once when its partner agreed; otherwise it proposes and falls back on forward delay:
  discarding, learning after ``forward_delay``, forwarding after another.
- Proposal/agreement (17.29.2, 17.29.3): a designated port that is not forwarding sets the
  proposal flag in its BPDUs. A root port receiving a proposal syncs the bridge (every
  designated non-edge port that has not agreed goes to discarding and proposes in turn)
  and answers with the agreement flag at once; an alternate or backup port agrees at once
  (it forwards nothing). A designated port receiving an agreement forwards at once.
- Information ageing: what a port received is discarded after three hello times of the
  sender without a BPDU (RSTP's rcvdInfoWhile), and at once when its message age reaches
  its max age; the bridge then chooses again. Each hop adds ``max_age / 20`` to the
  message age (1 s at the default 20 s).
- Topology change (17.31, the topology change state machine): a non-edge port that starts forwarding starts tcWhile (two
  hello times) on the bridge's non-edge root and designated ports, whose BPDUs then carry
  the TC flag, and flushes the FDB entries of the other non-edge ports; a BPDU with the TC
  flag received on a root or designated port does the same for the other ports (an
  alternate or backup port ignores it, so a notice never circles the loop it blocks). A port that stops forwarding
  has its own entries flushed. ``topology_changes`` counts the changes the bridge entered
  (detected here or notified).
- Transmission: designated ports send a BPDU every hello time and at once when what they
  say changes; root ports send when they agree and while tcWhile runs; at most
  ``TX_HOLD_COUNT`` BPDUs a port per hello time (17.13.12's TxHoldCount).

Not modelled: 802.1D (STP) compatibility mode (a config BPDU is read as a designated
port's RST information, and only RST BPDUs are sent), the dispute mechanism, point-to-point
detection (every trunk is a point-to-point link), MSTP. A learning port learns the sources of
what it receives and forwards nothing (the switch drops every non-BPDU frame of a port that
is not forwarding).

BPDU codec (``encode_bpdu``/``decode_bpdu``): the RST BPDU of 802.1D-2004 9.3.3 in an
802.3 frame with LLC: destination 01:80:C2:00:00:00, length, LLC 42 42 03, protocol id 0,
version 2, type 0x02, flags, root id, root path cost, bridge id, port id, message age, max
age, hello time, forward delay (times in 1/256 s), version 1 length 0.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

STP_MULTICAST = bytes.fromhex("0180c2000000")  # the bridge group address
LINK_LOCAL_PREFIX = bytes.fromhex("0180c20000")  # 01:80:C2:00:00:00..0F are never forwarded
LLC_STP = b"\x42\x42\x03"
BPDU_TYPE_CONFIG = 0x00
BPDU_TYPE_RST = 0x02
BPDU_TYPE_TCN = 0x80
BPDU_FMT = struct.Struct("!HBBB8sI8sHHHHHB")  # protocol id ... version 1 length (36 bytes)
BPDU_LEN = BPDU_FMT.size
CONFIG_BPDU_LEN = 35
ETH_LEN_HDR = struct.Struct("!6s6sH")

FLAG_TC = 0x01
FLAG_PROPOSAL = 0x02
FLAG_ROLE_SHIFT = 2
FLAG_LEARNING = 0x10
FLAG_FORWARDING = 0x20
FLAG_AGREEMENT = 0x40
FLAG_TC_ACK = 0x80

DEFAULT_PRIORITY = 32768
DEFAULT_HELLO = 2.0
DEFAULT_MAX_AGE = 20.0
DEFAULT_FORWARD_DELAY = 15.0
DEFAULT_PORT_PRIORITY = 128
DEFAULT_PATH_COST = 20000  # 1 Gb/s (802.1D-2004 table 17-3)
TX_HOLD_COUNT = 6
MAX_TIME = 255.0  # a BPDU time is 16 bits of 1/256 s


class BpduError(ValueError):
    """A frame that is not a BPDU this bridge reads (bad input from the wire: counted)."""


class Role(enum.Enum):
    DISABLED = "disabled"
    ROOT = "root"
    DESIGNATED = "designated"
    ALTERNATE = "alternate"
    BACKUP = "backup"


class State(enum.Enum):
    DISCARDING = "discarding"
    LEARNING = "learning"
    FORWARDING = "forwarding"


# the BPDU's 2-bit port role (802.1D-2004 9.3.3): unknown 0, alternate/backup 1, root 2, designated 3
_ROLE_BITS = {Role.ALTERNATE: 1, Role.BACKUP: 1, Role.ROOT: 2, Role.DESIGNATED: 3, Role.DISABLED: 0}


class _Info(enum.Enum):
    """Where a port's priority vector comes from (17.19.10 infoIs)."""

    DISABLED = "disabled"
    MINE = "mine"
    AGED = "aged"
    RECEIVED = "received"


# -- BPDUs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bpdu:
    """One decoded BPDU. ``role`` is the sender's port role (Role.DESIGNATED for a config
    BPDU); times in seconds. ``tcn``: a topology change notification (no other field)."""

    root_id: bytes = bytes(8)
    root_cost: int = 0
    bridge_id: bytes = bytes(8)
    port_id: int = 0
    message_age: float = 0.0
    max_age: float = DEFAULT_MAX_AGE
    hello: float = DEFAULT_HELLO
    forward_delay: float = DEFAULT_FORWARD_DELAY
    role: Role = Role.DESIGNATED
    tc: bool = False
    proposal: bool = False
    learning: bool = False
    forwarding: bool = False
    agreement: bool = False
    tc_ack: bool = False
    version: int = 2
    tcn: bool = False

    @property
    def vector(self) -> tuple[bytes, int, bytes, int]:
        return (self.root_id, self.root_cost, self.bridge_id, self.port_id)


def _t(seconds: float) -> int:
    return max(0, min(0xFFFF, int(round(seconds * 256))))


def encode_bpdu(bpdu: Bpdu, src: bytes) -> bytes:
    """The RST BPDU as a whole Ethernet (802.3 + LLC) frame from ``src``, padded to 60 bytes."""
    flags = _ROLE_BITS[bpdu.role] << FLAG_ROLE_SHIFT
    for on, bit in ((bpdu.tc, FLAG_TC), (bpdu.proposal, FLAG_PROPOSAL), (bpdu.learning, FLAG_LEARNING),
                    (bpdu.forwarding, FLAG_FORWARDING), (bpdu.agreement, FLAG_AGREEMENT), (bpdu.tc_ack, FLAG_TC_ACK)):
        if on:
            flags |= bit
    body = LLC_STP + BPDU_FMT.pack(0, 2, BPDU_TYPE_RST, flags, bpdu.root_id, bpdu.root_cost, bpdu.bridge_id,
                                   bpdu.port_id, _t(bpdu.message_age), _t(bpdu.max_age), _t(bpdu.hello),
                                   _t(bpdu.forward_delay), 0)
    return (ETH_LEN_HDR.pack(STP_MULTICAST, bytes(src), len(body)) + body).ljust(60, b"\0")


def decode_bpdu(frame: bytes | memoryview) -> Bpdu:
    """A BPDU frame (802.3 length, LLC 42 42 03) to a ``Bpdu``: RST (version 2, type 2), config
    (type 0) or TCN (type 0x80). BpduError with a sentence for anything else."""
    frame = bytes(frame)
    if len(frame) < 14 + 3 + 4:
        raise BpduError(f"a BPDU frame of {len(frame)} bytes is too short")
    if frame[:6] != STP_MULTICAST:
        raise BpduError(f"BPDU destination {frame[:6].hex(':')} is not 01:80:c2:00:00:00")
    length = frame[12] << 8 | frame[13]
    if length > 1500:
        raise BpduError(f"a BPDU is an 802.3 frame with a length, not an Ethernet II type 0x{length:04x}")
    if frame[14:17] != LLC_STP:
        raise BpduError(f"BPDU LLC header {frame[14:17].hex(' ')} is not 42 42 03")
    body = frame[17:17 + length - 3] if length >= 3 else b""
    if len(body) < 4 or body[0:2] != b"\0\0":
        raise BpduError("BPDU protocol identifier is not 0 (or the BPDU is cut short)")
    version, kind = body[2], body[3]
    if kind == BPDU_TYPE_TCN:
        return Bpdu(version=version, tcn=True)
    if kind == BPDU_TYPE_RST:
        if len(body) < BPDU_LEN - 1:
            raise BpduError(f"an RST BPDU is {BPDU_LEN} bytes, got {len(body)}")
        body = body[:BPDU_LEN].ljust(BPDU_LEN, b"\0")
    elif kind == BPDU_TYPE_CONFIG:
        if len(body) < CONFIG_BPDU_LEN:
            raise BpduError(f"a config BPDU is {CONFIG_BPDU_LEN} bytes, got {len(body)}")
        body = body[:CONFIG_BPDU_LEN] + b"\0"
    else:
        raise BpduError(f"unknown BPDU type 0x{kind:02x}")
    (_, version, kind, flags, root_id, cost, bridge_id, port_id, age, max_age, hello, fwd,
     _) = BPDU_FMT.unpack(body)
    if kind == BPDU_TYPE_CONFIG:
        role = Role.DESIGNATED
        learning = forwarding = True
        proposal = agreement = False
    else:
        role = {0: None, 1: Role.ALTERNATE, 2: Role.ROOT, 3: Role.DESIGNATED}[(flags >> FLAG_ROLE_SHIFT) & 3]
        if role is None:
            raise BpduError("RST BPDU with port role unknown")
        proposal = bool(flags & FLAG_PROPOSAL)
        agreement = bool(flags & FLAG_AGREEMENT)
        learning = bool(flags & FLAG_LEARNING)
        forwarding = bool(flags & FLAG_FORWARDING)
    return Bpdu(root_id, cost, bridge_id, port_id, age / 256, max_age / 256, hello / 256, fwd / 256, role,
                bool(flags & FLAG_TC), proposal, learning, forwarding, agreement, bool(flags & FLAG_TC_ACK),
                version)


def is_link_local(dst: bytes | memoryview) -> bool:
    """01:80:C2:00:00:00 to 0F: the IEEE 802.1D reserved addresses a bridge never forwards."""
    return bytes(dst[:5]) == LINK_LOCAL_PREFIX and dst[5] <= 0x0F


def bridge_mac(name: str) -> bytes:
    """The bridge's MAC, derived from the switch's name: locally administered, unicast."""
    h = hashlib.sha256(name.encode()).digest()
    return bytes([(h[0] & 0xFC) | 0x02]) + h[1:6]


def format_bridge_id(bid: bytes) -> str:
    """As Linux's bridge shows it: ``8000.02aabbccddee``."""
    return f"{bid[:2].hex()}.{bid[2:].hex()}"


# -- actions --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendBpdu:
    port: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class PortState:
    port: str
    state: State

    @property
    def forwarding(self) -> bool:
        return self.state is State.FORWARDING


@dataclass(frozen=True, slots=True)
class Flush:
    port: str


Action = SendBpdu | PortState | Flush

PORT_COUNTERS = ("bpdu_rx", "bpdu_tx", "bpdu_bad", "tc_rx", "proposals_rx", "agreements_rx")


class StpPort:
    """A bridge port's spanning tree state (802.1D-2004 17.19's per-port variables)."""

    __slots__ = ("name", "number", "port_id", "cost", "edge", "enabled", "role", "state", "info", "msg", "msg_times",
                 "rcvd_until", "proposing", "proposed", "agreed", "agree", "fd_until", "tc_until", "new_info",
                 "tx_count", "sent", "tc_flag") + PORT_COUNTERS

    def __init__(self, name: str, number: int, cost: int, edge: bool, enabled: bool) -> None:
        self.name = name
        self.number = number
        self.port_id = (DEFAULT_PORT_PRIORITY << 8) | (number & 0x0FFF)
        self.cost = cost
        self.edge = edge
        self.enabled = enabled
        self.role = Role.DISABLED
        self.state = State.DISCARDING
        self.info = _Info.DISABLED
        self.msg: tuple | None = None  # the received priority vector (root, cost, bridge, port)
        self.msg_times: tuple[float, float, float, float] | None = None  # age, max age, hello, fwd delay
        self.rcvd_until = 0.0
        self.proposing = False
        self.proposed = False
        self.agreed = False
        self.agree = False  # an agreement to send
        self.fd_until: float | None = None
        self.tc_until: float | None = None
        self.new_info = False
        self.tx_count = 0
        self.sent: tuple | None = None  # the designated vector last sent
        self.tc_flag = False
        for name in PORT_COUNTERS:
            setattr(self, name, 0)


class Bridge:
    """An RSTP bridge named ``name`` (its MAC comes from the name). Times in seconds, floats
    allowed (tests converge in fractions of a second)."""

    def __init__(self, name: str, priority: int = DEFAULT_PRIORITY, hello: float = DEFAULT_HELLO,
                 max_age: float = DEFAULT_MAX_AGE, forward_delay: float = DEFAULT_FORWARD_DELAY) -> None:
        check_settings(priority, hello, max_age, forward_delay)
        self.name = name
        self.mac = bridge_mac(name)
        self.priority = priority
        self.bridge_id = priority.to_bytes(2, "big") + self.mac
        self.hello = float(hello)
        self.max_age = float(max_age)
        self.forward_delay = float(forward_delay)
        self.ports: dict[str, StpPort] = {}
        self.root_id = self.bridge_id
        self.root_cost = 0
        self.root_port: StpPort | None = None
        self.root_times = (0.0, self.max_age, self.hello, self.forward_delay)
        self.topology_changes = 0
        self.last_topology_change: float | None = None
        self.next_hello: float | None = None
        self._out: list[Action] = []

    # -- ports ------------------------------------------------------------------------------------

    def add_port(self, name: str, number: int, now: float, *, edge: bool = False, enabled: bool = True,
                 cost: int = DEFAULT_PATH_COST) -> list[Action]:
        """A port joins the bridge (an edge port: a node; else a trunk to another bridge)."""
        if name in self.ports:
            raise ValueError(f"stp: port {name!r} is already a port of this bridge")
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= 200_000_000:
            raise ValueError(f"stp: path cost must be an integer from 1 to 200000000, got {cost!r}")
        p = StpPort(name, number, cost, edge, False)
        self.ports[name] = p
        self._emit_state(p)  # discarding, until its role says otherwise
        if enabled:
            self._enable(p, now)
        return self._finish(now)

    def remove_port(self, name: str, now: float) -> list[Action]:
        p = self.ports.pop(name, None)
        if p is None:
            return []
        self._reselect(now)
        return self._finish(now)

    def set_enabled(self, name: str, enabled: bool, now: float) -> list[Action]:
        """The port's MAC became operational (cable restored, carrier up) or not."""
        p = self.ports.get(name)
        if p is None or p.enabled == enabled:
            return []
        if enabled:
            self._enable(p, now)
        else:
            p.enabled = False
            p.info = _Info.DISABLED
            p.msg = p.msg_times = None
            p.proposing = p.proposed = p.agreed = p.agree = False
            p.fd_until = p.tc_until = None
            self._reselect(now)
        return self._finish(now)

    def _enable(self, p: StpPort, now: float) -> None:
        p.enabled = True
        p.info = _Info.AGED
        p.msg = p.msg_times = None
        p.proposing = p.proposed = p.agreed = p.agree = False
        p.sent = None
        if not p.edge and self.next_hello is None:
            self.next_hello = now + self.hello
        self._reselect(now)

    # -- BPDUs in ---------------------------------------------------------------------------------

    def receive(self, name: str, frame: bytes | memoryview, now: float) -> list[Action]:
        """A BPDU received on port ``name`` (a frame to 01:80:C2:00:00:00). Never raises on
        bad input: it counts ``bpdu_bad``."""
        p = self.ports.get(name)
        if p is None:
            return []
        try:
            bpdu = decode_bpdu(frame)
        except BpduError:
            p.bpdu_bad += 1
            return []
        p.bpdu_rx += 1
        if not p.enabled or p.edge:
            return []  # an edge port's BPDU is counted and ignored (node ports are edge ports)
        if bpdu.tcn:
            if p.role in (Role.ROOT, Role.DESIGNATED):
                self._notified_tc(p, now)
            return self._finish(now)
        if bpdu.message_age >= bpdu.max_age:
            return []  # too old to use (17.21.8 rcvInfo: the info would age out at once)
        if bpdu.role is Role.DESIGNATED:
            self._designated_info(p, bpdu, now)
        elif p.role is Role.DESIGNATED and bpdu.agreement and bpdu.vector >= self._designated_vector(p):
            # InferiorRootAlternateInfo with the agreement flag: the partner agreed (17.21.9)
            p.agreements_rx += 1
            p.agreed = True
            p.proposing = False
            p.fd_until = None
            if p.state is not State.FORWARDING:
                self._set_state(p, State.FORWARDING, now)
        if bpdu.tc:
            p.tc_rx += 1
            if p.role in (Role.ROOT, Role.DESIGNATED):  # an alternate port's TCM is inactive (17.31)
                self._notified_tc(p, now)
        return self._finish(now)

    def _designated_info(self, p: StpPort, bpdu: Bpdu, now: float) -> None:
        vec = bpdu.vector
        current = p.msg if p.info is _Info.RECEIVED else self._designated_vector(p)
        same_sender = p.msg is not None and vec[2:] == p.msg[2:]
        if vec < current or (same_sender and vec != p.msg):
            # superior designated information (or the same designated port saying something new)
            p.msg = vec
            p.info = _Info.RECEIVED
            p.agreed = False
            p.proposing = False
            self._record(p, bpdu, now)
            self._reselect(now)
        elif vec == current and p.info is _Info.RECEIVED:
            self._record(p, bpdu, now)  # repeated designated information
        else:
            # inferior designated information: the partner has not heard ours yet; say it now
            if p.role is Role.DESIGNATED:
                p.new_info = True
            return
        if bpdu.proposal:
            p.proposals_rx += 1
            p.proposed = True
            self._answer_proposal(p, now)

    def _record(self, p: StpPort, bpdu: Bpdu, now: float) -> None:
        p.msg_times = (bpdu.message_age, bpdu.max_age, bpdu.hello, bpdu.forward_delay)
        # RSTP ages received information after three of the sender's hello times, or when its
        # message age reaches max age, whichever is first
        hello = bpdu.hello if bpdu.hello > 0 else self.hello
        p.rcvd_until = now + min(3 * hello, bpdu.max_age - bpdu.message_age)

    def _answer_proposal(self, p: StpPort, now: float) -> None:
        if not p.proposed:
            return
        if p.role is Role.ROOT:
            # sync: every designated non-edge port that has not agreed stops forwarding and
            # proposes in turn, so no loop can form downstream; then agree at once
            for q in self.ports.values():
                if q is not p and q.role is Role.DESIGNATED and not q.edge and not q.agreed:
                    if q.state is not State.DISCARDING:
                        self._set_state(q, State.DISCARDING, now)
                    self._propose(q, now)
            p.proposed = False
            p.agree = True
            p.new_info = True
            if p.state is not State.FORWARDING:
                self._set_state(p, State.FORWARDING, now)
        elif p.role in (Role.ALTERNATE, Role.BACKUP):
            p.proposed = False
            p.agree = True
            p.new_info = True

    # -- time -------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Age received information, step forward-delay and topology-change timers, send
        the hello-time BPDUs."""
        aged = False
        for p in self.ports.values():
            if p.info is _Info.RECEIVED and now >= p.rcvd_until:
                p.info = _Info.AGED
                p.msg = p.msg_times = None
                aged = True
        if aged:
            self._reselect(now)
        for p in list(self.ports.values()):
            if p.fd_until is not None and now >= p.fd_until:
                if p.role is Role.DESIGNATED and p.state is State.DISCARDING:
                    self._set_state(p, State.LEARNING, now)
                    p.fd_until = now + self.forward_delay
                elif p.role is Role.DESIGNATED and p.state is State.LEARNING:
                    p.fd_until = None
                    self._set_state(p, State.FORWARDING, now)
                else:
                    p.fd_until = None
            if p.tc_until is not None and now >= p.tc_until:
                p.tc_until = None
        if self.next_hello is not None and now >= self.next_hello:
            self.next_hello = now + self.hello
            for p in self.ports.values():
                p.tx_count = 0
                if p.enabled and not p.edge and (p.role is Role.DESIGNATED or
                                                 (p.role is Role.ROOT and p.tc_until is not None)):
                    p.new_info = True
            if not any(p.enabled and not p.edge for p in self.ports.values()):
                self.next_hello = None
        return self._finish(now)

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (None: never, until an event)."""
        times = [self.next_hello] if self.next_hello is not None else []
        for p in self.ports.values():
            if p.info is _Info.RECEIVED:
                times.append(p.rcvd_until)
            if p.fd_until is not None:
                times.append(p.fd_until)
            if p.tc_until is not None:
                times.append(p.tc_until)
        return min(times) if times else None

    # -- role selection ---------------------------------------------------------------------------

    def _designated_vector(self, p: StpPort) -> tuple[bytes, int, bytes, int]:
        return (self.root_id, self.root_cost, self.bridge_id, p.port_id)

    def _reselect(self, now: float) -> None:
        """Choose the root port and every port's role (17.21.25 updtRolesTree), then move
        the ports' states as their new roles say."""
        best = (self.bridge_id, 0, self.bridge_id, 0, 0)
        root_port = None
        for p in self.ports.values():
            if p.info is not _Info.RECEIVED or not p.enabled:
                continue
            root, cost, dbridge, dport = p.msg
            if dbridge[2:] == self.mac:
                continue  # our own information come back: never a path to the root
            v = (root, cost + p.cost, dbridge, dport, p.port_id)
            if v < best:
                best, root_port = v, p
        old_root = (self.root_id, self.root_cost)
        self.root_id, self.root_cost = best[0], best[1]
        self.root_port = root_port
        if root_port is None:
            self.root_times = (0.0, self.max_age, self.hello, self.forward_delay)
        else:
            age, max_age, _, fwd = root_port.msg_times
            self.root_times = (age + max(self.max_age / 20, 1 / 256), max_age, self.hello, fwd)
        changed = old_root != (self.root_id, self.root_cost)
        for p in self.ports.values():
            if not p.enabled:
                role = Role.DISABLED
            elif p is root_port:
                role = Role.ROOT
            elif p.info is _Info.RECEIVED and p.msg < self._designated_vector(p):
                role = Role.BACKUP if p.msg[2] == self.bridge_id else Role.ALTERNATE
            else:
                role = Role.DESIGNATED
            if role is Role.DESIGNATED and p.info is not _Info.MINE:
                p.info = _Info.MINE  # our information replaces what the port had received
                p.msg = p.msg_times = None
            self._set_role(p, role, now, changed)

    def _set_role(self, p: StpPort, role: Role, now: float, root_changed: bool) -> None:
        old = p.role
        p.role = role
        if role is not old:
            p.new_info = p.enabled and not p.edge
        if role is Role.DISABLED:
            p.proposing = p.agreed = p.agree = False
            p.fd_until = None
            if p.state is not State.DISCARDING:
                self._set_state(p, State.DISCARDING, now)
            else:
                self._emit_state(p)
        elif role in (Role.ALTERNATE, Role.BACKUP):
            p.proposing = p.agreed = False
            p.fd_until = None
            if p.state is not State.DISCARDING:
                self._set_state(p, State.DISCARDING, now)
            self._answer_proposal(p, now)
        elif role is Role.ROOT:
            p.proposing = p.agreed = False
            p.fd_until = None
            if p.state is not State.FORWARDING:
                # the old root port (now alternate or disabled) has already stopped forwarding
                self._set_state(p, State.FORWARDING, now)
            self._answer_proposal(p, now)
        else:  # designated
            if p.edge:
                if p.state is not State.FORWARDING:
                    self._set_state(p, State.FORWARDING, now)
                return
            vec = self._designated_vector(p)
            if p.sent is not None and vec != p.sent:
                p.new_info = True
                if vec > p.sent:
                    p.agreed = False  # worse information than the partner agreed to
            if p.state is not State.FORWARDING and not p.agreed:
                self._propose(p, now)
            elif p.state is not State.FORWARDING and p.agreed:
                self._set_state(p, State.FORWARDING, now)

    def _propose(self, p: StpPort, now: float) -> None:
        if not p.proposing:
            p.proposing = True
            p.new_info = True
        if p.fd_until is None and p.state is not State.FORWARDING:
            p.fd_until = now + self.forward_delay

    # -- states and topology changes -----------------------------------------------------------

    def _set_state(self, p: StpPort, state: State, now: float) -> None:
        old = p.state
        p.state = state
        self._emit_state(p)
        if p.edge:
            return
        if old is State.FORWARDING and state is not State.FORWARDING:
            self._out.append(Flush(p.name))
        if state is State.FORWARDING and old is not State.FORWARDING and p.role in (Role.ROOT, Role.DESIGNATED):
            self._detected_tc(p, now)

    def _emit_state(self, p: StpPort) -> None:
        self._out.append(PortState(p.name, p.state))

    def _tc_active(self) -> bool:
        return any(q.tc_until is not None for q in self.ports.values())

    def _detected_tc(self, p: StpPort, now: float) -> None:
        """A non-edge port started forwarding (17.31 DETECTED): tcWhile on the non-edge
        root and designated ports, the others' entries flushed."""
        self._topology_change(now)
        for q in self.ports.values():
            if q.edge or not q.enabled:
                continue
            if q.role in (Role.ROOT, Role.DESIGNATED):
                self._new_tc_while(q, now)
            if q is not p:
                self._out.append(Flush(q.name))

    def _notified_tc(self, p: StpPort, now: float) -> None:
        """A BPDU with TC (or a TCN) on ``p``: flush and propagate on the other ports."""
        self._topology_change(now)
        for q in self.ports.values():
            if q is p or q.edge or not q.enabled:
                continue
            self._out.append(Flush(q.name))
            if q.role in (Role.ROOT, Role.DESIGNATED):
                self._new_tc_while(q, now)

    def _new_tc_while(self, q: StpPort, now: float) -> None:
        """17.21.7 newTcWhile: a running tcWhile is not extended, so notices between two
        bridges die out instead of re-arming each other."""
        if q.tc_until is None:
            q.tc_until = now + 2 * self.hello
            q.new_info = True

    def _topology_change(self, now: float) -> None:
        if not self._tc_active():
            self.topology_changes += 1
        self.last_topology_change = now

    # -- BPDUs out --------------------------------------------------------------------------------

    def _finish(self, now: float) -> list[Action]:
        """Send the BPDUs that have news (within the hold count) and hand out the actions."""
        for p in self.ports.values():
            if not p.new_info or not p.enabled or p.edge:
                continue
            if p.role is Role.DISABLED:
                p.new_info = False
                continue
            if p.role is not Role.DESIGNATED and not p.agree and p.tc_until is None:
                p.new_info = False  # root and alternate ports speak only to agree or to pass on a TC
                continue
            if p.tx_count >= TX_HOLD_COUNT:
                continue  # at the next hello time
            p.tx_count += 1
            p.new_info = False
            self._out.append(SendBpdu(p.name, encode_bpdu(self._bpdu_for(p), self.mac)))
            p.bpdu_tx += 1
            if p.role is Role.DESIGNATED:
                p.sent = self._designated_vector(p)
            p.agree = False
        out, self._out = self._out, []
        return out

    def _bpdu_for(self, p: StpPort) -> Bpdu:
        age, max_age, _, fwd = self.root_times
        return Bpdu(self.root_id, self.root_cost, self.bridge_id, p.port_id, age, max_age, self.hello, fwd,
                    p.role, tc=p.tc_until is not None,
                    proposal=p.role is Role.DESIGNATED and p.proposing and p.state is not State.FORWARDING,
                    learning=p.state is not State.DISCARDING, forwarding=p.state is State.FORWARDING,
                    agreement=p.agree)

    # -- views ------------------------------------------------------------------------------------

    def port_state(self, name: str) -> State | None:
        p = self.ports.get(name)
        return None if p is None else p.state

    def show(self, now: float) -> dict:
        """``stp_show``: the bridge and every port, as the control endpoint answers it."""
        return {
            "bridge_id": format_bridge_id(self.bridge_id),
            "root_id": format_bridge_id(self.root_id),
            "root_port": self.root_port.name if self.root_port is not None else None,
            "root_path_cost": self.root_cost,
            "is_root": self.root_port is None,
            "hello": self.hello,
            "max_age": self.max_age,
            "forward_delay": self.forward_delay,
            "topology_changes": self.topology_changes,
            "time_since_topology_change": (None if self.last_topology_change is None
                                           else round(now - self.last_topology_change, 3)),
            "ports": [self.port_view(p) for p in self.ports.values()],
        }

    def port_view(self, p: StpPort) -> dict:
        designated = p.msg[2] if p.info is _Info.RECEIVED else self.bridge_id
        return {
            "port": p.name,
            "port_id": f"{p.port_id:04x}",
            "role": p.role.value,
            "state": p.state.value,
            "cost": p.cost,
            "designated_bridge": format_bridge_id(designated),
            "edge": p.edge,
            "counters": {name: getattr(p, name) for name in PORT_COUNTERS},
        }

    def counters(self) -> dict[str, int]:
        out = {name: sum(getattr(p, name) for p in self.ports.values()) for name in PORT_COUNTERS}
        out["topology_changes"] = self.topology_changes
        return out


def check_settings(priority: int, hello: float, max_age: float, forward_delay: float) -> None:
    """ValueError naming the setting, for a priority or a time a BPDU cannot carry."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 61440 or priority % 4096:
        raise ValueError(f"stp priority must be a multiple of 4096 from 0 to 61440, got {priority!r}")
    for what, v in (("hello", hello), ("max_age", max_age), ("forward_delay", forward_delay)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 / 256 <= v <= MAX_TIME:
            raise ValueError(f"stp {what} must be a number of seconds from 1/256 to {MAX_TIME:g}, got {v!r}")
    if max_age < 2 * hello:
        raise ValueError(f"stp max_age ({max_age:g} s) must be at least two hello times ({hello:g} s)")
