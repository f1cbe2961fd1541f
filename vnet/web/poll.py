"""The web view's poller: asks every switch and node of a LAN for its state once a second and
feeds the answers to the view model (vnet/web/model.py), as ``sar`` samples the kernel's
counters. It owns the control clients (one per daemon) and the task that polls.

Which daemons it asks comes from a ``Target``: the switches' control endpoints, and where a
node's control endpoint is, given its name (the node's name is its switch port's name). A
node that is not on this host (no ipc socket) is shown from the switch's side only.

``version`` grows with every poll; ``wait_newer(version)`` is how the event stream waits for
the next picture without polling the poller.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import zmq.asyncio

from vnet.proto.control import AsyncControlClient, ControlError
from vnet.web.model import LanView, NodeSample, Sample, SwitchSample, port_node

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
CALL_TIMEOUT = 2.0


@dataclass(frozen=True)
class Target:
    """The LAN to show: ``switches`` as (name, control endpoint) pairs (the name is a first
    guess: the switch's own ``stats`` name wins), and ``node_endpoint(name)``, a node's control
    endpoint or None when it has none here. ``label`` says where they came from; ``curve``
    the keys for a CURVE LAN's switches. ``connector``, when set, makes what reaches the
    daemons instead of a ZeroMQ control client per endpoint: called once by the poller, it
    returns an object with ``client(endpoint, switch)`` (a client with ``call`` and
    ``close``) and ``close()``; the poller owns it (a Docker LAN: vnet/web/docker.py, whose
    endpoints are container names)."""

    switches: tuple[tuple[str, str], ...]
    node_endpoint: Callable[[str], str | None]
    label: str = ""
    curve: Any = None  # a vnet.proto.auth.CurveClient for switches with CURVE on (their control too)
    connector: Callable[[], Any] | None = None


def ipc_path(endpoint: str) -> str | None:
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def runtime_dir_target(path: str) -> Target:
    """A LAN's or lab's runtime directory: every ``NAME.sock`` is a switch's control socket and
    every ``NAME.ctl`` a node's (vnet/lan.py, vnet/lab/run.py). ValueError when it has no switch."""
    if not os.path.isdir(path):
        raise ValueError(f"{path} is not a directory: give the runtime directory of a running LAN or lab")
    socks = sorted(glob.glob(os.path.join(path, "*.sock")))
    if not socks:
        raise ValueError(f"no switch control socket (NAME.sock) in {path}: is the LAN or lab running?")
    switches = tuple((os.path.basename(s)[:-len(".sock")], "ipc://" + s) for s in socks)
    return Target(switches, node_endpoint_in(path), label=f"runtime directory {path}")


def node_endpoint_in(path: str) -> Callable[[str], str | None]:
    def find(name: str) -> str | None:
        sock = os.path.join(path, f"{name}.ctl")
        return "ipc://" + sock if os.path.exists(sock) else None
    return find


class Poller:
    """Polls the target every ``interval`` s into ``view``; ``clock`` is monotonic seconds."""

    def __init__(self, target: Target, view: LanView | None = None, interval: float = POLL_INTERVAL,
                 timeout: float = CALL_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.view = view or LanView(target.label)
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.version = 0
        self._ctx = zmq.asyncio.Context()
        self._connector = target.connector() if target.connector is not None else None
        self._switches: dict[str, AsyncControlClient] = {}  # by name, as the switch calls itself
        self._switch_names: dict[str, str] = {}  # endpoint -> name
        self._nodes: dict[str, AsyncControlClient] = {}
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._busy = False  # a poll is under way
        self._task: asyncio.Task | None = None

    # -- clients ------------------------------------------------------------------------------

    def _client(self, endpoint: str, curve: Any = None, switch: bool = False) -> AsyncControlClient:
        if self._connector is not None:
            return self._connector.client(endpoint, switch)
        return AsyncControlClient(self._ctx, endpoint, timeout=self.timeout, curve=curve)

    def switch(self, name: str) -> AsyncControlClient:
        """The client of switch ``name`` (KeyError naming the switches for an unknown one)."""
        try:
            return self._switches[name]
        except KeyError:
            raise KeyError(f"no switch {name!r}; switches: {', '.join(sorted(self._switches)) or 'none'}") from None

    def node(self, name: str) -> AsyncControlClient:
        """The client of node ``name`` (KeyError when it has no control endpoint here)."""
        if name not in self._nodes:
            endpoint = self.target.node_endpoint(name)
            if endpoint is None:
                raise KeyError(f"node {name!r} has no control endpoint on this host")
            self._nodes[name] = self._client(endpoint)
        return self._nodes[name]

    # -- polling ------------------------------------------------------------------------------

    async def poll_once(self) -> dict:
        """One sample of every switch and of the nodes their ports name; the new state."""
        self._busy = True
        try:
            return await self._poll()
        finally:
            self._busy = False

    async def _poll(self) -> dict:
        switches = await asyncio.gather(*(self._sample_switch(hint, ep) for hint, ep in self.target.switches))
        names = sorted({port_node(p["name"])[0] for s in switches for p in s.ports
                        if not (p.get("bridge") or p.get("trunk"))} - {s.name for s in switches})
        nodes = await asyncio.gather(*(self._sample_node(n) for n in names))
        for gone in set(self._nodes) - set(names):
            await self._nodes.pop(gone).close()
        state = self.view.update(Sample(self.clock(), tuple(switches), tuple(nodes)))
        async with self._changed:
            self.version += 1
            self._changed.notify_all()
        return state

    async def _sample_switch(self, hint: str, endpoint: str) -> SwitchSample:
        name = self._switch_names.get(endpoint, hint)
        client = self._switches.get(name)
        if client is None:
            client = self._switches[name] = self._client(endpoint, self.target.curve, switch=True)
        try:
            ports, stats, fdb, vlans, stp = await asyncio.gather(
                client.call("ports"), client.call("stats"), client.call("fdb"),
                _optional(client.call("vlan_show"), []), _optional(client.call("stp_show"), None))
        except (ControlError, TimeoutError, OSError) as exc:
            return SwitchSample(name, error=str(exc))
        own = stats.get("name") or (stp or {}).get("name")
        if own and own != name and own not in self._switches:  # its own name from now on, unless taken
            self._switches[own] = self._switches.pop(name)
            self._switch_names[endpoint] = name = own
        return SwitchSample(name, ports, stats, fdb, vlans, stp)

    async def _sample_node(self, name: str) -> NodeSample:
        try:
            client = self.node(name)
        except KeyError as exc:
            return NodeSample(name, error=exc.args[0])
        try:
            links, addrs, neigh = await asyncio.gather(
                client.call("link_show"), client.call("addr_show"), client.call("neigh_show"))
        except (ControlError, TimeoutError, OSError) as exc:
            return NodeSample(name, error=str(exc))
        return NodeSample(name, links, addrs, neigh)

    async def refresh(self, timeout: float = CALL_TIMEOUT + 1.0) -> None:
        """Poll now (after a change made through the page) and wait for that poll, so the next
        state shows the change; the polls stay one at a time (the running task makes them)."""
        if self._task is None:
            await self.poll_once()
            return
        # a poll under way may have asked before the change: then wait for the one after it
        version = self.version + (1 if self._busy else 0)
        self._wake.set()
        await self.wait_newer(version, timeout)

    async def wait_newer(self, version: int, timeout: float) -> int:
        """Wait until a poll newer than ``version`` (or ``timeout`` s); the current version."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version > version), timeout)
            except asyncio.TimeoutError:
                pass
            return self.version

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.poll_once()
            except Exception:  # a bug in one poll must not stop the view: say it, poll on
                log.exception("poll failed")
            try:  # the poll period, cut short by refresh()
                await asyncio.wait_for(self._wake.wait(), max(0.0, self.interval - (loop.time() - started)))
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for client in [*self._switches.values(), *self._nodes.values()]:
            await client.close()
        self._switches.clear()
        self._nodes.clear()
        if self._connector is not None:
            await self._connector.close()
        self._ctx.term()


async def _optional(call: Any, missing: Any) -> Any:
    """A command older switches do not have (``stp_show``): its "unknown command" is ``missing``."""
    try:
        return await call
    except ControlError as exc:
        if "unknown command" in str(exc):
            return missing
        raise
