"""The tools on the switch's ports: mirrors and impairments, between the socket and the core
(sans-I/O: time is a parameter, nothing here touches a socket or a clock).

Per port name, the tools are a mirror (port mirroring, a SPAN session: the frames the switch
receives from the port, "in", and sends to it, "out", copied into a
``vnet.proto.capture.CaptureSession``) and an impairment per direction (``Impairment``, as a tc
netem qdisc on the port's ingress and egress). The server calls in at three places::

    out = tools.ingress(peer, parts, now)     # a message from a port in tools.hooks_in
    tx = tools.egress(peer, payload, now)     # FRAMES for a port in tools.hooks_out
    -> (peer, parts, mirror) or None; after a successful send: tools.mirror_out(peer, mirror, now)
    forwarded, txs = tools.release(now)       # when tools.next_at() falls due

``forwarded`` are core messages (delayed ingress frames forwarded now), to be sent as any
other (through ``egress`` for ports with tools); ``txs`` are already impaired: sent as they
are. Frames an impairment delays wait in a ``DelayLine`` keyed by (direction, port,
impairment); those whose port went away are counted ``impair_flushed`` (and, for egress,
taken out of the core's tx counters, which counted them as sent).

The hooks are two dicts by peer id (``hooks_in``, ``hooks_out``) holding only ports with
something set, so a switch without tools pays one test of an empty dict per message and a
port without tools one dict lookup. ``sync()`` rebuilds them whenever the core's port
generation changed (a port attached or went away) or a tool changed.

Mirror timestamps are wall-clock (pcap's): ``now + epoch``, where the server sets ``epoch``
to the wall clock minus its loop clock.

A mirror never takes the forwarding loop down with it: whatever a mirror raises (a bug) is
counted in ``mirror_errors`` and logged rate-limited, and the frames go on.
"""

from __future__ import annotations

import logging
from typing import Any

from vnet.proto import wire
from vnet.proto.capture import DEFAULT_BUFFER, DEFAULT_SNAPLEN, Capture, CaptureSession
from vnet.proto.ratelimit import RateLimit
from vnet.switch.core import Message, Port, SwitchCore, clip
from vnet.switch.impair import DIRECTIONS, DelayLine, Impairment, format_settings, parse_params

log = logging.getLogger(__name__)

MIRROR_IDLE_TIMEOUT = 30.0  # seconds a mirror may go unread before it is stopped

Tx = tuple[bytes, list[bytes], list]  # peer, parts, the frames to mirror "out" once sent


class Hook:
    """What the datapath does for one port in one direction: its impairment (None when
    none is active) and the mirrors recording it."""

    __slots__ = ("port", "impair", "mirrors")

    def __init__(self, port: Port, impair: Impairment | None, mirrors: list[CaptureSession]) -> None:
        self.port = port
        self.impair = impair
        self.mirrors = mirrors


