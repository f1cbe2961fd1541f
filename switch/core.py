"""The sans-I/O learning switch: ports, their lifecycle and liveness, the rules, the counters.

Data goes in as decoded ZeroMQ messages, messages to send come out; nothing here touches a
socket or a clock (Faucet's valve style). The server feeds it::

    out = core.handle(peer_id, parts, now)      # parts = [kind, payload?] after the identity
    for peer_id, parts in out: send [peer_id, *parts] without blocking
    core.send_failed(peer_id, parts, "hwm")     # when ZeroMQ refused one of them

    tick = core.tick(now)                        # every heartbeat_interval / 2 or so
    -> tick.messages (BYE to timed-out ports), tick.removed (ports), tick.aged (FDB entries)

Ports. A node attaches with HELLO and gets WELCOME (or REFUSE with a sentence: wrong protocol
version, bad map, ``max_ports`` already attached, counted ``max_ports``). HELLOs from peers that
are not attached pass a token bucket (``hello_rate`` a second after ``hello_burst`` at once);
one over it is dropped unanswered and counted ``hello_ratelimited`` (the node's HELLO backoff
retries). Text from a peer that goes back in a REFUSE or into a log line is clipped to about
``CLIP`` characters. An attach costs the same however many ports there are. A port is identified by its peer id (the ROUTER identity) and has a unique
name, pinned to its connection while it lives: a HELLO from another peer under the name of a
port heard within two heartbeat intervals is dropped unanswered (``name_in_use``), and one
under the name of a port silent for longer replaces it (a node restarted before its old port
timed out: its HELLO backoff brings it back within ``heartbeat_timeout``); a HELLO from an
attached peer re-attaches it. The HELLO's unicast
MACs are learned on vlan 0 at once (they then age like any entry); its mtu is recorded for
``ports`` while the switch enforces its own. Any message refreshes
the port; one silent for ``heartbeat_timeout`` is removed by ``tick`` and sent BYE; a BYE from
the node removes its port at once. Removing a port flushes its FDB entries. A message from an
unknown peer that is not HELLO is answered NOT_ATTACHED (so the node re-sends HELLO), except
BYE, which needs no answer; each counts ``not_attached``, and the frames of a FRAMES message
count ``unknown_peer`` (so frames sent to a switch that restarted and forgot the node, or to
one that is closing, are accounted for by frame).

Forwarding (per frame of a FRAMES batch; the loop is ``switch/forward.py``'s, the state is
here). Drops are counted on the ingress port and in the
totals: ``runt`` (< 14 bytes, or < 18 with an 802.1Q tag), ``oversize`` (> mtu + 18, the
Ethernet header plus one VLAN tag), ``bad_src`` (multicast or all-zero source). Then the source
is learned on (vlan, src) and the destination decides: multicast/broadcast and unknown unicast
are flooded to every other port (``flooded``); known unicast goes to its port only, or is
dropped as ``same_port`` when that is the ingress port. Nothing is ever sent back out of the
ingress port. VLAN: on a switch whose ports have no VLAN configuration an untagged frame is
vlan 0, a tagged one (TPID 0x8100) uses its VID for learning and lookup, and every port is a
trunk carrying every VLAN, so a flood goes to all ports.

VLANs (802.1Q, the bridge's vlan_filtering; the model is ``switch/vlan.py``). A port may be an
access port of one VLAN or a trunk of allowed VLANs with an optional native one
(``set_vlan``; the startup ``vlans``). The configuration belongs to the port's name, as the
admin state does: it may be set before the port attaches and is kept across re-attaching, and
changing it flushes the port's FDB entries (its HELLO MACs are then learned again in its PVID,
as at attach). While any attached port has one, batches take forward.py's VLAN path: each
frame is classified on ingress (a drop counts on the ingress port and in the totals:
``vlan_tagged``, a tagged frame on an access port; ``vlan_disallowed``, a VID a trunk does
not carry; ``vlan_untagged``, an untagged frame on a trunk without a native VLAN), learned and
looked up in its VLAN, flooded only to the ports that carry that VLAN, and leaves each port
tagged or untagged as that port's mode says (the tag pushed or popped, so those records are
re-encoded; a copy a pushed tag makes longer than the largest frame is dropped and counted
``oversize`` on its output port). A port without configuration stays VLAN-transparent
(carries every VLAN, vlan 0 untagged), which keeps a switch without any VLAN configuration
exactly as it was. At most ``MAX_VLAN_CONFIGS`` port names hold a configuration.

Admin state (a cable cut: ``set_admin``). A port set down is sent CARRIER 0 (its node drops
carrier and stays attached); every frame from it, and every frame forwarded to it, is dropped
and counted ``port_down`` on that port (checked once per batch and per output port, never per
frame). The state belongs to the port's name: a node that attaches while its name is down
gets WELCOME with ``carrier`` false and then CARRIER 0. Up again sends CARRIER 1.

Port security (``max_macs``, ``violation``; ``set_port_security`` changes them at run time).
With ``max_macs`` n > 0 a port may hold at most n FDB entries, counted across VLANs until they
age out or are flushed (Cisco's maximum secure addresses, the bridge's max_learned). A frame whose
(vlan, src) is not already learned on its ingress port, when that port already holds n entries,
is a violation: it is neither learned nor forwarded and counts ``port_security``. An address
learned on another port counts as new (moving it would grow this port), while refreshing one of
the port's own addresses never violates; ``bad_src`` frames are dropped before learning and never
count. The MACs a HELLO declares are learned up to the limit and the rest are ignored (logged, not
counted: a HELLO is not a frame). ``violation`` "drop" (the default) only drops. "shutdown" also
sets the port administratively down exactly as ``set_admin(name, False)`` does (CARRIER 0, logged
once as a warning, ``psec_shutdowns`` in the totals): the rest of the batch counts ``port_down``,
as does everything after it until ``set_admin(name, True)``, after which the limit applies again
to the entries the port still holds. The FDB's eviction under flooding (see switch/fdb.py) keeps
a flooder from pushing out the other ports' addresses even without a limit; the limit also stops
the flooder's frames themselves. Lowering the limit removes nothing: the port learns no new
address until it holds fewer. The check runs only where a frame's source differs from the
previous one (the learn path), inside ``Fdb.learn``, and not at all with ``max_macs`` 0.

Spanning tree (``switch/stp.py``, IEEE 802.1w; ``stp`` is the core's ``Bridge``). A port whose
HELLO says ``bridge`` (another switch's trunk dialing in) or that this switch dials itself
(``attach_trunk``: a trunk's local end, whose liveness is its link's, never timed out here) runs
spanning tree; node ports are edge ports and forward at once. Frames to 01:80:C2:00:00:00..0F are
never forwarded: a BPDU (to ...:00) is consumed, counted ``bpdu_rx`` and handed to the bridge;
the others count ``link_local``. A port that is not forwarding drops every other frame from it
and to it, counted ``stp_discarding`` on that port (checked per batch and per output port, as
the admin state). The bridge's actions are applied here: a port's state (``Port.forwarding``),
an FDB flush (a topology change), and BPDUs to send, which leave as FRAMES messages with the
messages of the call that made them (``handle``, ``tick``, ``stp_tick``, ``set_admin``,
``set_link``) and count ``bpdu_tx`` and tx_packets. A port is enabled for spanning tree while it
is administratively up and its link is up (``set_link``: a trunk's carrier).

Batching is the performance lever: one FRAMES message in produces at most one FRAMES message
per output port. Records are forwarded as they arrived (length prefix and frame, as zero-copy
views of the input), so nothing is re-encoded. A payload whose records do not parse counts one
``malformed`` and is dropped whole, as ``wire.unpack_frames`` would.

Counters (ports' and totals', see ``PORT_COUNTERS``): rx_packets/rx_bytes count frames accepted
from a port, tx_packets/tx_bytes frames ZeroMQ accepted for it; the totals' ``forwarded``
counts the copies forwarding made (one per output port per frame), each of which ends as a
tx_packets or an egress drop (hwm, unroutable, port_down, an impairment's). Drops are by
reason, in frames, except ``malformed`` (messages); each is also logged, rate-limited as the
kernel's ``net_ratelimit`` (vnet/ratelimit.py). ``hwm`` and ``unroutable`` are egress drops the server reports
through ``send_failed`` (output queue full; peer gone); lost control messages count
``ctrl_lost`` in the totals. ``port_down`` counts frames from and to a port that is
administratively down, ``port_security`` frames over a port's address limit. The server's
egress impairments (switch/impair.py) report what they dropped or added through
``tx_uncount``, so tx counts what was actually sent.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from vnet.proto import wire
from vnet.switch import stp as stp_mod
from vnet.switch.fdb import Fdb, FdbEntry, Learn
from vnet.switch.forward import count_records, forward_batch
from vnet.switch.vlan import PortVlan
from vnet.proto.wire import (
    BYE,
    HEARTBEAT,
    MSG_BYE,
    MSG_FRAMES,
    MSG_HEARTBEAT,
    MSG_HELLO,
    NOT_ATTACHED,
    WireError,
)
from vnet.proto.ether import ETH_HLEN, ETH_MIN_MTU, VLAN_HLEN, ZERO_MAC
from vnet.proto.ether import mac_str as format_mac
from vnet.proto.ratelimit import RateLimit

log = logging.getLogger(__name__)

ETH_MAX_MTU = wire.MAX_FRAME - ETH_HLEN - VLAN_HLEN  # the wire's 16-bit length bounds a frame
_REFUSED = Learn.REFUSED
VIOLATIONS = ("drop", "shutdown")
DEFAULT_MAX_PORTS = 4096
DEFAULT_HELLO_RATE = 1000.0  # HELLOs a second from new peers, in the long run
DEFAULT_HELLO_BURST = 1000  # ... and at once (a whole LAN starting together)
MAX_VLAN_CONFIGS = 65536  # port names with a VLAN configuration, attached or not
CLIP = 200  # characters of a peer's text echoed back or logged  # what port security does to a frame over the limit

Message = tuple[bytes, list[bytes]]

PORT_COUNTERS = (
    "rx_packets",
    "rx_bytes",
    "tx_packets",
    "tx_bytes",
    "flooded",  # frames from this port that were flooded
    "runt",
    "oversize",
    "bad_src",
    "malformed",  # messages: FRAMES payloads that do not parse, unknown kinds, bad shapes
    "same_port",
    "unroutable",  # frames for this port ZeroMQ could not route (peer gone)
    "hwm",  # frames for this port dropped because its output queue was full
    "port_down",  # frames from or to this port while it was administratively down
    "port_security",  # frames from a new source while this port held max_macs FDB entries
    "vlan_tagged",  # tagged frames from this access port (switch/vlan.py)
    "vlan_disallowed",  # frames from this trunk with a VID it does not carry
    "vlan_untagged",  # untagged frames from this trunk, which has no native VLAN
    "stp_discarding",  # frames from or to this port while spanning tree had it not forwarding
    "bpdu_rx",  # BPDUs received (consumed by the switch)
    "bpdu_tx",  # BPDUs sent
    "link_local",  # frames to 01:80:C2:00:00:01..0F (never forwarded), dropped
)
# the port counters that count traffic and BPDUs; every other one is a drop reason
PORT_TRAFFIC = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "flooded", "bpdu_rx", "bpdu_tx")
PORT_DROPS = tuple(c for c in PORT_COUNTERS if c not in PORT_TRAFFIC)
SWITCH_COUNTERS = PORT_COUNTERS + (
    "forwarded",  # copies the forwarding made (one per output port per frame), before egress drops
    "unknown_peer",  # frames from peers that are not attached (a restarted switch, a closing one)
    "not_attached",  # non-HELLO messages from peers that are not attached (answered NOT_ATTACHED)
    "refused",  # HELLOs answered with REFUSE
    "ctrl_lost",  # non-FRAMES messages ZeroMQ could not send
    "attached",
    "detached",
    "byes",  # ports removed by their BYE
    "timeouts",  # ports removed for silence
    "replaced",  # ports replaced by a HELLO with the same name (the old one silent: a restarted node)
    "name_in_use",  # HELLOs under the name of a live port from another peer, dropped unanswered
    "psec_shutdowns",  # ports set administratively down by a port security violation
    "hello_ratelimited",  # HELLOs from new peers over the HELLO rate, dropped unanswered
    "max_ports",  # HELLOs for a new port with max_ports attached, answered with REFUSE
)


class UnknownPort(KeyError):
    """A port name that is not attached (the caller's mistake)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown port"


class Counters:
    """A bag of integer counters named by ``names`` (slotted, so a typo raises)."""

    __slots__ = PORT_COUNTERS + SWITCH_COUNTERS[len(PORT_COUNTERS):] + ("_names",)

    def __init__(self, names: tuple[str, ...] = PORT_COUNTERS) -> None:
        self._names = names
        for name in names:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self._names}


