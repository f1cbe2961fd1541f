"""Many nodes in one process: ``vnet nodes --config FILE.json``.

A thousand ``vnet node`` processes cost a thousand interpreters (about 30 MB each) and two
thousand ZeroMQ I/O threads. A pack hosts many nodes in one process instead, as one kernel
hosts many network namespaces: each node is still a whole, unchanged ``NodeDaemon`` (its own
vnet0 driver instance, stack, counters and control endpoint, so ``vnet --node NAME ...``
reaches a packed node as any other), and the nodes share what a process has one of: the
asyncio event loop and one ZeroMQ context (its MAX_SOCKETS raised for them all; ZeroMQ's
default is 1023 sockets).

``NodePack`` starts the nodes with bounded concurrency (``start_concurrency`` at once), then
watches each until it is ready (carrier, and every address past duplicate address
detection: what ``NodeHandle.wait_ready`` waits for), and only then says so: one
``vnet-ready {json}`` line per node, the same line ``vnet node`` prints. A node that cannot
start or does not become ready within ``ready_timeout`` is reported (a ``vnet-failed
{"node", "error"}`` line, and on stderr) and closed; the others run on. A node the switch
refuses later is closed and said so on stderr. SIGTERM (or SIGINT) closes every node (each
says BYE to the switch) and prints each one's final counters (``vnet-final {json}``, as
``vnet node`` does).

The process serves ONE Prometheus endpoint for all its nodes (``metrics``: HOST:PORT,
default 127.0.0.1:0; "off" or null: none), started before the nodes: node_exporter's
families of every node (node/metrics.py's ``NodeCollector``), each sample labelled with its
``node`` (``PackCollector``). Each node's ready line names it (``"metrics": URL``).

The configuration file is JSON::

    {"nodes": [{"name": "node1", "switch": "ipc:///run/vnet/switch.data",
                "addresses": ["10.0.0.1/24"]}, ...],
     "start_concurrency": 32, "ready_timeout": 60, "metrics": "127.0.0.1:0"}

where each entry takes ``NodeConfig``'s fields (node/config.py) by name; only nodes with
vnet's own stack can be packed (a kernel-stack node is a TAP in a namespace of its own).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import sys
from dataclasses import dataclass, fields
from typing import Any, Callable

import zmq
import zmq.asyncio

from vnet.node.config import NodeConfig
from vnet.node.daemon import NodeDaemon
from vnet.node.metrics import PackCollector
from vnet.node.netdevice import netif_carrier_ok
from vnet.node.stack.ether import mac_str
from vnet.proto.control import print_final, print_ready
from vnet.proto.httpserve import DEFAULT_METRICS, MetricsServer, parse_listen

log = logging.getLogger(__name__)

__all__ = ["FAILED_PREFIX", "NodePack", "PackConfig", "node_ready", "raise_nofile", "serve_pack"]

FAILED_PREFIX = "vnet-failed "
DEFAULT_START_CONCURRENCY = 32
DEFAULT_READY_TIMEOUT = 60.0
READY_POLL = 0.05  # how often a starting node's readiness is looked at (in-process: cheap)
SOCKETS_PER_NODE = 4  # the link's DEALER and the control ROUTER, with room for a CURVE monitor pair
FDS_PER_NODE = 8  # those sockets' mailboxes, the switch connection, the clients' connections
ZMQ_DEFAULT_MAX_SOCKETS = 1023  # ZMQ_MAX_SOCKETS_DFLT
_NODE_FIELDS = frozenset(f.name for f in fields(NodeConfig))


@dataclass(frozen=True)
class PackConfig:
    """The nodes one process hosts, and how it starts them; checked when made (ValueError)."""

    nodes: tuple[NodeConfig, ...]
    start_concurrency: int = DEFAULT_START_CONCURRENCY
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    metrics: str | None = DEFAULT_METRICS  # the process's one Prometheus endpoint, HOST:PORT; None: none

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        if self.metrics is not None:
            try:
                if parse_listen(self.metrics) is None:  # "off"
                    object.__setattr__(self, "metrics", None)
            except ValueError as exc:
                raise ValueError(f"pack: {exc}") from None
        if not self.nodes:
            raise ValueError("pack: no nodes to host; give at least one under \"nodes\"")
        seen: set[str] = set()
        for cfg in self.nodes:
            if cfg.name in seen:
                raise ValueError(f"pack: node name {cfg.name!r} is given twice; each node needs its own name")
            seen.add(cfg.name)
            if cfg.stack != "vnet":
                raise ValueError(f"pack: node {cfg.name} has stack {cfg.stack!r}; only vnet-stack nodes can share "
                                 f"a process (run a kernel-stack node with `vnet node --stack kernel`)")
        if isinstance(self.start_concurrency, bool) or not isinstance(self.start_concurrency, int) \
                or self.start_concurrency < 1:
            raise ValueError(f"pack: start_concurrency {self.start_concurrency!r}: an integer >= 1")
        if not isinstance(self.ready_timeout, (int, float)) or not self.ready_timeout > 0:
            raise ValueError(f"pack: ready_timeout {self.ready_timeout!r}: seconds, > 0")

    @classmethod
    def from_dict(cls, doc: Any) -> "PackConfig":
        """From the JSON document (see the module's docstring); ValueError naming what is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("pack: expected a JSON object with a \"nodes\" list")
        unknown = set(doc) - {"nodes", "start_concurrency", "ready_timeout", "metrics"}
        if unknown:
            raise ValueError(f"pack: unknown keys {sorted(unknown)}; use nodes, start_concurrency, ready_timeout, "
                             f"metrics")
        entries = doc.get("nodes")
        if not isinstance(entries, list):
            raise ValueError("pack: \"nodes\" must be a list of node settings")
        nodes = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"pack: nodes[{i}] must be an object of NodeConfig fields")
            bad = set(entry) - _NODE_FIELDS
            if bad:
                raise ValueError(f"pack: nodes[{i}] has unknown settings {sorted(bad)}; the settings are "
                                 f"{', '.join(sorted(_NODE_FIELDS))}")
            try:
                nodes.append(NodeConfig(**entry))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"pack: nodes[{i}] ({entry.get('name', '?')}): {exc}") from None
        return cls(tuple(nodes), doc.get("start_concurrency", DEFAULT_START_CONCURRENCY),
                   doc.get("ready_timeout", DEFAULT_READY_TIMEOUT), doc.get("metrics", DEFAULT_METRICS))

    @classmethod
    def load(cls, path: str) -> "PackConfig":
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except OSError as exc:
            raise ValueError(f"pack: cannot read {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"pack: {path} is not JSON: {exc}") from None
        return cls.from_dict(doc)


def raise_nofile(needed: int) -> None:
    """Lift the soft open-files limit towards ``needed`` (up to the hard limit): every node
    holds several descriptors, and a common soft limit of 1024 would end a pack of 200."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("open files limit %d is below the %d these nodes may need; raise it (ulimit -n)", soft, needed)


def node_ready(daemon: NodeDaemon) -> bool:
    """Carrier, and at least one address, every one past DAD (``NodeHandle.wait_ready``'s test)."""
    if daemon.dev is None or daemon.stack is None or not netif_carrier_ok(daemon.dev):
        return False
    addrs = daemon.stack.addresses()
    return bool(addrs) and all(a["state"] == "ok" for a in addrs)


class NodePack:
    """The host of many ``NodeDaemon``s in one event loop and one ZeroMQ context, which it
    owns (the nodes close their own sockets; the pack terminates the context after them),
    and of their one metrics endpoint (``start_metrics()``; closed by ``close()``).

    ``on_ready(daemon)`` is called once per node that became ready, ``on_failed(name,
    error)`` once per node that did not start or not in time, and per node the switch
    refused later."""

    def __init__(self, config: PackConfig, on_ready: Callable[[NodeDaemon], None] | None = None,
                 on_failed: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self.on_ready = on_ready or (lambda daemon: None)
        self.on_failed = on_failed or (lambda name, error: None)
        self.ctx: zmq.asyncio.Context | None = None
        self.daemons: dict[str, NodeDaemon] = {}  # started and not closed, by name
        self.ready: set[str] = set()
        self.failed: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self.finals: dict[str, dict] = {}  # each closed node's final counters
        self._tasks: set[asyncio.Task] = set()  # the refusal watchers, owned here
        self.all_refused = asyncio.Event()
        self.metrics: MetricsServer | None = None

    @property
    def metrics_url(self) -> str | None:
        return self.metrics.url if self.metrics is not None else None

    async def start_metrics(self) -> str | None:
        """Serve every node's metrics on ``config.metrics`` (OSError when it cannot bind);
        the URL, or None when the pack has no endpoint."""
        if self.config.metrics is None or self.metrics is not None:
            return self.metrics_url
        collector = PackCollector(lambda: [(name, d._metrics_collector()) for name, d in list(self.daemons.items())])
        server = MetricsServer(*parse_listen(self.config.metrics), [collector])
        await server.start()
        self.metrics = server
        return server.url

    async def start(self) -> None:
        """Start every node (``start_concurrency`` at once) and wait until each is ready or
        reported failed. Cancelling it leaves the nodes started so far to ``close()``."""
        n = len(self.config.nodes)
        raise_nofile(FDS_PER_NODE * n + 256)
        self.ctx = zmq.asyncio.Context()
        self.ctx.max_sockets = max(ZMQ_DEFAULT_MAX_SOCKETS, SOCKETS_PER_NODE * n + 64)
        gate = asyncio.Semaphore(self.config.start_concurrency)
        async with asyncio.TaskGroup() as tg:
            for cfg in self.config.nodes:
                tg.create_task(self._start_one(cfg, gate), name=f"start {cfg.name}")

    async def _start_one(self, cfg: NodeConfig, gate: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        async with gate:
            daemon = NodeDaemon(cfg, self.ctx)
            try:
                await daemon.start()
            except asyncio.CancelledError:
                await daemon.close()
                raise
            except Exception as exc:  # one node's failure is that node's: report it, start the others
                if not isinstance(exc, (OSError, ValueError, zmq.ZMQError)):
                    log.exception("node %s: starting failed", cfg.name)
                await daemon.close()
                self._fail(cfg.name, f"{exc.__class__.__name__}: {exc}")
                return
            self.daemons[cfg.name] = daemon
        deadline = loop.time() + self.config.ready_timeout
        while not node_ready(daemon):
            if daemon.refused.is_set():
                await self._drop(cfg.name, f"the switch refused it: {daemon.link.refused}")
                return
            if loop.time() >= deadline:
                await self._drop(cfg.name, f"not ready within {self.config.ready_timeout:g} s (carrier "
                                           f"{bool(netif_carrier_ok(daemon.dev))}, addresses "
                                           f"{daemon.stack.addresses()})")
                return
            await asyncio.sleep(READY_POLL)
        self.ready.add(cfg.name)
        task = loop.create_task(self._watch_refusal(daemon), name=f"refusal {cfg.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.on_ready(daemon)

    async def _watch_refusal(self, daemon: NodeDaemon) -> None:
        await daemon.refused.wait()
        name = daemon.config.name
        self.refused[name] = str(daemon.link.refused)
        log.error("node %s: the switch refused it (%s); closing it", name, daemon.link.refused)
        await self._close_one(daemon)
        if self.ready and not self.daemons:
            self.all_refused.set()

    async def _drop(self, name: str, error: str) -> None:
        daemon = self.daemons.get(name)
        if daemon is not None:
            await self._close_one(daemon)
        self._fail(name, error)

    def _fail(self, name: str, error: str) -> None:
        self.failed[name] = error
        log.error("node %s: %s", name, error)
        self.on_failed(name, error)

    async def _close_one(self, daemon: NodeDaemon) -> None:
        name = daemon.config.name
        if self.daemons.pop(name, None) is None:
            return
        try:
            await daemon.close()
        finally:
            self.finals[name] = daemon.final_stats()

    async def close(self) -> None:
        """Close the metrics endpoint and every node (BYE to the switch), then the shared context."""
        server, self.metrics = self.metrics, None
        if server is not None:
            await server.close()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        results = await asyncio.gather(*(self._close_one(d) for d in list(self.daemons.values())),
                                       return_exceptions=True)
        for exc in results:
            if isinstance(exc, Exception):
                log.error("closing a node failed: %s", exc)
        if self.ctx is not None:
            self.ctx.term()  # every socket is closed: returns once their lingering BYEs left
            self.ctx = None


def _report_ready(pack: NodePack, daemon: NodeDaemon) -> None:
    print_ready({"node": daemon.config.name, "control": daemon.control.endpoint,
                 "mac": mac_str(bytes(daemon.dev.dev_addr)), "metrics": daemon.metrics_url() or pack.metrics_url})


def _report_failed(name: str, error: str) -> None:
    print(FAILED_PREFIX + json.dumps({"node": name, "error": error}), flush=True)


async def serve_pack(config: PackConfig) -> int:
    """Run a pack until SIGTERM/SIGINT (or until the switch refused every node); return an
    exit code: 0 after a clean stop, 2 when no node started, 3 when every node was refused.
    Prints a ready (or failed) line per node, and each closed node's final counters."""
    pack = NodePack(config, on_failed=_report_failed)
    pack.on_ready = lambda daemon: _report_ready(pack, daemon)
    try:
        await pack.start_metrics()
    except OSError as exc:
        print(f"vnet nodes: cannot serve metrics on {config.metrics}: {exc.strerror or exc}; pick another "
              f"port (0: any free one) or \"metrics\": \"off\"", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        starting = loop.create_task(pack.start(), name="start the pack")
        stopping = loop.create_task(stop.wait())
        refused = loop.create_task(pack.all_refused.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done() and not starting.cancelled() and starting.exception() is None:
                if not pack.daemons:
                    print(f"vnet nodes: none of the {len(config.nodes)} nodes started", file=sys.stderr)
                    code = 2
                else:
                    await asyncio.wait({stopping, refused}, return_when=asyncio.FIRST_COMPLETED)
                    if refused.done():
                        code = 3
        finally:  # whichever is still waiting is cancelled and awaited, not left pending
            for task in (starting, stopping, refused):
                task.cancel()
            await asyncio.gather(starting, stopping, refused, return_exceptions=True)
        if starting.done() and not starting.cancelled() and starting.exception() is not None:
            raise starting.exception()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await pack.close()
    for name, stats in pack.finals.items():
        print_final({"node": name, **stats}, name)
    return code
