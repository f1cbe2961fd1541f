"""A trunk: this switch's cable to another switch, dialed as a node would dial it.

``vnet switch --trunk PORT=ENDPOINT[,as=REMOTE_PORT]`` makes one ``Trunk``. It connects a
ZeroMQ DEALER to the other switch's data endpoint (its ROUTER) and speaks the node <-> switch
protocol through the same sans-I/O machine a node's link uses (``vnet.proto.link.LinkMachine``,
with ``bridge=True``: its HELLO, under the name REMOTE_PORT, says the sender is a switch, so
the remote port runs spanning tree). Attachment, HELLO backoff, heartbeats and their timeout,
NOT_ATTACHED after the remote restarts, a new connection while it stays silent: all as for a
node, so a trunk comes back by itself when the remote switch restarts.

Locally the trunk is port PORT of this switch's core (``SwitchCore.attach_trunk``), under a
pseudo peer id (``trunk_peer``) that no ZeroMQ identity can take. The server hands the
messages the core sends to that id to ``from_core`` instead of its ROUTER: FRAMES go out of
the DEALER, CARRIER (``port_set`` on PORT) cuts or restores the trunk. Frames the DEALER
receives go into the core as FRAMES from the pseudo peer: learned and flooded like any
port's. The link's carrier is the port's link state for spanning tree (``core.set_link``).

A cut trunk is down on both sides: ``port_set(PORT, up=False)`` here says BYE to the remote
switch and stops attaching (the remote port goes away, so its spanning tree disables it), and
``up`` attaches again; a cut at the remote end (its port REMOTE_PORT set down) sends CARRIER 0,
which drops this side's carrier, so this side's port is disabled too.

With CURVE on (the switch's ``curve_secret``), the trunk uses this switch's key pair as its
client keys and its public key as the server's: switches of one LAN share its key pair, and
a switch allows its own public key. The trunk owns its socket, its timer and, with CURVE, a
handshake watcher task; ``close()`` says BYE and closes them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Callable

import zmq
import zmq.asyncio

from vnet.proto import wire
from vnet.proto.auth import CurveClient
from vnet.proto.link import ClampMtu, Deliver, LinkMachine, Reconnect, Refused, Send, SetCarrier
from vnet.proto.ratelimit import RateLimit
from vnet.switch.forward import count_records

log = logging.getLogger(__name__)

_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
RX_BUDGET = 64  # messages read per wakeup before the loop's other callbacks get a turn
TRUNK_PEER_PREFIX = b"\xfftrunk:"  # ROUTER identities ZeroMQ makes start with 0: no clash

COUNTERS = (
    "tx_batches",  # FRAMES messages sent to the remote switch
    "tx_frames",
    "tx_again",  # FRAMES the DEALER refused (its queue full): counted hwm on the port
    "tx_no_carrier",  # FRAMES for the trunk while it was not attached: counted unroutable
    "rx_malformed",  # messages from the remote switch that do not decode
)


@dataclass(frozen=True, slots=True)
class TrunkSpec:
    """``PORT=ENDPOINT[,as=REMOTE_PORT]``: the local port name, the endpoint dialed, the name
    the remote switch gives its port (None: this switch's name)."""

    port: str
    endpoint: str
    remote_port: str | None = None

    @classmethod
    def parse(cls, text: str) -> "TrunkSpec":
        port, sep, rest = text.partition("=")
        if not sep or not port or not rest:
            raise ValueError(f"trunk {text!r}: write PORT=ENDPOINT[,as=REMOTE_PORT], e.g. "
                             f"to-b=tcp://10.0.0.2:5540,as=to-a")
        endpoint, *options = rest.split(",")
        if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"trunk {text!r}: {endpoint!r} is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)")
        remote = None
        for opt in options:
            key, sep, value = opt.partition("=")
            if key != "as" or not sep or not value:
                raise ValueError(f"trunk {text!r}: unknown option {opt!r} (the one option is as=REMOTE_PORT)")
            remote = value
        for what, name in (("port", port), ("remote port", remote)):
            if name is not None and len(name) > 255:
                raise ValueError(f"trunk {text!r}: the {what} name is longer than 255 characters")
        return cls(port, endpoint, remote)


