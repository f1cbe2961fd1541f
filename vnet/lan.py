"""The embedded LAN: a switch process and N node processes on this machine.

Every daemon is started with the same ``vnet switch`` / ``vnet node`` commands the containers
run, so the embedded LAN exercises the one code path there is. The ``Lan`` owns its
processes: it starts them, waits for each to print its ``vnet-ready`` line and for every node
to have carrier and usable addresses (polling, with a deadline), and on ``close()`` sends
SIGTERM to each and kills what has not exited within the grace period.

Node handles (``NodeHandle``) speak to a node's control endpoint; the same handle API serves
the Docker LAN fixture, so one test body runs against both.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import secrets
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable

import zmq
import zmq.asyncio

from vnet.proto.auth import CurveClient, keygen
from vnet.proto.control import FINAL_PREFIX, READY_PREFIX, AsyncControlClient


class LanError(RuntimeError):
    """The LAN could not be brought up (a daemon failed to start, or never became ready)."""


@dataclass
class PingResult:
    """What ``ping -c N`` reports: per-probe results and ping(8)'s summary figures."""

    dst: str
    transmitted: int = 0
    received: int = 0
    unreachable: int = 0
    rtts_ms: list[float] = field(default_factory=list)
    replies: list[dict] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return 0.0 if not self.transmitted else 100.0 * (self.transmitted - self.received) / self.transmitted

    @property
    def ok(self) -> bool:
        return self.transmitted > 0 and self.received == self.transmitted


