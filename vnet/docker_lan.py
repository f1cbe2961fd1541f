"""The Docker LAN: the compose file's switch and node containers, driven like the embedded LAN.

``DockerLan`` brings a compose project up under a unique project name (so it never touches
a LAN a user is running), waits until every container is healthy (polling Docker, with a
deadline), and hands out the same ``NodeHandle``/``SwitchHandle`` objects as ``vnet.lan.Lan``,
so one test body runs against both. A node in a container is reached with
``docker exec -i CONTAINER vnet call --stdio`` (its control socket never leaves the
container), and so is the switch (``vnet call --stdio --switch`` in the switch's container:
its control endpoint listens on the container's loopback only, or, with CURVE on, takes only
allowed keys). ``close()`` runs ``compose down -v`` and then removes anything
still labelled with the project, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import msgpack

from vnet.proto.control import ControlError, decode_reply
from vnet.lan import LanError, NodeHandle, SwitchHandle, poll_until

PROJECT_LABEL = "com.docker.compose.project"
VNET_LABEL = "com.vnet.project=vnet"


def compose_command() -> list[str]:
    """``docker compose`` (v2) where it works, else ``docker-compose`` (v1)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise LanError("neither `docker compose` (v2) nor `docker-compose` (v1) is installed")


def docker_available() -> str | None:
    """None when a Docker engine answers; otherwise why not (for a skip reason)."""
    if not shutil.which("docker"):
        return "the docker command is not installed"
    proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"no Docker engine is reachable: {proc.stderr.strip() or proc.stdout.strip()}"
    return None


class DockerExecClient:
    """Control requests to the node in ``container`` (or its switch, with ``switch=True``),
    relayed by ``vnet call --stdio``."""

    def __init__(self, container: str, timeout: float = 10.0, switch: bool = False) -> None:
        self.container = container
        self.timeout = timeout
        self.switch = switch

    async def call(self, cmd: str, wait: float | None = None, **args: Any) -> Any:
        wait = self.timeout if wait is None else wait
        request = msgpack.packb({"cmd": cmd, "args": args}, use_bin_type=True)
        proc = await asyncio.create_subprocess_exec(
            "docker", "exec", "-i", self.container, "vnet", "call", "--stdio", "--wait", str(wait),
            *(("--switch",) if self.switch else ()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(request), wait + 30)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise TimeoutError(f"docker exec {self.container}: no answer to {cmd!r} within {wait + 30:g} s") from None
        if proc.returncode != 0:
            text = err.decode(errors="replace").strip()
            if "no answer" in text or "is not running" in text:
                raise TimeoutError(f"{self.container}: {text}")
            raise ControlError(f"{self.container}: {text}")
        return decode_reply(out)

    async def close(self) -> None:
        """Nothing to close: each request is its own process."""


async def _run(*cmd: str, env: dict | None = None, timeout: float = 600) -> str:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=env)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise LanError(f"{' '.join(cmd)} took longer than {timeout:g} s") from None
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise LanError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return text


def free_docker_subnet() -> str:
    """A /24 in 172.30.0.0/16 that no Docker network uses yet."""
    out = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True).stdout.split()
    used: set[ipaddress.IPv4Network] = set()
    if out:
        info = json.loads(subprocess.run(["docker", "network", "inspect", *out], capture_output=True, text=True).stdout or "[]")
        for net in info:
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                try:
                    used.add(ipaddress.IPv4Network(cfg.get("Subnet", ""), strict=False))
                except ValueError:
                    pass
    for candidate in ipaddress.IPv4Network("172.30.0.0/16").subnets(new_prefix=24):
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise LanError("no free /24 left in 172.30.0.0/16 for the test LAN's Docker network")


