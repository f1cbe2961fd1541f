"""The embedded lab: a lab's switches and nodes as processes on this machine.

``LabRunner`` is the I/O shell around vnet/lab/plan.py, built from vnet/lan.py's machinery:
each daemon is started by ``spawn_daemon`` (the ``vnet`` command of this interpreter, dying
with this process, ready when it prints its ready line), the runtime directory's
``lan.pid`` names them (a lab killed with SIGKILL is cleaned up by the next start in the same
directory), kernel-stack nodes get their namespaces from ``LanNamespaces``, and the programs
their handles start are stopped at teardown (``Programs``). Switches start one at a time in
dependency order (the dialed before the dialer), then every node at once; the lab is up when
every node has carrier and its addresses, and the plan's control calls (impairments) are
made, each retried until its port has attached (a trunk dials in its own time).

A daemon that exits while the lab runs is not restarted: ``failure`` says which, and
``wait_failure()`` returns it (``vnet lab up`` stops the lab then).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile

import zmq.asyncio

from vnet.handles import LanError, NodeHandle, SwitchHandle, poll_until
from vnet.lab.plan import LocalEndpoints, Plan, plan
from vnet.lab.schema import Lab
from vnet.lan import Programs, _all_or_none, _Proc, _terminate, check_kernel_stack, spawn_daemon
from vnet.netns import LanNamespaces, remove_leftovers
from vnet.node.config import check_ipc_path
from vnet.node.netns import NetnsError
from vnet.pidfile import LanPidfile
from vnet.proto.control import AsyncControlClient, ControlError


class LabRunner:
    """Runs ``lab``: ``await start()`` ... ``await close()`` (or ``async with``).

    ``runtime_dir``: where sockets, logs and the pidfile live (default: a private temporary
    directory removed on close). ``node(name)``/``switch(name)`` hand out the handles;
    ``addresses(name)`` a node's IPv4 addresses (static ones, and what DHCP gave).
    """

    def __init__(self, lab: Lab, runtime_dir: str | None = None, start_timeout: float = 60.0) -> None:
        self.lab = lab
        self._own_runtime = runtime_dir is None
        self.runtime_dir = runtime_dir or tempfile.mkdtemp(prefix="vnet-lab-")
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        self.start_timeout = start_timeout
        self.endpoints = LocalEndpoints(self.runtime_dir)
        self.plan: Plan = plan(lab, self.endpoints)
        for n in lab.nodes:  # the longest socket names: fail now, not half-way up
            check_ipc_path(f"node {n.name}'s control endpoint", self.endpoints.node_control(n.name))
        for s in lab.switches:
            check_ipc_path(f"switch {s.name}'s control endpoint", self.endpoints.switch_control(s.name))
        self.programs = Programs()
        self.pidfile = LanPidfile(self.runtime_dir)
        self.cleaned: str | None = None
        self.switches: dict[str, SwitchHandle] = {}
        self.nodes: dict[str, NodeHandle] = {}
        self.failure: LanError | None = None
        self._failed = asyncio.Event()
        self._procs: dict[str, _Proc] = {}
        self._watchers: dict[str, asyncio.Task] = {}
        self._ctx: zmq.asyncio.Context | None = None
        self._netns: LanNamespaces | None = None
        self._closing = False
        self._owns_pidfile = False  # not while another lab's is in the directory

    async def __aenter__(self) -> "LabRunner":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def node(self, name: str) -> NodeHandle:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"lab {self.lab.name}: no node {name!r} ({', '.join(self.nodes)})") from None

    def switch(self, name: str) -> SwitchHandle:
        try:
            return self.switches[name]
        except KeyError:
            raise KeyError(f"lab {self.lab.name}: no switch {name!r} ({', '.join(self.switches)})") from None

    async def addresses(self, name: str) -> list[str]:
        """``name``'s IPv4 addresses: the lab file's static ones, then any DHCP gave it."""
        static = self.lab.node(name).static_ips()
        if not any(nic.dhcp for nic in self.lab.node(name).nics):
            return static
        have = [a["address"] for a in await self.node(name).addresses()]
        return static + [a for a in have if a not in static]

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Switches in dependency order, then every node; the lab is up once every node is
        ready and the control calls are made. A failure stops what was started and raises."""
        self._ctx = zmq.asyncio.Context()
        try:
            if any(n.stack == "kernel" for n in self.plan.nodes):
                check_kernel_stack()
                remove_leftovers(say=lambda text: print(f"vnet: {text}", file=sys.stderr))
                self._netns = LanNamespaces(self.lab.name)
            self.cleaned = await self.pidfile.clean_leftovers()
            self._owns_pidfile = True
            self._write_pidfile()
            for sw in self.plan.switches:
                proc, info = await spawn_daemon(sw.name, sw.argv, self.runtime_dir, self.start_timeout)
                self._adopt(sw.name, proc)
                handle = SwitchHandle(AsyncControlClient(self._ctx, info["control"], timeout=10.0),
                                      info["control"], info["data"])
                handle.name = sw.name
                self.switches[sw.name] = handle
            await _all_or_none(self._start_node(n) for n in self.plan.nodes)
            await _all_or_none(h.wait_ready(self.start_timeout) for h in self.nodes.values())
            for call in self.plan.calls:
                await self._control(call.switch, call.cmd, call.params)
        except BaseException:
            await self.close()
            raise

    async def _start_node(self, proc_plan) -> None:
        name, argv = proc_plan.name, list(proc_plan.argv)
        netns = None
        if proc_plan.stack == "kernel":
            try:
                netns = await asyncio.to_thread(self._netns.create, name)
            except NetnsError as exc:
                raise LanError(str(exc)) from None
            argv += ["--netns", netns]
        static = self.lab.node(name).static_ips()
        handle = NodeHandle(AsyncControlClient(self._ctx, self.endpoints.node_control(name), timeout=10.0), name,
                            static[0] if static else None, stack=proc_plan.stack, netns=netns,
                            programs=self.programs)
        self.nodes[name] = handle
        proc, info = await spawn_daemon(name, argv, self.runtime_dir, self.start_timeout)
        self._adopt(name, proc)
        if netns is not None:
            self._netns.add_member(netns, proc.proc.pid)
        handle.mac = info.get("mac")

    async def _control(self, switch: str, cmd: str, params: dict) -> None:
        """Make a control call, retried while its port has not attached yet."""
        last: list[str] = []

        async def attempt() -> bool:
            try:
                await self.switch(switch).call(cmd, **params)
                return True
            except ControlError as exc:
                last[:] = [str(exc)]
                return False

        try:
            await poll_until(attempt, f"switch {switch}: {cmd} {params}", timeout=self.start_timeout, every=0.05)
        except TimeoutError as exc:
            raise LanError(f"{exc}: {last[0] if last else ''}") from None

    def _adopt(self, name: str, proc: _Proc) -> None:
        self._procs[name] = proc
        self._write_pidfile()
        self._watchers[name] = asyncio.get_running_loop().create_task(self._supervise(name, proc),
                                                                      name=f"supervise {name}")

    async def _supervise(self, name: str, proc: _Proc) -> None:
        code = await proc.proc.wait()
        if not self._closing and self.failure is None:
            self.failure = LanError(f"{name} exited with status {code}:\n{proc.log_tail()}")
            self._failed.set()

    async def wait_failure(self) -> LanError:
        await self._failed.wait()
        return self.failure

    def _write_pidfile(self) -> None:
        if not self._owns_pidfile:
            return
        sockets = [e[len("ipc://"):] for s in self.lab.switches
                   for e in (self.endpoints.switch_bind(s.name), self.endpoints.switch_control(s.name))]
        sockets += [self.endpoints.node_control(n.name)[len("ipc://"):] for n in self.lab.nodes]
        self.pidfile.write({name: p.proc.pid for name, p in self._procs.items()}, sockets)

    def logs(self) -> dict[str, str]:
        return {name: p.log_tail() for name, p in self._procs.items()}

    async def close(self) -> None:
        """Stop the programs, the nodes, then the switches (last started first); remove the
        namespaces, the pidfile and a private runtime directory."""
        self._closing = True
        await self.programs.stop_all()
        watchers, self._watchers = list(self._watchers.values()), {}
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        handles = [*self.nodes.values(), *self.switches.values()]
        await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)
        nodes = [p for name, p in self._procs.items() if name in self.nodes]
        await asyncio.gather(*(_terminate(p) for p in nodes), return_exceptions=True)
        for name in reversed([s.name for s in self.plan.switches]):
            if name in self._procs:
                await _terminate(self._procs[name])
        self._procs.clear()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self._netns is not None:
            failed = await asyncio.to_thread(self._netns.remove_all)
            if failed:
                print(f"vnet: could not remove namespaces {', '.join(failed)}; the next kernel-stack lab "
                      f"removes them", file=sys.stderr)
            self._netns = None
        if self._own_runtime:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        elif self._owns_pidfile:
            self.pidfile.remove()
            self._owns_pidfile = False
