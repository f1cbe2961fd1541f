"""The LAN as a Docker Swarm stack (compose/swarm.yml, docs/multi-host.md): deployed with the
plain docker commands a user runs, every service running and healthy, pings across the
overlay, a scaled-up node service whose new node is reachable, CURVE with the keys as Swarm
secrets, and a `docker stack rm` after which nothing of the stack is left.

The engine joins a single-node Swarm for the test when it is in none, and leaves it again
afterwards (a run that is killed leaves it at the next run's end); an engine that is
already a Swarm manager is used as it is and stays in its Swarm. Each stack is named
vnetswarm<PID>x<HEX>: one left behind by a killed run (its process gone) is removed at the
start. Skipped, saying why, without a Docker engine, and on a Swarm worker (only a manager
deploys)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import uuid
from pathlib import Path

import pytest

from vnet.docker_lan import docker_client, free_docker_subnet
from vnet.handles import poll_until
from vnet.proto.auth import keygen

pytestmark = pytest.mark.docker

log = logging.getLogger(__name__)

STACK_LABEL = "com.docker.stack.namespace"
SERVICE_LABEL = "com.docker.swarm.service.name"
STACK_PREFIX = "vnetswarm"
STACK_NAME = re.compile(rf"{STACK_PREFIX}(\d+)x[0-9a-f]+")
GWBRIDGE = "docker_gwbridge"
SWARM_OWNER = "com.vnet.test-swarm"  # label on the Swarm node: the pid of the run that made it
KEY_NAMES = ["node1", "node2", "node3", "dhcp", "node"]


async def docker(*argv: str, env: dict | None = None, timeout: float = 120, check: bool = True) -> tuple[int, str]:
    """``docker ARGV...``: (exit status, stdout and stderr together)."""
    proc = await asyncio.create_subprocess_exec("docker", *argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=env)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise TimeoutError(f"docker {' '.join(argv)} still running after {timeout:g} s: killed") from None
    text = out.decode(errors="replace")
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(argv)} failed ({proc.returncode}):\n{text[-3000:]}")
    return proc.returncode, text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Stack:
    """One deployed stack, seen through the Docker SDK (labels) and driven with the docker CLI."""

    def __init__(self, client, name: str) -> None:
        self.client = client
        self.name = name

    def _services(self) -> list:
        return self.client.services.list(filters={"label": f"{STACK_LABEL}={self.name}"})

    def left(self) -> dict[str, list[str]]:
        """Services, containers, networks and secrets still carrying the stack's label."""
        flt = {"label": f"{STACK_LABEL}={self.name}"}
        return {
            "services": [s.name for s in self._services()],
            "containers": [c.name for c in self.client.containers.list(all=True, filters=flt)],
            "networks": [n.name for n in self.client.networks.list(filters=flt)],
            "secrets": [s.name for s in self.client.secrets.list(filters=flt)],
            "volumes": [v.name for v in self.client.volumes.list(filters=flt)],
        }

    def status(self) -> dict[str, str]:
        """service name -> "ok" when every wanted replica runs in a healthy container, or what
        is wrong with it."""
        out = {}
        for service in self._services():
            want = service.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 1)
            tasks = service.tasks(filters={"desired-state": "running"})
            healthy, problems = 0, []
            for task in tasks:
                st = task["Status"]
                if st["State"] != "running":
                    problems.append(f"slot {task.get('Slot')}: {st['State']} {st.get('Err', '')}".strip())
                    continue
                cid = st.get("ContainerStatus", {}).get("ContainerID")
                try:
                    health = self.client.containers.get(cid).attrs["State"].get("Health", {}).get("Status")
                except Exception as exc:  # the container is on another host, or gone
                    health = f"not inspectable: {exc}"
                if health == "healthy":
                    healthy += 1
                else:
                    problems.append(f"slot {task.get('Slot')}: {health}")
            failed = [t["Status"].get("Err") for t in service.tasks(filters={"desired-state": "shutdown"})
                      if t["Status"].get("Err")]
            if healthy == want and not problems:
                out[service.name] = "ok"
            else:
                out[service.name] = f"{healthy}/{want} healthy; {'; '.join(problems + failed[-2:]) or 'no task yet'}"
        return out

    async def wait_healthy(self, services: set[str], timeout: float = 120) -> None:
        last: dict[str, str] = {}

        async def healthy() -> bool:
            last.clear()
            last.update(await asyncio.to_thread(self.status))
            return set(last) >= services and all(v == "ok" for v in last.values())

        try:
            await poll_until(healthy, f"stack {self.name}: every service running and healthy", timeout=timeout,
                             every=1.0)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {json.dumps(last, indent=1)}") from None

    def containers(self, service: str) -> list:
        """The running containers of STACK_SERVICE, by task slot."""
        flt = {"label": f"{SERVICE_LABEL}={self.name}_{service}", "status": "running"}
        found = self.client.containers.list(filters=flt)
        return sorted(found, key=lambda c: c.name)

    def container(self, service: str) -> str:
        found = self.containers(service)
        assert len(found) == 1, f"{self.name}_{service}: {len(found)} running containers"
        return found[0].name

    async def exec(self, container: str, *argv: str, check: bool = True) -> str:
        return (await docker("exec", container, *argv, timeout=60, check=check))[1]

    async def node_health(self, container: str) -> dict:
        return json.loads(await self.exec(container, "vnet", "call", "health"))

    async def remove(self) -> None:
        """``docker stack rm``, then wait until nothing of the stack is left; what Docker did
        not remove by the deadline (a container that would not stop) is removed by label.
        ``docker stack rm`` keeps the stack's volumes (the DHCP server's leases): they go last,
        once no container uses them."""
        await docker("stack", "rm", self.name, check=False)

        async def gone() -> bool:
            left = await asyncio.to_thread(self.left)
            if any(v for k, v in left.items() if k != "volumes"):
                return False
            await asyncio.to_thread(self._remove_volumes)
            return not any((await asyncio.to_thread(self.left)).values())

        try:
            await poll_until(gone, f"stack {self.name} removed", timeout=60, every=1.0)
        except TimeoutError:
            left = await asyncio.to_thread(self.left)
            log.warning("stack %s: removing what docker stack rm left: %s", self.name, left)
            await asyncio.to_thread(self._force_remove)
            await poll_until(gone, f"stack {self.name}'s leftovers removed", timeout=30, every=1.0)

    def _remove_volumes(self) -> None:
        for v in self.client.volumes.list(filters={"label": f"{STACK_LABEL}={self.name}"}):
            try:
                v.remove(force=True)
            except Exception as exc:  # still in use by a container on its way out: polled again
                log.info("volume %s: %s", v.name, exc)

    def _force_remove(self) -> None:
        flt = {"label": f"{STACK_LABEL}={self.name}"}
        for s in self._services():
            s.remove()
        for c in self.client.containers.list(all=True, filters=flt):
            c.remove(force=True, v=True)
        for n in self.client.networks.list(filters=flt):
            try:
                n.remove()
            except Exception as exc:  # endpoints still going away: the poll after this retries
                log.warning("network %s: %s", n.name, exc)
        for s in self.client.secrets.list(filters=flt):
            s.remove()