class NodeHandle:
    """A test's or the demo's grip on one node, through its control endpoint.

    ``client`` carries the requests: an ``AsyncControlClient`` on the node's socket for the
    embedded LAN, a ``docker exec`` relay for the Docker LAN; the API is the same.
    """

    def __init__(self, client: Any, name: str, ip: str | None = None, mac: str | None = None,
                 stack: str = "vnet", netns: str | None = None, programs: "Programs | None" = None) -> None:
        self.name = name
        self.ip = ip
        self.mac = mac
        self.stack = stack
        self.netns = netns  # a kernel-stack node's network namespace (its vnet0 lives there)
        self._client = client
        self._programs = programs

    def __repr__(self) -> str:
        return f"<NodeHandle {self.name} {self.ip} {self.mac}>"

    async def call(self, cmd: str, wait: float | None = None, **args: Any) -> Any:
        return await self._client.call(cmd, wait=wait, **args)

    async def health(self) -> dict:
        return await self.call("health")

    async def ping(self, dst: str, count: int = 1, size: int = 56, timeout: float = 4.0,
                   interval: float = 0.0) -> PingResult:
        res = PingResult(dst)
        for seq in range(1, count + 1):
            r = await self.call("ping", wait=timeout + 5, dst=dst, seq=seq, size=size, timeout=timeout)
            res.transmitted += 1
            res.replies.append(r)
            if r["status"] == "reply":
                res.received += 1
                res.rtts_ms.append(r["rtt_ms"])
            elif r["status"] == "unreachable":
                res.unreachable += 1
            if interval and seq < count:
                await asyncio.sleep(interval)  # the probe interval the caller asked for
        return res

    async def arping(self, dst: str, timeout: float = 1.0) -> dict:
        return await self.call("arping", wait=timeout + 5, dst=dst, timeout=timeout)

    async def neigh(self) -> list[dict]:
        return await self.call("neigh_show")

    async def neigh_flush(self) -> int:
        return await self.call("neigh_flush")

    async def stats(self) -> dict:
        return await self.call("stats")

    async def link(self) -> dict:
        return (await self.call("link_show"))[0]

    async def link_set(self, **changes: Any) -> dict:
        """``link_set(state="down")``, ``mtu=9000``, ``address="02:..."``, ``promisc=True``."""
        return await self.call("link_set", **changes)

    async def addr_add(self, cidr: str) -> dict:
        return await self.call("addr_add", cidr=cidr)

    async def addresses(self) -> list[dict]:
        return (await self.call("addr_show"))["addresses"]

    async def ethtool(self, op: str, **params: Any) -> Any:
        return await self.call("ethtool", op=op, **params)

    async def udp_bind(self, port: int) -> None:
        await self.call("udp_bind", port=port)

    async def udp_send(self, dst: str, port: int, data: bytes, sport: int = 0) -> dict:
        return await self.call("udp_send", dst=dst, port=port, data=data, sport=sport)

    async def udp_recv(self, port: int, timeout: float = 2.0) -> list[dict]:
        return await self.call("udp_recv", wait=timeout + 5, port=port, timeout=timeout)

    async def inject(self, frames: Any) -> dict:
        """Send raw frames (bytes, or scapy packets, or a list of either) through TX."""
        if not isinstance(frames, (list, tuple)):
            frames = [frames]
        return await self.call("inject", frames=[bytes(f) for f in frames])

    async def capture(self, filter: str = "", count: int | None = None) -> "CaptureHandle":
        """Start capturing on vnet0 (both directions): ``async with await node.capture("icmp") as cap``."""
        started = await self.call("capture_start", filter=filter, count=count)
        return CaptureHandle(self, started["id"], label=self.name)

    async def wait_for(self, predicate, what: str, timeout: float = 10.0, every: float = 0.02) -> Any:
        """Poll ``await predicate(self)`` until it returns something truthy, or fail with ``what``."""
        return await poll_until(lambda: predicate(self), what=f"{self.name}: {what}", timeout=timeout, every=every)

    async def wait_ready(self, timeout: float = 15.0) -> dict:
        """Until the node has carrier and at least one address, all past DAD; fills in
        ``ip`` and ``mac`` when they were not known (a node that got its address by DHCP)."""

        async def ready(_):
            h = await self.health()
            if h.get("refused"):
                raise LanError(f"{self.name}: {h['refused']}")
            addrs = h["addresses"]
            return h if h["carrier"] and addrs and all(a["state"] == "ok" for a in addrs) else None

        health = await self.wait_for(ready, "carrier up and an address ready", timeout)
        if self.ip is None:
            self.ip = health["addresses"][0]["address"]
        if self.mac is None:
            self.mac = (await self.link())["address"]
        return health

    def _netns_argv(self, argv: Iterable[str]) -> list[str]:
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("run/popen: give the program to run, e.g. ['ping', '-c', '1', '10.0.0.2']")
        if self.stack != "kernel" or self.netns is None:
            raise LanError(f"{self.name} runs vnet's own stack: it has no kernel interface, so a program run "
                           f"for it would not be on the LAN; start it with stack='kernel' to run programs on it")
        return ["ip", "netns", "exec", self.netns, *argv]

    async def run(self, argv: Iterable[str], timeout: float = 30.0, input: bytes | None = None
                  ) -> subprocess.CompletedProcess:
        """Run a program in the node's namespace (as `ip netns exec`) to completion; returns
        its CompletedProcess (returncode, stdout, stderr as bytes). A program still running
        after ``timeout`` seconds is killed and TimeoutError raised. Kernel-stack nodes only:
        a vnet-stack node refuses with LanError (its LAN is not the kernel's)."""
        full = self._netns_argv(argv)
        proc = await asyncio.create_subprocess_exec(
            *full, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL)
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise TimeoutError(f"{self.name}: {' '.join(full[4:])} still running after {timeout:g} s: killed") from None
        return subprocess.CompletedProcess(full[4:], proc.returncode, out, err)

    async def popen(self, argv: Iterable[str], **kwargs: Any) -> asyncio.subprocess.Process:
        """Start a program in the node's namespace and return it (an asyncio Process; pass
        stdout=asyncio.subprocess.PIPE etc. as to create_subprocess_exec). The LAN owns it:
        teardown stops it (SIGTERM, then SIGKILL after a grace period) if it still runs."""
        full = self._netns_argv(argv)
        kwargs.setdefault("stdin", asyncio.subprocess.DEVNULL)
        proc = await asyncio.create_subprocess_exec(*full, **kwargs)
        if self._programs is not None:
            self._programs.add(proc)
        return proc

    async def close(self) -> None:
        await self._client.close()


