"""The switch's I/O shell: the ZeroMQ data endpoint, the control endpoint, the datapath loop.

The only layer here that owns sockets, tasks and the clock; all decisions are in
``SwitchCore``. One ROUTER socket carries every port (nodes are DEALERs). Each wakeup drains
up to ``DRAIN_BUDGET`` messages without blocking and feeds each to the core; the FRAMES it
returns for one port over the whole drain are concatenated into one message (payloads are
self-delimiting records), so even nodes that send one frame a message get batches back. A
message over the largest legal batch (``max_message_size``) is never read: ZeroMQ closes that
peer's connection (MAXMSGSIZE). Sends use NOBLOCK: ROUTER_MANDATORY makes an unroutable send
raise instead of vanishing, and the per-peer SNDHWM bounds each port's output queue, so a
slow or dead node costs a counted drop (``hwm``/``unroutable``) and never stalls the loop or
the others. The queue is bounded in messages (``port_hwm``) and in bytes
(``port_queue_bytes``): no FRAMES message out is bigger than MAX_SEND_BYTES (bigger batches
are cut at record boundaries), so SNDHWM is ``port_hwm`` or ``port_queue_bytes //
MAX_SEND_BYTES`` messages, whichever is less (``port_sndhwm``); the kernel's socket buffers
come on top.
The same task calls ``core.tick`` every ``heartbeat_interval / 2`` for liveness and ageing
(see ``_run`` for why it is not a separate timer task).

``close()`` is a clean shutdown that loses nothing uncounted: it says BYE to every port, then
goes on reading for at most ``BYE_DRAIN_TIMEOUT`` until each node has answered (a node that
reads the BYE drops carrier and says HELLO again; ZeroMQ keeps a connection's messages in
order, so after that answer nothing of that node's is still in flight to this switch). What
arrives meanwhile is counted, not forwarded: frames under ``unknown_peer``, the other messages
under ``not_attached``. Frames already queued to a node left before its BYE, so they arrived
before its answer. The data socket then closes with a short bounded linger
(``BYE_LINGER_MS``); every other socket closes with linger 0. ``final_stats`` holds the
counters as they were at the end (``vnet switch`` prints them as its last line).

The tools (docs/tools.md) hook in per port, by the port's name: an admin state (``port_set``,
in the core), mirrors (``mirror_*``) and impairments per direction (``impair``); the last two
are ``switch.pipeline.PortTools``, sans-I/O like the core. This shell only passes it the
messages of the ports in its hooks and sends what it returns; a loop timer releases the
frames it holds (``tools.next_at()``), as do the datapath callbacks when they find them due.

Trunks (``switch/trunk.py``, ``SwitchConfig.trunks``): this server opens each at start and
closes each (BYE to the remote switch) before the ports' BYEs; ``_transmit_one`` hands what the
core sends to a trunk's pseudo peer id to that trunk instead of the ROUTER. Spanning tree's
timers (``core.stp_tick``) run from a loop timer at the bridge's next deadline (``_stp_tick``).

Receiving and sending go through a plain (shadow) socket on the same ZeroMQ socket, and the
datapath runs from loop callbacks on the socket's file descriptor (see ``_run``), so the
per-message path creates no futures and a wakeup costs no more than a callback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from typing import Any, Callable

import zmq
import zmq.asyncio

from vnet.proto import wire
from vnet.proto.ether import ETH_HLEN, VLAN_HLEN
from vnet.switch.core import (
    DEFAULT_HELLO_BURST,
    DEFAULT_HELLO_RATE,
    DEFAULT_MAX_PORTS,
    ETH_MAX_MTU,
    ETH_MIN_MTU,
    VIOLATIONS,
    Message,
    SwitchCore,
    UnknownPort,
    clip,
)
from vnet.switch.fdb import Fdb
from vnet.switch.vlan import PortVlan, parse_spec
from vnet.switch.metrics import SwitchCollector
from vnet.switch import stp
from vnet.switch.trunk import Trunk, TrunkSpec
from vnet.switch.pipeline import MIRROR_IDLE_TIMEOUT, PortTools, Tx
from vnet.proto import auth
from vnet.proto.capture import (DEFAULT_BUFFER, DEFAULT_SNAPLEN, CaptureLimitError, FilterError, check_limits,
                                compile_filter, filter_engine)
from vnet.proto.httpserve import MetricsServer, parse_listen
from vnet.proto.control import ControlError, ControlServer, EndpointInUse, switch_control_endpoint
from vnet.proto.policy import SWITCH_POLICY

log = logging.getLogger(__name__)

# Plain ints: pyzmq's constants are enums, and mixing them in the per-message path costs an
# enum operation each time. Sends copy (copy=False would hand big payloads to pyzmq's
# garbage-collector thread, which costs more than the memcpy it saves).
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)

DRAIN_BUDGET = 256  # messages handled per wakeup before yielding to the other tasks
COALESCE_BYTES = 256 * 1024  # a drain gathers a port's FRAMES into one message up to this size
# The largest FRAMES message out: a node's whole TX doorbell of full-size frames (256 of 1514 B
# is about 390 kB) still leaves as it came, and bigger ones are cut, so a port's queue of
# SNDHWM messages is bounded in bytes.
MAX_SEND_BYTES = 1024 * 1024
# The largest legal FRAMES batch: one doorbell of a node's largest TX ring (node/vnic.py's
# VNIC_RING_MAX descriptors; the switch may not import the node) of frames the switch's MTU
# allows. The data socket refuses bigger messages (MAXMSGSIZE), before reading them whole.
MAX_BATCH_FRAMES = 4096


def max_message_size(mtu: int) -> int:
    """ZeroMQ's MAXMSGSIZE for the data socket: the largest legal FRAMES batch for ``mtu``."""
    return MAX_BATCH_FRAMES * (wire.FRAME_HDR.size + mtu + ETH_HLEN + VLAN_HLEN)
