"""The embedded LAN: a switch process and N node processes on this machine.

Every daemon is started with the same ``vnet switch`` / ``vnet node`` commands the containers
run, so the embedded LAN exercises the one code path there is. The ``Lan`` owns its
processes: it starts them, waits for each to print its ``vnet-ready`` line and for every node
to have carrier and usable addresses (polling, with a deadline), and on ``close()`` sends
SIGTERM to each and kills what has not exited within the grace period.

It also supervises them, as an init system does. A task per daemon awaits its exit; a death
the LAN did not cause (``stop_node``, ``kill_switch``, ``close`` cause theirs) is a ``Death``
in ``lan.deaths``, logged with the exit status and the end of the daemon's log, and the
restart policy (vnet/supervisor.py) decides: restart it (the switch on the same endpoints, a
node with the same arguments) or give up, which sets ``lan.failure`` (``wait_failure()``).
The daemons die with the LAN's process (PR_SET_PDEATHSIG), and ``<runtime dir>/lan.pid``
names them, so a LAN started after one that was killed cleans up what it left
(vnet/pidfile.py).

With ``nodes_per_process=N`` (N > 1) the nodes started with the LAN run packed, N to a
process (``vnet nodes --config packK.json``, node/pack.py): each still a whole node with its
own control socket, the process printing one ready line per node once it is ready. A packed
process is supervised as the owner of its nodes: its death is the death of them all, and the
restart policy restarts the process (``packK`` in ``deaths`` and ``pids()``).

The handles it hands out (``NodeHandle``, ``SwitchHandle``: vnet/handles.py) speak to the
daemons' control endpoints; the Docker LAN hands out the same ones, so one test body runs
against both.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from typing import Any, Awaitable, Callable, Iterable

import zmq
import zmq.asyncio

from vnet.handles import CaptureHandle, LanError, NodeHandle, PingResult, SwitchHandle, poll_until
from vnet.netns import LanNamespaces, lan_netns_name, remove_leftovers
from vnet.node.netns import NetnsError
from vnet.node.config import check_ipc_path
from vnet.pidfile import LanPidfile, sweep_private_dirs
from vnet.proto.auth import CurveClient, keygen
from vnet.node.pack import FAILED_PREFIX, raise_nofile
from vnet.proto.httpserve import DEFAULT_METRICS, parse_listen
from vnet.proto.control import FINAL_PREFIX, READY_PREFIX, AsyncControlClient
from vnet.supervisor import Death, RestartPolicy

log = logging.getLogger(__name__)

PACK_GRACE = 10.0  # seconds a process of packed nodes has to close them all after SIGTERM

# The handles are vnet/handles.py's; user tests and the Docker LAN import them from here.
__all__ = ["CaptureHandle", "Death", "Lan", "LanError", "NodeHandle", "PingResult", "SwitchHandle", "poll_until",
           "vnet_command"]


class _Proc:
    """One daemon process and its log file; owned by the Lan."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: str, args: list[str]) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.args = args  # what it was started with: a restart starts it the same way

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""


class _Pack(_Proc):
    """A process hosting several nodes (``vnet nodes``); owned by the Lan. After its ready
    lines, a reader task of the Lan's keeps its stdout drained (a hundred final lines would
    fill the pipe) and keeps each node's final counters."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: str, args: list[str],
                 nodes: list[str]) -> None:
        super().__init__(name, proc, log_path, args)
        self.nodes = nodes
        self.finals: dict[str, dict] = {}
        self.reader: asyncio.Task | None = None

    def start_reader(self) -> None:
        self.reader = asyncio.get_running_loop().create_task(self._read(), name=f"stdout of {self.name}")

    async def _read(self) -> None:
        while line := await self.proc.stdout.readline():
            text = line.decode(errors="replace").strip()
            if text.startswith(FINAL_PREFIX):
                try:
                    final = json.loads(text[len(FINAL_PREFIX):])
                except ValueError:
                    continue
                self.finals[final.get("node", "?")] = final

    async def aclose_reader(self) -> None:
        """After the process ended: its reader reaches EOF; cancelled if it has not."""
        if self.reader is not None:
            if self.proc.returncode is None:
                self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
            self.reader = None


class Programs:
    """The programs a LAN's nodes started with ``NodeHandle.popen``: stopped at teardown."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    def add(self, proc: asyncio.subprocess.Process) -> None:
        self.procs.append(proc)

    async def stop_all(self, grace: float = 3.0) -> None:
        procs, self.procs = self.procs, []
        await asyncio.gather(*(_stop_program(p, grace) for p in procs), return_exceptions=True)


async def _stop_program(proc: asyncio.subprocess.Process, grace: float,
                        sig: int = signal.SIGTERM) -> int | None:
    """``sig`` to a process that still runs, SIGKILL after ``grace`` s; its exit status."""
    if proc.returncode is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
    return proc.returncode


