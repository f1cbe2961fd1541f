"""pytest plugin (entry point ``pytest11: vnet``): vnet LANs as fixtures.

``vnet_lan`` gives a test a running LAN of three nodes (``lan.nodes[i]`` are NodeHandles,
``lan.switch`` the switch); mark a test with ``@pytest.mark.vnet_lan(nodes=5,
ageing_time=2.0)`` to shape it. ``vnet_lan_factory`` makes as many LANs as a test wants,
``lan = await vnet_lan_factory(nodes=4)``. Every LAN is torn down after the test, whatever
its outcome. The fixtures are async (pytest-asyncio), so tests are ``async def``.

    async def test_ping(vnet_lan):
        a, b = vnet_lan.nodes[:2]
        assert (await a.ping(b.ip, count=3)).ok

``@pytest.mark.vnet_lan(nodes=300, nodes_per_process=100)`` (or ``vnet_lan_factory(...,
nodes_per_process=100)``) runs the nodes packed, 100 to a process (``vnet nodes``): the way
to a LAN of hundreds or a thousand nodes on one machine.

``@pytest.mark.vnet_lan(stack="kernel")`` (or ``stacks=["kernel", "vnet", ...]``, one per
node) gives nodes the kernel's own stack on a TAP in a namespace: run any program there with
``await node.run([...])`` / ``await node.popen([...])`` (needs root and /dev/net/tun; without
them the LAN fails to start with a sentence saying so; docs/kernel-stack.md).

``@pytest.mark.vnet_lab("lab.yml")`` (a lab file, docs/lab.md, relative to the test file)
with the ``vnet_lab`` fixture gives a running lab: ``vnet_lab.node("a1")`` is a NodeHandle,
``vnet_lab.switch("core")`` a SwitchHandle (vnet.lab.run.LabRunner).

``docker_lan`` is the same with containers: vnet's own compose file (shipped in the package,
written out once per session), or the one the ini option ``vnet_compose_file`` names, brought
up under a unique project name, node handles with the same API; ``@pytest.mark.docker_lan(
scale=6)`` adds replicas of the scalable ``node`` service. The image is built once per
session from the installed vnet (``vnet compose --build``). Docker tests are skipped, saying
why, only where no Docker engine is reachable.

Installing vnet must never change an unrelated project's test run: this module imports
nothing beyond pytest when it loads. The fixtures need pytest-asyncio (``vnet[pytest]``) and
the Docker ones the Docker SDK (``vnet[docker]``); without them, only a test that asks for
such a fixture fails, with a message naming the extra to install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

import pytest

EXTRA_HINT = {
    "pytest_asyncio": "pytest-asyncio, which comes with vnet's `pytest` extra: pip install 'vnet[pytest]'",
    "docker": "the Docker SDK, which comes with vnet's `docker` extra: pip install 'vnet[docker]'",
}


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _async_fixture(*needs: str, **kwargs: Any) -> Callable:
    """``pytest_asyncio.fixture`` when pytest-asyncio (and ``needs``) are installed; otherwise a
    plain fixture of the same name that fails the test asking for it, naming the extra."""
    missing = _missing("pytest_asyncio", *needs)

    def wrap(fn: Callable) -> Callable:
        if not missing:
            import pytest_asyncio

            return pytest_asyncio.fixture(**kwargs)(fn)

        def unavailable():
            why = "; ".join(EXTRA_HINT[m] for m in missing)
            pytest.fail(f"the {fn.__name__} fixture needs {why}", pytrace=False)

        unavailable.__doc__ = fn.__doc__
        return pytest.fixture(name=fn.__name__)(unavailable)

    return wrap


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("vnet_compose_file",
                  "compose file of the docker_lan fixture (default: vnet's own, shipped in the package)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "vnet_lan(nodes=3, subnet='10.0.0.0/24', stack='vnet', **options): shape the vnet_lan fixture's LAN "
        "(options are vnet.lan.Lan's keyword arguments; stack='kernel' or stacks=[...] for the kernel's stack; "
        "nodes_per_process=N packs the nodes N to a process)",
    )
    config.addinivalue_line(
        "markers", "docker_lan(scale=0, **options): shape the docker_lan fixture's LAN (vnet.docker_lan.DockerLan)"
    )
    config.addinivalue_line(
        "markers", "vnet_lab(path): the lab file (relative to the test file) the vnet_lab fixture runs"
    )
    config.addinivalue_line("markers", "docker: needs a Docker engine (skipped, saying why, without one)")


@_async_fixture()
async def vnet_lan_factory():
    """Call ``await vnet_lan_factory(nodes=N, **Lan options)`` to get a started LAN
    (``nodes_per_process=K``: the nodes packed K to a process)."""
    from vnet.lan import Lan

    lans: list[Lan] = []

    async def make(nodes: int = 3, **options) -> Lan:
        lan = Lan(nodes, **options)
        lans.append(lan)
        await lan.start()
        return lan

    yield make
    for lan in reversed(lans):
        await lan.close()


@_async_fixture()
async def vnet_lan(request: pytest.FixtureRequest, vnet_lan_factory):
    """A started embedded LAN (3 nodes unless the ``vnet_lan`` marker says otherwise)."""
    marker = request.node.get_closest_marker("vnet_lan")
    options = dict(marker.kwargs) if marker else {}
    return await vnet_lan_factory(**options)


@_async_fixture()
async def vnet_lab(request: pytest.FixtureRequest):
    """A running lab from the file the ``vnet_lab`` marker names: ``.node(name)``, ``.switch(name)``."""
    marker = request.node.get_closest_marker("vnet_lab")
    if marker is None or not marker.args:
        pytest.fail('the vnet_lab fixture needs a lab file: @pytest.mark.vnet_lab("lab.yml")', pytrace=False)
    from vnet.lab.load import LabError, load_lab
    from vnet.lab.run import LabRunner

    path = Path(request.path).parent / marker.args[0]
    try:
        lab = load_lab(path)
    except LabError as exc:
        pytest.fail(f"the vnet_lab marker's lab file has errors:\n{exc}", pytrace=False)
    runner = LabRunner(lab, **marker.kwargs)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.close()


@pytest.fixture(scope="session")
def vnet_compose_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vnet's compose project (docker-compose.yml and compose/), written out once per session."""
    from vnet.compose.tree import write_tree

    tree = tmp_path_factory.mktemp("vnet-compose")
    write_tree(tree, wheel=False)  # build.sh puts the wheel in the wheelhouse itself
    return tree


