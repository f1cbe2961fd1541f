"""Forwarding a FRAMES batch: the bridge's per-frame path (sans-I/O, no clock).

This is the kernel bridge's ``br_handle_frame_finish`` with ``br_fdb_update`` (learn the
source), ``br_fdb_find`` (look up the destination), ``br_forward`` and ``br_flood``, run over a
whole batch at once. ``forward_batch(sw, port, payload, now)`` takes the switch core's state
(FDB, ports, counters, port security settings: ``switch/core.py`` owns them and the ports'
lifecycle) and returns the messages to send, at most one FRAMES message per output port.
The rules (drops and their reasons, VLANs, port security) are in core.py's docstring; how the
loop is made fast is here:

- pass 1 finds the record boundaries, so a bad length drops the batch whole (``malformed``);
- pass 2 decides each frame from its 14-byte header, caching the decision per header until
  the next learn; consecutive frames with one destination form a run, forwarded as one
  zero-copy slice of the payload. A zero-length sentinel record after the last one closes the
  final run in the loop itself, so a run is closed in one place (and the sentinel's ``runt``
  is taken back);
- ``forward_uniform``: a batch of one flow (every record alike in length and header) is
  decided once and forwarded as it came, checked in C with extended slices.

``forward_vlan`` is the VLAN-aware path (802.1Q port VLANs, switch/vlan.py), taken only while
some attached port has a VLAN configuration, so the two paths above stay as they were for a
switch without any. It decides frame by frame, without the header cache (the VLAN lies past
the 14 bytes): classify on ingress, learn and look up in the frame's VLAN, flood to the
members of that VLAN only, and re-encode each copy with the tag its output port wants. It
still sends at most one FRAMES message per output port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vnet.proto.ether import ETH_HLEN, VLAN_HLEN, ZERO_MAC
from vnet.proto.wire import FRAME_HDR, MSG_FRAMES
from vnet.switch.fdb import Learn
from vnet.switch.vlan import egress_tagged, ingress, retag
from vnet.switch.stp import LINK_LOCAL_PREFIX

if TYPE_CHECKING:
    from vnet.switch.core import Message, Port, SwitchCore

_FLOOD = object()  # a run's destination: every port but the ingress one
# batches this big or bigger may take the one-flow fast path (forward_uniform)
UNIFORM_MIN_FRAMES = 8
_UNIFORM_MIN_BYTES = UNIFORM_MIN_FRAMES * (ETH_HLEN + 2)
# what the switch did with a frame, cached per header in forward_batch
_FWD, _FLOODED, _SAME_PORT, _BAD_SRC, _PSEC, _LOCAL = (object() for _ in range(6))
_REFUSED = Learn.REFUSED


def forward_batch(sw: SwitchCore, port: Port, payload: bytes, now: float) -> list[Message]:
    """Forward the FRAMES ``payload`` that ``port`` sent: learn, look up, group by output
    port; count on ``sw``'s ports and totals; return the FRAMES messages to send (and the
    CARRIER a port security shutdown sends). Never raises on bad input."""
    if type(payload) is not bytes:
        payload = bytes(payload)
    if not port.admin_up:
        k, _ = count_records(payload)
        port.counters.port_down += k
        sw.totals.port_down += k
        return []
    if not port.forwarding:
        return discard_batch(sw, port, payload, now)
    if sw.vlan_ports:
        return forward_vlan(sw, port, payload, now)
    end = len(payload)
    if end >= _UNIFORM_MIN_BYTES:
        out = forward_uniform(sw, port, payload, end, now)
        if out is not None:
            return out
    return forward_general(sw, port, payload, now)


def forward_general(sw: SwitchCore, port: Port, payload: bytes, now: float) -> list[Message]:
    """The general path of ``forward_batch``, frame by frame, for a port that is up (any
    batch: the one-flow fast path is an optimisation of it, and a test holds them equal)."""
    end = len(payload)
    # Pass 1: record boundaries. A bad length makes everything after it untrustworthy,
    # and possibly some records before it, so the whole batch goes.
    bounds = []  # where each record ends
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
        sw.totals.malformed += 1
        sw.offence(port, now, malformed=1)
        return []

    # The sentinel: a zero-length record at the end. It is a runt (taken back below) whose
    # destination None closes the last run inside the loop, the one place runs are closed.
    append_bound(end + 2)

    # Pass 2: forward. Per frame: slices, a byte test, dict lookups; counters in locals.
    # A frame's fate depends only on its 14-byte header (addresses, type) as long as no
    # learn happens in between, so decisions are cached per header for the batch and the
    # cache is dropped at every learn. Consecutive records with the same destination form
    # a run, forwarded as one slice of the payload; a batch that is one run for one port
    # is forwarded as it came. A port security violation is cached like any decision: the
    # port cannot shrink below its limit during the batch, so the frame's fate holds until
    # the next learn. A shutdown ends the batch at the violating frame: the sentinel is moved
    # to just after it (``bounds`` is iterated as a list, so the loop sees the cut), and the
    # ``rest`` of the batch counts port_down.
    fdb = sw.fdb
    learn = fdb.learn
    lookup = fdb.lookup
    max_frame = sw.max_frame
    max_macs = sw.max_macs
    shutdown = sw.violation == "shutdown"
    rest = -1
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
    for nxt in bounds:
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
                    elif hdr[0] & 1 and hdr[:5] == LINK_LOCAL_PREFIX and hdr[5] <= 0x0F:
                        kind = _LOCAL  # BPDUs and the other 802.1D reserved groups: never forwarded
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
                    elif not tagged or kind is _BAD_SRC or kind is _LOCAL:
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
            elif kind is _LOCAL:
                sw.link_local(port, view[s:nxt], now)
            elif kind is _PSEC:
                psec += 1
                if shutdown:  # the port goes down here
                    i = bounds.index(nxt)
                    rest = len(bounds) - 2 - i
                    del bounds[i + 1 :]
                    append_bound(nxt + 2)
        if dest is not run_dest:
            if run_dest is not None:
                # close the run: its records go out as one slice, in batch order
                piece = view[run_start:rec_start]
                if run_dest is _FLOOD:
                    if others is None:
                        others = [p for p in sw.port_list if p is not port]
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
    runt -= 1  # the sentinel

    c = port.counters
    t = sw.totals
    c.rx_packets += rx_packets
    t.rx_packets += rx_packets
    c.rx_bytes += rx_bytes
    t.rx_bytes += rx_bytes
    if flooded:
        c.flooded += flooded
        t.flooded += flooded
    if runt or oversize or bad_src or psec:
        sw.offence(port, now, runt=runt, oversize=oversize, bad_src=bad_src, port_security=psec)
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
    out = _emit(sw, outs, payload)
    if rest >= 0:
        out += sw.psec_shutdown(port, rest)
    return out


def forward_uniform(sw: SwitchCore, port: Port, payload: bytes, end: int, now: float) -> list[Message] | None:
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
    if rest or k < UNIFORM_MIN_FRAMES or n < ETH_HLEN or n > sw.max_frame:
        return None
    if payload[2:7] == LINK_LOCAL_PREFIX:
        return None  # BPDUs and other link-local frames are the general path's
    if payload[14] == 0x81 and payload[15] == 0x00:
        return None  # tagged (type at 14: after the record's 2-byte length): VID not compared
    if payload[0::step] != bytes((hi,)) * k or payload[1::step] != bytes((lo,)) * k:
        return None
    for j in range(2, 16):
        if payload[j::step] != bytes((payload[j],)) * k:
            return None
    c = port.counters
    t = sw.totals
    src = payload[8:14]
    if src[0] & 1 or src == ZERO_MAC:
        c.bad_src += k
        t.bad_src += k
        sw.offence(port, now, bad_src=k)
        return []
    if sw.fdb.learn(src, 0, port, now, sw.max_macs) is _REFUSED:
        sw.offence(port, now, port_security=k)
        # one source for all k frames: all are over the limit, or with a shutdown the
        # first is and the rest arrive on a port that is down
        if sw.violation == "shutdown":
            c.port_security += 1
            t.port_security += 1
            return sw.psec_shutdown(port, k - 1)
        c.port_security += k
        t.port_security += k
        return []
    c.rx_packets += k
    t.rx_packets += k
    nbytes = k * n
    c.rx_bytes += nbytes
    t.rx_bytes += nbytes
    dst = payload[2:8]
    dst_port = None if dst[0] & 1 else sw.fdb.lookup(dst, 0, now)
    if dst_port is None:
        c.flooded += k
        t.flooded += k
        targets = [p for p in sw.port_list if p is not port]
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
        if not p.forwarding:
            oc.stp_discarding += k
            t.stp_discarding += k
            continue
        oc.tx_packets += k
        t.tx_packets += k
        oc.tx_bytes += nbytes
        t.tx_bytes += nbytes
        out.append((p.peer, [MSG_FRAMES, payload]))
    return out


def forward_vlan(sw: SwitchCore, port: Port, payload: bytes, now: float) -> list[Message]:
    """``forward_batch`` for a switch with VLAN configuration (see the module docstring and
    core.py's for the rules), for a port that is up."""
    end = len(payload)
    bounds = []
    off = 0
    while off < end:
        if off + 2 > end:
            off = -1
            break
        nxt = off + 2 + (payload[off] << 8 | payload[off + 1])
        if nxt > end:
            off = -1
            break
        bounds.append((off + 2, nxt))
        off = nxt
    if off < 0:
        port.counters.malformed += 1
        sw.totals.malformed += 1
        sw.offence(port, now, malformed=1)
        return []

    fdb = sw.fdb
    learn = fdb.learn
    max_frame = sw.max_frame
    max_macs = sw.max_macs
    shutdown = sw.violation == "shutdown"
    cfg = port.vlan
    view = memoryview(payload)
    outs: dict = {}  # port -> [frames, record, record, ...] in batch order
    members: dict = {}  # vlan -> the ports a flood in it goes to
    drops = dict.fromkeys(("runt", "oversize", "bad_src", "same_port", "port_security", "vlan_tagged",
                           "vlan_disallowed", "vlan_untagged"), 0)
    rx_packets = rx_bytes = flooded = 0
    rest = -1
    # As on the general path, a source is learned where it differs from the previous frame's
    # (same VLAN), and destinations are looked up once per (MAC, VLAN) until the next learn.
    last_learned = None
    lookups: dict = {}
    for i, (s, e) in enumerate(bounds):
        n = e - s
        if n < ETH_HLEN or n > max_frame:
            drops["runt" if n < ETH_HLEN else "oversize"] += 1
            continue
        src = payload[s + 6 : s + 12]
        if src[0] & 1 or src == ZERO_MAC:
            drops["bad_src"] += 1
            continue
        if payload[s] & 1 and payload[s : s + 5] == LINK_LOCAL_PREFIX and payload[s + 5] <= 0x0F:
            sw.link_local(port, view[s:e], now)  # BPDUs and the 802.1D reserved groups: never forwarded
            continue
        tagged = payload[s + 12] == 0x81 and payload[s + 13] == 0x00
        if tagged and n < ETH_HLEN + VLAN_HLEN:
            drops["runt"] += 1
            continue
        tci = (payload[s + 14] << 8 | payload[s + 15]) if tagged else None
        vlan = ingress(cfg, None if tci is None else tci & 0x0FFF)
        if type(vlan) is str:
            drops[vlan] += 1
            continue
        if (src, vlan) != last_learned:
            lookups.clear()  # a learn may move an address
            if learn(src, vlan, port, now, max_macs) is _REFUSED:
                last_learned = None
                drops["port_security"] += 1
                if shutdown:
                    rest = len(bounds) - 1 - i
                    break
                continue
            last_learned = (src, vlan)
        rx_packets += 1
        rx_bytes += n
        dst = payload[s : s + 6]
        if dst[0] & 1:
            dst_port = None
        else:
            key = (dst, vlan)
            dst_port = lookups.get(key, lookups)
            if dst_port is lookups:
                dst_port = lookups[key] = fdb.lookup(dst, vlan, now)
        if dst_port is None:
            flooded += 1
            targets = members.get(vlan)
            if targets is None:
                targets = members[vlan] = [p for p in sw.port_list
                                           if p is not port and (p.vlan is None or p.vlan.carries(vlan))]
        elif dst_port is port:
            drops["same_port"] += 1
            continue
        else:
            targets = (dst_port,)
        frame = view[s:e]
        copies: dict = {}  # tagged? -> the record as it leaves (None: too long)
        for p in targets:
            want = egress_tagged(p.vlan, vlan, tci is not None)
            if (cfg is None and p.vlan is None) or (
                    not want if tci is None else want and tci & 0x0FFF == vlan):
                rec = view[s - 2 : e]  # leaves as it came
            else:
                rec = copies.get(want, False)
                if rec is False:
                    out_frame = retag(frame, tci, vlan, want)
                    n_out = len(out_frame)
                    rec = copies[want] = None if n_out > max_frame else FRAME_HDR.pack(n_out) + out_frame
                if rec is None:  # a pushed tag made it too long: an egress drop of this copy
                    p.counters.oversize += 1
                    sw.totals.oversize += 1
                    continue
            q = outs.get(p)
            if q is None:
                outs[p] = [1, rec]
            else:
                q[0] += 1
                q.append(rec)

    c = port.counters
    t = sw.totals
    c.rx_packets += rx_packets
    t.rx_packets += rx_packets
    c.rx_bytes += rx_bytes
    t.rx_bytes += rx_bytes
    c.flooded += flooded
    t.flooded += flooded
    offences = {k: v for k, v in drops.items() if v and k != "same_port"}
    if offences:
        sw.offence(port, now, **offences)
    if any(drops.values()):
        for name, k in drops.items():
            if k:
                setattr(c, name, getattr(c, name) + k)
                setattr(t, name, getattr(t, name) + k)
    out = _emit(sw, outs, None)  # its records may be re-tagged: never the batch as it came
    if rest >= 0:
        out += sw.psec_shutdown(port, rest)
    return out


def _emit(sw: SwitchCore, outs: dict, payload: bytes | None) -> list[Message]:
    """One FRAMES message per output port from ``outs`` (port -> [frames, piece, piece, ...]),
    counted on the ports and the totals; a port administratively down or not forwarding
    (spanning tree) counts its copies ``port_down`` or ``stp_discarding`` instead. With
    ``payload`` (pieces that are slices of it), a port whose one piece is the whole batch gets
    the batch itself, uncopied."""
    t = sw.totals
    out: list[Message] = []
    for p, q in outs.items():
        k = q[0]
        t.forwarded += k
        if not p.admin_up:
            p.counters.port_down += k
            t.port_down += k
            continue
        if not p.forwarding:
            p.counters.stp_discarding += k
            t.stp_discarding += k
            continue
        if payload is not None and len(q) == 2 and len(q[1]) == len(payload):
            data = payload
        else:
            data = b"".join(q[1:])
        nbytes = len(data) - 2 * k
        oc = p.counters
        oc.tx_packets += k
        t.tx_packets += k
        oc.tx_bytes += nbytes
        t.tx_bytes += nbytes
        out.append((p.peer, [MSG_FRAMES, data]))
    return out


def discard_batch(sw: SwitchCore, port: Port, payload: bytes, now: float) -> list[Message]:
    """A batch from a port spanning tree has not forwarding: its BPDUs (and other link-local
    frames) are still the switch's, every other frame counts ``stp_discarding``; in the
    learning state their sources are learned first (802.1D's Learning: learn, do not
    forward). A batch whose records do not parse counts ``malformed``. Returns nothing: the
    bridge's BPDUs are queued on the core."""
    end = len(payload)
    view = memoryview(payload)
    off = dropped = 0
    local = []
    learning = port.stp_state == "learning"
    while off < end:
        if off + 2 > end:
            off = -1
            break
        s = off + 2
        off = s + (payload[off] << 8 | payload[off + 1])
        if off > end:
            off = -1
            break
        if off - s >= ETH_HLEN and payload[s] & 1 and payload[s:s + 5] == LINK_LOCAL_PREFIX \
                and payload[s + 5] <= 0x0F:
            local.append(view[s:off])
        else:
            dropped += 1
            if learning and off - s >= ETH_HLEN and not payload[s + 6] & 1:
                src = payload[s + 6:s + 12]
                tagged = payload[s + 12] == 0x81 and payload[s + 13] == 0 and off - s >= ETH_HLEN + VLAN_HLEN
                vlan = (payload[s + 14] & 0x0F) << 8 | payload[s + 15] if tagged else 0
                if port.vlan is not None:  # learned in the VLAN the port would forward it in
                    vlan = ingress(port.vlan, vlan if tagged else None)
                if src != ZERO_MAC and type(vlan) is int:
                    sw.fdb.learn(src, vlan, port, now, sw.max_macs)
    if off < 0:
        port.counters.malformed += 1
        sw.totals.malformed += 1
        sw.offence(port, now, malformed=1)
        return []
    port.counters.stp_discarding += dropped
    sw.totals.stp_discarding += dropped
    for frame in local:
        sw.link_local(port, frame, now)
    return []


def count_records(payload: bytes) -> tuple[int, int]:
    """(frames, frame bytes) of a FRAMES payload whose records parse (one this switch built,
    or one forward_batch's pass 1 would accept); a truncated last record is counted whole."""
    k = nbytes = off = 0
    end = len(payload)
    while off + 2 <= end:
        n = payload[off] << 8 | payload[off + 1]
        off += 2 + n
        k += 1
        nbytes += n
    return k, nbytes
