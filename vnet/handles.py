"""Client handles on a running LAN's daemons, through their control endpoints: ``NodeHandle``
(a node: ping, arping, addresses, links, UDP, raw frames, captures; on a kernel-stack node,
programs run in its namespace with ``run``/``popen``), ``SwitchHandle`` (the
switch: FDB, ports, stats, cable cuts, impairments, mirrors) and ``CaptureHandle`` (a running
capture on either). They hold a client with ``async call(cmd, wait, **args)`` and ``close()``
and nothing else, so the embedded LAN (vnet/lan.py) and the Docker LAN (vnet/docker_lan.py)
hand out the same objects and one test body runs against both. ``poll_until`` is the
readiness check they and the tests share: poll with a deadline, never sleep and hope.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass, field
from typing import Any, Iterable


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
                 stack: str = "vnet", netns: str | None = None, programs: Any = None,
                 runner: Any = None) -> None:
        self.name = name
        self.ip = ip
        self.mac = mac
        self.stack = stack
        self.netns = netns  # a kernel-stack node's network namespace (its vnet0 lives there)
        self.metrics_url: str | None = None  # its Prometheus endpoint, from the ready line (None: off)
        self._client = client
        self._programs = programs  # the LAN's record of what popen started (stopped at teardown)
        # Where programs run when not by `ip netns exec` here: an object with the same async
        # run(argv, timeout, input) and popen(argv, **kwargs) (a container's exec, vnet/docker_lan.py).
        self._runner = runner

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

    async def capture(self, filter: str = "", count: int | None = None, dev: str = "vnet0") -> "CaptureHandle":
        """Start capturing on ``dev`` (both directions): ``async with await node.capture("icmp") as cap``."""
        started = await self.call("capture_start", filter=filter, count=count, dev=dev)
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

    def _program_argv(self, argv: Iterable[str]) -> list[str]:
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("run/popen: give the program to run, e.g. ['ping', '-c', '1', '10.0.0.2']")
        if self.stack != "kernel" or (self.netns is None and self._runner is None):
            raise LanError(f"{self.name} runs vnet's own stack: it has no kernel interface, so a program run "
                           f"for it would not be on the LAN; start it with stack='kernel' to run programs on it")
        return argv

    def _netns_argv(self, argv: Iterable[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *self._program_argv(argv)]

    async def run(self, argv: Iterable[str], timeout: float = 30.0, input: bytes | None = None
                  ) -> subprocess.CompletedProcess:
        """Run a program in the node's namespace (as `ip netns exec`) to completion; returns
        its CompletedProcess (returncode, stdout, stderr as bytes). A program still running
        after ``timeout`` seconds is killed and TimeoutError raised. Kernel-stack nodes only:
        a vnet-stack node refuses with LanError (a program would not be on its LAN)."""
        if self._runner is not None:
            return await self._runner.run(self._program_argv(argv), timeout=timeout, input=input)
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
        teardown stops it (SIGTERM, then SIGKILL after a grace period) if it still runs.
        On a containerised node the program runs in its container (an exec) and the object
        returned is a ``vnet.docker_lan.ContainerProcess`` (returncode, wait, terminate, kill,
        communicate)."""
        if self._runner is not None:
            return await self._runner.popen(self._program_argv(argv), **kwargs)
        full = self._netns_argv(argv)
        kwargs.setdefault("stdin", asyncio.subprocess.DEVNULL)
        proc = await asyncio.create_subprocess_exec(*full, **kwargs)
        if self._programs is not None:
            self._programs.add(proc)
        return proc

    async def close(self) -> None:
        await self._client.close()


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

    def __init__(self, client: Any, control: str, data: str, metrics_url: str | None = None) -> None:
        self.control = control
        self.data = data
        self.metrics_url = metrics_url  # its Prometheus endpoint, from the ready line (None: off)
        self._client = client  # anything with async call(cmd, wait, **args) and close()

    async def call(self, cmd: str, wait: float | None = None, **args: Any) -> Any:
        return await self._client.call(cmd, wait=wait, **args)

    async def fdb(self) -> list[dict]:
        return await self.call("fdb")

    async def ports(self) -> list[dict]:
        return await self.call("ports")

    async def stats(self) -> dict:
        return await self.call("stats")

    async def stp_show(self) -> dict:
        """Spanning tree: bridge and root ids, each port's role and state (docs/topology.md)."""
        return await self.call("stp_show")

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