class PortTools:
    """The mirrors and impairments of a switch's ports, and the frames they hold."""

    def __init__(self, core: SwitchCore, epoch: float = 0.0) -> None:
        self.core = core
        self.epoch = epoch  # wall clock minus the ``now`` clock, for pcap timestamps
        self.impairs: dict[str, dict[str, Impairment]] = {}  # by port name, then direction
        self.mirrors: dict[int, CaptureSession] = {}
        self._mirror_ids = 0
        self.hooks_in: dict[bytes, Hook] = {}
        self.hooks_out: dict[bytes, Hook] = {}
        self._hooks_gen = -1
        self.line = DelayLine()
        self.mirror_errors = 0  # exceptions a mirror raised in the datapath, survived
        self._mirror_log = RateLimit()

    # -- configuration (the control endpoint's requests) ----------------------------------

    def impair(self, port: str, now: float, dir: str | None = None, clear: bool = False,
               **params: Any) -> dict:
        """Change the named impairments of ``port`` in ``dir`` ("in", "out", "both"; the
        others stay; ``clear`` first resets them all); with nothing to change, show them."""
        if port not in self.impairs:
            self.core.port_by_name(port)  # a clear error for a name that is not attached
        if dir not in (None, "in", "out", "both"):
            raise ValueError(f'impair direction {clip(repr(dir), 60)}: use "in" (from the node), "out" (to it) or "both"')
        parsed = parse_params(params)  # checked whole before anything changes
        if parsed or clear:
            seed = parsed.pop("seed", None)
            imps = self.impairs.setdefault(port, {d: Impairment(stream=d) for d in DIRECTIONS})
            dirs = DIRECTIONS if dir in (None, "both") else (dir,)
            for d in dirs:
                Impairment(stream=d).set(**parsed)  # a conflict raises before either changes
            for d in dirs:
                if clear:
                    imps[d].clear()
                imps[d].set(seed=seed, **parsed)
            self.sync(force=True)
        return self.impair_view(port, now)

    def impair_view(self, port: str, now: float) -> dict:
        imps = self.impairs.get(port) or {d: Impairment(stream=d) for d in DIRECTIONS}
        return {
            "port": port,
            "attached": self.core.find_port(port) is not None,
            **{d: {"settings": format_settings(imp.settings()), "describe": imp.describe(),
                   "counters": dict(imp.counters), "held": imp.held(now)} for d, imp in imps.items()},
        }

    def mirror_start(self, port: str, now: float, filter: str = "", count: int | None = None,
                     buffer: int = DEFAULT_BUFFER, snaplen: int = DEFAULT_SNAPLEN, match=None) -> dict:
        """Mirror ``port`` (FilterError for a bad filter, CaptureLimitError for a bad buffer,
        count or snaplen, UnknownPort for a bad name); ``match``: the filter compiled already."""
        self.core.port_by_name(port)
        capture = Capture(filter, buffer=buffer, count=count, snaplen=snaplen, match=match)
        self._mirror_ids += 1
        mid = self._mirror_ids
        self.mirrors[mid] = CaptureSession(capture, now, port=port)
        self.sync(force=True)
        return {"id": mid, "port": port, "snaplen": capture.snaplen, **capture.stats()}

    def mirror_stop(self, mid: int) -> dict | None:
        """Stop mirror ``mid``; its final counters, or None if there is no such mirror."""
        m = self.mirrors.pop(mid, None)
        if m is None:
            return None
        self.sync(force=True)
        return {"port": m.port, **m.capture.stats()}

    def expire_mirrors(self, now: float) -> list[tuple[int, CaptureSession]]:
        """Stop the mirrors nobody has read for MIRROR_IDLE_TIMEOUT (a reader that died must
        not leave one copying frames for ever); return them."""
        idle = [(mid, m) for mid, m in self.mirrors.items() if m.idle_for(now) > MIRROR_IDLE_TIMEOUT]
        for mid, _ in idle:
            self.mirror_stop(mid)
        return idle

    def port_view(self, name: str) -> dict:
        """The ``ports`` view's columns for port ``name``."""
        imps = self.impairs.get(name)
        return {"impaired": bool(imps) and any(i.active for i in imps.values()),
                "mirrors": sum(1 for m in self.mirrors.values() if m.port == name)}

    def counters(self) -> dict:
        return {name: {d: dict(imp.counters) for d, imp in imps.items()} for name, imps in self.impairs.items()}

    # -- the datapath --------------------------------------------------------------------

    def sync(self, force: bool = False) -> None:
        """Rebuild the hooks if a port attached or went away since the last time (or
        ``force``), and flush the frames held for ports that are gone."""
        core = self.core
        if not force and core.generation == self._hooks_gen:
            return
        # By the names with tools, not by the ports: a burst of attaches costs each one
        # the tools' count, not the ports' (which would make the burst quadratic).
        mirrors: dict[str, list[CaptureSession]] = {}
        for m in self.mirrors.values():
            mirrors.setdefault(m.port, []).append(m)
        hooks_in: dict[bytes, Hook] = {}
        hooks_out: dict[bytes, Hook] = {}
        for name in self.impairs.keys() | mirrors.keys():
            port = core.find_port(name)
            if port is None:
                continue
            imps = self.impairs.get(name)
            caps = mirrors.get(name, [])
            imp_in = imps["in"] if imps and imps["in"].active else None
            imp_out = imps["out"] if imps and imps["out"].active else None
            if imp_in is not None or caps:
                hooks_in[port.peer] = Hook(port, imp_in, caps)
            if imp_out is not None or caps:
                hooks_out[port.peer] = Hook(port, imp_out, caps)
        self.hooks_in, self.hooks_out = hooks_in, hooks_out
        self._hooks_gen = core.generation
        gone = {key for key in self.line.keys() if core.port_by_peer(key[1].peer) is not key[1]}
        if gone:
            self._flush_held(self.line.remove(gone))

    def ingress(self, peer: bytes, parts: list[bytes], now: float) -> list[Message]:
        """A message from a port in ``hooks_in`` (``parts`` after the identity): mirror it,
        impair it, then hand what is due to the core; return the core's messages."""
        core = self.core
        hook = self.hooks_in[peer]
        if core.port_by_peer(peer) is not hook.port:  # it went away, or came back anew
            self.sync(force=True)
            return core.handle(peer, parts, now)
        if len(parts) != 2 or parts[0] != wire.MSG_FRAMES:
            return core.handle(peer, parts, now)
        try:
            frames = wire.unpack_frames(parts[1])
        except wire.WireError:
            return core.handle(peer, parts, now)  # counted as malformed there
        if hook.mirrors:
            self._offer(hook.mirrors, "in", frames, now)
        imp = hook.impair
        if imp is None:
            return core.handle(peer, parts, now)
        due, _, _ = self._impair(imp, frames, now, ("in", hook.port, imp))
        # handle() even with nothing left: the message still proves the node alive
        return core.handle(peer, [wire.MSG_FRAMES, wire.pack_frames(due)], now)

    def egress(self, peer: bytes, payload: bytes, now: float) -> Tx | None:
        """FRAMES the core built for a port in ``hooks_out``: impair them; return what to
        send now and the frames to mirror once it is sent, or None when nothing goes now."""
        hook = self.hooks_out[peer]
        port = hook.port
        if self.core.port_by_peer(peer) is not port:
            self.sync(force=True)
            return peer, [wire.MSG_FRAMES, payload], []
        imp = hook.impair
        frames = wire.unpack_frames(payload)  # built by the core: it parses
        if imp is not None:
            sent, held_k, held_bytes = self._impair(imp, frames, now, ("out", port, imp))
            # The core counted every frame as sent: take out the ones lost, add the copies
            # (held ones stay counted; if they never go, _flush_held takes them out).
            lost_k = len(frames) - len(sent) - held_k
            lost_bytes = sum(map(len, frames)) - sum(map(len, sent)) - held_bytes
            if lost_k or lost_bytes:
                self.core.tx_uncount(port, lost_k, lost_bytes)
            if not sent:
                return None
            frames = sent
            payload = wire.pack_frames(sent)
        return peer, [wire.MSG_FRAMES, payload], frames if hook.mirrors else []

    def mirror_out(self, peer: bytes, frames: list, now: float) -> None:
        """``frames`` left for ``peer``: record them in its mirrors."""
        hook = self.hooks_out.get(peer)
        if hook is not None and hook.mirrors and frames:
            self._offer(hook.mirrors, "out", frames, now)

    def next_at(self) -> float | None:
        """When the next held frame falls due (None: nothing is held)."""
        return self.line.next_at()

    def release(self, now: float) -> tuple[list[Message], list[Tx]]:
        """Deliver what the delay line holds that has fallen due, one batch per port and
        direction: ingress frames are forwarded now (as if just received: the core's
        messages, to send as any), egress ones are returned ready to send."""
        core = self.core
        forwarded: list[Message] = []
        txs: list[Tx] = []
        for (direction, port, imp), frames in self.line.due(now).items():
            if core.port_by_peer(port.peer) is not port:
                self._flush_held({(direction, port, imp): frames})
            elif direction == "in":
                forwarded += core.forward(port, wire.pack_frames(frames), now)
            elif not port.admin_up:  # cut while the frames were held
                core.tx_uncount(port, len(frames), sum(map(len, frames)), "port_down")
            else:
                hook = self.hooks_out.get(port.peer)
                txs.append((port.peer, [wire.MSG_FRAMES, wire.pack_frames(frames)],
                            frames if hook is not None and hook.mirrors else []))
        return forwarded, txs

    def close(self) -> None:
        """Drop every held frame, counted (the switch is closing)."""
        self._flush_held(self.line.clear())

    def _impair(self, imp: Impairment, frames: list, now: float, key: tuple) -> tuple[list, int, int]:
        """Apply ``imp``; hold the delayed frames in the line under ``key``. Returns the frames
        due now, and how many frames (and bytes) were put on hold."""
        due_now = []
        k = nbytes = 0
        push = self.line.push
        for at, frame in imp.apply(frames, now):
            if at <= now:
                due_now.append(frame)
            else:
                push(at, key, bytes(frame))
                k += 1
                nbytes += len(frame)
        return due_now, k, nbytes

    def _flush_held(self, held: dict) -> None:
        """Frames held for ports that went away: counted, never silently lost."""
        for (direction, port, imp), frames in held.items():
            imp.flushed(len(frames))
            if direction == "out":  # counted as sent when they were put on hold
                self.core.tx_uncount(port, len(frames), sum(map(len, frames)))

    def _offer(self, mirrors: list[CaptureSession], direction: str, frames: list, now: float) -> None:
        ts = now + self.epoch
        frames = [bytes(f) for f in frames]  # the filters look at bytes, not views
        for m in mirrors:
            try:
                m.offer(ts, direction, frames)
            except Exception as exc:
                self.mirror_errors += 1
                self._mirror_log.log(log, logging.ERROR, "mirror of port %r: %s: %s (frames not mirrored; "
                                     "mirror_errors %d)", m.port, type(exc).__name__, exc, self.mirror_errors,
                                     now=now)
