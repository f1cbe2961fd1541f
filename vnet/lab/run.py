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

With ``nodes_per_process: N`` (N > 1) the lab's vnet-stack nodes run packed, N to a process
in the lab file's order (``vnet nodes``, node/pack.py, started by vnet/lan.py's
``spawn_pack`` from the plan's ``NodeConfig`` dicts), as ``Lan(nodes_per_process=N)`` runs
them; kernel-stack nodes keep a process each. A process of packed nodes is ``_packK`` (a
lab's names start with a letter or digit: no node or switch is called so) in ``packs``,
the pidfile and the logs; it is supervised as the owner of its nodes, and serves one metrics
endpoint for them all (``pack_metrics``, default 127.0.0.1:0), each node's ``metrics_url``.

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
from vnet.lab.handles import LabHandles
from vnet.lab.schema import Lab
from vnet.lan import (
    PACK_GRACE, Programs, _all_or_none, _Pack, _Proc, _terminate, check_kernel_stack, pack_args, spawn_daemon,
    spawn_pack,
)
from vnet.netns import LanNamespaces, remove_leftovers
from vnet.node.config import check_ipc_path
from vnet.node.netns import NetnsError
from vnet.pidfile import LanPidfile, sweep_private_dirs
from vnet.proto.control import AsyncControlClient, ControlError
from vnet.proto.httpserve import DEFAULT_METRICS, parse_listen

PACK_PREFIX = "_pack"  # _pack1, _pack2, ...: not a name a lab file can give (load.NAME_RE)


class LabRunner(LabHandles):
    """Runs ``lab``: ``await start()`` ... ``await close()`` (or ``async with``).

    ``runtime_dir``: where sockets, logs and the pidfile live (default: a private temporary
    directory removed on close). ``node(name)``/``switch(name)`` hand out the handles;
    ``addresses(name)`` a node's IPv4 addresses (static ones, and what DHCP gave).
    ``pack_metrics``: where each process of packed nodes serves their metrics (HOST:PORT;
    None: nowhere); ``packs`` and ``process_of(name)`` say which process hosts which node.
    """

    def __init__(self, lab: Lab, runtime_dir: str | None = None, start_timeout: float = 60.0,
                 pack_metrics: str | None = DEFAULT_METRICS) -> None:
        if pack_metrics is not None:
            parse_listen(pack_metrics)  # ValueError now, not from every process
        self.lab = lab
        self.pack_metrics = pack_metrics
        self._own_runtime = runtime_dir is None
        self.runtime_dir = runtime_dir or tempfile.mkdtemp(prefix="vnet-lab-")
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        self.start_timeout = start_timeout
        self.endpoints = LocalEndpoints(self.runtime_dir)
        self.plan: Plan = plan(lab, self.endpoints)
        k = lab.nodes_per_process or 1
        packed = [p for p in self.plan.nodes if p.stack == "vnet"] if k > 1 else []
        self.packs: dict[str, list[str]] = {f"{PACK_PREFIX}{i // k + 1}": [p.name for p in packed[i:i + k]]
                                            for i in range(0, len(packed), k)}
        self._pack_of = {node: name for name, nodes in self.packs.items() for node in nodes}
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

    def process_of(self, name: str) -> str:
        """The process hosting node ``name``: its pack (``_pack2``), or its own name."""
        self.lab.node(name)  # KeyError naming the lab's nodes
        return self._pack_of.get(name, name)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Switches in dependency order, then every node; the lab is up once every node is
        ready and the control calls are made. A failure stops what was started and raises."""
        self._ctx = zmq.asyncio.Context()
        self._ctx.max_sockets = max(1023, len(self.plan.nodes) + len(self.plan.switches) + 64)  # a client each
        try:
            if any(n.stack == "kernel" for n in self.plan.nodes):
                check_kernel_stack()
                remove_leftovers(say=lambda text: print(f"vnet: {text}", file=sys.stderr))
                self._netns = LanNamespaces(self.lab.name)
            self.cleaned = await self.pidfile.clean_leftovers()
            if self._own_runtime:
                os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)  # made at __init__: swept if long unused
                swept = await sweep_private_dirs("vnet-lab-", keep=self.runtime_dir)
                if swept:
                    self.cleaned = "; ".join(([self.cleaned] if self.cleaned else []) + swept)
            self._owns_pidfile = True
            self._write_pidfile()
            for sw in self.plan.switches:
                proc, info = await spawn_daemon(sw.name, sw.argv, self.runtime_dir, self.start_timeout)
                self._adopt(sw.name, proc)
                handle = SwitchHandle(AsyncControlClient(self._ctx, info["control"], timeout=10.0),
                                      info["control"], info["data"], metrics_url=info.get("metrics"))
                handle.name = sw.name
                self.switches[sw.name] = handle
            by_name = {p.name: p for p in self.plan.nodes}
            await _all_or_none([*(self._start_node(n) for n in self.plan.nodes if n.name not in self._pack_of),
                                *(self._start_pack(name, [by_name[n] for n in nodes])
                                  for name, nodes in self.packs.items())])
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
        handle = self._handle(proc_plan, netns)
        proc, info = await spawn_daemon(name, argv, self.runtime_dir, self.start_timeout)
        self._adopt(name, proc)
        if netns is not None:
            self._netns.add_member(netns, proc.proc.pid)
        handle.mac = info.get("mac")
        handle.metrics_url = info.get("metrics")

    async def _start_pack(self, name: str, procs: list) -> None:
        """Start ``procs`` (vnet-stack nodes) in one ``vnet nodes`` process, ``name``."""
        handles = [self._handle(p, None) for p in procs]
        args = pack_args(self.runtime_dir, name, [p.config for p in procs], self.start_timeout, self.pack_metrics)
        proc, infos = await spawn_pack(name, args, [p.name for p in procs], self.runtime_dir, self.start_timeout)
        self._adopt(name, proc)
        for handle in handles:
            handle.mac = infos[handle.name].get("mac")
            handle.metrics_url = infos[handle.name].get("metrics")

    def _handle(self, proc_plan, netns: str | None) -> NodeHandle:
        name = proc_plan.name
        static = self.lab.node(name).static_ips()
        handle = NodeHandle(AsyncControlClient(self._ctx, self.endpoints.node_control(name), timeout=10.0), name,
                            static[0] if static else None, stack=proc_plan.stack, netns=netns,
                            programs=self.programs)
        self.nodes[name] = handle
        return handle

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
            hosting = f" (hosting {', '.join(proc.nodes)})" if isinstance(proc, _Pack) else ""
            self.failure = LanError(f"{name}{hosting} exited with status {code}:\n{proc.log_tail()}")
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

    def pids(self) -> dict[str, int]:
        """The pid of each process now running for the lab, by name (a switch, a node, ``_packK``)."""
        return {name: p.proc.pid for name, p in self._procs.items()}

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
        switches = {s.name for s in self.plan.switches}
        nodes = [p for name, p in self._procs.items() if name not in switches]
        await asyncio.gather(*(_terminate(p, grace=PACK_GRACE if isinstance(p, _Pack) else 5.0) for p in nodes),
                             return_exceptions=True)
        for p in nodes:
            if isinstance(p, _Pack):
                await p.aclose_reader()
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