@pytest.fixture(scope="module")
def swarm(vnet_docker_image):
    """A Swarm manager to deploy on: the engine's own Swarm, or a single-node one made for the
    test (and left again afterwards, only then)."""
    client = docker_client()
    try:
        info = client.info()["Swarm"]
        state = info.get("LocalNodeState")
        initialised = False
        gwbridge = bool(client.networks.list(names=[GWBRIDGE]))
        if state == "active" and info.get("ControlAvailable") and _left_by_a_killed_run(client):
            initialised = True  # made by a run of this test that was killed: ours to leave
            gwbridge = False  # and the bridge was most likely made with it
        elif state == "inactive":
            try:
                client.swarm.init()
            except Exception as exc:  # several addresses: it wants one named
                log.info("docker swarm init: %s; advertising 127.0.0.1", exc)
                client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
            initialised = True
            _label_own_node(client, {SWARM_OWNER: str(os.getpid())})
        elif state != "active":
            pytest.skip(f"the Docker engine's Swarm state is {state!r}: neither in a Swarm nor out of one")
        elif not info.get("ControlAvailable"):
            pytest.skip("the Docker engine is a Swarm worker: only a manager deploys a stack")
        _remove_leftover_stacks(client)
        yield client
    finally:
        try:
            if initialised:
                client.swarm.leave(force=True)
                if not gwbridge:  # the bridge Swarm made for its overlays' way out
                    for net in client.networks.list(names=[GWBRIDGE]):
                        try:
                            net.remove()
                        except Exception as exc:  # something else of this host uses it now
                            log.warning("%s kept: %s", GWBRIDGE, exc)
        finally:
            client.close()


