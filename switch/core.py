"""The sans-I/O learning switch: ports, forwarding, liveness and counters.

Data goes in as decoded ZeroMQ messages, messages to send come out; nothing here touches a
socket or a clock (Faucet's valve style). The server feeds it::

    out = core.handle(peer_id, parts, now)      # parts = [kind, payload?] after the identity
    for peer_id, parts in out: send [peer_id, *parts] without blocking
    core.send_failed(peer_id, parts, "hwm")     # when ZeroMQ refused one of them

    tick = core.tick(now)                        # every heartbeat_interval / 2 or so
    -> tick.messages (BYE to timed-out ports), tick.removed (ports), tick.aged (FDB entries)

Ports. A node attaches with HELLO and gets WELCOME (or REFUSE with a sentence: wrong protocol
version, bad map). A port is identified by its peer id (the ROUTER identity) and has a unique
name: a HELLO with a name already attached replaces the old port (a node restarted before its
old port timed out), and a HELLO from an attached peer re-attaches it. The HELLO's unicast
MACs are learned on vlan 0 at once (they then age like any entry); its mtu is recorded for
``ports`` while the switch enforces its own. Any message refreshes
the port; one silent for ``heartbeat_timeout`` is removed by ``tick`` and sent BYE; a BYE from
the node removes its port at once. Removing a port flushes its FDB entries. A message from an
unknown peer that is not HELLO is answered NOT_ATTACHED (so the node re-sends HELLO), except
BYE, which needs no answer; each counts ``not_attached``, and the frames of a FRAMES message
count ``unknown_peer`` (so frames sent to a switch that restarted and forgot the node, or to
one that is closing, are accounted for by frame).

Forwarding (per frame of a FRAMES batch). Drops are counted on the ingress port and in the
totals: ``runt`` (< 14 bytes, or < 18 with an 802.1Q tag), ``oversize`` (> mtu + 18, the
Ethernet header plus one VLAN tag), ``bad_src`` (multicast or all-zero source). Then the source
is learned on (vlan, src) and the destination decides: multicast/broadcast and unknown unicast
are flooded to every other port (``flooded``); known unicast goes to its port only, or is
dropped as ``same_port`` when that is the ingress port. Nothing is ever sent back out of the
ingress port. VLAN: an untagged frame is vlan 0, a tagged one (TPID 0x8100) uses its VID for
learning and lookup; every port is a trunk carrying every VLAN, so a flood goes to all ports.

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
from collections import defaultdict
from typing import NamedTuple

from vnet.proto import wire
from vnet.switch.fdb import Fdb, FdbEntry, Learn
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
_FLOOD = object()  # a run's destination: every port but the ingress one
# batches this big or bigger may take the one-flow fast path (SwitchCore._uniform_frames)
_UNIFORM_MIN_FRAMES = 8
_UNIFORM_MIN_BYTES = _UNIFORM_MIN_FRAMES * (ETH_HLEN + 2)
# what the switch did with a frame, cached per header in SwitchCore._frames
_FWD, _FLOODED, _SAME_PORT, _BAD_SRC, _PSEC = (object() for _ in range(5))
_REFUSED = Learn.REFUSED
VIOLATIONS = ("drop", "shutdown")  # what port security does to a frame over the limit

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
)
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
    "replaced",  # ports replaced by a HELLO with the same name
    "psec_shutdowns",  # ports set administratively down by a port security violation
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

    __slots__ = ("port_id", "peer", "name", "macs", "mtu", "attached_at", "last_seen", "counters", "admin_up")

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

    def __repr__(self) -> str:
        return f"Port({self.port_id}, {self.name!r})"


class Tick(NamedTuple):
    messages: list[Message]  # BYE to each timed-out port
    removed: list[Port]  # ports removed for silence
    aged: list[FdbEntry]  # FDB entries that aged out


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
    ) -> None:
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not ETH_MIN_MTU <= mtu <= ETH_MAX_MTU:
            raise ValueError(f"mtu must be an integer from {ETH_MIN_MTU} to {ETH_MAX_MTU}, got {mtu!r}")
        _check_port_security(max_macs, violation)
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
        self._ports: list[Port] = []  # attach order; the flood list
        self._next_id = 1
        self._admin_down: set[str] = set()  # names of ports set down (kept across re-attaching)
        self.generation = 0  # changes whenever a port attaches or detaches
        self._offence_log = RateLimit()  # bad input is counted always, logged at most 10 per 5 s

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
            return self._frames(port, parts[1], now)
        if kind == MSG_HEARTBEAT and n == 1:
            return [(peer, HEARTBEAT)]
        if kind == MSG_HELLO:
            return self._hello(peer, parts, now)
        if kind == MSG_BYE and n == 1:
            self._detach(port, "byes")
            return []
        port.counters.malformed += 1
        self.totals.malformed += 1
        self._offence(port, now, malformed=1)
        return []

    def _offence(self, port: Port, now: float, **dropped: int) -> None:
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
            k, _ = _count_records(parts[1])
            t.unknown_peer += k
        if kind == MSG_BYE:
            return []
        return [(peer, NOT_ATTACHED)]

    def _hello(self, peer: bytes, parts: list[bytes], now: float) -> list[Message]:
        old = self._by_peer.get(peer)
        if old is not None:
            self._detach(old, None)  # the node re-attaches: start it afresh
        try:
            hello = wire.Hello.decode(parts)
        except WireError as exc:
            self.totals.refused += 1
            self._offence_log.log(log, logging.WARNING, "refused a node: %s", exc, now=now)
            return [(peer, wire.Refuse(str(exc)).encode())]
        name, macs, mtu = hello.name, list(hello.macs), hello.mtu
        same_name = self._by_name.get(name)
        if same_name is not None:
            log.info("port %d %r replaced by a new HELLO with the same name", same_name.port_id, name)
            self._detach(same_name, "replaced")
        port = Port(self._next_id, peer, name, macs, mtu, now)
        port.admin_up = name not in self._admin_down
        self._next_id += 1
        self.generation += 1
        self._by_peer[peer] = port
        self._by_name[name] = port
        self._ports.append(port)
        self.totals.attached += 1
        # The node declares its addresses: learn the usable ones so the first frames to it
        # need not flood. They age like any learned entry, and count toward max_macs.
        refused = 0
        for mac in macs:
            if not mac[0] & 1 and mac != ZERO_MAC:
                if self.fdb.learn(mac, 0, port, now, self.max_macs) is _REFUSED:
                    refused += 1
        if refused:
            log.warning("port %d %r declared %d macs over its port security limit of %d: not learned",
                        port.port_id, name, refused, self.max_macs)
        log.info("port %d %r attached (mtu %d, %d macs)", port.port_id, name, mtu, len(macs))
        welcome = wire.Welcome(port.port_id, self.heartbeat_interval, self.heartbeat_timeout, self.mtu,
                               carrier=port.admin_up).encode()
        if not port.admin_up:
            log.info("port %d %r is administratively down: carrier off", port.port_id, name)
            return [(peer, welcome), (peer, wire.Carrier(False).encode())]
        return [(peer, welcome)]

    def forward(self, port: Port, payload: bytes, now: float) -> list[Message]:
        """Forward a FRAMES payload as if ``port`` had just sent it (the server's delayed
        ingress frames); unlike ``handle`` it is not news of the node being alive."""
        return self._frames(port, payload, now)

    def _frames(self, port: Port, payload: bytes, now: float) -> list[Message]:
        if type(payload) is not bytes:
            payload = bytes(payload)
        if not port.admin_up:
            k, _ = _count_records(payload)
            port.counters.port_down += k
            self.totals.port_down += k
            return []
        end = len(payload)
        if end >= _UNIFORM_MIN_BYTES:
            out = self._uniform_frames(port, payload, end, now)
            if out is not None:
                return out
        # Pass 1: record boundaries. A bad length makes everything after it untrustworthy,
        # and possibly some records before it, so the whole batch goes.
        bounds = [0]
        append_bound = bounds.append
        off = 0
        while off < end:
            if off + 2 > end:
                off = -1
                break
            off += 2 + (payload[off] << 8 | payload[off + 1])
            if off > end:
                off = -1
                break
            append_bound(off)
        if off < 0:
            port.counters.malformed += 1
            self.totals.malformed += 1
            self._offence(port, now, malformed=1)
            return []

        # Pass 2: forward. Per frame: slices, a byte test, dict lookups; counters in locals.
        # A frame's fate depends only on its 14-byte header (addresses, type) as long as no
        # learn happens in between, so decisions are cached per header for the batch and the
        # cache is dropped at every learn. Consecutive records with the same destination form
        # a run, forwarded as one slice of the payload; a batch that is one run for one port
        # is forwarded as it came. A port security violation is cached like any decision: the
        # port cannot shrink below its limit during the batch, so the frame's fate holds until
        # the next learn. A shutdown ends the batch at the violating frame (``stop``).
        fdb = self.fdb
        learn = fdb.learn
        lookup = fdb.lookup
        max_frame = self.max_frame
        max_macs = self.max_macs
        shutdown = self.violation == "shutdown"
        stop = end
        view = memoryview(payload)
        outs: dict = {}  # port -> [frames, piece, piece, ...] in batch order
        others = None  # the flood list, made on first use
        decisions: dict = {}  # header -> (kind, destination) since the last learn
        run_dest = None
        run_start = run_k = 0
        rx_packets = rx_bytes = flooded = runt = oversize = bad_src = same_port = psec = 0
        last_src = None
        src_vlan = -1
        last_hdr = None
        last_kind = _FWD
        last_dest = None
        start = 0
        for nxt in bounds[1:]:
            s = start + 2
            rec_start = start
            start = nxt
            n = nxt - s
            if n < ETH_HLEN:
                runt += 1
                dest = None
            elif n > max_frame:
                oversize += 1
                dest = None
            else:
                hdr = payload[s : s + 14]
                if hdr == last_hdr:
                    kind = last_kind
                    dest = last_dest
                else:
                    d = decisions.get(hdr)
                    if d is not None:
                        kind, dest = d
                        last_hdr = hdr
                        last_kind = kind
                        last_dest = dest
                    else:
                        kind = None
                        tagged = hdr[12] == 0x81 and hdr[13] == 0x00
                        src = hdr[6:12]
                        if src[0] & 1 or src == ZERO_MAC:
                            kind = _BAD_SRC
                            dest = None
                        else:
                            if tagged:
                                if n < ETH_HLEN + VLAN_HLEN:
                                    vlan = -1
                                else:
                                    vlan = (payload[s + 14] & 0x0F) << 8 | payload[s + 15]
                            else:
                                vlan = 0
                            if vlan >= 0:
                                if src != last_src or vlan != src_vlan:
                                    if learn(src, vlan, port, now, max_macs) is _REFUSED:
                                        kind = _PSEC  # over the port's limit: not learned
                                        dest = None
                                    else:
                                        last_src = src
                                        src_vlan = vlan
                                        decisions.clear()  # a learn may have moved a destination
                                if kind is None:
                                    dst = hdr[:6]
                                    dst_port = None if dst[0] & 1 else lookup(dst, vlan, now)
                                    if dst_port is None:
                                        kind = _FLOODED
                                        dest = _FLOOD
                                    elif dst_port is port:
                                        kind = _SAME_PORT
                                        dest = None
                                    else:
                                        kind = _FWD
                                        dest = dst_port
                        if kind is None:  # a tagged runt
                            runt += 1
                            dest = None
                            last_hdr = None
                        elif not tagged or kind is _BAD_SRC:
                            decisions[hdr] = (kind, dest)
                            last_hdr = hdr
                            last_kind = kind
                            last_dest = dest
                        else:
                            last_hdr = None  # tagged: the VID lies past the 14 bytes compared
                if kind is _FWD:
                    rx_packets += 1
                    rx_bytes += n
                elif kind is _FLOODED:
                    rx_packets += 1
                    rx_bytes += n
                    flooded += 1
                elif kind is _SAME_PORT:
                    rx_packets += 1
                    rx_bytes += n
                    same_port += 1
                elif kind is _BAD_SRC:
                    bad_src += 1
                elif kind is _PSEC:
                    psec += 1
                    if shutdown:
                        stop = rec_start  # the port goes down here: the rest count port_down
                        break
            if dest is not run_dest:
                if run_dest is not None:
                    # close the run: its records go out as one slice, in batch order
                    piece = view[run_start:rec_start]
                    if run_dest is _FLOOD:
                        if others is None:
                            others = [p for p in self._ports if p is not port]
                        for p in others:
                            q = outs.get(p)
                            if q is None:
                                outs[p] = [run_k, piece]
                            else:
                                q[0] += run_k
                                q.append(piece)
                    else:
                        q = outs.get(run_dest)
                        if q is None:
                            outs[run_dest] = [run_k, piece]
                        else:
                            q[0] += run_k
                            q.append(piece)
                run_dest = dest
                run_start = rec_start
                run_k = 0
            run_k += 1
        if run_dest is not None:
            if run_start == 0 and run_dest is not _FLOOD and not outs and stop == end:
                outs[run_dest] = [run_k, payload]  # the whole batch for one port, as it came
            else:
                piece = view[run_start:stop]
                if run_dest is _FLOOD:
                    if others is None:
                        others = [p for p in self._ports if p is not port]
                    targets = others
                else:
                    targets = (run_dest,)
                for p in targets:
                    q = outs.get(p)
                    if q is None:
                        outs[p] = [run_k, piece]
                    else:
                        q[0] += run_k
                        q.append(piece)

        c = port.counters
        t = self.totals
        c.rx_packets += rx_packets
        t.rx_packets += rx_packets
        c.rx_bytes += rx_bytes
        t.rx_bytes += rx_bytes
        if flooded:
            c.flooded += flooded
            t.flooded += flooded
        if runt or oversize or bad_src or psec:
            self._offence(port, now, runt=runt, oversize=oversize, bad_src=bad_src, port_security=psec)
        if runt or oversize or bad_src or same_port:
            c.runt += runt
            t.runt += runt
            c.oversize += oversize
            t.oversize += oversize
            c.bad_src += bad_src
            t.bad_src += bad_src
            c.same_port += same_port
            t.same_port += same_port
        if psec:
            c.port_security += psec
            t.port_security += psec
        out: list[Message] = []
        for p, q in outs.items():
            k = q[0]
            t.forwarded += k
            if not p.admin_up:
                p.counters.port_down += k
                t.port_down += k
                continue
            data = q[1] if len(q) == 2 and type(q[1]) is bytes else b"".join(q[1:])
            nbytes = len(data) - 2 * k
            oc = p.counters
            oc.tx_packets += k
            t.tx_packets += k
            oc.tx_bytes += nbytes
            t.tx_bytes += nbytes
            out.append((p.peer, [MSG_FRAMES, data]))
        if stop != end:
            out += self._psec_shutdown(port, len(bounds) - 2 - bounds.index(stop))
        return out

    def _uniform_frames(self, port: Port, payload: bytes, end: int, now: float) -> list[Message] | None:
        """The one-flow fast path: when every record of the batch has the same length and
        the same untagged 14-byte header (addresses and type), the per-frame decision is the
        same for all of them, so it is made once and the payload is forwarded as it came.

        The checks run in C: an extended slice takes the same byte of every record, and
        comparing it with that byte repeated proves the field equal in all of them. None
        means "not such a batch": the general path decides frame by frame.
        """
        hi = payload[0]
        lo = payload[1]
        n = hi << 8 | lo
        step = n + 2
        k, rest = divmod(end, step)
        if rest or k < _UNIFORM_MIN_FRAMES or n < ETH_HLEN or n > self.max_frame:
            return None
        if payload[14] == 0x81 and payload[15] == 0x00:
            return None  # tagged (type at 14: after the record's 2-byte length): VID not compared
        if payload[0::step] != bytes((hi,)) * k or payload[1::step] != bytes((lo,)) * k:
            return None
        for j in range(2, 16):
            if payload[j::step] != bytes((payload[j],)) * k:
                return None
        c = port.counters
        t = self.totals
        src = payload[8:14]
        if src[0] & 1 or src == ZERO_MAC:
            c.bad_src += k
            t.bad_src += k
            self._offence(port, now, bad_src=k)
            return []
        if self.fdb.learn(src, 0, port, now, self.max_macs) is _REFUSED:
            self._offence(port, now, port_security=k)
            # one source for all k frames: all are over the limit, or with a shutdown the
            # first is and the rest arrive on a port that is down
            if self.violation == "shutdown":
                c.port_security += 1
                t.port_security += 1
                return self._psec_shutdown(port, k - 1)
            c.port_security += k
            t.port_security += k
            return []
        c.rx_packets += k
        t.rx_packets += k
        nbytes = k * n
        c.rx_bytes += nbytes
        t.rx_bytes += nbytes
        dst = payload[2:8]
        dst_port = None if dst[0] & 1 else self.fdb.lookup(dst, 0, now)
        if dst_port is None:
            c.flooded += k
            t.flooded += k
            targets = [p for p in self._ports if p is not port]
        elif dst_port is port:
            c.same_port += k
            t.same_port += k
            return []
        else:
            targets = [dst_port]
        out: list[Message] = []
        t.forwarded += k * len(targets)
        for p in targets:
            oc = p.counters
            if not p.admin_up:
                oc.port_down += k
                t.port_down += k
                continue
            oc.tx_packets += k
            t.tx_packets += k
            oc.tx_bytes += nbytes
            t.tx_bytes += nbytes
            out.append((p.peer, [MSG_FRAMES, payload]))
        return out

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
        k, nbytes = _count_records(parts[1])
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

    def set_admin(self, name: str, up: bool) -> tuple[dict, list[Message]]:
        """Set port ``name`` administratively up or down (a cable cut); return its state and
        the CARRIER message for its node. UnknownPort unless attached or already down."""
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
        return {"name": name, "admin": "up" if up else "down", "attached": port is not None}, out

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

    def _psec_shutdown(self, port: Port, rest: int) -> list[Message]:
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
        dead = [p for p in self._ports if now - p.last_seen > timeout]
        for port in dead:
            log.info("port %d %r timed out after %.3g s of silence", port.port_id, port.name, now - port.last_seen)
            self._detach(port, "timeouts")
        aged = self.fdb.expire(now)
        return Tick([(p.peer, BYE) for p in dead], dead, aged)

    def shutdown(self) -> list[Message]:
        """Detach every port; return the BYE for each."""
        out = [(p.peer, BYE) for p in self._ports]
        for port in list(self._ports):
            self._detach(port, None)
        return out

    def _detach(self, port: Port, reason: str | None) -> None:
        del self._by_peer[port.peer]
        del self._by_name[port.name]
        self._ports.remove(port)
        self.fdb.flush(port)
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
        return list(self._ports)

    def port_by_name(self, name: str) -> Port:
        port = self._by_name.get(name)
        if port is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownPort(f"no port named {name!r}; attached: {known}")
        return port

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
                "macs": [format_mac(m) for m in p.macs],
                "mtu": p.mtu,
                "attached_for": round(now - p.attached_at, 3),
                "last_seen_ago": round(now - p.last_seen, 3),
                "fdb_entries": self.fdb.port_count(p),
                "counters": p.counters.as_dict(),
            }
            for p in self._ports
        ]

    def stats(self) -> dict:
        return {
            "ports": len(self._ports),
            "totals": self.totals.as_dict(),
            "per_port": {p.name: p.counters.as_dict() for p in self._ports},
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


def _count_records(payload: bytes) -> tuple[int, int]:
    """(frames, frame bytes) of a FRAMES payload this switch built."""
    k = nbytes = off = 0
    end = len(payload)
    while off + 2 <= end:
        n = payload[off] << 8 | payload[off + 1]
        off += 2 + n
        k += 1
        nbytes += n
    return k, nbytes
