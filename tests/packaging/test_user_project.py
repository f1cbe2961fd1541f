"""vnet as a user installs it: the wheel, in a fresh virtual environment outside this
repository, used from projects of the user's own.

- installed without extras, it leaves an unrelated project's pytest run as it was, and
  installs no import name but ``vnet`` (``import node``, ``import switch`` fail);
- a test asking for a vnet fixture without pytest-asyncio fails, naming the extra;
- with ``vnet[pytest]``, a project with its own ``node/`` and ``switch/`` packages runs a
  ``vnet_lan`` test green (the daemons cannot pick up the user's packages);
- with ``vnet[pytest,docker]``, a project with no compose file of its own runs a
  ``docker_lan`` test green (vnet's compose file and image build ship in the wheel).

pip fetches the dependencies from the package index (its cache makes repeats quick).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(argv, cwd, timeout=900, env=None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    for var in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        env.pop(var, None)
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = _run([sys.executable, "-m", "build", "--wheel", "--outdir", out, ROOT], cwd=out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (whl,) = out.glob("vnet-*.whl")
    return whl


def _venv(where: Path, *requirements: str) -> Path:
    venv.create(where, with_pip=True)
    py = where / "bin" / "python"
    proc = _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements], cwd=where)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return py


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory, wheel) -> Path:
    """vnet without extras, and pytest (the user's own test runner)."""
    return _venv(tmp_path_factory.mktemp("venv-bare"), str(wheel), "pytest")


@pytest.fixture(scope="module")
def full_python(tmp_path_factory, wheel) -> Path:
    return _venv(tmp_path_factory.mktemp("venv-full"), f"vnet[pytest,docker] @ {wheel.as_uri()}")


def _project(where: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = where / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return where


def test_unrelated_project_is_untouched_and_only_vnet_is_installed(bare_python, tmp_path):
    proj = _project(tmp_path / "calc", {
        "test_calc.py": """
            def test_adds():
                assert 1 + 1 == 2
        """,
    })
    proc = _run([bare_python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=proj)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "Error while loading plugin" not in proc.stdout + proc.stderr
    # the plugin is loaded (registered) all the same
    plugins = _run([bare_python, "-m", "pytest", "--trace-config", "-q", "-p", "no:cacheprovider"], cwd=proj)
    assert "vnet.pytest_plugin" in plugins.stdout
    for name in ("node", "switch", "proto", "compose"):
        probe = _run([bare_python, "-c", f"import {name}"], cwd=tmp_path)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, (name, probe.stderr)
    probe = _run([bare_python, "-c", "import vnet.node.daemon, vnet.switch.server, vnet.proto.wire, vnet.compose.tree"],
                 cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr


def test_fixture_without_pytest_asyncio_names_the_extra(bare_python, tmp_path):
    proj = _project(tmp_path / "wants-lan", {
        "test_lan.py": """
            def test_other():
                assert True

            def test_lan(vnet_lan):
                pass
        """,
    })
    proc = _run([bare_python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=proj)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 passed" in out and ("1 error" in out or "1 failed" in out), out
    assert "pip install 'vnet[pytest]'" in out, out


def test_user_packages_named_node_and_switch_do_not_shadow_vnet(full_python, tmp_path):
    proj = _project(tmp_path / "myapp", {
        "node/__init__.py": 'WHO = "myapp.node"\n',
        "node/daemon.py": 'raise RuntimeError("the user\'s node.daemon was imported")\n',
        "switch/__init__.py": 'WHO = "myapp.switch"\n',
        "switch/server.py": 'raise RuntimeError("the user\'s switch.server was imported")\n',
        "test_lan.py": """
            import pytest

            import node
            import switch


            @pytest.mark.asyncio
            async def test_two_nodes_talk(vnet_lan):
                assert node.WHO == "myapp.node" and switch.WHO == "myapp.switch"
                a, b = vnet_lan.nodes[:2]
                assert (await a.ping(b.ip, count=2)).ok
        """,
    })
    proc = _run([full_python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=proj)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


@pytest.mark.docker
def test_docker_lan_without_a_compose_file_of_ones_own(full_python, tmp_path):
    from vnet.docker_lan import docker_available

    why = docker_available()
    if why:
        pytest.skip(f"needs a Docker engine: {why}")
    proj = _project(tmp_path / "containers", {
        "test_docker.py": """
            import pytest


            @pytest.mark.asyncio
            async def test_containers_talk(docker_lan):
                a, b = docker_lan.nodes[:2]
                assert (await a.ping(b.ip, count=2)).ok
        """,
    })
    assert not list(proj.glob("*compose*"))
    proc = _run([full_python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=proj, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