def _own_node(client):
    return client.nodes.get(client.info()["Swarm"]["NodeID"])


def _label_own_node(client, labels: dict[str, str]) -> None:
    node = _own_node(client)
    spec = node.attrs["Spec"]
    spec["Labels"] = dict(spec.get("Labels") or {}, **labels)
    node.update(spec)


def _left_by_a_killed_run(client) -> bool:
    """This engine's Swarm was made by a run of this test whose process is gone (its label on
    the Swarm's only node says which), so that run never left it."""
    owner = (_own_node(client).attrs["Spec"].get("Labels") or {}).get(SWARM_OWNER, "")
    if not owner.isdigit() or _alive(int(owner)) or len(client.nodes.list()) != 1:
        return False
    log.warning("the Swarm was made by an earlier run of this test (process %s, gone): leaving it afterwards", owner)
    return True


def _remove_leftover_stacks(client) -> list[str]:
    """Stacks of this test whose run is gone (killed before its cleanup): removed, and said
    so. Returns their names."""
    labels = [*((s.attrs["Spec"].get("Labels") or {}) for s in client.services.list()),
              *((n.attrs.get("Labels") or {}) for n in client.networks.list(filters={"label": STACK_LABEL})),
              *((v.attrs.get("Labels") or {}) for v in client.volumes.list(filters={"label": STACK_LABEL}))]
    names = set()
    for label in labels:
        m = STACK_NAME.fullmatch(label.get(STACK_LABEL, ""))
        if m and not _alive(int(m.group(1))):
            names.add(m.group(0))
    for name in sorted(names):
        log.warning("removing stack %s, left behind by an earlier run (process %s is gone)", name,
                    STACK_NAME.fullmatch(name).group(1))
        asyncio.run(Stack(client, name).remove())
    return sorted(names)


@pytest.fixture
async def deploy(swarm, vnet_compose_tree, vnet_docker_image):
    """Call ``await deploy(*override_files, env=...)`` to deploy compose/swarm.yml (plus the
    overrides) as a fresh stack; every stack is removed after the test, whatever its outcome."""
    stacks: list[Stack] = []

    async def make(*overrides: Path, env: dict[str, str] | None = None) -> Stack:
        stack = Stack(swarm, f"{STACK_PREFIX}{os.getpid()}x{uuid.uuid4().hex[:6]}")
        stacks.append(stack)
        files = [vnet_compose_tree / "compose" / "swarm.yml", *overrides]
        # swarm.yml's variables set here, whatever the caller's environment says
        env = dict(os.environ, VNET_IMAGE=vnet_docker_image, VNET_NODES="2",
                   VNET_SWITCH_CONSTRAINT="node.role == manager",
                   VNET_DOCKER_SUBNET=await asyncio.to_thread(free_docker_subnet, swarm), **(env or {}))
        await docker("stack", "deploy", "--resolve-image", "never", *(a for f in files for a in ("-c", str(f))),
                     stack.name, env=env)
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            await stack.remove()


ALL = {"switch", "node1", "node2", "node3", "dhcp", "node"}