class Programs:
    """The programs a LAN's nodes started with ``popen``: stopped at teardown."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    def add(self, proc: asyncio.subprocess.Process) -> None:
        self.procs.append(proc)

    async def stop_all(self, grace: float = 3.0) -> None:
        procs, self.procs = self.procs, []
        await asyncio.gather(*(_stop_program(p, grace) for p in procs), return_exceptions=True)


async def _stop_program(proc: asyncio.subprocess.Process, grace: float) -> None:
    if proc.returncode is None:
        try:
            proc.terminate()
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


class CaptureHandle:
    """A running capture: a node's (``NodeHandle.capture``) or a switch port mirror's
    (``SwitchHandle.mirror``). ``frames`` collects what ``read``/``read_until`` fetched:
    dicts with ``ts`` (wall-clock), ``dir`` ("in"/"out") and ``frame`` (bytes).

    ``source`` is the handle whose control endpoint runs the capture; ``read_cmd`` and
    ``stop_cmd`` are its commands (``capture_read``/``capture_stop`` on a node,
    ``mirror_read``/``mirror_stop`` on the switch), which take and answer the same things.
    """

    def __init__(self, source: Any, cid: int, read_cmd: str = "capture_read", stop_cmd: str = "capture_stop",
                 label: str | None = None) -> None:
        self.source = source
        self.id = cid
        self.read_cmd = read_cmd
        self.stop_cmd = stop_cmd
        self.label = label or getattr(source, "name", "capture")
        self.frames: list[dict] = []
        self.stats: dict | None = None

    @property
    def node(self) -> Any:  # the name it had when only nodes captured
        return self.source

    async def read(self, timeout: float = 1.0) -> list[dict]:
        got = await self.source.call(self.read_cmd, wait=timeout + 10, id=self.id, timeout=timeout)
        self.frames.extend(got["frames"])
        return got["frames"]

    async def read_until(self, n: int, timeout: float = 10.0) -> list[dict]:
        """Read until ``n`` frames have been collected in all, or fail after ``timeout``."""
        async def enough():
            await self.read(0.2)
            return len(self.frames) >= n
        await poll_until(enough, f"{n} captured frames on {self.label} (have {len(self.frames)})", timeout, every=0)
        return self.frames

    async def stop(self) -> dict:
        if self.stats is None:
            self.frames.extend((await self.source.call(self.read_cmd, id=self.id, timeout=0))["frames"])
            self.stats = await self.source.call(self.stop_cmd, id=self.id)
        return self.stats

    async def __aenter__(self) -> "CaptureHandle":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class SwitchHandle:
    """The switch's control endpoint: FDB, ports, stats, and the tools: a port's admin state
    (a cable cut), its impairments and a mirror of its traffic."""

    name = "switch"

    def __init__(self, client: Any, control: str, data: str) -> None:
        self.control = control
        self.data = data
        self._client = client  # anything with async call(cmd, wait, **args) and close()

    async def call(self, cmd: str, wait: float | None = None, **args: Any) -> Any:
        return await self._client.call(cmd, wait=wait, **args)

    async def fdb(self) -> list[dict]:
        return await self.call("fdb")

    async def ports(self) -> list[dict]:
        return await self.call("ports")

    async def stats(self) -> dict:
        return await self.call("stats")

    async def flush(self, port: str | None = None) -> int:
        return await self.call("flush", **({"port": port} if port else {}))

    async def set_ageing(self, seconds: float) -> Any:
        return await self.call("set_ageing", seconds=seconds)

    async def port(self, name: str, up: bool) -> dict:
        """Cut (``up=False``) or restore the cable of port ``name``: the node loses or regains
        carrier while staying attached, and the switch drops its frames (``port_down``)."""
        return await self.call("port_set", port=name, up=bool(up))

    async def impair(self, name: str, direction: str = "both", **params: Any) -> dict:
        """Change the named impairments of port ``name`` in ``direction`` ("in": frames from the
        node, "out": frames to it, or "both"); the others stay. Values as on the command line
        (``loss="10%"``, ``loss_burst="1%,30%"``, ``delay="50ms"``, ``jitter="5ms"``,
        ``rate="10mbit"``, ``queue=100``, ``duplicate="1%"``, ``corrupt="0.1%"``,
        ``reorder="25%"``, ``seed=7``) or numbers in percent, seconds, bit/s and frames.
        Returns ``impair_show``'s answer."""
        return await self.call("impair", port=name, dir=direction, **params)

    async def impair_clear(self, name: str, direction: str = "both") -> dict:
        """Remove every impairment of port ``name`` (counters stay)."""
        return await self.call("impair", port=name, dir=direction, clear=True)

    async def impair_show(self, name: str) -> dict:
        """``{"port": name, "in": {...}, "out": {...}}``: each direction's ``settings``,
        ``describe`` (one line), ``counters`` and ``held`` (frames waiting in its queue)."""
        return await self.call("impair", port=name)

    async def mirror(self, name: str, filter: str = "", count: int | None = None) -> CaptureHandle:
        """Mirror port ``name``: what the switch receives from it ("in") and sends to it
        ("out"), as ``NodeHandle.capture`` does on a node: ``async with await sw.mirror(n) as m``."""
        started = await self.call("mirror_start", port=name, filter=filter, count=count)
        return CaptureHandle(self, started["id"], "mirror_read", "mirror_stop", label=f"switch port {name}")

    async def close(self) -> None:
        await self._client.close()


