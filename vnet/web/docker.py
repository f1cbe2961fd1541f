"""``vnet web --docker PROJECT``: the web view's target for a running Docker LAN.

The LAN is a compose project: vnet's own compose file (compose/docker-compose.yml) or a lab's
(``vnet lab compose``). Its daemons are found by compose's project label and their
``VNET_ROLE`` (``switch`` or ``node``; a node's name is its ``VNET_NODE``, else its hostname,
as the node names itself). A daemon's control endpoint never leaves its container, so the
target's endpoints are container names and its connector reaches each through the Docker LAN's
control channel (``vnet.docker_lan.DockerStreamClient``: one persistent ``vnet call --stream``
exec per container), the same channel ``DockerLan``'s handles use. The poller, the cable
cuts, impairments and captures then work on it as on an embedded LAN.

Nodes started after the view (``docker compose up --scale node=N``) are found when the switch
first shows their port: the project is listed again, at most every ``RELIST_EVERY`` seconds.
"""

from __future__ import annotations

import time

from vnet.docker_lan import DockerStreamClient, docker_available, docker_client, project_containers
from vnet.web.poll import CALL_TIMEOUT, Target

RELIST_EVERY = 5.0


class DockerConnector:
    """Makes the control clients of a Docker LAN's containers; owns the Docker SDK client
    they share (``close()`` ends it, after the poller has closed the clients)."""

    def __init__(self, timeout: float = CALL_TIMEOUT) -> None:
        self.docker = docker_client()
        self.timeout = timeout

    def client(self, container: str, switch: bool) -> DockerStreamClient:
        return DockerStreamClient(self.docker.api, container, timeout=self.timeout, switch=switch)

    async def close(self) -> None:
        self.docker.close()


class _NodeContainers:
    """Node name -> container name in the project, listed again (throttled) for a name it
    does not know yet."""

    def __init__(self, project: str, nodes: dict[str, str], clock=time.monotonic) -> None:
        self.project = project
        self.nodes = nodes
        self.clock = clock
        self.listed = clock()

    def __call__(self, name: str) -> str | None:
        if name not in self.nodes and self.clock() - self.listed >= RELIST_EVERY:
            self.listed = self.clock()
            try:
                self.nodes = _daemons(self.project)[1]
            except Exception:  # the engine is away for a moment: the node is shown from the switch's side
                pass
        return self.nodes.get(name)


def _daemons(project: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The project's running switches as (service, container) and nodes as {name: container}."""
    client = docker_client()
    try:
        containers = [c for c in project_containers(client, project) if c["status"] == "running"]
    finally:
        client.close()
    switches = sorted((c["service"], c["name"]) for c in containers if c["role"] == "switch")
    nodes = {c["node"]: c["name"] for c in containers if c["role"] == "node"}
    return switches, nodes


def docker_target(project: str) -> Target:
    """The target of compose project ``project``; ValueError saying why there is none (no
    engine, no running switch container in the project)."""
    why = docker_available()
    if why:
        raise ValueError(why)
    switches, nodes = _daemons(project)
    if not switches:
        raise ValueError(f"compose project {project!r} has no running vnet switch container (docker ps --filter "
                         f"label=com.docker.compose.project={project}); start it with docker compose -p {project} "
                         "up -d")
    return Target(tuple(switches), _NodeContainers(project, nodes), label=f"Docker project {project}",
                  connector=DockerConnector)