BYE_LINGER_MS = 200  # how long close() lets the final messages leave before dropping them
BYE_DRAIN_TIMEOUT = 2.0  # how long close() waits for every node to answer its BYE


@dataclasses.dataclass
class SwitchConfig:
    """What a switch is told at start; checked on construction (ValueError naming the field)."""

    bind: str = f"tcp://127.0.0.1:{wire.DEFAULT_DATA_PORT}"
    # None: no control endpoint. The default is an ipc socket only this user can open
    # (proto.control.switch_control_endpoint); TCP is opt-in.
    control: str | None = dataclasses.field(default_factory=switch_control_endpoint)
    ageing_time: float = 300.0
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 3.0
    fdb_max: int = 8192
    mtu: int = 1500
    port_hwm: int = 1000
    port_queue_bytes: int = 64 * 1024 * 1024  # each port's output queue, in bytes (beside port_hwm)
    max_macs: int = 0  # port security: MACs a port may hold (0 = unlimited)
    violation: str = "drop"  # what a port-security violation does: "drop", or "shutdown" the port
    max_ports: int = DEFAULT_MAX_PORTS  # ports attached at most (a HELLO for one more is refused)
    hello_rate: float = DEFAULT_HELLO_RATE  # HELLOs a second from new peers (0 = no limit)
    hello_burst: int = DEFAULT_HELLO_BURST  # ... and at once
    curve_secret: str | None = None  # the LAN key pair (.key_secret): CURVE on data and control
    curve_allowed: str | None = None  # a directory of allowed public keys (.key), or one file
    # 802.1Q port VLANs at start, by port name: a spec ("access:10", "trunk:10,20:native=10",
    # switch/vlan.py) or a PortVlan; applied to a port whenever it attaches
    vlans: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: str | None = None  # the Prometheus endpoint, HOST:PORT (`vnet switch` default 127.0.0.1:0); None: none
    name: str = "switch"  # this switch's name: its bridge MAC, a trunk's default remote port name
    trunks: list = dataclasses.field(default_factory=list)  # TrunkSpec or "PORT=ENDPOINT[,as=REMOTE]"
    stp_priority: int = stp.DEFAULT_PRIORITY
    stp_hello: float = stp.DEFAULT_HELLO
    stp_max_age: float = stp.DEFAULT_MAX_AGE
    stp_forward_delay: float = stp.DEFAULT_FORWARD_DELAY

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _check_endpoint("bind", self.bind)
        if self.control is not None:
            _check_endpoint("control", self.control)
        _check_number("ageing_time", self.ageing_time, minimum=0.0, what=">= 0 seconds (0 = never age)")
        _check_number("heartbeat_interval", self.heartbeat_interval, minimum=0.0, what="> 0 seconds", strict=True)
        _check_number("heartbeat_timeout", self.heartbeat_timeout, minimum=0.0, what="> 0 seconds", strict=True)
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError(
                f"heartbeat_timeout ({self.heartbeat_timeout:g} s) must be longer than "
                f"heartbeat_interval ({self.heartbeat_interval:g} s), typically 3 intervals"
            )
        _check_int("fdb_max", self.fdb_max, 1, 1 << 24)
        _check_int("mtu", self.mtu, ETH_MIN_MTU, ETH_MAX_MTU)
        _check_int("port_hwm", self.port_hwm, 1, 1 << 24)
        _check_int("port_queue_bytes", self.port_queue_bytes, MAX_SEND_BYTES, 1 << 40)
        _check_int("max_macs", self.max_macs, 0, 1 << 24)
        _check_int("max_ports", self.max_ports, 1, 1 << 20)
        _check_number("hello_rate", self.hello_rate, minimum=0.0, what=">= 0 a second (0 = no limit)")
        _check_int("hello_burst", self.hello_burst, 1, 1 << 20)
        self.port_vlans()
        if self.metrics is not None:
            parse_listen(self.metrics)
        if self.violation not in VIOLATIONS:
            raise ValueError(f'violation must be "drop" or "shutdown", got {self.violation!r}')
        if not isinstance(self.name, str) or not self.name or len(self.name) > 255:
            raise ValueError(f"name must be a non-empty string of at most 255 characters, got {self.name!r}")
        stp.check_settings(self.stp_priority, self.stp_hello, self.stp_max_age, self.stp_forward_delay)
        self.trunks = [t if isinstance(t, TrunkSpec) else TrunkSpec.parse(t) for t in self.trunks]
        ports = [t.port for t in self.trunks]
        if len(set(ports)) != len(ports):
            raise ValueError(f"trunk port names must differ, got {', '.join(ports)}")
        if (self.curve_secret is None) != (self.curve_allowed is None):
            raise ValueError("CURVE needs both curve_secret (the LAN's .key_secret) and curve_allowed "
                             "(the directory of allowed node keys); `vnet keygen DIR NODE...` writes both")
        if self.curve_secret is not None:
            auth.load_secret(self.curve_secret)
            auth.AllowedKeys(self.curve_allowed)
        elif self.control is not None and not auth.is_loopback_or_local(self.control):
            raise ValueError(
                f"control endpoint {self.control} would let other hosts drive the switch without "
                f"authentication: bind it to a loopback address (tcp://127.0.0.1:{wire.DEFAULT_CONTROL_PORT}) "
                f"or ipc://, or turn CURVE on (curve_secret and curve_allowed)"
            )


    def port_vlans(self) -> dict[str, PortVlan]:
        """``vlans`` as configurations (ValueError naming the port and what is wrong)."""
        if not isinstance(self.vlans, dict):
            raise ValueError(f"vlans must be a mapping of port name to VLAN spec, got {self.vlans!r}")
        out = {}
        for port, spec in self.vlans.items():
            if not isinstance(port, str) or not port:
                raise ValueError(f"vlans: a port name must be a non-empty string, got {port!r}")
            if isinstance(spec, PortVlan):
                out[port] = spec
            elif isinstance(spec, str):
                try:
                    out[port] = parse_spec(spec)
                except ValueError as exc:
                    raise ValueError(f"vlans: port {port!r}: {exc}") from None
            else:
                raise ValueError(f"vlans: port {port!r}: a VLAN spec such as 'access:10' or "
                                 f"'trunk:10,20:native=10', got {spec!r}")
        return out