async def poll_until(fn, what: str, timeout: float = 10.0, every: float = 0.02) -> Any:
    """Await ``fn()`` until truthy; raise TimeoutError naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = await fn()
            if result:
                return result
        except (TimeoutError, ConnectionError) as exc:
            last_exc = exc
        if loop.time() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        await asyncio.sleep(every)  # poll interval, not a readiness assumption


class _Proc:
    """One daemon process and its log file; owned by the Lan."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: str) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""


def vnet_command() -> list[str]:
    """How to run the ``vnet`` command: this interpreter, so a venv or checkout just works.

    ``-P`` (safe path) keeps the working directory off ``sys.path``: a user's project with
    packages of its own (``node/``, ``vnet/``, ...) cannot shadow vnet's modules.
    """
    return [sys.executable, "-P", "-m", "vnet.cli"]


class Lan:
    """An embedded LAN of ``nodes`` nodes on ``subnet``: node I is ``nodeI`` at host address I.

    ``switch_bind``/``switch_control`` default to random loopback ports; ``runtime_dir`` (where
    node control sockets live) defaults to a private temporary directory removed on close.
    With ``curve=True`` the LAN runs with CURVE: keys are made in ``runtime_dir/keys`` (the
    switch's pair and one per node, allowed) and the switch handle uses the LAN's own pair.
    """

    def __init__(
        self,
        nodes: int = 3,
        subnet: str = "10.0.0.0/24",
        *,
        switch_bind: str = "tcp://127.0.0.1:0",
        switch_control: str = "tcp://127.0.0.1:0",
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
        self.name = name or f"l{secrets.token_hex(3)}"
        from vnet.netns import lan_netns_name

        lan_netns_name(self.name, "node1")  # a name a namespace can carry, or ValueError now
        self._netns = None  # LanNamespaces, made on the first kernel-stack node
        self.programs = Programs()
        self.leftovers_removed: list[str] = []
        self.switch_bind = switch_bind
        self.switch_control_bind = switch_control
        self._own_runtime = runtime_dir is None
        self.runtime_dir = runtime_dir or tempfile.mkdtemp(prefix="vnet-lan-")
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
        self._node_procs: dict[str, _Proc] = {}
        self.switch: SwitchHandle | None = None
        self.nodes: list[NodeHandle] = []
        self._next_index = 1

    # -- life cycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> "Lan":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if "kernel" in self.stacks:
            self._kernel_ready()
        self._ctx = zmq.asyncio.Context()
        try:
            await self.start_switch()
            await asyncio.gather(*(self.add_node(wait=False, stack=st) for st in self.stacks))
            await asyncio.gather(*(n.wait_ready(self.start_timeout) for n in self.nodes))
        except BaseException:
            await self.close()
            raise

    async def start_switch(self) -> SwitchHandle:
        """Start (or restart, after ``kill_switch``) the switch on the same endpoints."""
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
        return self.switch

    def _kernel_ready(self) -> None:
        """Check a kernel-stack node can be made here (LanError saying why not), and remove
        the namespaces a LAN killed with SIGKILL left behind (once per LAN), saying so."""
        from vnet.netns import LanNamespaces, remove_leftovers

        if self._netns is not None:
            return
        if not os.path.exists("/dev/net/tun"):
            raise LanError("a kernel-stack node needs /dev/net/tun: load the tun module (modprobe tun), "
                           "or pass the device to the container")
        if os.geteuid() != 0:
            raise LanError("a kernel-stack node needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to make its TAP "
                           "and network namespace: run as root, or use stack='vnet' (no privileges)")
        if shutil.which("ip") is None:
            raise LanError("a kernel-stack node needs iproute2's `ip` to run programs in its namespace: "
                           "install iproute2")
        self.leftovers_removed = remove_leftovers(say=lambda text: print(f"vnet: {text}", file=sys.stderr))
        self._netns = LanNamespaces(self.name)

    async def add_node(self, name: str | None = None, wait: bool = True, extra_args: Iterable[str] = (),
                       dhcp: bool = False, allowed: bool = True, stack: str | None = None) -> NodeHandle:
        """Start one more node and return its handle: ``nodeI`` at the next host address, or,
        with ``dhcp=True``, with no static address, asking the LAN's DHCP server for one.
        On a CURVE LAN the node gets a key pair, which the switch allows unless ``allowed`` is
        False (an intruder: a well-formed key the switch does not know)."""
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
            from vnet.node.netns import NetnsError

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
        if wait:
            await handle.wait_ready(self.start_timeout)
        return handle

    def node(self, name: str) -> NodeHandle:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in this LAN ({', '.join(n.name for n in self.nodes)})")

    def __getitem__(self, index: int) -> NodeHandle:
        return self.nodes[index]

    async def stop_node(self, name: str, sig: int = signal.SIGTERM) -> int:
        """Stop a node's process (SIGTERM: it says BYE; SIGKILL: it just vanishes)."""
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
        proc = self._node_procs[name].proc
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
        proc = self._node_procs[name].proc
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
        proc, self._switch_proc = self._switch_proc, None
        return await _terminate(proc, signal.SIGKILL)

    async def stop_switch(self) -> dict:
        """SIGTERM the switch: it says BYE to every node, takes in the frames they still had
        in flight (counted ``unknown_peer``) and exits. Returns its final ``stats``, the line
        it printed last, so an account across a restart can add both switches' counters."""
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
        handles = [*self.nodes, *([self.switch] if self.switch else [])]
        await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)
        procs = list(self._node_procs.values())
        self._node_procs.clear()
        await asyncio.gather(*(_terminate(p) for p in procs), return_exceptions=True)
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

    def logs(self) -> dict[str, str]:
        """The tail of each daemon's log, for failure reports."""
        procs = [*([self._switch_proc] if self._switch_proc else []), *self._node_procs.values()]
        return {p.name: p.log_tail() for p in procs}

    # -- processes ----------------------------------------------------------------------------

    async def _spawn(self, name: str, args: list[str]) -> tuple[_Proc, dict]:
        log_path = os.path.join(self.runtime_dir, f"{name}.log")
        env = dict(os.environ, VNET_RUNTIME_DIR=self.runtime_dir, PYTHONUNBUFFERED="1")
        with open(log_path, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *vnet_command(), *args, stdout=asyncio.subprocess.PIPE, stderr=log,
                stdin=asyncio.subprocess.DEVNULL, env=env,
            )
        p = _Proc(name, proc, log_path)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.start_timeout)
        except asyncio.TimeoutError:
            stacks = await _dump_stacks(p)
            await _terminate(p)
            raise LanError(f"{name} did not become ready within {self.start_timeout:g} s; its log and "
                           f"where it was stuck:\n{p.log_tail(60)}{stacks}") from None
        text = line.decode(errors="replace").strip()
        if not text.startswith(READY_PREFIX):
            await _terminate(p)
            raise LanError(f"{name} failed to start (exit {proc.returncode}):\n{text}\n{p.log_tail()}")
        return p, json.loads(text[len(READY_PREFIX):])


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
    proc = p.proc
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