def vnet_command() -> list[str]:
    """How to run the ``vnet`` command: this interpreter, so a venv or checkout just works.

    ``-P`` (safe path) keeps the working directory off ``sys.path``: a user's project with
    packages of its own (``node/``, ``vnet/``, ...) cannot shadow vnet's modules.
    """
    return [sys.executable, "-P", "-m", "vnet.cli"]


CAP_NET_ADMIN = 12  # linux/capability.h
CAP_SYS_ADMIN = 21


def _effective_caps(*caps: int) -> bool:
    """Whether this process holds every capability in ``caps`` (its CapEff), as the kernel
    checks them: root without CAP_NET_ADMIN cannot make a TAP either."""
    try:
        with open("/proc/self/status") as fh:
            eff = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return os.geteuid() == 0
    return all(eff >> cap & 1 for cap in caps)


def check_kernel_stack() -> None:
    """LanError saying why a kernel-stack node cannot be made here, if it cannot."""
    if not os.path.exists("/dev/net/tun"):
        raise LanError("a kernel-stack node needs /dev/net/tun: load the tun module (modprobe tun), "
                       "or pass the device to the container")
    if not _effective_caps(CAP_NET_ADMIN, CAP_SYS_ADMIN):
        raise LanError("a kernel-stack node needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to make its TAP "
                       "and network namespace: run as root, or use stack='vnet' (no privileges)")
    if shutil.which("ip") is None:
        raise LanError("a kernel-stack node needs iproute2's `ip` to run programs in its namespace: "
                       "install iproute2")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies
    (``prctl(PR_SET_PDEATHSIG)``: a ``kill -9`` of the LAN takes its daemons with it), or None
    where there is no prctl. It runs between fork and exec, so it only calls what was looked
    up beforehand; if the parent died before the prctl took hold (the child has been
    reparented already), the child exits at once instead of running orphaned."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class Lan:
    """An embedded LAN of ``nodes`` nodes on ``subnet``: node I is ``nodeI`` at host address I.

    ``switch_bind`` (the data endpoint) defaults to an ipc socket ``switch.data``, and
    ``switch_control`` to an ipc socket ``switch.sock``, in ``runtime_dir`` (where node control sockets live too), which defaults
    to a private temporary directory removed on close.
    With ``curve=True`` the LAN runs with CURVE: keys are made in ``runtime_dir/keys`` (the
    switch's pair and one per node, allowed) and the switch handle uses the LAN's own pair.
    ``stack="kernel"`` (or ``stacks=[...]``, one per node) gives nodes the kernel's own stack
    on a TAP in a namespace ``vnet-NAME-NODE`` (``name``: random unless given); their handles'
    ``run``/``popen`` run programs there, and teardown stops those programs and removes the
    namespaces (docs/kernel-stack.md). Needs root and /dev/net/tun.

    ``nodes_per_process`` > 1 packs the nodes the LAN starts with into processes of that many
    (vnet-stack nodes only; ``add_node`` later starts a node in a process of its own); such a
    LAN's ``start()`` returns once every node is ready and the LAN is quiet (``wait_quiet``);
    ``process_of(name)`` says which process hosts a node. Each such process serves one
    Prometheus endpoint for all its nodes on ``pack_metrics`` (HOST:PORT, default
    127.0.0.1:0; None: none), named by each of its nodes' ``metrics_url``.

    A daemon that dies unasked is restarted at most ``restarts`` times in ``restart_window``
    seconds (default 0: never; ``vnet lan up`` uses 3 in 60 s); each death is appended to
    ``deaths``, logged, and handed to ``on_death``. When the policy gives up, ``failure``
    holds a LanError saying why and ``wait_failure()`` returns it.
    """

    def __init__(
        self,
        nodes: int = 3,
        subnet: str = "10.0.0.0/24",
        *,
        switch_bind: str | None = None,
        switch_control: str | None = None,
        runtime_dir: str | None = None,
        ageing_time: float = 300.0,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 3.0,
        mtu: int = 1500,
        start_timeout: float = 60.0,
        node_args: Iterable[str] = (),
        switch_args: Iterable[str] = (),
        curve: bool = False,
        stack: str = "vnet",
        stacks: Iterable[str] | None = None,
        name: str | None = None,
        restarts: int = 0,
        restart_window: float = 60.0,
        on_death: Callable[[Death], None] | None = None,
        nodes_per_process: int = 1,
        pack_metrics: str | None = DEFAULT_METRICS,
    ) -> None:
        try:
            self.subnet = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise ValueError(f"subnet {subnet!r}: {exc}") from None
        hosts = self.subnet.num_addresses - 2
        if nodes < 1 or nodes > hosts:
            raise ValueError(f"nodes={nodes}: {self.subnet} has room for 1 to {hosts} nodes")
        self.n_nodes = nodes
        self.stacks = list(stacks) if stacks is not None else [stack] * nodes
        if len(self.stacks) != nodes:
            raise ValueError(f"stacks={self.stacks}: give one stack per node ({nodes})")
        for st in [stack, *self.stacks]:
            if st not in ("vnet", "kernel"):
                raise ValueError(f"stack {st!r}: use 'vnet' (vnet's own stack) or 'kernel' (the kernel's, via a TAP)")
        self.default_stack = stack
        if isinstance(nodes_per_process, bool) or not isinstance(nodes_per_process, int) or nodes_per_process < 1:
            raise ValueError(f"nodes_per_process={nodes_per_process!r}: an integer >= 1 (1: a process per node)")
        if nodes_per_process > 1 and "kernel" in self.stacks:
            raise ValueError("nodes_per_process: a kernel-stack node needs a process of its own (its TAP and "
                             "namespace); pack only vnet-stack nodes")
        if nodes_per_process > 1 and node_args:
            raise ValueError("node_args: packed nodes are configured by the LAN, not by `vnet node` arguments; "
                             "use nodes_per_process=1 to pass node_args")
        self.nodes_per_process = nodes_per_process
        if pack_metrics is not None:
            parse_listen(pack_metrics)  # ValueError now, not from every process
        self.pack_metrics = pack_metrics
        self.name = name or f"l{secrets.token_hex(3)}"
        lan_netns_name(self.name, "node1")  # a name a namespace can carry, or ValueError now
        self._netns: LanNamespaces | None = None  # made with the first kernel-stack node
        self.programs = Programs()
        self.leftovers_removed: list[str] = []
        self._own_runtime = runtime_dir is None
        self.runtime_dir = runtime_dir or tempfile.mkdtemp(prefix="vnet-lan-")
        # The LAN's daemons all run here: the data port needs no TCP, an ipc socket (mode 0600 in
        # the LAN's 0700 runtime directory) keeps other users off it.
        self.switch_bind = switch_bind or f"ipc://{self.runtime_dir}/switch.data"
        self.switch_control_bind = switch_control or f"ipc://{self.runtime_dir}/switch.sock"
        try:  # the longest socket name in it (a node's control socket): fail now, not half-way up
            check_ipc_path("node control endpoint", f"ipc://{self.runtime_dir}/node{nodes}.ctl")
        except ValueError:
            if self._own_runtime:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
            raise
        self.ageing_time = ageing_time
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.mtu = mtu
        self.start_timeout = start_timeout
        self.node_args = list(node_args)
        self.switch_args = list(switch_args)
        self.curve = curve
        self.keys_dir = os.path.join(self.runtime_dir, "keys")
        self._ctx: zmq.asyncio.Context | None = None
        self._switch_proc: _Proc | None = None
        self._node_procs: dict[str, _Proc] = {}  # nodes in a process of their own
        self._packs: dict[str, _Pack] = {}  # processes of packed nodes, "pack1", ...
        self._pack_of: dict[str, str] = {}  # packed node -> its process
        self._closed_finals: dict[str, dict] = {}  # final counters of packs stopped by close()
        self.ready_after: float | None = None  # packed: seconds from start() to every node ready
        self.switch: SwitchHandle | None = None
        self.nodes: list[NodeHandle] = []
        self._next_index = 1
        self.policy = RestartPolicy(restarts, restart_window)
        self.on_death = on_death
        self.deaths: list[Death] = []
        self.failure: LanError | None = None
        self._failed = asyncio.Event()
        self._watchers: dict[str, asyncio.Task] = {}  # one supervising task per daemon, owned here
        self.pidfile = LanPidfile(self.runtime_dir)
        self.cleaned: str | None = None  # what start() cleaned up after an earlier LAN, if anything
        self._owns_pidfile = False

    # -- life cycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> "Lan":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the switch, then every node at once. A node that fails cancels the others
        (each stops the process it had started) before ``close()`` stops the rest, so a LAN
        that cannot come up leaves no daemon (and no private runtime directory) behind; the
        failure is raised as it was."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self._ctx = zmq.asyncio.Context()
        # a client socket per node: past ZeroMQ's default of 1023 sockets for a LAN of a thousand
        self._ctx.max_sockets = max(1023, self.n_nodes + 64)
        raise_nofile(4 * self.n_nodes + 256)
        try:
            if "kernel" in self.stacks:
                self._kernel_ready()
            self.cleaned = await self.pidfile.clean_leftovers()
            if self.cleaned:
                log.warning("%s", self.cleaned)
            if self._own_runtime:
                os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)  # made at __init__: swept if long unused
                for text in await sweep_private_dirs("vnet-lan-", keep=self.runtime_dir):
                    log.warning("%s", text)
            self._write_pidfile()
            await self.start_switch()
            if self.nodes_per_process > 1:
                k = self.nodes_per_process
                await _all_or_none(self._add_pack(i // k + 1, min(k, self.n_nodes - i))
                                   for i in range(0, self.n_nodes, k))
                gate = asyncio.Semaphore(64)  # the packs said ready: one health request each confirms it

                async def confirm(n: NodeHandle) -> None:
                    async with gate:
                        await n.wait_ready(self.start_timeout)

                await _all_or_none(confirm(n) for n in self.nodes)
                self.ready_after = loop.time() - t0
                await self.wait_quiet(timeout=self.start_timeout)
                return
            await _all_or_none(self.add_node(wait=False, stack=st) for st in self.stacks)
            await _all_or_none(n.wait_ready(self.start_timeout) for n in self.nodes)
        except BaseException:
            await self.close()
            raise

    async def start_switch(self) -> SwitchHandle:
        """Start (or restart, after ``kill_switch``) the switch on the same endpoints."""
        await self._start_switch_proc()
        self._watch("switch")
        return self.switch

    async def _start_switch_proc(self) -> None:
        curve_args: list[str] = []
        client = None
        if self.curve:
            keygen(self.keys_dir, [])
            lan_pair = os.path.join(self.keys_dir, "switch.key_secret")
            curve_args = ["--curve-secret", lan_pair, "--curve-allowed", os.path.join(self.keys_dir, "allowed")]
            client = CurveClient.from_files(lan_pair, os.path.join(self.keys_dir, "switch.key"))
        args = [
            "switch", *curve_args,
            "--bind", self.switch.data if self.switch else self.switch_bind,
            "--switch-control", self.switch.control if self.switch else self.switch_control_bind,
            "--ageing", str(self.ageing_time),
            "--heartbeat-interval", str(self.heartbeat_interval),
            "--heartbeat-timeout", str(self.heartbeat_timeout),
            "--mtu", str(self.mtu),
            *self.switch_args,
        ]
        proc, info = await self._spawn("switch", args)
        self._switch_proc = proc
        if self.switch is None:
            control = AsyncControlClient(self._ctx, info["control"], timeout=10.0, curve=client)
            self.switch = SwitchHandle(control, info["control"], info["data"])
        self.switch.metrics_url = info.get("metrics")  # a restarted switch has a new port
        self._write_pidfile()

    def _kernel_ready(self) -> None:
        """Check a kernel-stack node can be made here (LanError saying why not), and remove
        the namespaces a LAN killed with SIGKILL left behind (once per LAN), saying so."""
        if self._netns is not None:
            return
        check_kernel_stack()
        self.leftovers_removed = remove_leftovers(say=lambda text: print(f"vnet: {text}", file=sys.stderr))
        self._netns = LanNamespaces(self.name)

    async def add_node(self, name: str | None = None, wait: bool = True, extra_args: Iterable[str] = (),
                       dhcp: bool = False, allowed: bool = True, stack: str | None = None) -> NodeHandle:
        """Start one more node and return its handle: ``nodeI`` at the next host address, or,
        with ``dhcp=True``, with no static address, asking the LAN's DHCP server for one.
        On a CURVE LAN the node gets a key pair, which the switch allows unless ``allowed`` is
        False (an intruder: a well-formed key the switch does not know). ``stack="kernel"``
        gives it the kernel's stack on a TAP in namespace ``vnet-LAN-NODE`` (default: the
        LAN's ``stack``)."""
        index = self._next_index
        self._next_index += 1
        name = name or f"node{index}"
        ip = None if dhcp else str(self.subnet.network_address + index)
        control = f"ipc://{self.runtime_dir}/{name}.ctl"
        stack = stack or self.default_stack
        stack_args: list[str] = []
        netns = None
        if stack == "kernel":
            if dhcp:
                raise ValueError(f"{name}: a kernel-stack node gets a lease from a DHCP client run in its namespace "
                                 f"(add it without dhcp, then e.g. run udhcpc there)")
            self._kernel_ready()
        handle = NodeHandle(AsyncControlClient(self._ctx, control, timeout=10.0), name, ip, stack=stack,
                            programs=self.programs)
        self.nodes.append(handle)  # before any await: the LAN's node order is the order they were added
        if stack == "kernel":
            try:
                netns = handle.netns = await asyncio.to_thread(self._netns.create, name)
            except NetnsError as exc:
                raise LanError(str(exc)) from None
            stack_args = ["--stack", "kernel", "--netns", netns]
        addressing = ["--dhcp"] if dhcp else ["--address", f"{ip}/{self.subnet.prefixlen}"]
        curve_args: list[str] = []
        if self.curve:
            keys = self.keys_dir if allowed else os.path.join(self.runtime_dir, "keys-not-allowed")
            keygen(keys, [name])
            curve_args = ["--curve-secret", os.path.join(keys, f"{name}.key_secret"),
                          "--curve-server-key", os.path.join(self.keys_dir, "switch.key")]
        args = [
            "node", "--name", name, "--switch", self.switch.data, *addressing, *curve_args,
            "--control", control, "--mtu", str(self.mtu),
            "--heartbeat-interval", str(self.heartbeat_interval),
            "--heartbeat-timeout", str(self.heartbeat_timeout),
            *stack_args, *self.node_args, *extra_args,
        ]
        proc, info = await self._spawn(name, args)
        self._node_procs[name] = proc
        if netns is not None:
            self._netns.add_member(netns, proc.proc.pid)
        handle.mac = info["mac"]
        handle.metrics_url = info.get("metrics")
        self._write_pidfile()
        self._watch(name)
        if wait:
            await handle.wait_ready(self.start_timeout)
        return handle

    async def wait_quiet(self, quiet: float = 1.0, timeout: float = 60.0) -> float:
        """Wait until the LAN is quiet: the switch's tx_packets and the RX counters of one node
        per packed process (its last) unchanged for ``quiet`` s; return how long it took.

        A ready node has passed DAD, but every node's probes and announcements are broadcasts
        that each other node receives: at a thousand nodes, about five million deliveries,
        most still on their way when the last node is ready. A LAN of packed nodes waits for
        them in ``start()``, so that a first ARP does not queue behind them and time out.
        LanError if it is not quiet within ``timeout`` s."""
        probes = [self.node(nodes[-1]) for nodes in self.packs.values()] or self.nodes[-1:]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        last = None
        since = t0
        while True:
            now = ((await self.switch.stats())["totals"]["tx_packets"],
                   tuple([(await n.link())["stats64"]["rx_packets"] for n in probes]))
            if now != last:
                last, since = now, loop.time()
            elif loop.time() - since >= quiet:
                return since - t0
            if loop.time() - t0 > timeout:
                raise LanError(f"the LAN was not quiet within {timeout:g} s (its switch still forwarding)")
            await asyncio.sleep(0.1)

    async def _add_pack(self, number: int, count: int) -> None:
        """Start ``count`` nodes (the next ones) in one process, ``pack<number>``."""
        name = f"pack{number}"
        entries = []
        handles = []
        for _ in range(count):
            index = self._next_index
            self._next_index += 1
            node = f"node{index}"
            ip = str(self.subnet.network_address + index)
            control = f"ipc://{self.runtime_dir}/{node}.ctl"
            handle = NodeHandle(AsyncControlClient(self._ctx, control, timeout=10.0), node, ip, programs=self.programs)
            self.nodes.append(handle)
            handles.append(handle)
            entry = {"name": node, "switch": self.switch.data, "addresses": [f"{ip}/{self.subnet.prefixlen}"],
                     "control": control, "mtu": self.mtu, "heartbeat_interval": self.heartbeat_interval,
                     "heartbeat_timeout": self.heartbeat_timeout}
            if self.curve:
                keygen(self.keys_dir, [node])
                entry["curve_secret"] = os.path.join(self.keys_dir, f"{node}.key_secret")
                entry["curve_server_key"] = os.path.join(self.keys_dir, "switch.key")
            entries.append(entry)
        for h in handles:
            self._pack_of[h.name] = name
        args = pack_args(self.runtime_dir, name, entries, self.start_timeout, self.pack_metrics)
        proc, infos = await self._spawn_pack(name, args, [h.name for h in handles])
        self._packs[name] = proc
        for h in handles:
            h.mac = infos[h.name]["mac"]
            h.metrics_url = infos[h.name].get("metrics")
        self._write_pidfile()
        self._watch(name)

    def process_of(self, name: str) -> str:
        """The name of the process hosting node ``name``: its pack (``pack3``), or its own name."""
        if name in self._pack_of:
            return self._pack_of[name]
        self.node(name)  # KeyError naming the LAN's nodes
        return name

    @property
    def packs(self) -> dict[str, list[str]]:
        """Each process of packed nodes and the nodes it hosts."""
        return {name: list(p.nodes) for name, p in self._packs.items()}

    def finals(self) -> dict[str, dict]:
        """The final counters the packed nodes printed when their process stopped, by node."""
        out = dict(self._closed_finals)
        out.update((node, final) for p in self._packs.values() for node, final in p.finals.items())
        return out

    def _own_process(self, name: str) -> _Proc:
        if name in self._pack_of:
            raise LanError(f"{name} shares its process {self._pack_of[name]} with other nodes; it cannot be "
                           f"stopped or paused alone (give the LAN nodes_per_process=1 for that)")
        return self._node_procs[name]

    def node(self, name: str) -> NodeHandle:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in this LAN ({', '.join(n.name for n in self.nodes)})")

    def __getitem__(self, index: int) -> NodeHandle:
        return self.nodes[index]

    async def stop_node(self, name: str, sig: int = signal.SIGTERM) -> int:
        """Stop a node's process (SIGTERM: it says BYE; SIGKILL: it just vanishes)."""
        self._own_process(name)
        await self._unwatch(name)
        proc = self._node_procs.pop(name)
        handle = self.node(name)
        self.nodes.remove(handle)
        await handle.close()
        return await _terminate(proc, sig)

    async def pause_node(self, name: str, timeout: float = 5.0) -> None:
        """SIGSTOP a node's process: cut a node off the network, as a frozen host or a pulled
        cable looks to the switch. It sends nothing (no frames, no heartbeats) and reads
        nothing, so frames for it pile up in the switch's queue for its port; the switch
        notices only the silence (``heartbeat_timeout``). It does not answer control requests
        either: ``resume_node`` it before asking it anything, or closing the LAN. Returns once
        the process is stopped (Linux: its /proc state says so)."""
        proc = self._own_process(name).proc
        proc.send_signal(signal.SIGSTOP)
        stat = f"/proc/{proc.pid}/stat"

        async def stopped() -> bool:
            if not os.path.exists(stat):
                return True  # no /proc (not Linux): trust the signal
            with open(stat) as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] in ("T", "t")

        await poll_until(stopped, f"{name} (pid {proc.pid}) stopped by SIGSTOP", timeout=timeout, every=0.005)

    async def resume_node(self, name: str, timeout: float = 5.0) -> None:
        """SIGCONT a node paused by ``pause_node``: it runs on from where it stopped and, if
        the switch timed it out meanwhile, re-attaches by itself (NOT_ATTACHED, or its own
        heartbeat timeout, then HELLO). Returns once the process runs again."""
        proc = self._own_process(name).proc
        proc.send_signal(signal.SIGCONT)
        stat = f"/proc/{proc.pid}/stat"

        async def running() -> bool:
            if not os.path.exists(stat):
                return True
            with open(stat) as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] not in ("T", "t")

        await poll_until(running, f"{name} (pid {proc.pid}) running again after SIGCONT", timeout=timeout, every=0.005)

    async def kill_switch(self) -> int:
        """SIGKILL the switch (a crash); ``start_switch()`` brings it back on the same ports."""
        await self._unwatch("switch")
        proc, self._switch_proc = self._switch_proc, None
        return await _terminate(proc, signal.SIGKILL)

    async def stop_switch(self) -> dict:
        """SIGTERM the switch: it says BYE to every node, takes in the frames they still had
        in flight (counted ``unknown_peer``) and exits. Returns its final ``stats``, the line
        it printed last, so an account across a restart can add both switches' counters."""
        await self._unwatch("switch")
        proc, self._switch_proc = self._switch_proc, None
        code = await _terminate(proc)
        out = (await proc.proc.stdout.read()).decode(errors="replace")
        for line in out.splitlines():
            if line.startswith(FINAL_PREFIX):
                return json.loads(line[len(FINAL_PREFIX):])
        raise LanError(f"the switch exited with status {code} without its final counters:\n{proc.log_tail()}")

    async def restart_switch(self) -> dict:
        """Stop the switch cleanly and start a new one on the same endpoints; returns the old
        switch's final ``stats``."""
        final = await self.stop_switch()
        await self.start_switch()
        return final

    async def close(self) -> None:
        await self.programs.stop_all()
        for name in list(self._watchers):  # from here on, every exit is one the LAN asked for
            await self._unwatch(name)
        handles = [*self.nodes, *([self.switch] if self.switch else [])]
        await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)
        procs = list(self._node_procs.values())
        self._node_procs.clear()
        packs = list(self._packs.values())
        self._packs.clear()
        await asyncio.gather(*(_terminate(p) for p in procs), *(_terminate(p, grace=PACK_GRACE) for p in packs),
                             return_exceptions=True)
        for p in packs:
            await p.aclose_reader()
            self._closed_finals.update(p.finals)
        if self._switch_proc is not None:
            await _terminate(self._switch_proc)
            self._switch_proc = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self._netns is not None:
            failed = await asyncio.to_thread(self._netns.remove_all)
            if failed:
                print(f"vnet: could not remove namespaces {', '.join(failed)}; the next kernel-stack LAN "
                      f"removes them", file=sys.stderr)
        if self._own_runtime:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        elif self._owns_pidfile:
            self.pidfile.remove()
            self._owns_pidfile = False

    def pids(self) -> dict[str, int]:
        """The pid of each daemon now running for the LAN, by name ("switch", "node1", ...)."""
        procs = [*([self._switch_proc] if self._switch_proc else []), *self._node_procs.values(),
                 *self._packs.values()]
        return {p.name: p.proc.pid for p in procs}

    def logs(self) -> dict[str, str]:
        """The tail of each daemon's log, for failure reports."""
        procs = [*([self._switch_proc] if self._switch_proc else []), *self._node_procs.values(),
                 *self._packs.values()]
        return {p.name: p.log_tail() for p in procs}

    # -- supervision --------------------------------------------------------------------------

    async def wait_failure(self) -> LanError:
        """Wait until the LAN has failed (a death the restart policy would not mend); the
        LanError says which daemon and why."""
        await self._failed.wait()
        return self.failure

    def _watch(self, name: str) -> None:
        """Supervise ``name``'s process from a task of the LAN's (unless one already does: a
        restart runs inside the task that supervises the daemon)."""
        task = self._watchers.get(name)
        if task is None or task.done():
            self._watchers[name] = asyncio.get_running_loop().create_task(self._supervise(name),
                                                                          name=f"supervise {name}")

    async def _unwatch(self, name: str) -> None:
        """Stop supervising ``name`` (the LAN is about to stop it itself): cancel and await."""
        task = self._watchers.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _proc_of(self, name: str) -> _Proc | None:
        if name == "switch":
            return self._switch_proc
        return self._node_procs.get(name) or self._packs.get(name)

    async def _supervise(self, name: str) -> None:
        """Await the daemon's exit; report it, then restart it or fail the LAN."""
        loop = asyncio.get_running_loop()
        while (p := self._proc_of(name)) is not None:
            code = await p.proc.wait()
            restart, reason = self.policy.decide(name, code, loop.time(), node=name != "switch")
            death = Death(name, p.proc.pid, code, p.log_tail(), loop.time(), restart, reason,
                          nodes=tuple(p.nodes) if isinstance(p, _Pack) else ())
            if isinstance(p, _Pack):
                await p.aclose_reader()
            self.deaths.append(death)
            log.error("%s", death.report())
            if self.on_death is not None:
                try:
                    self.on_death(death)
                except Exception:  # the caller's bug must not end the supervision
                    log.exception("on_death(%s) failed", name)
            if not restart:
                self._fail(LanError(f"{name} {death.status} and is not restarted: {reason}"))
                return
            try:
                await self._restart(name, p)
            except Exception as exc:  # LanError (it did not come up), OSError: the LAN has failed
                self._fail(LanError(f"{name} {death.status} and could not be restarted: {exc}"))
                return
            log.warning("%s restarted (pid %d)", name, self._proc_of(name).proc.pid)

    async def _restart(self, name: str, old: _Proc) -> None:
        """Start ``name`` again as it was started. The nodes re-attach to a new switch by
        themselves (the same endpoints); a new node gets a new MAC (unless its arguments name
        one), which its handle follows."""
        if name == "switch":
            await self._start_switch_proc()
            return
        if isinstance(old, _Pack):
            proc, infos = await self._spawn_pack(name, old.args, old.nodes)
            self._packs[name] = proc
            for node in old.nodes:
                self.node(node).mac = infos[node]["mac"]
                self.node(node).metrics_url = infos[node].get("metrics")
            self._write_pidfile()
            return
        proc, info = await self._spawn(name, old.args)
        self._node_procs[name] = proc
        self.node(name).mac = info["mac"]
        self.node(name).metrics_url = info.get("metrics")
        self._write_pidfile()

    def _fail(self, error: LanError) -> None:
        if self.failure is None:
            self.failure = error
        self._failed.set()

    def _write_pidfile(self) -> None:
        procs = {p.name: p.proc.pid for p in (self._switch_proc, *self._node_procs.values(), *self._packs.values())
                 if p is not None}
        sockets = [f"{self.runtime_dir}/{n.name}.ctl" for n in self.nodes]
        if self.switch is not None:
            sockets += [e[len("ipc://"):] for e in (self.switch.data, self.switch.control) if e.startswith("ipc://")]
        try:
            self.pidfile.write(procs, sockets)
            self._owns_pidfile = True
        except OSError as exc:  # a LAN that runs beats one that stops for its pidfile
            log.warning("cannot write %s: %s (a LAN started after this one is killed will not clean up "
                        "after it)", self.pidfile.path, exc)

    # -- processes ----------------------------------------------------------------------------

    async def _spawn(self, name: str, args: list[str]) -> tuple[_Proc, dict]:
        return await spawn_daemon(name, args, self.runtime_dir, self.start_timeout)

    async def _spawn_pack(self, name: str, args: list[str], nodes: list[str]) -> tuple[_Pack, dict[str, dict]]:
        return await spawn_pack(name, args, nodes, self.runtime_dir, self.start_timeout)