async def test_stack_deploys_pings_across_scales_and_leaves_nothing(deploy, swarm):
    stack = await deploy()
    await stack.wait_healthy({f"{stack.name}_{s}" for s in ALL})

    # the overlay is attachable (a kernel-stack node or a tool joins it with docker run)
    lan = swarm.networks.get(f"{stack.name}_lan")
    assert lan.attrs["Driver"] == "overlay" and lan.attrs["Attachable"], lan.attrs
    # the switch and the DHCP server are pinned by constraint; the switch is found by DNS
    for name in ("switch", "dhcp"):
        spec = swarm.services.get(f"{stack.name}_{name}").attrs["Spec"]
        assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role == manager"], spec
    assert swarm.services.get(f"{stack.name}_switch").attrs["Spec"]["EndpointSpec"]["Mode"] == "dnsrr"

    # across the overlay: vnet's stack both ways, to the kernel-stack node, and the kernel's
    # own ping from node3 (its TAP vnet0, made in a service without `devices:`)
    node1, node3 = stack.container("node1"), stack.container("node3")
    for src, dst in ((node1, "10.0.0.2"), (node1, "10.0.0.3"), (stack.container("node2"), "10.0.0.1")):
        out = await stack.exec(src, "vnet", "ping", "-c", "2", dst)
        assert " 0% packet loss" in out, out
    out = await stack.exec(node3, "ping", "-c", "2", "-W", "5", "10.0.0.1")
    assert " 0% packet loss" in out, out

    # the replicas: named after their slots, addresses from the DHCP server
    replicas = {}
    for c in stack.containers("node"):
        health = await stack.node_health(c.name)
        replicas[health["name"]] = health["addresses"][0]["address"]
    assert set(replicas) == {"node-1", "node-2"}, replicas

    await docker("service", "scale", "--detach", f"{stack.name}_node=3")
    await stack.wait_healthy({f"{stack.name}_{s}" for s in ALL})
    for c in stack.containers("node"):
        health = await stack.node_health(c.name)
        replicas.setdefault(health["name"], health["addresses"][0]["address"])
    assert set(replicas) == {"node-1", "node-2", "node-3"}, replicas
    assert len(set(replicas.values())) == 3 and all(ip.startswith("10.0.0.1") for ip in replicas.values()), replicas
    new = replicas["node-3"]
    out = await stack.exec(node1, "vnet", "ping", "-c", "2", new)
    assert " 0% packet loss" in out, f"node1 -> node-3 ({new}): {out}"
    newc = [c.name for c in stack.containers("node") if ".3." in c.name][0]
    out = await stack.exec(newc, "vnet", "ping", "-c", "2", "10.0.0.3")
    assert " 0% packet loss" in out, f"node-3 -> node3: {out}"

    await stack.remove()
    assert not any(stack.left().values())


async def test_curve_keys_as_swarm_secrets(deploy, vnet_compose_tree, tmp_path):
    keys = tmp_path / "keys"
    keygen(str(keys), KEY_NAMES)
    stack = await deploy(vnet_compose_tree / "compose" / "swarm-curve.yml", env={"VNET_KEYS": str(keys)})
    await stack.wait_healthy({f"{stack.name}_{s}" for s in ALL})
    assert len(stack.left()["secrets"]) == 2 * (len(KEY_NAMES) + 1)
    node1 = stack.container("node1")
    out = await stack.exec(node1, "ls", "/run/secrets")
    assert out.split() == ["node1.key_secret", "switch.key"], out
    for dst in ("10.0.0.2", "10.0.0.3"):
        out = await stack.exec(node1, "vnet", "ping", "-c", "2", dst)
        assert " 0% packet loss" in out, out
    # the switch's control is open to the LAN's keys: node1 reads its auth counters
    stats = json.loads(await stack.exec(node1, "vnet", "switch", "stats", "--json"))
    auth = stats["auth"]
    assert auth["accepted"] >= 6 and auth["denied"] == 0 and auth["allowed_keys"] >= len(KEY_NAMES), auth


async def test_a_stack_left_by_a_killed_run_is_removed(swarm):
    """What a run killed before its cleanup leaves (here its network and the leases volume)
    goes at the next run's start; a stack of a live run is left alone."""
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()  # a process id that is gone
    dead = Stack(swarm, f"{STACK_PREFIX}{proc.pid}x{uuid.uuid4().hex[:6]}")
    live = Stack(swarm, f"{STACK_PREFIX}{os.getpid()}x{uuid.uuid4().hex[:6]}")
    try:
        for stack in (dead, live):
            labels = {STACK_LABEL: stack.name, "com.vnet.project": "vnet"}
            await asyncio.to_thread(swarm.networks.create, f"{stack.name}_lan", driver="overlay", labels=labels)
            await asyncio.to_thread(swarm.volumes.create, f"{stack.name}_leases", labels=labels)
        removed = await asyncio.to_thread(_remove_leftover_stacks, swarm)
        assert dead.name in removed and live.name not in removed
        assert not any(dead.left().values()), dead.left()
        assert live.left()["networks"] and live.left()["volumes"]
    finally:
        await live.remove()
        await dead.remove()