# -- the `vnet lan` commands ------------------------------------------------------------------


async def lan_up(nodes: int, subnet: str, curve: bool = False, stack: str = "vnet") -> int:
    """``vnet lan up``: a LAN on the default switch ports and runtime directory, until signalled."""
    from vnet.proto.wire import DEFAULT_CONTROL_PORT, DEFAULT_DATA_PORT
    from vnet.proto.control import runtime_dir

    lan = Lan(nodes, subnet, switch_bind=f"tcp://127.0.0.1:{DEFAULT_DATA_PORT}",
              switch_control=f"tcp://127.0.0.1:{DEFAULT_CONTROL_PORT}", runtime_dir=runtime_dir(), curve=curve,
              stack=stack, name="lan")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await lan.start()
        except LanError as exc:
            print(f"vnet: error: {exc}", file=sys.stderr)
            return 2
        print(f"vnet LAN up: switch {lan.switch.data} (control {lan.switch.control}), subnet {lan.subnet}")
        for n in lan.nodes:
            how = (f"vnet --node {n.name} exec -- ping <ip>   (namespace {n.netns})" if n.stack == "kernel"
                   else f"vnet --node {n.name} ping <ip>")
            print(f"  {n.name:<8} {n.ip:<15} {n.mac}   {how}")
        if curve:
            keys = lan.keys_dir
            print(f"CURVE on, keys in {keys}; ask the switch with VNET_CURVE_SECRET={keys}/switch.key_secret "
                  f"VNET_CURVE_SERVER_KEY={keys}/switch.key vnet switch fdb")
        print("Ctrl-C (or SIGTERM) stops the LAN.", flush=True)
        await stop.wait()
        print("stopping the LAN", flush=True)
        return 0
    finally:
        await lan.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def lan_demo(nodes: int, subnet: str, as_json: bool = False, count: int = 3, curve: bool = False,
                   stack: str = "vnet") -> int:
    """``vnet lan demo``: every node pings every other; exit 0 only if every pair answered.
    On a kernel-stack LAN each ping is the system's ping run in the sender's namespace."""
    try:
        lan = Lan(nodes, subnet, curve=curve, stack=stack, name="demo")
        await lan.start()
    except LanError as exc:
        print(f"vnet: error: {exc}", file=sys.stderr)
        return 2
    try:
        pairs = []
        for a in lan.nodes:
            for b in lan.nodes:
                if a is b:
                    continue
                res = await a.ping(b.ip, count=count)
                pairs.append({
                    "src": a.name, "dst": b.name, "dst_ip": b.ip, "transmitted": res.transmitted,
                    "received": res.received, "loss_pct": res.loss, "ok": res.ok,
                    "rtt_avg_ms": sum(res.rtts_ms) / len(res.rtts_ms) if res.rtts_ms else None,
                })
        arp = {n.name: await n.neigh() for n in lan.nodes}
        stats = {n.name: (await n.link())["stats64"] for n in lan.nodes}
        fdb = await lan.switch.fdb()
    finally:
        await lan.close()
    ok = all(p["ok"] for p in pairs)
    if as_json:
        print(json.dumps({"ok": ok, "nodes": nodes, "pairs": pairs, "arp": arp, "stats": stats, "fdb": fdb}, indent=2))
        return 0 if ok else 1
    print(f"{'from':<8} {'to':<8} {'ip':<15} {'sent':>4} {'recv':>4} {'rtt avg':>10}")
    for p in pairs:
        rtt = f"{p['rtt_avg_ms']:.3f} ms" if p["rtt_avg_ms"] is not None else "-"
        print(f"{p['src']:<8} {p['dst']:<8} {p['dst_ip']:<15} {p['transmitted']:>4} {p['received']:>4} {rtt:>10}")
    for name, entries in arp.items():
        print(f"\nARP table of {name}:")
        for e in entries:
            print(f"  {e['ip']:<15} {e.get('mac') or '-':<17} {e['state']}")
    print(f"\n{'node':<8} {'rx_packets':>10} {'rx_bytes':>10} {'tx_packets':>10} {'tx_bytes':>10} {'dropped':>8}")
    for name, s in stats.items():
        print(f"{name:<8} {s['rx_packets']:>10} {s['rx_bytes']:>10} {s['tx_packets']:>10} {s['tx_bytes']:>10} "
              f"{s['rx_dropped'] + s['tx_dropped']:>8}")
    print(f"\n{sum(p['ok'] for p in pairs)}/{len(pairs)} pairs answered every ping: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1
