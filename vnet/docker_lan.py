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
import time
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


class ContainerProcess:
    """A program running in a container, started with the Docker SDK's exec: what an asyncio
    subprocess is on the embedded LAN (``NodeHandle.popen``), for a process that lives in
    another host's process table.

    Its output is collected as it comes (``stdout`` and ``stderr``, bytes, up to
    ``OUTPUT_LIMIT`` each; what did not fit is counted in ``stdout_dropped``/``stderr_dropped``);
    ``returncode`` is None until it ends, then its exit status (Docker's exec ExitCode: 128+N
    for a signal N). Docker has no "kill this exec": the program is started by a ``sh`` that
    writes its pid into a pid file and then ``exec``s it, and ``terminate``/``kill`` signal
    that pid with another exec. A program that is not installed ends with 127 and sh's message
    on stderr. With ``stdin=PIPE``, ``write`` feeds it and ``close_stdin`` ends its input.
    """

    OUTPUT_LIMIT = 4 << 20

    def __init__(self, api, container: str, argv: list[str], *, stdin: bool = False) -> None:
        self.api = api
        self.container = container
        self.args = argv
        self.pidfile = f"/tmp/vnet-exec-{uuid.uuid4().hex[:12]}.pid"
        self.returncode: int | None = None
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.stdout_dropped = 0
        self.stderr_dropped = 0
        self._stdin = stdin
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._exec_id: str | None = None
        self._done: asyncio.Event | None = None
        self._error: str | None = None

    def __repr__(self) -> str:
        return f"<ContainerProcess {self.container}: {' '.join(self.args)} returncode={self.returncode}>"

    async def start(self) -> "ContainerProcess":
        import docker

        self._done = asyncio.Event()
        loop = asyncio.get_running_loop()
        cmd = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', self.pidfile, *self.args]
        try:
            self._exec_id, self._sock = await asyncio.to_thread(self._exec, cmd)
        except docker.errors.DockerException as exc:
            raise LanError(f"{self.container}: cannot start {' '.join(self.args)}: {exc}") from None
        self._thread = threading.Thread(target=self._read, args=(loop,), daemon=True,
                                        name=f"vnet exec {self.container}")
        self._thread.start()
        return self

    def _exec(self, cmd: list[str]) -> tuple[str, socket.socket]:
        exec_id = self.api.exec_create(self.container, cmd, stdin=self._stdin, stdout=True, stderr=True,
                                       tty=False)["Id"]
        raw = self.api.exec_start(exec_id, socket=True)
        sock = getattr(raw, "_sock", raw)
        sock.settimeout(None)
        return exec_id, sock

    def _keep(self, stream: int, payload: bytes) -> None:
        buf, name = (self.stdout, "stdout") if stream == 1 else (self.stderr, "stderr")
        room = self.OUTPUT_LIMIT - len(buf)
        buf += payload[:max(room, 0)]
        if len(payload) > room:
            setattr(self, f"{name}_dropped", getattr(self, f"{name}_dropped") + len(payload) - max(room, 0))

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        """The reader thread: collect the output until the exec ends, then its exit code."""
        demux = _Demux()
        try:
            while data := self._sock.recv(65536):
                for stream, payload in demux.feed(data):
                    self._keep(stream, payload)
        except OSError:
            pass  # the stream is gone (container stopped); the exit code says the rest
        try:
            code = self._exit_code()
        except Exception as exc:  # the container is gone: no exit code to be had
            code, self._error = -1, str(exc)
        try:  # the pid file is ours to remove
            self._exec_quiet(["rm", "-f", self.pidfile])
        except Exception:
            pass  # the container is gone, and its /tmp with it
        loop.call_soon_threadsafe(self._finish, code)

    def _exit_code(self) -> int:
        info = self.api.exec_inspect(self._exec_id)
        for _ in range(200):  # the stream can end a moment before Docker records the exit
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.025)
            info = self.api.exec_inspect(self._exec_id)
        raise LanError(f"{self.container}: the exec of {' '.join(self.args)} never reported an exit code")

    def _exec_quiet(self, cmd: list[str]) -> None:
        exec_id = self.api.exec_create(self.container, cmd, stdout=False, stderr=False)["Id"]
        self.api.exec_start(exec_id)

    def _finish(self, code: int) -> None:
        self.returncode = code
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._done.set()

    async def wait(self) -> int:
        await self._done.wait()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        return self.returncode

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes]:
        """Feed ``input`` (needs stdin=PIPE), close stdin, wait for the end; (stdout, stderr)."""
        if input is not None or self._stdin:
            await self.write(input or b"")
            await self.close_stdin()
        await self.wait()
        return bytes(self.stdout), bytes(self.stderr)

    async def write(self, data: bytes) -> None:
        if not self._stdin:
            raise ValueError(f"{self!r} was started without stdin=PIPE")
        sock = self._sock
        if sock is not None and data:
            await asyncio.to_thread(sock.sendall, data)

    async def close_stdin(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # already ended

    async def send_signal(self, sig: str) -> None:
        """Signal the program (``"TERM"``, ``"KILL"``, ``"INT"``...) by its pid file, if it runs."""
        if self.returncode is not None:
            return
        import docker

        cmd = ["sh", "-c", '[ -s "$0" ] && kill -s "$1" "$(cat "$0")" 2>/dev/null; true', self.pidfile, sig]
        try:
            await asyncio.to_thread(self._exec_quiet, cmd)
        except docker.errors.DockerException:
            pass  # the container is gone, and the program with it

    async def terminate(self) -> None:
        await self.send_signal("TERM")

    async def kill(self) -> None:
        await self.send_signal("KILL")

    async def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns when it has ended."""
        if self.returncode is None:
            await self.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(self._done.wait()), grace)
            except asyncio.TimeoutError:
                await self.kill()
                try:
                    await asyncio.wait_for(asyncio.shield(self._done.wait()), grace + 10)
                except asyncio.TimeoutError:
                    await self.close_stdin()
                    sock = self._sock
                    if sock is not None:  # the reader sees the end of the stream and finishes
                        sock.shutdown(socket.SHUT_RDWR)
        await self.wait()


class ContainerRunner:
    """``NodeHandle.run``/``popen`` for a node in a container: programs run there by exec, in
    the container's network namespace (a kernel-stack node's vnet0 is in it). ``programs`` is
    the LAN's list of what popen started, stopped at teardown."""

    POPEN_KWARGS = {"stdin", "stdout", "stderr"}

    def __init__(self, api, container: str, programs: list) -> None:
        self.api = api
        self.container = container
        self.programs = programs

    async def popen(self, argv: list[str], **kwargs: Any) -> ContainerProcess:
        unknown = set(kwargs) - self.POPEN_KWARGS
        if unknown:
            raise TypeError(f"popen in a container takes stdin=PIPE and collects stdout and stderr itself; "
                            f"not {', '.join(sorted(unknown))}")
        proc = ContainerProcess(self.api, self.container, argv, stdin=kwargs.get("stdin") == subprocess.PIPE)
        await proc.start()
        self.programs.append(proc)
        return proc

    async def run(self, argv: list[str], timeout: float = 30.0, input: bytes | None = None
                  ) -> subprocess.CompletedProcess:
        proc = ContainerProcess(self.api, self.container, argv, stdin=input is not None)
        await proc.start()
        try:
            out, err = await asyncio.wait_for(asyncio.shield(proc.communicate(input)), timeout)
        except asyncio.TimeoutError:
            await proc.stop(grace=0)
            raise TimeoutError(f"{self.container}: {' '.join(argv)} still running after {timeout:g} s: killed") from None
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


