"""pytest plugin (entry point ``pytest11: vnet``): vnet LANs as fixtures.

``vnet_lan`` gives a test a running LAN of three nodes (``lan.nodes[i]`` are NodeHandles,
``lan.switch`` the switch); mark a test with ``@pytest.mark.vnet_lan(nodes=5,
ageing_time=2.0)`` to shape it. ``vnet_lan_factory`` makes as many LANs as a test wants,
``lan = await vnet_lan_factory(nodes=4)``. Every LAN is torn down after the test, whatever
its outcome. The fixtures are async (pytest-asyncio), so tests are ``async def``.

    async def test_ping(vnet_lan):
        a, b = vnet_lan.nodes[:2]
        assert (await a.ping(b.ip, count=3)).ok

``docker_lan`` is the same with containers: the compose file (``vnet_compose_file`` in the
ini file, or ``docker-compose.yml`` in the rootdir) brought up under a unique project name,
node handles with the same API; ``@pytest.mark.docker_lan(scale=6)`` adds replicas of the
scalable ``node`` service. The image is built once per session with ``compose/build.sh``
beside the compose file (when there is one). Docker tests are skipped, saying why, only
where no Docker engine is reachable.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import pytest_asyncio

from vnet.lan import Lan


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("vnet_compose_file", "compose file of the docker_lan fixture (default: docker-compose.yml in the rootdir)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "vnet_lan(nodes=3, subnet='10.0.0.0/24', **options): shape the vnet_lan fixture's LAN "
        "(options are vnet.lan.Lan's keyword arguments)",
    )
    config.addinivalue_line(
        "markers", "docker_lan(scale=0, **options): shape the docker_lan fixture's LAN (vnet.docker_lan.DockerLan)"
    )
    config.addinivalue_line("markers", "docker: needs a Docker engine (skipped, saying why, without one)")


@pytest_asyncio.fixture
async def vnet_lan_factory():
    """Call ``await vnet_lan_factory(nodes=N, **Lan options)`` to get a started LAN."""
    lans: list[Lan] = []

    async def make(nodes: int = 3, **options) -> Lan:
        lan = Lan(nodes, **options)
        lans.append(lan)
        await lan.start()
        return lan

    yield make
    for lan in reversed(lans):
        await lan.close()


@pytest_asyncio.fixture
async def vnet_lan(request: pytest.FixtureRequest, vnet_lan_factory) -> Lan:
    """A started embedded LAN (3 nodes unless the ``vnet_lan`` marker says otherwise)."""
    marker = request.node.get_closest_marker("vnet_lan")
    options = dict(marker.kwargs) if marker else {}
    return await vnet_lan_factory(**options)


@pytest.fixture(scope="session")
def vnet_compose_file(pytestconfig: pytest.Config) -> Path:
    configured = pytestconfig.getini("vnet_compose_file")
    return Path(configured) if configured else Path(pytestconfig.rootpath) / "docker-compose.yml"


@pytest.fixture(scope="session")
def vnet_docker_image(vnet_compose_file: Path) -> None:
    """Once per session: skip without an engine; build the images with compose/build.sh."""
    from vnet.docker_lan import docker_available

    why = docker_available()
    if why:
        pytest.skip(f"Docker tests need a Docker engine: {why}")
    build = vnet_compose_file.parent / "compose" / "build.sh"
    if build.exists():
        proc = subprocess.run(["bash", str(build)], capture_output=True, text=True, timeout=1800,
                              cwd=vnet_compose_file.parent)
        if proc.returncode != 0:
            pytest.fail(f"{build} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


@pytest_asyncio.fixture
async def docker_lan_factory(vnet_docker_image, vnet_compose_file):
    """Call ``await docker_lan_factory(scale=N, **options)`` to get a started Docker LAN."""
    from vnet.docker_lan import DockerLan

    lans = []

    async def make(**options):
        lan = DockerLan(options.pop("compose_file", vnet_compose_file), **options)
        lans.append(lan)
        await lan.start()
        return lan

    yield make
    for lan in reversed(lans):
        await lan.close()


@pytest_asyncio.fixture
async def docker_lan(request: pytest.FixtureRequest, docker_lan_factory):
    """A started Docker LAN: the compose file's switch and nodes, in containers."""
    marker = request.node.get_closest_marker("docker_lan")
    return await docker_lan_factory(**(dict(marker.kwargs) if marker else {}))
