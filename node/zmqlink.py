"""The node's cable to the switch: a ``Link`` over a ZeroMQ DEALER.

This is the PHY of vnet0 in the node daemon. ``open()`` (the hardware does it at
``ndo_open``) connects to the switch's ROUTER and says HELLO; carrier comes up on WELCOME.
Batches of frames cross as one FRAMES message each (switch/wire.py). Liveness runs both
ways: the link sends a HEARTBEAT every interval and drops carrier when the switch has said
nothing for the timeout, when it says BYE, or when it answers NOT_ATTACHED (it restarted
and forgot us); then it says HELLO again with a capped, jittered backoff until the switch
welcomes it, and carrier comes back up. A switch silent for the timeout also gets a new
connection (and again each timeout while it stays silent): a TCP connection whose far end
vanished without a word (an address that changed, a cable cut in between) would otherwise
swallow the HELLOs until the kernel gives up on it, many minutes later. ``send()`` never
blocks: with the socket's IMMEDIATE option nothing queues for a switch that is not there,
and a full send buffer answers False (backpressure) so the TX ring fills;
``notify_writable(cb)`` calls ``cb`` once the socket takes messages again, so the TX DMA
engine retries at once instead of polling.

Receiving is driven by the socket's file descriptor (``loop.add_reader``), not by a task
awaiting futures: each wakeup reads up to ``RX_BUDGET`` messages without blocking and hands
their batches to the NIC, then, if more are waiting, lets the rest of the loop (the NAPI
softirq) run before reading on. The link does flow control (``flow_control = True``): when
the NIC's RX ring is full in the middle of a batch it takes only part of it, and the link
keeps the rest and reads nothing more until the NIC calls ``rx_resume()``; meanwhile the
frames wait in ZeroMQ and in the switch's queue for this port (802.3x PAUSE, with the
switch port's output queue as the partner's buffer).

Carrier also follows the switch port's administrative state: a CARRIER message (a cable
cut at the switch, ``vnet switch port NODE down``) takes carrier down while the link stays
attached, so heartbeats go on and nothing times out; CARRIER up (or a WELCOME whose
``carrier`` is true) brings it back.

With CURVE (``curve``: the node's key pair and the LAN's public key, vnet/auth.py) the link is
encrypted and the switch checks the node's key before the first message crosses. A socket
monitor watches the handshakes: one the switch denies counts ``auth_failures`` and is logged
(rate-limited); carrier never comes up, so the NIC sends nothing (frames offered count as
carrier errors). ZeroMQ itself gives up on a refused handshake, but the switch then stays
silent, so the keepalive makes a new connection each ``heartbeat_timeout`` (see above): a
key added to the switch's allowed list later is picked up without a restart.

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


class ZmqLink:
    """A Link to the learning switch at ``endpoint``; owns its DEALER socket and tasks.

    ``hello`` is called at each (re)attachment and returns ``(name, macs, mtu)`` so the
    switch always learns the device's current address. Counters: ``tx_batches`` and
    ``tx_frames`` (handed to the socket, bound for the switch), ``tx_again`` (sends refused by
    a full buffer), ``rx_batches`` and ``rx_frames`` (from the switch, offered to the NIC),
    ``rx_not_attached`` (frames that arrived while not attached: dropped), ``rx_malformed``,
    ``attaches``, ``carrier_losses`` (for any reason), ``cable_cuts`` (the switch took the
    port down), ``rx_holds`` (batches the NIC paused in), ``tx_no_carrier`` (frames in
    flight when carrier dropped, lost with the cable). ``carrier`` is what the NIC was told
    last: attached, and the switch port administratively up (``port_up``).
    """

    flow_control = True  # the NIC may take part of a batch; the rest waits (rx_resume)

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
        protocol_version: int = wire.PROTOCOL_VERSION,
        rng: random.Random | None = None,
        curve: CurveClient | None = None,
    ) -> None:
        if heartbeat_interval <= 0 or heartbeat_timeout <= heartbeat_interval:
            raise ValueError(
                f"heartbeat: need 0 < interval < timeout, got interval={heartbeat_interval} "
                f"timeout={heartbeat_timeout}"
            )
        self._ctx = ctx
        self.endpoint = endpoint
        self._hello = hello
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self._backoff_max = backoff_max
        self._sndhwm = sndhwm
        self._rcvhwm = rcvhwm
        self._on_refused = on_refused
        self._version = protocol_version
        self._rng = rng or random.Random()
        self._curve = curve
        self._monitor: zmq.asyncio.Socket | None = None
        self._ratelimit = RateLimit()
        self._sock: zmq.asyncio.Socket | None = None
        self._raw: zmq.Socket | None = None  # a plain shadow of _sock: no futures per message
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_handle: asyncio.Handle | None = None
        self._held: tuple[list, int] | None = None  # (batch, first frame the NIC did not take)
        self._paused = False  # the NIC asked for a PAUSE and has not lifted it
        self._writable_cb: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task] = []
        self._rx: RxCallback | None = None
        self._carrier: CarrierCallback | None = None
        self.attached = False
        self.port_up = True  # the switch port's administrative state (CARRIER, WELCOME)
        self.carrier = False
        self.port: int | None = None
        self.refused: str | None = None
        self.tx_batches = 0
        self.tx_frames = 0
        self.tx_again = 0
        self.rx_batches = 0
        self.rx_frames = 0
        self.rx_not_attached = 0
        self.rx_malformed = 0
        self.attaches = 0
        self.carrier_losses = 0
        self.tx_no_carrier = 0
        self.cable_cuts = 0
        self.rx_holds = 0
        self.auth_failures = 0  # CURVE handshakes the switch denied (or that failed)
        self.reconnects = 0  # new connections made while the switch was silent
        self._last_reconnect = 0.0
        self._last_heard = 0.0
        self._next_hello = 0.0
        self._backoff = 0.0

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
        self._backoff = 0.0
        self._next_hello = 0.0
        self._held = None
        self._paused = False
        self._writable_cb = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._last_heard = self._last_reconnect = loop.time()
        self._fd = self._raw.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._drain)
        self._tasks = [
            loop.create_task(self._keepalive(), name=f"link keepalive {self.endpoint}"),
        ]
        self._monitor = monitor
        if monitor is not None:
            self._tasks.append(loop.create_task(self._watch_handshakes(monitor),
                                                name=f"link handshakes {self.endpoint}"))

    def send(self, frames: Sequence[Frame]) -> bool:
        if self._sock is None or not self.attached:
            # Frames the DMA engine had in flight when carrier dropped: the cable is gone, so
            # they are lost, and counted here (the driver counts what it refuses afterwards).
            self.tx_no_carrier += len(frames)
            return True
        if self._send(wire.frames_msg(frames), count=True):
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
        """Say BYE (best effort), stop the tasks and close the socket. Callbacks stop now."""
        sock, self._sock = self._sock, None
        self._raw = None
        self._rx = self._carrier = None
        self._held = None
        self._writable_cb = None
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._monitor is not None:
            sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        if sock is not None:
            if self.attached:
                try:
                    sock.send_multipart(wire.BYE, flags=zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            sock.close(linger=200)  # long enough for the BYE to leave on a live connection
        self.attached = False
        self.carrier = False

    # -- internals ----------------------------------------------------------------------------

    def _send(self, msg: list[bytes], count: bool = False) -> bool:
        raw = self._raw
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

    def _set_attached(self, up: bool) -> None:
        if up == self.attached:
            return
        self.attached = up
        if up:
            self.attaches += 1
            self._backoff = 0.0
        else:
            self._next_hello = 0.0
        self._update_carrier()

    def _update_carrier(self) -> None:
        """Tell the NIC when carrier changes: attached, and the switch port up."""
        up = self.attached and self.port_up
        if up == self.carrier:
            return
        self.carrier = up
        if not up:
            self.carrier_losses += 1
        if self._carrier is not None:
            self._carrier(up)

    def _say_hello(self, now: float) -> None:
        name, macs, mtu = self._hello()
        self._send(wire.hello(name, [bytes(m) for m in macs], mtu, version=self._version))
        # capped exponential backoff with jitter, so a restarted switch is not stampeded
        self._backoff = min(self._backoff_max, max(0.1, self._backoff * 2))
        self._next_hello = now + self._backoff * (0.5 + self._rng.random())

    async def _keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        tick = min(0.1, self.heartbeat_interval / 2)
        next_beat = 0.0
        while True:
            now = loop.time()
            if self.refused is None:
                silent = now - self._last_heard > self.heartbeat_timeout
                if silent and now - self._last_reconnect > self.heartbeat_timeout:
                    # The connection may be dead without TCP knowing (the node's or the
                    # switch's address changed, a cable cut in between): start a new one.
                    self._reconnect(now)
                if self.attached:
                    if silent:
                        log.warning("switch %s silent for %.1f s: carrier down", self.endpoint, now - self._last_heard)
                        self._set_attached(False)
                    elif now >= next_beat:
                        self._send(wire.HEARTBEAT)
                        next_beat = now + self.heartbeat_interval
                if not self.attached and now >= self._next_hello:
                    self._say_hello(now)
            await asyncio.sleep(tick)

    def _reconnect(self, now: float) -> None:
        """Drop the connection to the switch and make a new one (counted ``reconnects``)."""
        self._last_reconnect = now
        self.reconnects += 1
        try:
            self._sock.disconnect(self.endpoint)
        except zmq.ZMQError:
            pass  # not connected (a refused handshake may have ended it)
        self._sock.connect(self.endpoint)

    async def _watch_handshakes(self, monitor: zmq.asyncio.Socket) -> None:
        """Count and log the CURVE handshakes that fail (the monitor is closed by close())."""
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
        if events & _POLLIN:
            self._last_heard = self._loop.time()  # the switch is there, even if we pause
        if self._held is not None:
            if self._paused or not self._offer_held():
                return  # PAUSE: rx_resume calls again
        if not events & _POLLIN:
            return
        recv = raw.recv_multipart
        for _ in range(RX_BUDGET):
            try:
                parts = recv(_NOBLOCK)
            except zmq.Again:
                return  # drained: the FD wakes us when more comes
            self._handle(parts)
            if self._held is not None or self._raw is None:
                return
        # more may be waiting: give the softirqs a turn, then read on
        self._drain_handle = self._loop.call_soon(self._drain)

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

    def _handle(self, parts: list[bytes]) -> None:
        # Messages arrive as bytes (copy=True): for the small ones that is cheaper than
        # ZeroMQ frame objects, and for big batches the copy is a few ns per frame.
        kind = parts[0]
        if kind == wire.MSG_FRAMES:
            if len(parts) != 2:
                self.rx_malformed += 1
                self._ratelimit.log(log, logging.WARNING, "FRAMES from switch %s in %d parts, not 2",
                                    self.endpoint, len(parts))
                return
            try:
                batch = wire.unpack_frames(parts[1])
            except wire.WireError as exc:
                self.rx_malformed += 1
                self._ratelimit.log(log, logging.WARNING, "malformed batch from switch %s: %s", self.endpoint, exc)
                return
            if not self.attached:
                self.rx_not_attached += len(batch)
                return
            self.rx_batches += 1
            self.rx_frames += len(batch)
            if self._rx is not None and batch:
                stopped = self._rx(batch)
                if stopped is not None:
                    self.rx_holds += 1
                    self._held = (batch, stopped)
                    self._paused = True
        elif kind == wire.MSG_HEARTBEAT:
            pass
        elif kind == wire.MSG_WELCOME:
            self._welcome(parts)
        elif kind in (wire.MSG_BYE, wire.MSG_NOT_ATTACHED):
            if self.attached:
                log.warning("switch %s %s: carrier down", self.endpoint,
                            "said BYE" if kind == wire.MSG_BYE else "forgot this port")
            self._set_attached(False)
        elif kind == wire.MSG_CARRIER:
            self._port_carrier(parts)
        elif kind == wire.MSG_REFUSE:
            self._refuse(parts)
        else:
            self.rx_malformed += 1
            self._ratelimit.log(log, logging.WARNING, "unknown message kind %r from switch %s", kind[:16],
                                self.endpoint)

    def _welcome(self, parts) -> None:
        try:
            info = wire.decode_map(parts[1] if len(parts) > 1 else b"", "WELCOME")
        except wire.WireError as exc:
            self.rx_malformed += 1
            self._ratelimit.log(log, logging.WARNING, "from switch %s: %s", self.endpoint, exc)
            return
        self.port = info.get("port")
        self.port_up = bool(info.get("carrier", True))
        self._set_attached(True)
        self._update_carrier()  # a WELCOME while attached may still change the port's state

    def _port_carrier(self, parts) -> None:
        """CARRIER: the switch cut this port's cable (0) or restored it (1)."""
        try:
            up = wire.parse_carrier(parts)
        except wire.WireError as exc:
            self.rx_malformed += 1
            self._ratelimit.log(log, logging.WARNING, "from switch %s: %s", self.endpoint, exc)
            return
        if up != self.port_up:
            log.warning("switch %s set this port administratively %s: carrier %s", self.endpoint,
                        "up" if up else "down", "follows" if self.attached else "when attached")
            if not up and self.attached:
                self.cable_cuts += 1
        self.port_up = up
        self._update_carrier()

    def _refuse(self, parts) -> None:
        try:
            info = wire.decode_map(parts[1] if len(parts) > 1 else b"", "REFUSE")
            reason = str(info.get("reason", "no reason given"))
        except wire.WireError as exc:
            reason = str(exc)
        self.refused = f"switch {self.endpoint} refused this node: {reason}"
        log.error("%s", self.refused)
        self._set_attached(False)
        if self._on_refused is not None:
            self._on_refused(self.refused)