async def spawn_pack(name: str, args: list[str], nodes: list[str], runtime_dir: str,
                     start_timeout: float) -> tuple[_Pack, dict[str, dict]]:
    """Start ``vnet ARGS`` (a ``vnet nodes`` process) as ``name`` and read its ready line for
    each of ``nodes`` (a ``vnet-failed`` line, or its exit, fails it: LanError, the process
    stopped); then its reader keeps its stdout drained. Returns it and each node's ready
    line's JSON, by node."""
    log_path = os.path.join(runtime_dir, f"{name}.log")
    env = dict(os.environ, VNET_RUNTIME_DIR=runtime_dir, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log_fh:
        proc = await asyncio.create_subprocess_exec(
            *vnet_command(), *args, stdout=asyncio.subprocess.PIPE, stderr=log_fh,
            stdin=asyncio.subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent(),
        )
    p = _Pack(name, proc, log_path, args, list(nodes))
    infos: dict[str, dict] = {}
    try:
        async with asyncio.timeout(start_timeout):
            while len(infos) < len(nodes):
                text = (await proc.stdout.readline()).decode(errors="replace").strip()
                if text.startswith(READY_PREFIX):
                    info = json.loads(text[len(READY_PREFIX):])
                    infos[info["node"]] = info
                    continue
                if text.startswith(FAILED_PREFIX):
                    failed = json.loads(text[len(FAILED_PREFIX):])
                    raise LanError(f"{failed['node']} (in {name}) failed to start: {failed['error']}\n"
                                   f"{p.log_tail()}")
                if not text and proc.stdout.at_eof():
                    await proc.wait()
                    raise LanError(f"{name} ({len(nodes)} nodes) failed to start (exit {proc.returncode}) "
                                   f"after {len(infos)} ready:\n{p.log_tail()}")
    except TimeoutError:
        stacks = await _dump_stacks(p)
        await _terminate(p, grace=PACK_GRACE)
        missing = [n for n in nodes if n not in infos]
        raise LanError(f"{name}: {len(missing)} of its {len(nodes)} nodes ({', '.join(missing[:5])}...) did "
                       f"not become ready within {start_timeout:g} s; its log and where it was stuck:\n"
                       f"{p.log_tail(60)}{stacks}") from None
    except BaseException:  # LanError, or cancelled because a sibling failed: the process is ours to stop
        await _terminate(p, grace=PACK_GRACE)
        raise
    p.start_reader()
    return p, infos


def pack_args(runtime_dir: str, name: str, entries: list[dict], ready_timeout: float,
              metrics: str | None = DEFAULT_METRICS) -> list[str]:
    """Write ``name``'s pack file (``runtime_dir/NAME.json``: ``entries``, each NodeConfig's
    fields by name, and the process's one metrics endpoint, None: none) and return the
    ``vnet nodes`` arguments that run it."""
    config = os.path.join(runtime_dir, f"{name}.json")
    with open(config, "w") as fh:
        json.dump({"nodes": entries, "ready_timeout": ready_timeout, "metrics": metrics or "off"}, fh)
    return ["nodes", "--config", config, "--log-level", "warning"]


async def spawn_daemon(name: str, args: list[str], runtime_dir: str, start_timeout: float) -> tuple[_Proc, dict]:
    """Start ``vnet ARGS`` as daemon ``name`` (its log in ``runtime_dir``, dying with this
    process) and wait for its ready line; its _Proc and the line's JSON. LanError (the
    process stopped) if it fails or is not ready within ``start_timeout`` s."""
    log_path = os.path.join(runtime_dir, f"{name}.log")
    env = dict(os.environ, VNET_RUNTIME_DIR=runtime_dir, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *vnet_command(), *args, stdout=asyncio.subprocess.PIPE, stderr=log,
            stdin=asyncio.subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent(),
        )
    p = _Proc(name, proc, log_path, args)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), start_timeout)
    except asyncio.TimeoutError:
        stacks = await _dump_stacks(p)
        await _terminate(p)
        raise LanError(f"{name} did not become ready within {start_timeout:g} s; its log and "
                       f"where it was stuck:\n{p.log_tail(60)}{stacks}") from None
    except asyncio.CancelledError:  # a sibling failed (Lan.start): the process is ours to stop
        await _terminate(p)
        raise
    text = line.decode(errors="replace").strip()
    if not text.startswith(READY_PREFIX):
        await _terminate(p)
        raise LanError(f"{name} failed to start (exit {proc.returncode}):\n{text}\n{p.log_tail()}")
    return p, json.loads(text[len(READY_PREFIX):])


