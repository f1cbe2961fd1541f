"""The Docker LAN: the compose file's switch and node containers, driven like the embedded LAN.

``DockerLan`` brings a compose project up under a unique project name (so it never touches a
LAN a user is running), waits until every container is healthy (polling Docker, with a
deadline), and hands out the same ``NodeHandle``/``SwitchHandle`` objects as ``vnet.lan.Lan``,
so one test body runs against both.

Compose itself is the compose CLI (v2 ``docker compose`` preferred, v1 ``docker-compose``
otherwise; ``$VNET_COMPOSE=v1|v2`` picks one). Everything else goes through the Docker SDK:
inspection, labels, kill, pause, network connect/disconnect, and exec. A node's control
socket never leaves its container, so each containerised node (and the switch) gets one
persistent control channel: a ``vnet call --stream`` process started with the SDK's exec,
whose stdin and stdout carry every request of the handle (vnet/ctlstream.py), instead of a
``docker exec`` per request. ``close()`` runs ``compose down -v`` and then removes anything
still labelled with the project, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

from vnet.ctlstream import StreamCodec, StreamError, StreamRequest
from vnet.handles import LanError, NodeHandle, SwitchHandle, poll_until
from vnet.proto.control import decode_reply

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
VNET_LABEL = "com.vnet.project=vnet"


def docker_client():
    """A Docker SDK client from the environment (DOCKER_HOST, ...)."""
    import docker

    return docker.from_env()


def compose_command() -> list[str]:
    """``docker compose`` (v2) where it works, else ``docker-compose`` (v1); ``$VNET_COMPOSE``
    set to ``v1`` or ``v2`` insists on one."""
    want = os.environ.get("VNET_COMPOSE", "")
    if want not in ("", "v1", "v2"):
        raise LanError(f"VNET_COMPOSE must be v1 or v2, not {want!r}")
    v2 = bool(shutil.which("docker")) and subprocess.run(
        ["docker", "compose", "version"], capture_output=True).returncode == 0
    if want != "v1" and v2:
        return ["docker", "compose"]
    if want != "v2" and shutil.which("docker-compose"):
        return ["docker-compose"]
    if want:
        raise LanError(f"VNET_COMPOSE={want}, but that Compose version is not installed")
    raise LanError("neither `docker compose` (v2) nor `docker-compose` (v1) is installed")


def docker_available() -> str | None:
    """None when a Docker engine answers; otherwise why not (for a skip reason)."""
    try:
        import docker
    except ImportError:
        return "the Docker SDK is not installed (pip install 'vnet[docker]')"
    try:
        client = docker.from_env()
        try:
            client.ping()
        finally:
            client.close()
    except docker.errors.DockerException as exc:
        return f"no Docker engine is reachable: {exc}"
    return None


class ChannelClosed(ConnectionError):
    """A container's control channel could not start or ended before the answer came (the
    container stopped or restarted): as a lost connection, the request may be tried again."""


class _Demux:
    """Splits Docker's multiplexed attach stream (8-byte headers: stream, 0, 0, 0, size) into
    (stream, payload) pieces: 1 is stdout, 2 stderr. Sans-I/O: ``feed`` bytes."""

    HEADER = struct.Struct(">BxxxL")

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= self.HEADER.size:
            stream, size = self.HEADER.unpack_from(self._buf)
            if len(self._buf) < self.HEADER.size + size:
                break
            out.append((stream, bytes(self._buf[self.HEADER.size:self.HEADER.size + size])))
            del self._buf[:self.HEADER.size + size]
        return out


class DockerStreamClient:
    """The control client of one container: requests over one persistent ``vnet call --stream``.

    The relay process is started (with the SDK's exec) on the first request and again after
    it ends (a restarted container). Requests run concurrently, matched by id. The client owns
    the exec's socket and the thread that reads it: ``close()`` shuts the socket (the relay
    sees end of input and exits) and joins the thread.
    """

    def __init__(self, api, container: str, timeout: float = 10.0, switch: bool = False) -> None:
        self.api = api  # docker.APIClient
        self.container = container
        self.timeout = timeout
        self.switch = switch
        self.channels_opened = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[int, asyncio.Future] = {}
        self._seq = 0
        self._stderr = bytearray()
        self._opening: asyncio.Lock | None = None
        self._send_lock = threading.Lock()

    def _exec(self) -> socket.socket:
        cmd = ["vnet", "call", "--stream", *(("--switch",) if self.switch else ())]
        exec_id = self.api.exec_create(self.container, cmd, stdin=True, stdout=True, stderr=True, tty=False)["Id"]
        raw = self.api.exec_start(exec_id, socket=True)
        sock = getattr(raw, "_sock", raw)  # SocketIO over a unix or tcp socket; an SSL socket as is
        sock.settimeout(None)
        return sock

    async def _ensure_open(self) -> None:
        if self._sock is not None:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._sock is not None:
                return
            import docker

            try:
                sock = await asyncio.to_thread(self._exec)
            except docker.errors.DockerException as exc:
                raise ChannelClosed(f"{self.container}: cannot start its control channel: {exc}") from None
            self._loop = asyncio.get_running_loop()
            self._stderr.clear()
            self._sock = sock
            self.channels_opened += 1
            self._thread = threading.Thread(target=self._read, args=(sock,), daemon=True,
                                            name=f"vnet control channel {self.container}")
            self._thread.start()

    def _read(self, sock: socket.socket) -> None:
        """The reader thread: demultiplex, decode, hand each reply to the loop."""
        demux, codec = _Demux(), StreamCodec()
        try:
            while data := sock.recv(65536):
                for stream, payload in demux.feed(data):
                    if stream == 2:
                        self._stderr += payload
                        del self._stderr[:-4000]
                        continue
                    for msg in codec.feed(payload):
                        self._loop.call_soon_threadsafe(self._deliver, StreamCodec.as_reply(msg))
        except (OSError, StreamError):
            pass  # the channel is gone either way; _ended says so to whoever waits
        self._loop.call_soon_threadsafe(self._ended, sock)

    def _deliver(self, rep) -> None:
        fut = self._waiting.get(rep.id)
        if fut is not None and not fut.done():
            fut.set_result(rep)

    def _ended(self, sock: socket.socket) -> None:
        if self._sock is sock:
            self._sock = None
        why = self._stderr.decode(errors="replace").strip() or "the relay process ended"
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ChannelClosed(f"{self.container}: control channel closed: {why}"))

    def _send(self, sock: socket.socket, data: bytes) -> None:
        with self._send_lock:
            sock.sendall(data)

    async def call(self, cmd: str, wait: float | None = None, **args: Any) -> Any:
        wait = self.timeout if wait is None else wait
        await self._ensure_open()
        self._seq += 1
        req = StreamRequest(self._seq, cmd, args, float(wait))
        fut = asyncio.get_running_loop().create_future()
        self._waiting[req.id] = fut
        try:
            sock = self._sock
            if sock is None:
                raise ChannelClosed(f"{self.container}: control channel closed")
            try:
                await asyncio.to_thread(self._send, sock, StreamCodec.request(req))
            except OSError as exc:
                raise ChannelClosed(f"{self.container}: control channel closed: {exc}") from None
            try:
                rep = await asyncio.wait_for(fut, wait + 10)
            except asyncio.TimeoutError:
                raise TimeoutError(f"{self.container}: no answer to {cmd!r} within {wait + 10:g} s") from None
        finally:
            self._waiting.pop(req.id, None)
        if rep.reply is None:
            raise TimeoutError(f"{self.container}: {rep.timeout}")
        return decode_reply(rep.reply)

    async def close(self) -> None:
        sock, thread = self._sock, self._thread
        self._sock = self._thread = None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)


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


def free_docker_subnet(client=None) -> str:
    """A /24 in 172.30.0.0/16 that no Docker network uses yet."""
    own = client is None
    client = client or docker_client()
    try:
        used: set[ipaddress.IPv4Network] = set()
        for net in client.networks.list():
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
                try:
                    used.add(ipaddress.IPv4Network(cfg.get("Subnet", ""), strict=False))
                except ValueError:
                    pass  # an IPv6 or empty subnet: no clash with ours
    finally:
        if own:
            client.close()
    for candidate in ipaddress.IPv4Network("172.30.0.0/16").subnets(new_prefix=24):
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise LanError("no free /24 left in 172.30.0.0/16 for the test LAN's Docker network")


class DockerLan:
    """A compose project of the vnet LAN: ``async with DockerLan(scale=0) as lan: ...``.

    ``compose_file`` defaults to vnet's own (written out by ``vnet compose``). ``scale``
    starts that many replicas of the scalable ``node`` service (addresses by DHCP) besides the
    named nodes. ``project`` defaults to a unique name. The LAN owns one Docker SDK client
    and one control channel per container; ``close()`` ends them all.
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
        self._compose = compose_command()
        self.docker = docker_client()
        self._env = dict(os.environ, **(env or {}))
        self._env.setdefault("VNET_DOCKER_SUBNET", free_docker_subnet(self.docker))
        self.nodes: list[NodeHandle] = []
        self.switch: SwitchHandle | None = None
        self._channels: dict[str, DockerStreamClient] = {}

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

    def channel(self, container: str, switch: bool = False) -> DockerStreamClient:
        """The one control channel of ``container`` (made on first use, kept until close)."""
        channel = self._channels.get(container)
        if channel is None:
            channel = self._channels[container] = DockerStreamClient(self.docker.api, container, switch=switch)
        return channel

    async def refresh(self) -> None:
        """Wait until every container of the project is healthy, then (re)build the handles."""
        await poll_until(self._all_healthy, f"every container of {self.project} healthy", timeout=self.start_timeout, every=0.5)
        containers = await self._containers()
        switch = [c for c in containers if c["service"] == "switch"]
        if not switch:
            raise LanError(f"{self.project} has no switch container")
        if self.switch is None:
            ip = switch[0]["ip"]
            self.switch = SwitchHandle(self.channel(switch[0]["name"], switch=True),
                                       "tcp://127.0.0.1:5541 in " + switch[0]["name"], f"tcp://{ip}:5540")
        old = {n.name: n for n in self.nodes}
        nodes = []
        for c in containers:
            if c["service"] in ("switch", "dhcp"):
                continue
            handle = NodeHandle(self.channel(c["name"]), c["node"])
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

    def container(self, name: str):
        """The SDK's Container object of node ``name``."""
        return self.docker.containers.get(self.node(name).container)

    async def _forget_channel(self, container: str) -> None:
        channel = self._channels.pop(container, None)
        if channel is not None:
            await channel.close()

    async def kill_node(self, name: str) -> None:
        """SIGKILL a node's container (no BYE: the switch must notice by itself)."""
        handle = self.node(name)
        await asyncio.to_thread(self.container(name).kill)
        await self._forget_channel(handle.container)
        self.nodes.remove(handle)

    async def pause_node(self, name: str) -> None:
        """Freeze a node's container (``docker pause``): it neither sends nor answers."""
        await asyncio.to_thread(self.container(name).pause)

    async def resume_node(self, name: str) -> None:
        await asyncio.to_thread(self.container(name).unpause)

    def _project_networks(self) -> dict[str, Any]:
        return {n.name: n for n in self.docker.networks.list(filters={"label": f"{PROJECT_LABEL}={self.project}"})}

    async def disconnect_node(self, name: str) -> None:
        """Take a node's container off the project's network: its cable to the switch is pulled
        while the daemon runs on (its control channel, an exec, still reaches it).
        ``connect_node`` plugs it back in as it was."""
        handle = self.node(name)
        ours = await asyncio.to_thread(self._project_networks)
        container = await asyncio.to_thread(self.container, name)
        short_id = container.id[:12]
        plugs = []
        for net, cfg in (container.attrs["NetworkSettings"]["Networks"] or {}).items():
            if net not in ours:
                continue
            static = (cfg.get("IPAMConfig") or {}).get("IPv4Address")  # compose's ipv4_address
            aliases = [a for a in cfg.get("Aliases") or [] if a != short_id]  # docker adds the id itself
            plugs.append((net, static, aliases))
        if not plugs:
            raise LanError(f"{handle.container} is on none of {self.project}'s networks ({', '.join(sorted(ours))})")
        for net, _, _ in plugs:
            await asyncio.to_thread(ours[net].disconnect, container)
        handle.unplugged = plugs

    async def connect_node(self, name: str, ip: str | None = None) -> None:
        """Plug a node disconnected by ``disconnect_node`` back into the project's network, with
        its aliases, and its address if compose gave it a static one (otherwise Docker's IPAM
        picks one, as for a new cable). ``ip`` plugs it in with that address instead (a free
        one in the project's subnet), as a host that comes back with another address. The node
        re-attaches to the switch by itself; wait for that with ``NodeHandle.wait_ready``."""
        handle = self.node(name)
        plugs = getattr(handle, "unplugged", None)
        if not plugs:
            raise LanError(f"{name} was not disconnected with disconnect_node")
        if ip is not None and len(plugs) != 1:
            raise LanError(f"{name} was on {len(plugs)} of {self.project}'s networks: ip= needs exactly one")
        ours = await asyncio.to_thread(self._project_networks)
        container = await asyncio.to_thread(self.container, name)
        for net, static, aliases in plugs:
            address = ip or static
            await asyncio.to_thread(ours[net].connect, container, ipv4_address=address, aliases=aliases or None)
        handle.unplugged = None

    async def restart_switch(self) -> None:
        await self.compose("restart", "switch")

    def _containers_now(self) -> list[dict]:
        out = []
        for c in self.docker.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            attrs = c.attrs
            env = dict(e.split("=", 1) for e in attrs["Config"]["Env"] or [] if "=" in e)
            nets = attrs["NetworkSettings"]["Networks"] or {}
            out.append({
                "name": c.name,
                "service": c.labels.get(SERVICE_LABEL, ""),
                "node": env.get("VNET_NODE") or attrs["Config"]["Hostname"],
                "status": attrs["State"]["Status"],
                "health": (attrs["State"].get("Health") or {}).get("Status"),
                "ip": next((n["IPAddress"] for n in nets.values() if n.get("IPAddress")), None),
            })
        return out

    async def _containers(self) -> list[dict]:
        return await asyncio.to_thread(self._containers_now)

    async def _all_healthy(self) -> bool:
        containers = await self._containers()
        bad = [c for c in containers if c["status"] in ("exited", "dead")]
        if bad:
            logs = await asyncio.to_thread(self.docker.containers.get(bad[0]["name"]).logs, tail=30)
            raise LanError(f"container {bad[0]['name']} exited:\n{logs.decode(errors='replace')}")
        return bool(containers) and all(c["status"] == "running" and c["health"] == "healthy" for c in containers)

    def _resources_now(self) -> dict[str, list]:
        flt = {"label": f"{PROJECT_LABEL}={self.project}"}
        return {
            "containers": self.docker.containers.list(all=True, filters=flt),
            "networks": self.docker.networks.list(filters=flt),
            "volumes": self.docker.volumes.list(filters=flt),
        }

    async def resources(self) -> dict[str, list[str]]:
        """Containers, networks and volumes carrying this project's label (their names)."""
        left = await asyncio.to_thread(self._resources_now)
        return {kind: [r.name for r in items] for kind, items in left.items()}

    def _remove_leftovers(self) -> None:
        left = self._resources_now()
        for c in left["containers"]:
            c.remove(force=True, v=True)
        for n in left["networks"]:
            n.remove()
        for v in left["volumes"]:
            v.remove(force=True)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close() for c in channels))
        self.switch = None
        try:
            await self.compose("down", "-v", "--remove-orphans", "--timeout", "5")
        finally:
            await asyncio.to_thread(self._remove_leftovers)
            self.docker.close()
