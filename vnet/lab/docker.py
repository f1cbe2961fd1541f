"""The lab as containers: ``vnet lab compose``'s file run as a compose project.

``DockerLabRunner`` is the container twin of ``LabRunner`` (vnet/lab/run.py), with the same
``nodes``/``node(name)``/``switch(name)``/``addresses(name)`` for ``vnet lab demo``: it writes
the lab's compose file (vnet/lab/compose.py) into a private temporary directory and runs it
with ``vnet.docker_lan.DockerLan`` (the compose CLI, v2 or v1, the per-container control
channels, cleanup by labels) under the project name ``vnet-lab-NAME``. The image is the
locally built vnet image (``$VNET_IMAGE``, default vnet:latest; ``vnet compose build`` makes
it); nothing is pulled.

The project name is fixed per lab, so what a killed run left behind (containers, network)
is found by its compose label at the next start and removed, saying so. ``close()`` runs
``compose down`` and removes whatever still carries the label.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from typing import Callable

from vnet.docker_lan import DockerLan, docker_available, docker_client, remove_project
from vnet.handles import LanError, NodeHandle, SwitchHandle
from vnet.lab.compose import compose_text, project
from vnet.lab.handles import LabHandles
from vnet.lab.schema import Lab

DEFAULT_IMAGE = "vnet:latest"


def lab_image() -> str:
    return os.environ.get("VNET_IMAGE") or DEFAULT_IMAGE


class DockerLabRunner(LabHandles):
    """Runs ``lab`` as a compose project: ``await start()`` ... ``await close()`` (or ``async with``).

    ``say`` reports what the start cleaned up (default: a ``vnet:`` line on stderr).
    """

    def __init__(self, lab: Lab, project_name: str | None = None, start_timeout: float = 180.0,
                 say: Callable[[str], None] | None = None) -> None:
        self.lab = lab
        self.project = project_name or project(lab)
        self.start_timeout = start_timeout
        self.say = say or (lambda text: print(f"vnet: {text}", file=sys.stderr, flush=True))
        self.runtime_dir: str | None = None  # holds the compose file while the lab runs
        self.docker_lan: DockerLan | None = None
        self.nodes: dict[str, NodeHandle] = {}
        self.switches: dict[str, SwitchHandle] = {}
        self.cleaned: str | None = None

    def _prepare(self) -> None:
        """Engine and image there; a killed run's leftovers gone (said)."""
        why = docker_available()
        if why:
            raise LanError(f"lab {self.lab.name} in containers: {why}")
        import docker

        client = docker_client()
        try:
            try:
                client.images.get(lab_image())
            except docker.errors.ImageNotFound:
                raise LanError(f"no image {lab_image()}: build it first with `vnet compose build` "
                               f"(or set VNET_IMAGE to a vnet image)") from None
            removed = remove_project(client, self.project)
        finally:
            client.close()
        if removed:
            self.cleaned = f"removed what an earlier run of {self.project} left behind: {', '.join(removed)}"
            self.say(self.cleaned)

    async def start(self) -> None:
        """Write the compose file, bring the project up, wait until every node is ready; a
        failure tears down what was started and raises."""
        try:
            await asyncio.to_thread(self._prepare)
            self.runtime_dir = tempfile.mkdtemp(prefix="vnet-dockerlab-")
            path = os.path.join(self.runtime_dir, "docker-compose.yml")
            with open(path, "w") as fh:
                fh.write(compose_text(self.lab))
            lan = DockerLan(path, project=self.project, scale=None, start_timeout=self.start_timeout,
                            env={"VNET_IMAGE": lab_image()})
            await lan.start()  # a failure there tears its own project down
            self.docker_lan = lan
            self.switches = dict(self.docker_lan.switches)
            have = {n.name: n for n in self.docker_lan.nodes}
            missing = [n.name for n in self.lab.nodes if n.name not in have]
            if missing:
                raise LanError(f"lab {self.lab.name}: no container for node(s) {', '.join(missing)}")
            self.nodes = {n.name: have[n.name] for n in self.lab.nodes}
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """``compose down``, then whatever still carries the project's label; the compose file."""
        lan, self.docker_lan = self.docker_lan, None
        self.nodes, self.switches = {}, {}
        try:
            if lan is not None:
                await lan.close()
        finally:
            if self.runtime_dir is not None:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
                self.runtime_dir = None