async def _all_or_none(coros: Iterable[Awaitable[Any]]) -> None:
    """Run ``coros`` together in a task group: when one fails the others are cancelled and
    awaited, then the first failure is raised as itself (a LanError stays a LanError), the
    others noted on it."""
    try:
        async with asyncio.TaskGroup() as tg:
            for coro in coros:
                tg.create_task(coro)
    except BaseExceptionGroup as group:
        first, *others = group.exceptions
        for exc in others:
            first.add_note(f"also: {exc.__class__.__name__}: {exc}")
        raise first from None


async def _dump_stacks(p: _Proc) -> str:
    """Ask a stuck daemon for its Python stacks (``vnet`` daemons dump them on SIGUSR1)."""
    if p.proc.returncode is not None:
        return f"\n(exited with status {p.proc.returncode})"
    size = os.path.getsize(p.log_path)
    p.proc.send_signal(signal.SIGUSR1)
    try:
        await poll_until(lambda: _grew_past(p.log_path, size), "a stack dump", timeout=2.0)
    except TimeoutError:
        return "\n(no stack dump within 2 s)"
    return ""


async def _grew_past(path: str, size: int) -> bool:
    return os.path.getsize(path) > size


async def _terminate(p: _Proc, sig: int = signal.SIGTERM, grace: float = 5.0) -> int:
    return await _stop_program(p.proc, grace, sig)