def trunk_peer(port: str) -> bytes:
    """The pseudo peer id of the trunk whose local port is ``port``."""
    return TRUNK_PEER_PREFIX + port.encode()


class Trunk:
    """One trunk to another switch; owns its DEALER, its timer and (CURVE) its handshake
    watcher. ``deliver(messages)`` sends the core's answers (the server's ``_send``);
    ``core`` is the switch's ``SwitchCore``."""

    def __init__(self, ctx: zmq.asyncio.Context, spec: TrunkSpec, core, deliver: Callable[[list], None], *,
                 switch_name: str, mtu: int, heartbeat_interval: float, heartbeat_timeout: float,
                 curve: CurveClient | None = None, rng: random.Random | None = None) -> None:
        self.spec = spec
        self.port = spec.port
        self.endpoint = spec.endpoint
        self.remote_port = spec.remote_port or switch_name
        self.peer = trunk_peer(spec.port)
        self._ctx = ctx
        self._core = core
        self._deliver = deliver
        self._mtu = mtu
        self._curve = curve
        self.machine = LinkMachine(lambda: (self.remote_port, (), self._mtu), heartbeat_interval=heartbeat_interval,
                                   heartbeat_timeout=heartbeat_timeout, rng=rng, bridge=True)
        self.admin_up = True
        self.refused: str | None = None
        self.auth_failures = 0
        for name in COUNTERS:
            setattr(self, name, 0)
        self._sock: zmq.asyncio.Socket | None = None
        self._raw: zmq.Socket | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._drain_handle: asyncio.Handle | None = None
        self._tasks: list[asyncio.Task] = []
        self._ratelimit = RateLimit()

    # -- life cycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Attach the local port, connect to the remote switch, say HELLO."""
        if self._sock is not None:
            raise RuntimeError(f"trunk {self.port}: already open")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._core.attach_trunk(self.peer, self.port, loop.time())  # WELCOME to ourselves: nothing to send
        self.admin_up = self._core.find_port(self.port).admin_up
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self._curve is not None:
            self._curve.apply(sock)
            self._monitor = sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            self._tasks.append(loop.create_task(self._watch_handshakes(self._monitor), name=f"trunk {self.port}"))
        sock.connect(self.endpoint)
        self._sock = sock
        self._raw = zmq.Socket.shadow(sock.underlying)
        self._fd = self._raw.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._drain)
        if self.admin_up:
            self._perform(self.machine.open(loop.time()))
        self._arm()
        log.info("trunk %s: dialing %s as %r", self.port, self.endpoint, self.remote_port)

    async def aclose(self) -> None:
        """Say BYE (when attached), stop the timer and the task, close the socket."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        raw, self._raw = self._raw, None
        for handle in (self._timer, self._drain_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._drain_handle = None
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._monitor is not None:
            sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        if self.machine.state.value != "closed":
            for action in self.machine.close(self._loop.time()):
                if type(action) is Send:
                    try:
                        raw.send_multipart(action.message.encode(), _NOBLOCK)
                    except zmq.ZMQError:
                        pass
        sock.close(linger=200)  # long enough for the BYE to leave on a live connection

    # -- from the core ------------------------------------------------------------------------

    def from_core(self, parts: list[bytes]) -> str | None:
        """A message the core sent to the trunk's port: FRAMES go to the remote switch,
        CARRIER cuts or restores the trunk. Returns None, or why FRAMES could not go
        ("hwm": the DEALER's queue is full, "unroutable": the trunk is not attached)."""
        kind = parts[0]
        if kind == wire.MSG_FRAMES:
            raw = self._raw
            if raw is None or not self.machine.carrier:
                self.tx_no_carrier += 1
                return "unroutable"
            if not self._send(parts):
                self.tx_again += 1
                return "hwm"
            self.tx_batches += 1
            self.tx_frames += count_records(parts[1])[0]
            return None
        if kind == wire.MSG_CARRIER and self._loop is not None:
            up = parts[1] == b"\x01"
            self._loop.call_soon(self._set_admin, up)  # outside the server's send loop
        return None  # WELCOME, HEARTBEAT, BYE to ourselves: nothing to do

    def _set_admin(self, up: bool) -> None:
        if self._raw is None or up == self.admin_up:
            return
        self.admin_up = up
        now = self._loop.time()
        if up:
            log.info("trunk %s: administratively up, attaching to %s", self.port, self.endpoint)
            self._perform(self.machine.open(now))
        else:
            log.info("trunk %s: administratively down, saying BYE to %s", self.port, self.endpoint)
            was_up = self.machine.carrier
            self._perform(self.machine.close(now))
            if was_up:
                self._deliver(self._core.set_link(self.port, False, now))
        self._arm()

    # -- the machine --------------------------------------------------------------------------

    def _perform(self, actions: list) -> None:
        core = self._core
        for action in actions:
            kind = type(action)
            if kind is Deliver:
                now = self._loop.time()
                self._deliver(core.handle(self.peer, [wire.MSG_FRAMES, wire.pack_frames(action.frames)], now))
            elif kind is Send:
                self._send(action.message.encode())
            elif kind is SetCarrier:
                if action.up:
                    log.info("trunk %s: attached to %s: link up", self.port, self.endpoint)
                else:
                    log.warning("trunk %s to %s: %s: link down", self.port, self.endpoint, action.why)
                self._deliver(core.set_link(self.port, action.up, self._loop.time()))
            elif kind is Reconnect:
                sock = self._sock
                if sock is not None:
                    try:
                        sock.disconnect(self.endpoint)
                    except zmq.ZMQError:
                        pass
                    sock.connect(self.endpoint)
            elif kind is Refused:
                self.refused = action.reason
                log.error("trunk %s: switch %s refused it: %s", self.port, self.endpoint, action.reason)
            elif kind is ClampMtu:
                log.warning("trunk %s: switch %s has MTU %d, below this switch's %d: its longer frames are "
                            "dropped there (oversize)", self.port, self.endpoint, action.mtu, action.node_mtu)

    def _arm(self) -> None:
        if self._raw is None:
            return
        deadline = self.machine.next_deadline() if self.machine.state.value != "closed" else None
        timer = self._timer
        if timer is not None:
            if deadline is not None and timer.when() <= deadline:
                return
            timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._raw is None or self.machine.state.value == "closed":
            return
        self._perform(self.machine.tick(self._loop.time()))
        self._arm()

    # -- socket I/O ---------------------------------------------------------------------------

    def _send(self, parts: list[bytes]) -> bool:
        raw = self._raw
        if raw is None:
            return False
        try:
            raw.send_multipart(parts, _NOBLOCK)
            return True
        except zmq.Again:
            return False
        finally:
            if self._drain_handle is None and raw.get(_EVENTS) & _POLLIN:
                self._drain_handle = self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_handle = None
        raw = self._raw
        if raw is None or not raw.get(_EVENTS) & _POLLIN:
            return
        now = self._loop.time()
        closed = self.machine.state.value == "closed"
        for _ in range(RX_BUDGET):
            try:
                parts = raw.recv_multipart(_NOBLOCK)
            except zmq.Again:
                break
            if closed:
                continue  # administratively down: the remote's last words are not heard
            try:
                msg = wire.decode(parts)
            except wire.WireError as exc:
                self.rx_malformed += 1
                self._ratelimit.log(log, logging.WARNING, "trunk %s from %s: %s", self.port, self.endpoint, exc)
                continue
            self._perform(self.machine.receive(msg, now))
            if self._raw is None:
                return
        else:
            self._drain_handle = self._loop.call_soon(self._drain)
        self._arm()

    async def _watch_handshakes(self, monitor: zmq.asyncio.Socket) -> None:
        from zmq.utils.monitor import parse_monitor_message

        while True:
            parse_monitor_message(await monitor.recv_multipart())
            self.auth_failures += 1
            self._ratelimit.log(log, logging.ERROR, "trunk %s: CURVE handshake with %s failed (do both switches "
                                "have the same LAN key pair?)", self.port, self.endpoint)

    # -- views --------------------------------------------------------------------------------

    def view(self) -> dict:
        return {
            "port": self.port,
            "endpoint": self.endpoint,
            "remote_port": self.remote_port,
            "state": self.machine.state.value,
            "carrier": self.machine.carrier,
            "admin": "up" if self.admin_up else "down",
            "refused": self.refused,
            "counters": {**{name: getattr(self, name) for name in COUNTERS}, **self.machine.counters(),
                         "auth_failures": self.auth_failures},
        }