class DockerLan:
    """A compose project of the vnet LAN: ``async with DockerLan(scale=0) as lan: ...``.

    ``scale`` starts that many replicas of the scalable ``node`` service (addresses by DHCP)
    besides the named nodes. ``project`` defaults to a unique name.
    """

    def __init__(self, compose_file: str | os.PathLike = "docker-compose.yml", *, project: str | None = None,
                 scale: int = 0, start_timeout: float = 180.0, env: dict[str, str] | None = None,
                 overrides: tuple[str | os.PathLike, ...] = ()) -> None:
        self.compose_file = str(Path(compose_file).resolve())
        self.overrides = [str(Path(f).resolve()) for f in overrides]
        for f in (self.compose_file, *self.overrides):
            if not os.path.exists(f):
                raise LanError(f"no compose file at {f}")
        self.project = project or f"vnettest{uuid.uuid4().hex[:8]}"
        self.scale = scale
        self.start_timeout = start_timeout
        self._env = dict(os.environ, **(env or {}))
        self._env.setdefault("VNET_DOCKER_SUBNET", free_docker_subnet())
        self._compose = compose_command()
        self.nodes: list[NodeHandle] = []
        self.switch: SwitchHandle | None = None

    async def __aenter__(self) -> "DockerLan":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def compose(self, *args: str, timeout: float = 600) -> "asyncio.Future[str]":
        """Run ``docker compose -p PROJECT -f FILE [-f OVERRIDE...] ARGS...`` (v2 or v1),
        returning its output."""
        files = [a for f in (self.compose_file, *self.overrides) for a in ("-f", f)]
        return _run(*self._compose, "-p", self.project, *files, *args, env=self._env, timeout=timeout)

    async def start(self) -> None:
        try:
            await self.compose("up", "-d", "--no-build", "--scale", f"node={self.scale}")
            await self.refresh()
        except BaseException:
            await self.close()
            raise

    async def scale_nodes(self, n: int) -> None:
        """``compose up -d --scale node=N``, then wait for every node to be ready."""
        self.scale = n
        await self.compose("up", "-d", "--no-build", "--scale", f"node={n}")
        await self.refresh()

    async def refresh(self) -> None:
        """Wait until every container of the project is healthy, then (re)build the handles."""
        await poll_until(self._all_healthy, f"every container of {self.project} healthy", timeout=self.start_timeout, every=0.5)
        containers = await self._containers()
        switch = [c for c in containers if c["service"] == "switch"]
        if not switch:
            raise LanError(f"{self.project} has no switch container")
        if self.switch is None:
            ip = switch[0]["ip"]
            self.switch = SwitchHandle(DockerExecClient(switch[0]["name"], switch=True),
                                       "tcp://127.0.0.1:5541 in " + switch[0]["name"], f"tcp://{ip}:5540")
        old = {n.name: n for n in self.nodes}
        nodes = []
        for c in containers:
            if c["service"] == "switch" or c["service"] == "dhcp":
                continue
            handle = NodeHandle(DockerExecClient(c["name"]), c["node"])
            handle.container = c["name"]
            handle.service = c["service"]
            if c["node"] in old:
                handle.ip, handle.mac = old[c["node"]].ip, old[c["node"]].mac
            nodes.append(handle)
        await asyncio.gather(*(n.wait_ready(self.start_timeout) for n in nodes))
        self.nodes = sorted(nodes, key=lambda n: (n.service != n.name, n.name))

    def node(self, name: str) -> NodeHandle:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} ({', '.join(n.name for n in self.nodes)})")

    async def kill_node(self, name: str) -> None:
        """SIGKILL a node's container (no BYE: the switch must notice by itself)."""
        handle = self.node(name)
        await _run("docker", "kill", handle.container)
        self.nodes.remove(handle)

    async def disconnect_node(self, name: str) -> None:
        """``docker network disconnect`` a node's container from the project's network: its
        cable to the switch is pulled while the daemon runs on (``docker exec``, and so its
        handle, still reaches it). ``connect_node`` plugs it back in as it was."""
        handle = self.node(name)
        ours = set((await _run("docker", "network", "ls", "--format", "{{.Name}}", "--filter",
                               f"label={PROJECT_LABEL}={self.project}")).split())
        info = json.loads(await _run("docker", "inspect", handle.container))[0]
        short_id = info["Id"][:12]
        plugs = []
        for net, cfg in (info["NetworkSettings"]["Networks"] or {}).items():
            if net not in ours:
                continue
            static = (cfg.get("IPAMConfig") or {}).get("IPv4Address")  # compose's ipv4_address
            aliases = [a for a in cfg.get("Aliases") or [] if a != short_id]  # docker adds the id itself
            plugs.append((net, static, aliases))
        if not plugs:
            raise LanError(f"{handle.container} is on none of {self.project}'s networks ({', '.join(sorted(ours))})")
        for net, _, _ in plugs:
            await _run("docker", "network", "disconnect", net, handle.container)
        handle.unplugged = plugs

    async def connect_node(self, name: str, ip: str | None = None) -> None:
        """``docker network connect`` a node disconnected by ``disconnect_node`` back to the
        project's network, with its aliases, and its address if compose gave it a static one
        (otherwise Docker's IPAM picks one, as for a new cable). ``ip`` plugs it in with that
        address instead (``--ip``: a free one in the project's subnet), as a host that comes
        back with another address. The node re-attaches to the switch by itself; wait for
        that with ``NodeHandle.wait_ready``."""
        handle = self.node(name)
        plugs = getattr(handle, "unplugged", None)
        if not plugs:
            raise LanError(f"{name} was not disconnected with disconnect_node")
        if ip is not None and len(plugs) != 1:
            raise LanError(f"{name} was on {len(plugs)} of {self.project}'s networks: ip= needs exactly one")
        for net, static, aliases in plugs:
            address = ip or static
            args = [*(("--ip", address) if address else ()), *(a for alias in aliases for a in ("--alias", alias))]
            await _run("docker", "network", "connect", *args, net, handle.container)
        handle.unplugged = None

    async def restart_switch(self) -> None:
        await self.compose("restart", "switch")

    async def _containers(self) -> list[dict]:
        ids = (await _run("docker", "ps", "-aq", "--filter", f"label={PROJECT_LABEL}={self.project}")).split()
        if not ids:
            return []
        info = json.loads(await _run("docker", "inspect", *ids))
        out = []
        for c in info:
            labels = c["Config"]["Labels"] or {}
            env = dict(e.split("=", 1) for e in c["Config"]["Env"] or [] if "=" in e)
            nets = c["NetworkSettings"]["Networks"] or {}
            out.append({
                "name": c["Name"].lstrip("/"),
                "service": labels.get("com.docker.compose.service", ""),
                "node": env.get("VNET_NODE") or c["Config"]["Hostname"],
                "status": c["State"]["Status"],
                "health": (c["State"].get("Health") or {}).get("Status"),
                "ip": next((n["IPAddress"] for n in nets.values() if n.get("IPAddress")), None),
            })
        return out

    async def _all_healthy(self) -> bool:
        containers = await self._containers()
        bad = [c for c in containers if c["status"] == "exited" or c["status"] == "dead"]
        if bad:
            logs = await _run("docker", "logs", "--tail", "30", bad[0]["name"])
            raise LanError(f"container {bad[0]['name']} exited:\n{logs}")
        return bool(containers) and all(c["health"] == "healthy" for c in containers if c["status"] == "running") \
            and all(c["status"] == "running" for c in containers)

    async def resources(self) -> dict[str, list[str]]:
        """Containers, networks and volumes carrying this project's label."""
        label = f"label={PROJECT_LABEL}={self.project}"
        return {
            "containers": (await _run("docker", "ps", "-aq", "--filter", label)).split(),
            "networks": (await _run("docker", "network", "ls", "-q", "--filter", label)).split(),
            "volumes": (await _run("docker", "volume", "ls", "-q", "--filter", label)).split(),
        }

    async def close(self) -> None:
        if self.switch is not None:
            await self.switch.close()
            self.switch = None
        try:
            await self.compose("down", "-v", "--remove-orphans", "--timeout", "5")
        finally:
            left = await self.resources()
            if left["containers"]:
                await _run("docker", "rm", "-f", "-v", *left["containers"])
            if left["networks"]:
                await _run("docker", "network", "rm", *left["networks"])
            if left["volumes"]:
                await _run("docker", "volume", "rm", "-f", *left["volumes"])


async def build_image(root: str | os.PathLike) -> str:
    """``bash compose/build.sh``: the base image, the wheelhouse and the vnet image (cached)."""
    return await _run("bash", str(Path(root) / "compose" / "build.sh"), timeout=1200)