class Port:
    """One attached node. ``peer`` is its ROUTER identity, ``port_id`` the switch's number."""

    __slots__ = ("port_id", "peer", "name", "macs", "mtu", "attached_at", "last_seen", "counters", "admin_up",
                 "vlan", "bridge", "trunk", "link_up", "forwarding", "stp_state")

    def __init__(self, port_id: int, peer: bytes, name: str, macs: list[bytes], mtu: int, now: float) -> None:
        self.port_id = port_id
        self.peer = peer
        self.name = name
        self.macs = macs
        self.mtu = mtu
        self.attached_at = now
        self.last_seen = now
        self.counters = Counters()
        self.admin_up = True
        self.vlan: PortVlan | None = None  # None: VLAN-transparent
        self.bridge = False  # the far end is a switch: spanning tree runs here
        self.trunk = False  # this switch's own trunk (attach_trunk): its link says when it is up
        self.link_up = True
        self.forwarding = True  # spanning tree lets data frames through
        self.stp_state = "forwarding"

    def __repr__(self) -> str:
        return f"Port({self.port_id}, {self.name!r})"


class Tick(NamedTuple):
    messages: list[Message]  # BYE to each timed-out port
    removed: list[Port]  # ports removed for silence
    aged: list[FdbEntry]  # FDB entries that aged out


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up (the kernel's token bucket, as in
    tc's tbf and iptables' ``limit`` match); ``take(now)`` spends one if there is one. Time
    is a parameter; ``rate`` 0 means no limit."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int) -> None:
        if not rate >= 0 or isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"a token bucket needs rate >= 0 and an integer burst >= 1, got {rate!r}, {burst!r}")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp: float | None = None

    def take(self, now: float) -> bool:
        if not self.rate:
            return True
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        if self.stamp is None or now > self.stamp:
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def clip(text: str, limit: int = CLIP) -> str:
    """``text`` from a peer, cut to about ``limit`` characters for a reply or a log line: its
    middle gives way to a count, so the sentence's start and its advice at the end stay."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}[...{len(text) - limit} characters...]{text[-tail:]}"


class SwitchCore:
    """The switch's state machine. ``fdb`` may be injected (tests, a different policy)."""

    def __init__(
        self,
        mtu: int = 1500,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 3.0,
        fdb: Fdb | None = None,
        max_macs: int = 0,
        violation: str = "drop",
        max_ports: int = DEFAULT_MAX_PORTS,
        hello_rate: float = DEFAULT_HELLO_RATE,
        hello_burst: int = DEFAULT_HELLO_BURST,
        vlans: dict[str, PortVlan] | None = None,
        name: str = "switch",
        stp: stp_mod.Bridge | None = None,
    ) -> None:
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not ETH_MIN_MTU <= mtu <= ETH_MAX_MTU:
            raise ValueError(f"mtu must be an integer from {ETH_MIN_MTU} to {ETH_MAX_MTU}, got {mtu!r}")
        _check_port_security(max_macs, violation)
        if isinstance(max_ports, bool) or not isinstance(max_ports, int) or max_ports < 1:
            raise ValueError(f"max_ports must be an integer >= 1, got {max_ports!r}")
        self.max_ports = max_ports
        self._hello_bucket = TokenBucket(hello_rate, hello_burst)  # admission of new peers
        self.max_macs = max_macs  # FDB entries a port may hold; 0 = unlimited
        self.violation = violation
        self.mtu = mtu
        self.max_frame = mtu + ETH_HLEN + VLAN_HLEN
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.fdb = fdb if fdb is not None else Fdb()
        self.totals = Counters(SWITCH_COUNTERS)
        self._by_peer: dict[bytes, Port] = {}
        self._by_name: dict[str, Port] = {}
        self.port_list: list[Port] = []  # attach order; the flood list
        self._next_id = 1
        self._admin_down: set[str] = set()  # names of ports set down (kept across re-attaching)
        self._vlans: dict[str, PortVlan] = {}  # VLAN configuration by port name (kept likewise)
        for port_name, cfg in (vlans or {}).items():
            if not isinstance(cfg, PortVlan):
                raise ValueError(f"vlans[{port_name!r}] must be a PortVlan, got {cfg!r}")
            self._vlans[port_name] = cfg
        self.vlan_ports = 0  # attached ports with a VLAN configuration: forward.py's VLAN path
        self.generation = 0  # changes whenever a port attaches or detaches
        self._offence_log = RateLimit()  # bad input is counted always, logged at most 10 per 5 s
        self.name = name
        self.stp = stp if stp is not None else stp_mod.Bridge(name)
        self._stp_out: list[Message] = []  # BPDUs the bridge asked for, sent with the next answer
        self._trunk_peers: set[bytes] = set()

    # -- input -------------------------------------------------------------------------

    def handle(self, peer: bytes, parts: list[bytes], now: float) -> list[Message]:
        """Process one message from ``peer``; return the messages to send. Never raises on
        bad input: it is counted instead."""
        port = self._by_peer.get(peer)
        kind = parts[0] if parts else b""
        if port is None:
            if kind == MSG_HELLO:
                return self._hello(peer, parts, now)
            return self.not_attached(peer, parts)
        port.last_seen = now
        n = len(parts)
        if kind == MSG_FRAMES and n == 2:
            out = forward_batch(self, port, parts[1], now)
            if self._stp_out:
                out += self._take_stp()
            return out
        if kind == MSG_HEARTBEAT and n == 1:
            return [(peer, HEARTBEAT)]
        if kind == MSG_HELLO:
            return self._hello(peer, parts, now)
        if kind == MSG_BYE and n == 1:
            self._detach(port, "byes")
            return self._take_stp()
        port.counters.malformed += 1
        self.totals.malformed += 1
        self.offence(port, now, malformed=1)
        return []

    def offence(self, port: Port, now: float, **dropped: int) -> None:
        """Log (rate-limited, as net_ratelimit) what a port's bad input cost; it is counted
        by the caller."""
        what = ", ".join(f"{k} {name}" for name, k in dropped.items() if k)
        self._offence_log.log(log, logging.WARNING, "port %d %r: dropped %s", port.port_id, port.name, what,
                              now=now)

    def not_attached(self, peer: bytes, parts: list[bytes]) -> list[Message]:
        """A message from a peer that is not attached: its frames count ``unknown_peer`` (by
        frame), the message ``not_attached``; the answer is NOT_ATTACHED, except to a BYE."""
        t = self.totals
        t.not_attached += 1
        kind = parts[0] if parts else b""
        if kind == MSG_FRAMES and len(parts) == 2:
            k, _ = count_records(parts[1])
            t.unknown_peer += k
        if kind == MSG_BYE:
            return []
        return [(peer, NOT_ATTACHED)]

    def _hello(self, peer: bytes, parts: list[bytes], now: float) -> list[Message]:
        old = self._by_peer.get(peer)
        if old is not None:
            self._detach(old, None)  # the node re-attaches: start it afresh
        elif not self._hello_bucket.take(now):
            # A new peer over the HELLO rate: no answer (its HELLO backoff retries), so a
            # storm of attaches costs this switch a counter each, not a parse and a reply.
            self.totals.hello_ratelimited += 1
            self._offence_log.log(log, logging.WARNING, "HELLO from a new peer over the rate of %g/s: dropped",
                                  self._hello_bucket.rate, now=now)
            return []
        try:
            hello = wire.Hello.decode(parts)
        except WireError as exc:
            return self._refuse(peer, "refused", clip(str(exc)), now)
        name, macs, mtu = hello.name, list(hello.macs), hello.mtu
        same_name = self._by_name.get(name)
        if same_name is None and old is None and len(self.port_list) >= self.max_ports:
            return self._refuse(peer, "max_ports",
                                f"this switch has its maximum of {self.max_ports} ports attached; "
                                f"start it with a larger --max-ports, or detach a node", now)
        if same_name is not None and same_name.peer != peer:
            silent = now - same_name.last_seen
            if silent < 2 * self.heartbeat_interval:
                # A live port keeps its name (and its MACs): another peer's HELLO under it is
                # not answered, so a second node of the same name cannot take the port over;
                # if the old node died, its port goes silent and a later HELLO replaces it.
                self.totals.name_in_use += 1
                self._offence_log.log(log, logging.WARNING, "HELLO for %r from another peer while port %d "
                                      "under that name is alive (heard %.1f s ago): dropped",
                                      clip(name), same_name.port_id, silent, now=now)
                return []
            log.info("port %d %r replaced by a new HELLO with the same name (silent for %.1f s)",
                     same_name.port_id, name, silent)
            self._detach(same_name, "replaced")
        port = Port(self._next_id, peer, name, macs, mtu, now)
        port.admin_up = name not in self._admin_down
        port.vlan = self._vlans.get(name)
        if port.vlan is not None:
            self.vlan_ports += 1
        port.trunk = peer in self._trunk_peers
        port.bridge = hello.bridge or port.trunk
        port.link_up = not port.trunk  # a trunk's link comes up with its carrier (set_link)
        self._next_id += 1
        self.generation += 1
        self._by_peer[peer] = port
        self._by_name[name] = port
        self.port_list.append(port)
        self.totals.attached += 1
        # The node declares its addresses: learn the usable ones so the first frames to it
        # need not flood. They age like any learned entry, and count toward max_macs.
        refused = self._learn_declared(port, now)
        if refused:
            log.warning("port %d %r declared %d macs over its port security limit of %d: not learned",
                        port.port_id, name, refused, self.max_macs)
        log.info("port %d %r attached (mtu %d, %d macs%s)", port.port_id, name, mtu, len(macs),
                 ", a switch: spanning tree" if port.bridge else "")
        self._stp(self.stp.add_port(name, port.port_id, now, edge=not port.bridge,
                                    enabled=port.admin_up and port.link_up))
        welcome = wire.Welcome(port.port_id, self.heartbeat_interval, self.heartbeat_timeout, self.mtu,
                               carrier=port.admin_up).encode()
        if not port.admin_up:
            log.info("port %d %r is administratively down: carrier off", port.port_id, name)
            return [(peer, welcome), (peer, wire.Carrier(False).encode()), *self._take_stp()]
        return [(peer, welcome), *self._take_stp()]

    def _learn_declared(self, port: Port, now: float) -> int:
        """Learn the usable MACs ``port``'s HELLO declared, in the VLAN its untagged frames
        join (none on a trunk without a native VLAN); return how many port security refused."""
        vlan = 0 if port.vlan is None else port.vlan.pvid
        refused = 0
        if vlan is None:
            return refused
        for mac in port.macs:
            if not mac[0] & 1 and mac != ZERO_MAC:
                if self.fdb.learn(mac, vlan, port, now, self.max_macs) is _REFUSED:
                    refused += 1
        return refused

    def _refuse(self, peer: bytes, counter: str, reason: str, now: float) -> list[Message]:
        t = self.totals
        t.refused += 1
        if counter != "refused":
            setattr(t, counter, getattr(t, counter) + 1)
        self._offence_log.log(log, logging.WARNING, "refused a node: %s", reason, now=now)
        return [(peer, wire.refuse(reason))]

    def forward(self, port: Port, payload: bytes, now: float) -> list[Message]:
        """Forward a FRAMES payload as if ``port`` had just sent it (the server's delayed
        ingress frames); unlike ``handle`` it is not news of the node being alive."""
        return forward_batch(self, port, payload, now)

    # -- output feedback ---------------------------------------------------------------

    def send_failed(self, peer: bytes, parts: list[bytes], reason: str) -> None:
        """The server could not send ``parts`` to ``peer``: ``reason`` is "hwm" (its output
        queue is full) or "unroutable" (ZeroMQ no longer knows the peer)."""
        if reason not in ("hwm", "unroutable"):
            raise ValueError(f'send_failed reason must be "hwm" or "unroutable", got {reason!r}')
        t = self.totals
        if len(parts) != 2 or parts[0] != MSG_FRAMES:
            t.ctrl_lost += 1
            return
        k, nbytes = count_records(parts[1])
        port = self._by_peer.get(peer)
        if port is not None:
            c = port.counters
            c.tx_packets -= k
            c.tx_bytes -= nbytes
            setattr(c, reason, getattr(c, reason) + k)
        t.tx_packets -= k
        t.tx_bytes -= nbytes
        setattr(t, reason, getattr(t, reason) + k)

    def tx_uncount(self, port: Port, k: int, nbytes: int, reason: str | None = None) -> None:
        """``k`` frames (``nbytes``) counted as sent to ``port`` did not go after all (an
        egress impairment dropped them; negative for copies it added); counted under
        ``reason`` ("port_down") when given. The impairment counts its own drops."""
        c = port.counters
        t = self.totals
        c.tx_packets -= k
        c.tx_bytes -= nbytes
        t.tx_packets -= k
        t.tx_bytes -= nbytes
        if reason is not None:
            setattr(c, reason, getattr(c, reason) + k)
            setattr(t, reason, getattr(t, reason) + k)

    # -- admin state ---------------------------------------------------------------------

    def set_admin(self, name: str, up: bool, now: float | None = None) -> tuple[dict, list[Message]]:
        """Set port ``name`` administratively up or down (a cable cut); return its state and
        the CARRIER message for its node (and the BPDUs spanning tree sends as the port is
        disabled or enabled, at ``now``, default the port's last news). UnknownPort unless
        attached or already down."""
        port = self._by_name.get(name)
        if port is None and name not in self._admin_down:
            self.port_by_name(name)  # raises, naming the attached ports
        if up:
            self._admin_down.discard(name)
        else:
            self._admin_down.add(name)
        out: list[Message] = []
        if port is not None and port.admin_up != up:
            port.admin_up = up
            log.info("port %d %r administratively %s", port.port_id, name, "up" if up else "down")
            out.append((port.peer, wire.Carrier(up).encode()))
            self._stp(self.stp.set_enabled(name, up and port.link_up, port.last_seen if now is None else now))
            out += self._take_stp()
        return {"name": name, "admin": "up" if up else "down", "attached": port is not None}, out

    # -- VLANs ---------------------------------------------------------------------------

    def set_vlan(self, name: str, cfg: PortVlan | None, now: float) -> dict:
        """Give port ``name`` a VLAN configuration (None: VLAN-transparent again), attached or
        not; a change flushes the port's FDB entries. Return its ``vlan_show`` row (mode None
        when cleared) with ``attached`` and ``flushed``."""
        if cfg is not None and not isinstance(cfg, PortVlan):
            raise ValueError(f"a port's VLAN configuration must be a PortVlan or None, got {cfg!r}")
        old = self._vlans.get(name)
        if cfg is not None and old is None and len(self._vlans) >= MAX_VLAN_CONFIGS:
            raise ValueError(f"{MAX_VLAN_CONFIGS} ports already have a VLAN configuration: clear some first "
                             f"(vlan_clear) before configuring {clip(repr(name), 60)}")
        if cfg is None:
            self._vlans.pop(name, None)
        else:
            self._vlans[name] = cfg
        port = self._by_name.get(name)
        flushed = 0
        if port is not None and old != cfg:
            self.vlan_ports += (cfg is not None) - (port.vlan is not None)
            port.vlan = cfg
            flushed = self.fdb.flush(port)
            self._learn_declared(port, now)
            log.info("port %d %r: vlan %s", port.port_id, name, "transparent" if cfg is None else cfg.describe())
        row = cfg.view(name) if cfg is not None else {"port": name, "mode": None}
        row["attached"] = port is not None
        row["flushed"] = flushed
        return row

    def vlan_view(self) -> list[dict]:
        """Every configured port, attached or not, by name."""
        return [{**cfg.view(name), "attached": name in self._by_name} for name, cfg in sorted(self._vlans.items())]

    # -- port security -------------------------------------------------------------------

    def set_port_security(self, max_macs: int | None = None, violation: str | None = None) -> dict:
        """Change the per-port address limit (0 = unlimited) and/or what a violation does
        ("drop" or "shutdown"); None keeps a setting. Return the settings now in force."""
        new_max = self.max_macs if max_macs is None else max_macs
        new_violation = self.violation if violation is None else violation
        _check_port_security(new_max, new_violation)  # both checked before either changes
        self.max_macs = new_max
        self.violation = new_violation
        return self.port_security()

    def port_security(self) -> dict:
        return {"max_macs": self.max_macs, "violation": self.violation}

    def psec_shutdown(self, port: Port, rest: int) -> list[Message]:
        """A violation on ``port`` with violation "shutdown": down it as set_admin does; the
        ``rest`` frames of the batch after the violating one count ``port_down``."""
        c = port.counters
        t = self.totals
        c.port_down += rest
        t.port_down += rest
        t.psec_shutdowns += 1
        log.warning("port %d %r shut down by port security: a new source over its limit of %d macs",
                    port.port_id, port.name, self.max_macs)
        return self.set_admin(port.name, False)[1]

    # -- time --------------------------------------------------------------------------

    def tick(self, now: float) -> Tick:
        """Remove ports silent for ``heartbeat_timeout`` (BYE to each) and age the FDB."""
        timeout = self.heartbeat_timeout
        dead = [p for p in self.port_list if now - p.last_seen > timeout and not p.trunk]
        for port in dead:
            log.info("port %d %r timed out after %.3g s of silence", port.port_id, port.name, now - port.last_seen)
            self._detach(port, "timeouts")
        aged = self.fdb.expire(now)
        return Tick([(p.peer, BYE) for p in dead] + self._take_stp(), dead, aged)

    # -- spanning tree -----------------------------------------------------------------------

    def stp_deadline(self) -> float | None:
        """When ``stp_tick`` next has work (the bridge's timers)."""
        return self.stp.next_deadline()

    def stp_tick(self, now: float) -> list[Message]:
        """Run the bridge's timers; return the BPDUs to send."""
        self._stp(self.stp.tick(now))
        return self._take_stp()

    def attach_trunk(self, peer: bytes, name: str, now: float) -> list[Message]:
        """Attach this switch's own end of a trunk as port ``name`` under the pseudo peer id
        ``peer`` (the server routes that id's messages to the trunk's socket). The port is a
        bridge port whose link is down until ``set_link(name, True)``; it never times out."""
        self._trunk_peers.add(peer)
        return self._hello(peer, wire.Hello(name, (), self.mtu, bridge=True).encode(), now)

    def set_link(self, name: str, up: bool, now: float) -> list[Message]:
        """A trunk's link (its carrier) went up or down: spanning tree enables or disables
        the port. Return the BPDUs to send."""
        port = self._by_name.get(name)
        if port is None or port.link_up == up:
            return []
        port.link_up = up
        port.last_seen = now
        self._stp(self.stp.set_enabled(name, up and port.admin_up, now))
        return self._take_stp()

    def link_local(self, port: Port, frame: memoryview, now: float) -> None:
        """A frame to 01:80:C2:00:00:00..0F from ``port``: never forwarded. A BPDU goes to
        the bridge (which ignores one from an edge port), anything else counts ``link_local``."""
        c = port.counters
        t = self.totals
        if frame[5] == 0:
            c.bpdu_rx += 1
            t.bpdu_rx += 1
            self._stp(self.stp.receive(port.name, frame, now))
        else:
            c.link_local += 1
            t.link_local += 1

    def _stp(self, actions: list) -> None:
        """Apply the bridge's actions: port states and flushes now, BPDUs queued."""
        by_name = self._by_name
        for act in actions:
            port = by_name.get(act.port)
            if port is None:
                continue
            kind = type(act)
            if kind is stp_mod.PortState:
                if port.stp_state != act.state.value:
                    log.info("port %d %r: spanning tree %s", port.port_id, port.name, act.state.value)
                port.forwarding = act.forwarding
                port.stp_state = act.state.value
            elif kind is stp_mod.Flush:
                self.fdb.flush(port)
            elif kind is stp_mod.SendBpdu:
                c = port.counters
                t = self.totals
                n = len(act.frame)
                c.bpdu_tx += 1
                t.bpdu_tx += 1
                c.tx_packets += 1
                t.tx_packets += 1
                c.tx_bytes += n
                t.tx_bytes += n
                self._stp_out.append((port.peer, [MSG_FRAMES, wire.pack_frames((act.frame,))]))

    def _take_stp(self) -> list[Message]:
        out, self._stp_out = self._stp_out, []
        return out

    def stp_show(self, now: float) -> dict:
        """The bridge and its ports (``stp_show``); the switch's name with them."""
        view = self.stp.show(now)
        view["name"] = self.name
        return view

    def shutdown(self) -> list[Message]:
        """Detach every port; return the BYE for each."""
        out = [(p.peer, BYE) for p in self.port_list]
        for port in list(self.port_list):
            self._detach(port, None)
        self._stp_out = []  # nobody is left to hear them
        return out

    def _detach(self, port: Port, reason: str | None) -> None:
        if port.vlan is not None:
            self.vlan_ports -= 1
        del self._by_peer[port.peer]
        del self._by_name[port.name]
        self.port_list.remove(port)
        self.fdb.flush(port)
        self._stp(self.stp.remove_port(port.name, port.last_seen))
        self.generation += 1
        t = self.totals
        t.detached += 1
        if reason is not None:
            setattr(t, reason, getattr(t, reason) + 1)
            if reason == "byes":
                log.info("port %d %r said BYE", port.port_id, port.name)

    # -- views (the control endpoint's answers) ------------------------------------------

    @property
    def ports(self) -> list[Port]:
        return list(self.port_list)

    def port_by_name(self, name: str) -> Port:
        port = self._by_name.get(name)
        if port is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownPort(f"no port named {clip(repr(name), 60)}; attached: {clip(known)}")
        return port

    def find_port(self, name: str) -> Port | None:
        return self._by_name.get(name)

    def port_by_peer(self, peer: bytes) -> Port | None:
        return self._by_peer.get(peer)

    def fdb_view(self, now: float) -> list[dict]:
        return [
            {
                "mac": format_mac(e.mac),
                "vlan": e.vlan,
                "port": e.port.name,
                "port_id": e.port.port_id,
                "age": round(now - e.updated, 3),
                "static": False,
            }
            for e in self.fdb.entries(now)
        ]

    def ports_view(self, now: float) -> list[dict]:
        return [
            {
                "port_id": p.port_id,
                "name": p.name,
                "admin": "up" if p.admin_up else "down",
                "vlan": None if p.vlan is None else p.vlan.view(p.name),
                "macs": [format_mac(m) for m in p.macs],
                "mtu": p.mtu,
                "attached_for": round(now - p.attached_at, 3),
                "last_seen_ago": round(now - p.last_seen, 3),
                "fdb_entries": self.fdb.port_count(p),
                "stp_state": p.stp_state,
                "bridge": p.bridge,
                "trunk": p.trunk,
                "link": "up" if p.link_up else "down",
                "counters": p.counters.as_dict(),
            }
            for p in self.port_list
        ]

    def stats(self) -> dict:
        return {
            "name": self.name,
            "ports": len(self.port_list),
            "stp_states": {p.name: p.stp_state for p in self.port_list},
            "stp": self.stp.counters(),
            "totals": self.totals.as_dict(),
            "per_port": {p.name: p.counters.as_dict() for p in self.port_list},
            "fdb": self.fdb.counters(),
            "port_security": self.port_security(),
        }

    def flush(self, name: str | None = None) -> int:
        """Flush the FDB, or one port's entries (KeyError naming the ports if unknown)."""
        if name is None:
            return self.fdb.flush()
        return self.fdb.flush(self.port_by_name(name))


def _check_port_security(max_macs: int, violation: str) -> None:
    if isinstance(max_macs, bool) or not isinstance(max_macs, int) or max_macs < 0:
        raise ValueError(f"max_macs must be an integer >= 0 (0 = unlimited), got {max_macs!r}")
    if violation not in VIOLATIONS:
        raise ValueError(f'violation must be "drop" or "shutdown", got {violation!r}')