async def _run(*cmd: str, env: dict | None = None, timeout: float = 600) -> str:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=env)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise LanError(f"{' '.join(cmd)} took longer than {timeout:g} s") from None
    except BaseException:  # cancelled (Ctrl-C): the compose command must not run on unowned
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise LanError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return text


def project_containers(client, project: str) -> list[dict]:
    """The containers of compose project ``project`` (by compose's label), each as a dict:
    name, service, role (``VNET_ROLE``: switch, node, or None for a container without vnet),
    node (``VNET_NODE``, else the hostname), status, health, ip (on its first network)."""
    out = []
    for c in client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"}):
        attrs = c.attrs
        env = dict(e.split("=", 1) for e in attrs["Config"]["Env"] or [] if "=" in e)
        nets = attrs["NetworkSettings"]["Networks"] or {}
        out.append({
            "name": c.name,
            "service": c.labels.get(SERVICE_LABEL, ""),
            "role": env.get("VNET_ROLE"),  # switch, node, or None: no vnet in it
            "node": env.get("VNET_NODE") or attrs["Config"]["Hostname"],
            "status": attrs["State"]["Status"],
            "health": (attrs["State"].get("Health") or {}).get("Status"),
            "ip": next((n["IPAddress"] for n in nets.values() if n.get("IPAddress")), None),
        })
    return out