@pytest.fixture(scope="session")
def vnet_compose_file(pytestconfig: pytest.Config, vnet_compose_tree: Path) -> Path:
    """The docker_lan fixture's compose file: the ini option's, or vnet's own."""
    configured = pytestconfig.getini("vnet_compose_file")
    if configured:
        return (Path(pytestconfig.rootpath) / configured).resolve()
    return vnet_compose_tree / "docker-compose.yml"


@pytest.fixture(scope="session")
def vnet_docker_image(vnet_compose_tree: Path) -> str:
    """Once per session: skip without an engine; build the vnet image from the installed vnet."""
    missing = _missing("docker")
    if missing:
        pytest.fail(f"the Docker fixtures need {EXTRA_HINT['docker']}", pytrace=False)
    from vnet.compose.tree import TreeError, build_image
    from vnet.docker_lan import docker_available

    why = docker_available()
    if why:
        pytest.skip(f"Docker tests need a Docker engine: {why}")
    try:
        build_image(vnet_compose_tree, quiet=True)
    except TreeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return "vnet:latest"


@_async_fixture("docker")
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


@_async_fixture("docker")
async def docker_lan(request: pytest.FixtureRequest, docker_lan_factory):
    """A started Docker LAN: the compose file's switch and nodes, in containers."""
    marker = request.node.get_closest_marker("docker_lan")
    return await docker_lan_factory(**(dict(marker.kwargs) if marker else {}))
