"""The node's cable to the switch: a ``Link`` over a ZeroMQ DEALER.

This is the PHY of vnet0 in the node daemon, as a thin I/O shell around the link protocol's
state machine (``LinkMachine``, proto/link.py: attachment, HELLO backoff, heartbeats and
their timeout, NOT_ATTACHED, CARRIER, BYE, reconnecting a silent switch, the switch's MTU).
The shell owns the socket, one timer and one task: it decodes what the socket reads
(vnet.proto.wire; a message that does not decode counts ``rx_malformed``), feeds it to the
machine, performs the actions the machine returns (send a message, carrier on or off,
deliver a batch to the NIC, reconnect, refused, clamp the MTU), and sleeps until the
machine's ``next_deadline()``: no polling.

``open()`` (the hardware does it at ``ndo_open``) connects to the switch's ROUTER and says
HELLO; carrier comes up on WELCOME. ``close()`` says BYE when attached, cancels the timer and
the task and closes the socket; ``aclose()`` also awaits the cancelled task. ``send()`` never
blocks: with the socket's IMMEDIATE option nothing queues for a switch that is not there, and
a full send buffer answers False (backpressure) so the TX ring fills; ``notify_writable(cb)``
calls ``cb`` once the socket takes messages again, so the TX DMA engine retries at once
instead of polling. A frame longer than the switch's MTU allows (WELCOME says it) is still
sent, and counted ``tx_oversize``: the switch drops it as ``oversize``.

Receiving is driven by the socket's file descriptor (``loop.add_reader``), not by a task
awaiting futures: each wakeup reads up to ``RX_BUDGET`` messages without blocking and hands
their batches to the NIC, then, if more are waiting, lets the rest of the loop (the NAPI
softirq) run before reading on. The link does flow control (``flow_control = True``): when
the NIC's RX ring is full in the middle of a batch it takes only part of it, and the link
keeps the rest and reads nothing more until the NIC calls ``rx_resume()``; meanwhile the
frames wait in ZeroMQ and in the switch's queue for this port (802.3x PAUSE, with the
switch port's output queue as the partner's buffer). Messages waiting unread still tell the
machine the switch is alive (``heard``).

With CURVE (``curve``: the node's key pair and the LAN's public key, vnet/proto/auth.py) the
link is encrypted and the switch checks the node's key before the first message crosses. A
socket monitor (the link's task) watches the handshakes: one the switch denies counts
``auth_failures`` and is logged (rate-limited); carrier never comes up, so the NIC sends
nothing (frames offered count as carrier errors). ZeroMQ itself gives up on a refused
handshake, but the switch then stays silent, so the machine's one retry path applies: a new
connection each ``heartbeat_timeout``, and a key added to the switch's allowed list later is
picked up without a restart.

A REFUSE (a protocol version mismatch, say) is final: carrier stays down, the reason is
logged, kept in ``refused`` and passed to ``on_refused`` so the daemon can stop with it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable, Sequence

import zmq
import zmq.asyncio

from vnet.node.link import CarrierCallback, Frame, RxCallback
from vnet.proto.link import (
    ClampMtu,
    Deliver,
    LinkMachine,
    Reconnect,
    Refused,
    Send,
    SetCarrier,
)
from vnet.proto import wire
from vnet.proto.auth import CurveClient
from vnet.proto.ratelimit import RateLimit

log = logging.getLogger(__name__)

# Plain ints: pyzmq's constants are enums, and mixing them in the per-message path costs an
# enum operation each time. Sends copy (copy=False would hand big payloads to pyzmq's
# garbage-collector thread, which costs more than the memcpy it saves).
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_NOBLOCK = int(zmq.NOBLOCK)

RX_BUDGET = 64  # messages read per wakeup before the loop's other callbacks get a turn

SHELL_COUNTERS = (
    "tx_batches",  # FRAMES messages handed to the socket
    "tx_frames",  # their frames
    "tx_again",  # sends refused by a full buffer (backpressure)
    "tx_no_carrier",  # frames in flight when carrier dropped: lost with the cable
    "tx_oversize",  # frames longer than the switch's MTU allows (it drops them as oversize)
    "rx_malformed",  # messages from the switch that do not decode
    "rx_holds",  # batches the NIC paused in
    "auth_failures",  # CURVE handshakes the switch denied (or that failed)
)


def _from_machine(name: str) -> property:
    return property(lambda self: getattr(self.machine, name), doc=f"The link machine's ``{name}``.")


class ZmqLink:
    """A Link to the learning switch at ``endpoint``; owns its DEALER socket, its timer and
    its task, and drives a ``LinkMachine`` (proto/link.py) with what the socket reads.

    ``hello`` is called at each (re)attachment and returns ``(name, macs, mtu)`` so the
    switch always learns the device's current address. ``on_mtu(mtu)`` is called when a
    WELCOME says the switch's MTU is below the one the node declared (the daemon clamps the
    device's MTU); ``on_refused(sentence)`` when the switch refuses the node.
    Counters (``counters()``): ``SHELL_COUNTERS`` and the machine's ``COUNTERS``. ``carrier``
    is what the NIC was told last: attached, and the switch port administratively up.
    """

    flow_control = True  # the NIC may take part of a batch; the rest waits (rx_resume)

    attached = _from_machine("attached")
    carrier = _from_machine("carrier")
    port = _from_machine("port")
    port_up = _from_machine("port_up")
    switch_mtu = _from_machine("switch_mtu")
    heartbeat_interval = _from_machine("heartbeat_interval")
    heartbeat_timeout = _from_machine("heartbeat_timeout")
    attaches = _from_machine("attaches")
    carrier_losses = _from_machine("carrier_losses")
    cable_cuts = _from_machine("cable_cuts")
    reconnects = _from_machine("reconnects")
    rx_batches = _from_machine("rx_batches")
    rx_frames = _from_machine("rx_frames")
    rx_not_attached = _from_machine("rx_not_attached")
    rx_unexpected = _from_machine("rx_unexpected")

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        hello: Callable[[], tuple[str, Sequence[bytes], int]],
        *,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 3.0,
        backoff_max: float = 2.0,
        sndhwm: int = 1000,
        rcvhwm: int = 1000,
        on_refused: Callable[[str], None] | None = None,
        on_mtu: Callable[[int], None] | None = None,
        protocol_version: int = wire.PROTOCOL_VERSION,
        rng: random.Random | None = None,
        curve: CurveClient | None = None,
    ) -> None:
        self.machine = LinkMachine(hello, heartbeat_interval=heartbeat_interval,
                                   heartbeat_timeout=heartbeat_timeout, backoff_max=backoff_max,
                                   protocol_version=protocol_version, rng=rng)
        self._ctx = ctx
        self.endpoint = endpoint
        self._backoff_max = backoff_max
        self._sndhwm = sndhwm
        self._rcvhwm = rcvhwm
        self._on_refused = on_refused
        self._on_mtu = on_mtu
        self._curve = curve
        self._monitor: zmq.asyncio.Socket | None = None
        self._ratelimit = RateLimit()
        self._sock: zmq.asyncio.Socket | None = None
        self._raw: zmq.Socket | None = None  # a plain shadow of _sock: no futures per message
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None  # at the machine's next deadline
        self._held: tuple[list, int] | None = None  # (batch, first frame the NIC did not take)
        self._paused = False  # the NIC asked for a PAUSE and has not lifted it
        self._writable_cb: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task] = []  # running: the handshake watcher (CURVE)
        self._closing: list[asyncio.Task] = []  # cancelled by close(), awaited by aclose()
        self._rx: RxCallback | None = None
        self._carrier: CarrierCallback | None = None
        self.refused: str | None = None
        for name in SHELL_COUNTERS:
            setattr(self, name, 0)

    def counters(self) -> dict[str, int]:
        """Every counter of the link, the machine's included, by name."""
        out = {name: getattr(self, name) for name in SHELL_COUNTERS}
        out.update(self.machine.counters())
        return out

    # -- Link protocol ------------------------------------------------------------------------

    def open(self, rx: RxCallback, carrier: CarrierCallback) -> None:
        if self._sock is not None:
            raise RuntimeError("ZmqLink.open: already open")
        self._rx, self._carrier = rx, carrier
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.SNDHWM, self._sndhwm)
        sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(self._backoff_max * 1000))
        monitor = None
        if self._curve is not None:
            self._curve.apply(sock)
            monitor = sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        sock.connect(self.endpoint)
        self._sock = sock
        self._raw = zmq.Socket.shadow(sock.underlying)
        self.refused = None
        self._held = None
        self._paused = False
        self._writable_cb = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._fd = self._raw.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._drain)
        self._monitor = monitor
        if monitor is not None:
            self._tasks.append(loop.create_task(self._watch_handshakes(monitor),
                                                name=f"link handshakes {self.endpoint}"))
        self._perform(self.machine.open(loop.time()))
        self._arm()

    def send(self, frames: Sequence[Frame]) -> bool:
        machine = self.machine
        if self._raw is None or not machine.attached:
            # Frames the DMA engine had in flight when carrier dropped: the cable is gone, so
            # they are lost, and counted here (the driver counts what it refuses afterwards).
            self.tx_no_carrier += len(frames)
            return True
        limit = machine.max_frame
        if limit is not None and frames and max(map(len, frames)) > limit:
            # The switch drops these (its ``oversize``); say so on this side too.
            self.tx_oversize += sum(1 for f in frames if len(f) > limit)
        if self._send(wire.Frames(frames).encode(), count=True):
            self.tx_frames += len(frames)
            return True
        return False

    def rx_resume(self) -> None:
        """The NIC lifted its PAUSE: offer the held frames again, then read on."""
        self._paused = False
        if self._raw is not None and self._drain_handle is None:
            self._drain_handle = self._loop.call_soon(self._drain)

    def notify_writable(self, cb: Callable[[], None]) -> None:
        """Call ``cb()`` once, as soon as the socket takes messages again."""
        self._writable_cb = cb
        if self._raw is not None and self._drain_handle is None:
            # the writable event may already have passed: look once from the loop
            self._drain_handle = self._loop.call_soon(self._drain)

    def close(self) -> None:
        """Say BYE (best effort), cancel the timer and the task, close the socket. Callbacks
        stop now; ``aclose()`` also waits for the cancelled task to end."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        raw, self._raw = self._raw, None
        self._rx = self._carrier = None
        self._held = None
        self._writable_cb = None
        for handle in (self._drain_handle, self._timer):
            if handle is not None:
                handle.cancel()
        self._drain_handle = self._timer = None
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        for task in self._tasks:
            task.cancel()
        self._closing += self._tasks
        self._tasks = []
        if self._monitor is not None:
            sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        for action in self.machine.close(self._loop.time()):
            if type(action) is Send:
                try:
                    raw.send_multipart(action.message.encode(), _NOBLOCK)
                except zmq.ZMQError:
                    pass
        sock.close(linger=200)  # long enough for the BYE to leave on a live connection

    async def aclose(self) -> None:
        """``close()``, then wait until the link's cancelled task has ended."""
        self.close()
        closing, self._closing = self._closing, []
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)

    # -- the machine's actions ----------------------------------------------------------------

    def _perform(self, actions: list) -> None:
        for action in actions:
            kind = type(action)
            if kind is Deliver:
                self._deliver(action.frames)
            elif kind is Send:
                self._send(action.message.encode())
            elif kind is SetCarrier:
                if not action.up:
                    log.warning("switch %s: %s: carrier down", self.endpoint, action.why)
                if self._carrier is not None:
                    self._carrier(action.up)
            elif kind is Reconnect:
                self._reconnect()
            elif kind is Refused:
                self.refused = f"switch {self.endpoint} refused this node: {action.reason}"
                log.error("%s", self.refused)
                if self._on_refused is not None:
                    self._on_refused(self.refused)
            elif kind is ClampMtu:
                log.warning("switch %s has MTU %d, below this node's %d: the device's MTU is lowered "
                            "to %d", self.endpoint, action.mtu, action.node_mtu, action.mtu)
                if self._on_mtu is not None:
                    self._on_mtu(action.mtu)

    def _arm(self) -> None:
        """Sleep until the machine's next deadline. A timer already due sooner is kept: it
        finds the deadline moved (the switch spoke) and sleeps again."""
        if self._raw is None:
            return
        deadline = self.machine.next_deadline()
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
        if self._raw is None:
            return
        self._perform(self.machine.tick(self._loop.time()))
        self._arm()

    def _reconnect(self) -> None:
        """Drop the connection to the switch and make a new one."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.disconnect(self.endpoint)
        except zmq.ZMQError:
            pass  # not connected (a refused handshake may have ended it)
        sock.connect(self.endpoint)

    # -- socket I/O ---------------------------------------------------------------------------

    def _send(self, msg: list[bytes], count: bool = False) -> bool:
        raw = self._raw
        if raw is None:
            return False
        try:
            raw.send_multipart(msg, _NOBLOCK)
        except zmq.Again:
            if count:
                self.tx_again += 1
            return False
        finally:
            # A send can consume the edge of the socket's FD: if messages are waiting to be
            # read, make sure a drain is coming.
            if self._drain_handle is None and raw.get(_EVENTS) & _POLLIN:
                self._drain_handle = self._loop.call_soon(self._drain)
        if count:
            self.tx_batches += 1
        return True

    async def _watch_handshakes(self, monitor: zmq.asyncio.Socket) -> None:
        """Count and log the CURVE handshakes that fail (the monitor is closed by close()).
        The retry is the machine's: a denied node hears nothing, so it reconnects each
        heartbeat timeout, and a key allowed later is picked up without a restart."""
        from zmq.utils.monitor import parse_monitor_message

        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            self.auth_failures += 1
            why = ("the switch does not allow this node's key" if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   else "the handshake failed (is the switch's public key right, and is CURVE on there?)")
            self._ratelimit.log(log, logging.ERROR, "CURVE with switch %s: %s (status %s)",
                                self.endpoint, why, event["value"])

    def _drain(self) -> None:
        """Read what the socket holds (up to RX_BUDGET messages), unless the NIC has paused."""
        self._drain_handle = None
        raw = self._raw
        if raw is None:
            return
        events = raw.get(_EVENTS)
        if events & _POLLOUT and self._writable_cb is not None:
            cb, self._writable_cb = self._writable_cb, None
            cb()
        now = self._loop.time()
        if events & _POLLIN:
            self.machine.heard(now)  # the switch is there, even if we pause
        if self._held is not None:
            if self._paused or not self._offer_held():
                return  # PAUSE: rx_resume calls again
        if not events & _POLLIN:
            return
        recv = raw.recv_multipart
        get = raw.get
        for i in range(RX_BUDGET):
            # Look before reading again: a raised zmq.Again costs more than the look, and a
            # wakeup usually brings one message (a broadcast to a LAN of a thousand nodes
            # wakes each of them for one).
            if i and not get(_EVENTS) & _POLLIN:
                break  # drained: the FD wakes us when more comes
            try:
                parts = recv(_NOBLOCK)
            except zmq.Again:
                break
            self.handle_message(parts, now)
            if self._held is not None or self._raw is None:
                break
        else:
            # more may be waiting: give the softirqs a turn, then read on
            self._drain_handle = self._loop.call_soon(self._drain)
        self._arm()

    def handle_message(self, parts: list[bytes], now: float) -> None:
        """One message from the switch, as read from the socket: decode it (a bad one counts
        ``rx_malformed``) and do what the machine says. The socket reader's entry, and the
        fuzz tests'."""
        # Messages arrive as bytes (copy=True): for the small ones that is cheaper than
        # ZeroMQ frame objects, and for big batches the copy is a few ns per frame.
        try:
            msg = wire.decode(parts)
        except wire.WireError as exc:
            self.rx_malformed += 1
            self._ratelimit.log(log, logging.WARNING, "from switch %s: %s", self.endpoint, exc)
            return
        self._perform(self.machine.receive(msg, now))

    def _deliver(self, batch) -> None:
        if self._rx is not None:
            stopped = self._rx(batch)
            if stopped is not None:
                self.rx_holds += 1
                self._held = (batch, stopped)
                self._paused = True

    def _offer_held(self) -> bool:
        """Offer the NIC the frames it paused on; True when it took them all."""
        batch, start = self._held
        self._held = None
        if self._rx is None:
            return True
        stopped = self._rx(batch, start)
        if stopped is not None:
            self._held = (batch, stopped)
            self._paused = True
            return False
        return True