def remove_project(client, project: str) -> list[str]:
    """Remove every container, network and volume labelled with compose project ``project``
    (what ``compose down`` did not, or a killed run left); what was removed ("container X",
    "network Y", "volume Z")."""
    flt = {"label": f"{PROJECT_LABEL}={project}"}
    removed = []
    for c in client.containers.list(all=True, filters=flt):
        c.remove(force=True, v=True)
        removed.append(f"container {c.name}")
    for n in client.networks.list(filters=flt):
        n.remove()
        removed.append(f"network {n.name}")
    for v in client.volumes.list(filters=flt):
        v.remove(force=True)
        removed.append(f"volume {v.name}")
    return removed


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
    named nodes; None for a compose file without that service (a lab's, vnet/lab/compose.py).
    ``project`` defaults to a unique name. Every container whose ``VNET_ROLE`` is ``switch``
    is a switch (``switches`` by service name; ``switch`` is the service called so, or the
    only one), every ``node`` one a node (``nodes``, ``node(name)``). The LAN owns one Docker SDK client
    and one control channel per container; ``close()`` ends them all.
    """

    def __init__(self, compose_file: str | os.PathLike = "docker-compose.yml", *, project: str | None = None,
                 scale: int | None = 0, start_timeout: float = 180.0, env: dict[str, str] | None = None,
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
        self.switches: dict[str, SwitchHandle] = {}
        self._channels: dict[str, DockerStreamClient] = {}
        self.programs: list[ContainerProcess] = []  # what NodeHandle.popen started: stopped at close

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
            await self.compose("up", "-d", "--no-build", *self._scale_args())
            await self.refresh()
        except BaseException:
            await self.close()
            raise

    def _scale_args(self) -> list[str]:
        return [] if self.scale is None else ["--scale", f"node={self.scale}"]

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
        switches = [c for c in containers if c["role"] == "switch"]
        if not switches:
            raise LanError(f"{self.project} has no switch container")
        for c in switches:
            if c["service"] not in self.switches:
                handle = SwitchHandle(self.channel(c["name"], switch=True),
                                      "tcp://127.0.0.1:5541 in " + c["name"], f"tcp://{c['ip']}:5540")
                handle.name = c["service"]
                handle.container = c["name"]
                self.switches[c["service"]] = handle
        if self.switch is None:
            self.switch = self.switches.get("switch") or (
                next(iter(self.switches.values())) if len(self.switches) == 1 else None)
        old = {n.name: n for n in self.nodes}
        nodes = []
        for c in containers:
            if c["role"] != "node" or c["service"] == "dhcp":
                continue  # the switch, the DHCP server, and containers without vnet (compose/web.yml)
            handle = NodeHandle(self.channel(c["name"]), c["node"],
                                runner=ContainerRunner(self.docker.api, c["name"], self.programs))
            handle.container = c["name"]
            handle.service = c["service"]
            if c["node"] in old:
                handle.ip, handle.mac = old[c["node"]].ip, old[c["node"]].mac
            nodes.append(handle)
        healths = await asyncio.gather(*(n.wait_ready(self.start_timeout) for n in nodes))
        for handle, health in zip(nodes, healths):
            handle.stack = health.get("stack", "vnet")  # "kernel": vnet0 is in its container
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
        return project_containers(self.docker, self.project)

    async def _containers(self) -> list[dict]:
        return await asyncio.to_thread(self._containers_now)

    async def _all_healthy(self) -> bool:
        containers = await self._containers()
        bad = [c for c in containers if c["status"] in ("exited", "dead")]
        if bad:
            logs = await asyncio.to_thread(self.docker.containers.get(bad[0]["name"]).logs, tail=30)
            raise LanError(f"container {bad[0]['name']} exited:\n{logs.decode(errors='replace')}")
        # vnet's containers have the image's healthcheck; another one (compose/web.yml) only runs
        return bool(containers) and all(c["status"] == "running" and (c["health"] == "healthy" or c["role"] is None
                                                                      and c["health"] is None) for c in containers)

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
        remove_project(self.docker, self.project)

    async def close(self) -> None:
        programs, self.programs[:] = list(self.programs), []
        await asyncio.gather(*(p.stop() for p in programs), return_exceptions=True)
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close() for c in channels))
        self.switch = None
        self.switches.clear()
        try:
            await self.compose("down", "-v", "--remove-orphans", "--timeout", "5")
        finally:
            await asyncio.to_thread(self._remove_leftovers)
            self.docker.close()
