"""Every example lab as containers: ``vnet lab demo FILE --docker`` (a real CLI process, under
whichever Compose the environment selects: ``$VNET_COMPOSE``) brings the lab's compose project
up with the locally built image, every node pings every other, exit 0, and nothing of the
project is left; a killed run's leftovers are removed by the next start, and Ctrl-C tears the
project down. Skipped only without a Docker engine."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from vnet.docker_lan import PROJECT_LABEL, docker_client
from vnet.lab.compose import project
from vnet.lab.load import load_lab
from vnet.lan import poll_until, vnet_command

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "labs"
LABS = sorted(p.name for p in EXAMPLES.glob("*.yml"))


@pytest.fixture(scope="module")
def docker(vnet_docker_image):
    client = docker_client()
    yield client
    client.close()


@pytest.fixture
def image_env(vnet_docker_image) -> dict[str, str]:
    # the fixture built $VNET_IMAGE (build.sh's default: vnet:latest)
    return dict(os.environ, VNET_IMAGE=os.environ.get("VNET_IMAGE") or vnet_docker_image)


def leftovers(docker, name: str) -> list[str]:
    flt = {"label": f"{PROJECT_LABEL}={name}"}
    return ([f"container {c.name}" for c in docker.containers.list(all=True, filters=flt)]
            + [f"network {n.name}" for n in docker.networks.list(filters=flt)]
            + [f"volume {v.name}" for v in docker.volumes.list(filters=flt)])


async def demo(env: dict, *args: str, timeout: float = 400) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*vnet_command(), "lab", "demo", *args, "--docker", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("file", LABS)
async def test_every_example_lab_pings_all_pairs_in_containers(file, docker, image_env):
    lab = load_lab(str(EXAMPLES / file))
    name = project(lab)
    assert not leftovers(docker, name), "an earlier run left the project behind"
    code, out, err = await demo(image_env, str(EXAMPLES / file), "--json")
    assert code == 0, f"{file}: exit {code}\n{out}\n{err}"
    records = json.loads(out)
    assert records and all(r["ok"] for r in records), records
    assert {r["src"] for r in records} == {n.name for n in lab.nodes}
    assert not leftovers(docker, name)


async def test_a_killed_runs_leftovers_are_removed_at_the_next_start(docker, image_env):
    lab = load_lab(str(EXAMPLES / "one-switch.yml"))
    name = project(lab)
    # what a run killed with SIGKILL leaves: the project's network (and containers) under its label
    net = await asyncio.to_thread(docker.networks.create, f"{name}_lab", driver="bridge",
                                  labels={PROJECT_LABEL: name, "com.vnet.project": "vnet"})
    try:
        code, out, err = await demo(image_env, str(EXAMPLES / "one-switch.yml"))
        assert code == 0, f"exit {code}\n{out}\n{err}"
        assert f"removed what an earlier run of {name} left behind: network {name}_lab" in err
        assert "6/6 pairs answered: OK" in out
        assert not leftovers(docker, name)
    finally:
        if leftovers(docker, name):
            await asyncio.to_thread(net.remove)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_an_interrupted_demo_leaves_nothing_behind(sig, docker, image_env):
    lab = load_lab(str(EXAMPLES / "one-switch.yml"))
    name = project(lab)
    proc = await asyncio.create_subprocess_exec(*vnet_command(), "lab", "demo", str(EXAMPLES / "one-switch.yml"),
                                                "--docker", "--count", "100", env=image_env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        async def running() -> bool:
            flt = {"label": f"{PROJECT_LABEL}={name}", "status": "running"}
            return len(await asyncio.to_thread(docker.containers.list, filters=flt)) == 4

        await poll_until(running, "the lab's four containers running", timeout=120, every=0.5)
        proc.send_signal(sig)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, err.decode()
    assert "interrupted; its containers are removed" in err.decode()
    assert not leftovers(docker, name)