def split_records(payload: bytes, limit: int) -> list[bytes]:
    """A FRAMES payload cut at record boundaries into pieces of at most ``limit`` bytes (a
    record bigger than ``limit``, which a legal frame never is, makes a piece of its own)."""
    pieces = []
    start = off = 0
    end = len(payload)
    while off + 2 <= end:
        nxt = off + 2 + (payload[off] << 8 | payload[off + 1])
        if nxt - start > limit and off > start:
            pieces.append(payload[start:off])
            start = off
        off = nxt
    pieces.append(payload[start:])
    return pieces


def port_sndhwm(port_hwm: int, port_queue_bytes: int) -> int:
    """The data socket's SNDHWM: ``port_hwm`` messages, fewer if that many messages of the
    largest size the server sends (MAX_SEND_BYTES) would hold more than ``port_queue_bytes``."""
    return max(1, min(port_hwm, port_queue_bytes // MAX_SEND_BYTES))


def _check_endpoint(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.startswith(("tcp://", "ipc://", "inproc://")):
        raise ValueError(
            f"{field} must be a ZeroMQ endpoint such as tcp://127.0.0.1:5540 or tcp://0.0.0.0:5540 "
            f"(tcp://, ipc:// or inproc://), got {value!r}"
        )


def _check_number(field: str, value: Any, minimum: float, what: str, strict: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok or value == float("inf"):
        raise ValueError(f"{field} must be a number {what}, got {value!r}")


def _check_int(field: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be an integer from {low} to {high}, got {value!r}")


class SwitchServer:
    """A running switch: ``await start()``, then ``await close()``.

    ``ctx`` may be shared (the embedded LAN); the server then leaves it open. Without one the
    server makes its own context and terminates it in ``close()``.
    """

    def __init__(self, config: SwitchConfig | None = None, ctx: zmq.asyncio.Context | None = None) -> None:
        self.config = config if config is not None else SwitchConfig()
        self.config.validate()
        self._own_ctx = ctx is None
        self._ctx = ctx if ctx is not None else zmq.asyncio.Context()
        cfg = self.config
        self.core = SwitchCore(
            mtu=cfg.mtu,
            heartbeat_interval=cfg.heartbeat_interval,
            heartbeat_timeout=cfg.heartbeat_timeout,
            fdb=Fdb(ageing_time=cfg.ageing_time, max_entries=cfg.fdb_max),
            max_macs=cfg.max_macs,
            violation=cfg.violation,
            max_ports=cfg.max_ports,
            hello_rate=cfg.hello_rate,
            hello_burst=cfg.hello_burst,
            vlans=cfg.port_vlans(),
            name=cfg.name,
            stp=stp.Bridge(cfg.name, cfg.stp_priority, cfg.stp_hello, cfg.stp_max_age, cfg.stp_forward_delay),
        )
        self.trunks: dict[bytes, Trunk] = {}  # by pseudo peer id; opened by start(), closed by close()
        self._stp_handle: asyncio.TimerHandle | None = None
        self.data_endpoint: str | None = None
        self.control_endpoint: str | None = None
        self.metrics_url: str | None = None
        self._metrics: MetricsServer | None = None
        self.final_stats: dict | None = None  # the counters after close()
        self._sock: zmq.asyncio.Socket | None = None
        self._raw: zmq.Socket | None = None
        self._control: ControlServer | None = None
        self._zap: auth.ZapHandler | None = None
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._failed: asyncio.Future | None = None
        self._drain_handle: asyncio.Handle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._next_tick = 0.0
        # the tools, by port name; the datapath's view of them, by peer id
        self.tools = PortTools(self.core)
        self._mirror_expiry: asyncio.TimerHandle | None = None
        self._release_handle: asyncio.TimerHandle | None = None
        self._release_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._sock is not None:
            raise RuntimeError("SwitchServer.start() called twice")
        if self._closed:
            raise RuntimeError("SwitchServer cannot start again after close(); make a new one")
        self._loop = asyncio.get_running_loop()
        self.tools.epoch = time.time() - self._loop.time()  # mirror timestamps are wall-clock
        cfg = self.config
        keys = None
        if cfg.curve_secret is not None:
            keys = auth.load_secret(cfg.curve_secret)
            # the handler first: a CURVE socket with no ZAP handler lets every key in
            self._zap = auth.ZapHandler(self._ctx, auth.AllowedKeys(cfg.curve_allowed, frozenset({keys.public})))
            self._zap.start()
        sock = self._ctx.socket(zmq.ROUTER)
        try:
            if keys is not None:
                auth.curve_server(sock, keys)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable sends raise, and are counted
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting identity takes over its pipe
            # per peer: one port's output limit, in messages and (through their size) in bytes
            sock.setsockopt(zmq.SNDHWM, port_sndhwm(cfg.port_hwm, cfg.port_queue_bytes))
            # A peer's message over the largest legal batch is not read: ZeroMQ closes that
            # connection (the node reconnects and says HELLO again).
            sock.setsockopt(zmq.MAXMSGSIZE, max_message_size(cfg.mtu))
            sock.bind(cfg.bind)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise OSError(f"cannot bind the switch data endpoint {cfg.bind}: {exc}") from None
        if cfg.bind.startswith("ipc://"):
            os.chmod(cfg.bind[len("ipc://"):], 0o600)  # as the control socket: this user's only
        self._sock = sock
        self._raw = zmq.Socket.shadow(sock.underlying)
        self.data_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if cfg.control is not None:
            try:
                self._control = ControlServer(self._ctx, cfg.control, self._handlers(), curve=keys,
                                              policy=SWITCH_POLICY)
            except (zmq.ZMQError, EndpointInUse) as exc:
                await self._close_sockets()
                raise OSError(f"cannot bind the switch control endpoint {cfg.control}: {exc}") from None
            self.control_endpoint = self._control.endpoint
            self._control.start()
        listen = parse_listen(cfg.metrics) if cfg.metrics is not None else None
        if listen is not None:
            metrics = MetricsServer(*listen, [SwitchCollector(self.core, self.tools, self._now)])
            try:
                self.metrics_url = await metrics.start()
            except OSError as exc:
                await self._close_sockets()
                raise OSError(f"cannot serve metrics on {cfg.metrics}: {exc.strerror or exc}; pick another port "
                              f"(0: any free one) or --metrics off") from None
            self._metrics = metrics
        loop = self._loop
        self._tasks = [loop.create_task(self._run(), name="switch datapath")]
        curve = auth.CurveClient(keys, keys.public) if keys is not None else None
        for spec in cfg.trunks:
            trunk = Trunk(self._ctx, spec, self.core, self._send, switch_name=cfg.name, mtu=cfg.mtu,
                          heartbeat_interval=cfg.heartbeat_interval, heartbeat_timeout=cfg.heartbeat_timeout,
                          curve=curve)
            self.trunks[trunk.peer] = trunk
            trunk.open()
        log.info("switch listening on %s (control %s)", self.data_endpoint, self.control_endpoint)

    async def close(self) -> None:
        """BYE to every port, stop the tasks, close the sockets (and the context if ours)."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for handle in (self._release_handle, self._mirror_expiry):
            if handle is not None:
                handle.cancel()
        self._release_handle = self._mirror_expiry = None
        self.tools.close()
        if self._stp_handle is not None:
            self._stp_handle.cancel()
            self._stp_handle = None
        for trunk in self.trunks.values():
            await trunk.aclose()  # BYE to the remote switches
        if self._raw is not None:
            await self._say_goodbye([m for m in self.core.shutdown() if m[0] not in self.trunks])
        self.final_stats = self._c_stats()
        await self._close_sockets()

    async def _say_goodbye(self, byes: list[Message]) -> None:
        """Send the BYEs and read until every node has answered one (see the module
        docstring); a BYE its port's full queue refuses is retried, one to a vanished peer
        is not waited for."""
        raw = self._raw
        loop = self._loop
        unsent = dict(byes)
        waiting = set(unsent)
        deadline = loop.time() + BYE_DRAIN_TIMEOUT
        while waiting and loop.time() < deadline:
            for peer, parts in list(unsent.items()):
                try:
                    raw.send_multipart([peer, *parts], _NOBLOCK)
                    del unsent[peer]
                except zmq.Again:
                    pass
                except zmq.ZMQError:
                    del unsent[peer]
                    waiting.discard(peer)
            while True:
                try:
                    msg = raw.recv_multipart(_NOBLOCK)
                except zmq.Again:
                    break
                peer, parts = msg[0], msg[1:]
                self.core.not_attached(peer, parts)
                if peer not in unsent and parts and parts[0] != wire.MSG_FRAMES:
                    waiting.discard(peer)
            if waiting:
                await self._sock.poll(timeout=20)
        if waiting:
            log.warning("%d node(s) did not answer the closing BYE within %g s", len(waiting), BYE_DRAIN_TIMEOUT)

    async def _close_sockets(self) -> None:
        if self._metrics is not None:
            await self._metrics.close()
            self._metrics = None
        if self._control is not None:
            await self._control.close()
            self._control = None
        if self._sock is not None:
            # The BYEs just queued get a short, bounded chance to leave; nothing else waits.
            self._sock.close(linger=BYE_LINGER_MS)
            self._sock = None
            self._raw = None
        if self._zap is not None:
            await self._zap.close()
            self._zap = None
        if self._own_ctx:
            ctx = self._ctx
            # destroy, not term: it closes every socket the context still has (e.g. one a
            # failed bind left behind) instead of waiting for them forever
            await asyncio.get_running_loop().run_in_executor(None, ctx.destroy)

    async def wait(self) -> None:
        """Until a server task ends (only by a bug: it is logged and re-raised here)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()

    async def __aenter__(self) -> "SwitchServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- datapath ----------------------------------------------------------------------

    async def _run(self) -> None:
        """The data socket's owner: wires its FD to ``_drain`` and arms the tick, then waits
        until a callback fails (a bug: it is logged and raised here, for ``wait``).

        The datapath runs from loop callbacks, not from a task awaiting futures: a wakeup of
        the socket's FD calls ``_drain``, which reads up to DRAIN_BUDGET messages without
        blocking and, if more are waiting, queues itself behind the loop's other callbacks
        (the control endpoint) instead of looping. The ZeroMQ FD is edge-triggered and a
        send can consume its edge, so after every batch of sends the socket's EVENTS are
        checked and a drain is queued if messages are waiting.
        """
        loop = self._loop
        raw = self._raw
        assert raw is not None
        self._failed = loop.create_future()
        fd = raw.getsockopt(zmq.FD)
        loop.add_reader(fd, self._drain)
        self._next_tick = loop.time() + self.config.heartbeat_interval / 2
        self._tick_handle = loop.call_at(self._next_tick, self._tick)
        self._drain_handle = loop.call_soon(self._drain)
        self._stp_handle = loop.call_soon(self._stp_tick)
        try:
            await self._failed
        finally:
            loop.remove_reader(fd)
            for handle in (self._tick_handle, self._drain_handle, self._stp_handle):
                if handle is not None:
                    handle.cancel()
            self._tick_handle = self._drain_handle = self._stp_handle = None

    def _stp_tick(self) -> None:
        """Spanning tree's timers: run at the bridge's next deadline, and at least every
        quarter of the shorter of hello time and forward delay (events in between may have
        set a sooner deadline; a quarter is far finer than 802.1D's one-second tick)."""
        self._stp_handle = None
        if self._raw is None:
            return
        try:
            now = self._loop.time()
            messages = self.core.stp_tick(now)
            if messages:
                self._send(messages)
            cfg = self.config
            at = now + min(cfg.stp_hello, cfg.stp_forward_delay) / 4
            deadline = self.core.stp_deadline()
            if deadline is not None and deadline < at:
                at = max(deadline, now)
            self._stp_handle = self._loop.call_at(at, self._stp_tick)
            self._maybe_drain()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        log.exception("switch loop failed", exc_info=exc)
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(exc)

    def _maybe_drain(self) -> None:
        raw = self._raw
        if raw is not None and self._drain_handle is None and raw.get(_EVENTS) & _POLLIN:
            self._drain_handle = self._loop.call_soon(self._drain)

    def _tick(self) -> None:
        self._tick_handle = None
        if self._raw is None:
            return
        try:
            now = self._loop.time()
            tick = self.core.tick(now)
            if tick.messages:
                self._send(tick.messages)
            self.tools.sync()
            self._next_tick = now + self.config.heartbeat_interval / 2
            self._tick_handle = self._loop.call_at(self._next_tick, self._tick)
            self._maybe_drain()
        except Exception as exc:
            self._fail(exc)

    def _drain(self) -> None:
        """Forward up to DRAIN_BUDGET waiting messages.

        FRAMES for the same port from the whole drain go out as one message: records are
        self-delimiting, so payloads concatenate (interrupt coalescing, with no added delay:
        only what was already queued).
        """
        self._drain_handle = None
        raw = self._raw
        if raw is None:
            return
        try:
            if not raw.get(_EVENTS) & _POLLIN:
                return
            tools = self.tools
            tools.sync()
            hooks_in = tools.hooks_in
            recv = raw.recv_multipart
            handle = self.core.handle
            send = self._send
            noblock = _NOBLOCK
            frames_kind = wire.MSG_FRAMES
            now = self._loop.time()
            pending: dict[bytes, list[bytes]] = {}
            pending_bytes: dict[bytes, int] = {}
            trunks = self.trunks
            for _ in range(DRAIN_BUDGET):
                try:
                    parts = recv(noblock)
                except zmq.Again:
                    break
                if trunks and parts[0] in trunks:
                    # a peer that chose a trunk's pseudo id as its routing id: it is not that
                    # trunk (whose messages never cross the ROUTER), so it is not attached
                    self.core.not_attached(parts[0], parts[1:])
                    continue
                if hooks_in and parts[0] in hooks_in:
                    outs = tools.ingress(parts[0], parts[1:], now)
                else:
                    outs = handle(parts[0], parts[1:], now)
                for peer, out in outs:
                    if out[0] == frames_kind:
                        queued = pending.get(peer)
                        if queued is None:
                            pending[peer] = [out[1]]
                            pending_bytes[peer] = len(out[1])
                            continue
                        n = len(out[1])
                        if pending_bytes[peer] + n <= COALESCE_BYTES:
                            queued.append(out[1])
                            pending_bytes[peer] += n
                            continue
                        # full: what is gathered goes, and this payload starts the next message
                        send([(peer, [frames_kind, b"".join(queued)])])
                        pending[peer] = [out[1]]
                        pending_bytes[peer] = n
                    else:
                        if peer in pending:  # keep this peer's order
                            send([(peer, [frames_kind, b"".join(pending.pop(peer))])])
                            del pending_bytes[peer]
                        send([(peer, out)])
                        if out[0] == wire.MSG_WELCOME:
                            tools.sync()  # a port with tools set may be back
                            hooks_in = tools.hooks_in
            if pending:
                send([(peer, [frames_kind, q[0] if len(q) == 1 else b"".join(q)]) for peer, q in pending.items()])
            if now >= self._next_tick and self._tick_handle is not None:
                # a busy socket must not starve liveness: tick from here when it is due
                self._tick_handle.cancel()
                self._tick()
            if tools.line:
                if tools.next_at() <= now:
                    self._release_due(now)  # nor delayed frames
                else:
                    self._arm_release()  # frames the tools took on hold in this drain
            self._maybe_drain()
        except Exception as exc:
            self._fail(exc)

    def _send(self, messages: list[Message]) -> None:
        transmit = self._transmit
        tools = self.tools
        hooks_out = tools.hooks_out
        for peer, parts in messages:
            if hooks_out and peer in hooks_out and parts[0] == wire.MSG_FRAMES:
                tx = tools.egress(peer, parts[1], self._loop.time())
                if tx is not None:
                    self._send_tx(tx)
                if tools.line:
                    self._arm_release()  # it may have held frames
                hooks_out = tools.hooks_out  # egress may have rebuilt the hooks
            else:
                transmit(peer, parts)

    def _transmit(self, peer: bytes, parts: list[bytes]) -> bool:
        """Send one message past the tools, without blocking; a refusal is counted, and
        answers False. FRAMES over MAX_SEND_BYTES go as several messages, each at most that
        (so SNDHWM messages bound the port's queue in bytes)."""
        if len(parts[-1]) > MAX_SEND_BYTES and parts[0] == wire.MSG_FRAMES and len(parts) == 2:
            sent = True
            for piece in split_records(parts[1], MAX_SEND_BYTES):
                sent = self._transmit_one(peer, [wire.MSG_FRAMES, piece]) and sent
            return sent
        return self._transmit_one(peer, parts)

    def _transmit_one(self, peer: bytes, parts: list[bytes]) -> bool:
        trunks = self.trunks
        if trunks and peer in trunks:  # this switch's own end of a trunk: its DEALER
            failed = trunks[peer].from_core(parts)
            if failed is not None:
                self.core.send_failed(peer, parts, failed)
                return False
            return True
        try:
            self._raw.send_multipart([peer, *parts], _NOBLOCK)
            return True
        except zmq.Again:
            self.core.send_failed(peer, parts, "hwm")
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                log.warning("send to peer %s failed: %s", clip(peer.hex(), 64), exc)
            self.core.send_failed(peer, parts, "unroutable")
        return False

    # -- the tools' datapath: the delay line's timer -------------------------------------

    def _send_tx(self, tx: Tx) -> None:
        """Send what the tools let go; mirror it once ZeroMQ took it."""
        peer, parts, mirror = tx
        if self._transmit(peer, parts) and mirror:
            self.tools.mirror_out(peer, mirror, self._loop.time())

    def _arm_release(self) -> None:
        at = self.tools.next_at()
        if at is None:
            return
        if self._release_handle is not None:
            if self._release_at <= at:
                return
            self._release_handle.cancel()
        self._release_at = at
        self._release_handle = self._loop.call_at(at, self._release)

    def _release(self) -> None:
        self._release_handle = None
        if self._raw is None:
            return
        try:
            self._release_due(self._loop.time())
            self._maybe_drain()
        except Exception as exc:
            self._fail(exc)

    def _release_due(self, now: float) -> None:
        """Deliver the held frames that have fallen due, and re-arm the timer."""
        forwarded, txs = self.tools.release(now)
        if forwarded:
            self._send(forwarded)
        for tx in txs:
            self._send_tx(tx)
        self._arm_release()

    def _send_soon(self, messages: list[Message]) -> None:
        """Messages from a control request: sent by a loop callback, as the datapath's are."""
        def send() -> None:
            if self._raw is None:
                return
            try:
                self._send(messages)
                self._maybe_drain()
            except Exception as exc:
                self._fail(exc)
        self._loop.call_soon(send)

    # -- control endpoint --------------------------------------------------------------

    def _handlers(self) -> dict:
        """The control commands, each with its arguments' policy in proto/policy.py
        (SWITCH_POLICY). The core's and the tools' refusals of a request (UnknownPort, and the
        ValueError of a bad setting) become ControlError here, through ``_refused``."""
        return {
            "ping": self._c_ping,
            "fdb": self._c_fdb,
            "ports": self._c_ports,
            "stats": self._c_stats,
            "flush": self._c_flush,
            "set_ageing": self._c_set_ageing,
            "port_set": self._c_port_set,
            "port_security": self._c_port_security,
            "vlan_set": self._c_vlan_set,
            "vlan_clear": self._c_vlan_clear,
            "vlan_show": self._c_vlan_show,
            "impair": self._c_impair,
            "mirror_start": self._c_mirror_start,
            "mirror_read": self._c_mirror_read,
            "mirror_stop": self._c_mirror_stop,
            "stp_show": self._c_stp_show,
        }

    def _now(self) -> float:
        return self._loop.time()

    def _c_ping(self) -> dict:
        """The switch's health: alive, its ports, and its metrics URL when it serves one."""
        answer = {"ok": True, "ports": len(self.core.ports)}
        if self.metrics_url is not None:
            answer["metrics"] = self.metrics_url
        return answer

    def _c_fdb(self, port: str | None = None, vlan: int | None = None) -> list[dict]:
        rows = self.core.fdb_view(self._now())
        if port is not None:
            _refused(self.core.port_by_name, port)  # a clear error for a name that is not attached
            rows = [r for r in rows if r["port"] == port]
        if vlan is not None:
            rows = [r for r in rows if r["vlan"] == vlan]
        return rows

    def _c_ports(self) -> list[dict]:
        rows = self.core.ports_view(self._now())
        for row in rows:
            row.update(self.tools.port_view(row["name"]))
        return rows

    def _c_stats(self) -> dict:
        stats = self.core.stats()
        stats["impair"] = self.tools.counters()
        stats["mirror_errors"] = self.tools.mirror_errors
        if self._zap is not None:
            stats["auth"] = self._zap.counters()
        if self._control is not None:
            stats["control"] = self._control.counters()
        if self.trunks:
            stats["trunks"] = {t.port: t.view() for t in self.trunks.values()}
        return stats

    def _c_stp_show(self) -> dict:
        """Spanning tree: the bridge, the root, every port's role and state (and a trunk's link)."""
        view = self.core.stp_show(self._now())
        trunks = {t.port: t for t in self.trunks.values()}
        for row in view["ports"]:
            trunk = trunks.get(row["port"])
            if trunk is not None:
                row["trunk"] = {"endpoint": trunk.endpoint, "remote_port": trunk.remote_port,
                                "link": "up" if trunk.machine.carrier else "down"}
        return view

    def _c_flush(self, port: str | None = None) -> int:
        return _refused(self.core.flush, port)

    def _c_set_ageing(self, seconds: float) -> float:
        _refused(self.core.fdb.set_ageing_time, seconds)
        self.config.ageing_time = self.core.fdb.ageing_time
        return self.core.fdb.ageing_time

    def _c_port_set(self, port: str, up: bool) -> dict:
        """Administratively down (a cut cable) or up; the node is told at once."""
        row, messages = _refused(self.core.set_admin, port, up, self._now())
        if messages:
            self._send_soon(messages)
        return row

    def _c_port_security(self, max_macs: int | None = None, violation: str | None = None) -> dict:
        """Show, or change, the MAC limit per port and what a violation does."""
        return _refused(self.core.set_port_security, max_macs=max_macs, violation=violation)

    def _c_vlan_set(self, port: str, mode: str, vlan: int | None = None, allowed: list[int] | None = None,
                    native: int | None = None, native_tagged: bool = False) -> dict:
        """Make ``port`` (attached or not) an access port of ``vlan`` or a trunk of ``allowed``
        with an optional ``native`` VLAN; its FDB entries are flushed."""
        try:
            if not port:
                raise ValueError("a port name is needed")
            cfg = PortVlan(mode, vlan=vlan, allowed=tuple(allowed or ()), native=native, native_tagged=native_tagged)
        except ValueError as exc:
            raise ControlError(f"vlan_set {port}: {exc}") from None
        return self.core.set_vlan(port, cfg, self._now())

    def _c_vlan_clear(self, port: str) -> dict:
        """Make ``port`` VLAN-transparent again (as a port never configured)."""
        return self.core.set_vlan(port, None, self._now())

    def _c_vlan_show(self) -> list[dict]:
        return self.core.vlan_view()

    def _c_impair(self, port: str, dir: str | None = None, clear: bool = False, **params: Any) -> dict:
        """Change the named impairments of ``port`` in ``dir`` ("in", "out", "both"; the
        others stay; ``clear`` first resets them all); with nothing to change, show them."""
        return _refused(self.tools.impair, port, self._now(), dir=dir, clear=clear, **params)

    async def _c_mirror_start(self, port: str, filter: str = "", count: int | None = None,
                              buffer: int = DEFAULT_BUFFER, snaplen: int = DEFAULT_SNAPLEN) -> dict:
        """Mirror ``port``: frames the switch receives from it ("in") and sends to it ("out").
        The filter compiles off the event loop (libpcap's optimiser can take seconds over a
        long expression), so forwarding goes on meanwhile."""
        try:
            check_limits(buffer, count, snaplen)
            _refused(self.core.port_by_name, port)  # a bad name fails before the compile
            match = await asyncio.to_thread(compile_filter, filter)
            row = _refused(self.tools.mirror_start, port, self._now(), filter=filter, count=count, buffer=buffer,
                           snaplen=snaplen, match=match)
        except (FilterError, CaptureLimitError) as exc:
            raise ControlError(str(exc)) from None
        if self._mirror_expiry is None:
            self._mirror_expiry = self._loop.call_later(MIRROR_IDLE_TIMEOUT / 3, self._expire_mirrors)
        return {**row, "engine": filter_engine()}

    async def _c_mirror_read(self, id: int, timeout: float = 1.0, max: int = 1024) -> dict:
        """Frames mirrored since the last read (waits up to ``timeout`` for the first one)."""
        m = self.tools.mirrors.get(id)
        if m is None:
            raise ControlError(f"no mirror {id} on this switch (it was stopped, or expired unread)")
        return await m.read(self._now, timeout, max)

    def _c_mirror_stop(self, id: int) -> dict:
        row = self.tools.mirror_stop(id)
        if row is None:
            raise ControlError(f"no mirror {id} on this switch")
        return row

    def _expire_mirrors(self) -> None:
        self._mirror_expiry = None
        now = self._now()
        for mid, m in self.tools.expire_mirrors(now):
            log.warning("mirror %d of port %r unread for %.0f s: stopped", mid, m.port, m.idle_for(now))
        if self.tools.mirrors:
            self._mirror_expiry = self._loop.call_later(MIRROR_IDLE_TIMEOUT / 3, self._expire_mirrors)


def _refused(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call the core or the tools for a control request: their refusals of the request (an
    unknown port, a bad setting or filter: UnknownPort, ValueError, FilterError) are the
    client's mistake, a ControlError with their sentence."""
    try:
        return fn(*args, **kwargs)
    except (UnknownPort, FilterError, ValueError) as exc:
        raise ControlError(str(exc)) from None


async def serve(config: SwitchConfig, on_ready: Callable[[SwitchServer], None] | None = None,
                on_closed: Callable[[SwitchServer], None] | None = None) -> None:
    """Run a switch until SIGTERM or SIGINT, then close it cleanly.

    ``on_ready(server)`` runs once the endpoints are bound (``vnet switch`` prints them), and
    ``on_closed(server)`` after a clean close (``vnet switch`` prints ``final_stats``).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    server = SwitchServer(config)
    try:
        await server.start()
        if on_ready is not None:
            on_ready(server)
        stopper = loop.create_task(stop.wait())
        failed = loop.create_task(server.wait())
        done, _ = await asyncio.wait({stopper, failed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopper, failed):
            task.cancel()
        await asyncio.gather(stopper, failed, return_exceptions=True)
        if failed in done and not failed.cancelled() and failed.exception() is not None:
            raise failed.exception()
        log.info("switch stopping")
    finally:
        await server.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
    if on_closed is not None and server.final_stats is not None:
        on_closed(server)
