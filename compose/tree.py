"""The compose project folder, written out from the installed vnet, and its image build.

``write_tree(DIR)`` lays out what ``docker compose`` needs, as in vnet's source tree::

    DIR/docker-compose.yml
    DIR/compose/{Dockerfile, build.sh, install-vnet.sh, curve.yml, web.yml, prometheus.yml, .dockerignore}
    DIR/compose/{swarm.yml, swarm-curve.yml}        (the same LAN as a Docker Swarm stack)
    DIR/compose/wheelhouse/vnet-VERSION-py3-none-any.whl      (the host's vnet)

``build_image(DIR)`` runs ``DIR/compose/build.sh`` (base image, wheelhouse, image).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

from vnet.compose.wheel import build_wheel

# destination in the project folder -> resource in this package
FILES = {
    "docker-compose.yml": "docker-compose.yml",
    "compose/Dockerfile": "Dockerfile",
    "compose/build.sh": "build.sh",
    "compose/install-vnet.sh": "install-vnet.sh",
    "compose/curve.yml": "curve.yml",
    "compose/web.yml": "web.yml",
    "compose/prometheus.yml": "prometheus.yml",
    "compose/swarm.yml": "swarm.yml",
    "compose/swarm-curve.yml": "swarm-curve.yml",
    "compose/.dockerignore": ".dockerignore",
}
EXECUTABLE = {"compose/build.sh", "compose/install-vnet.sh"}


class TreeError(Exception):
    """The folder could not be written or built; the message says why and what to do."""


def packaged(name: str) -> bytes:
    """One of the packaged files, by its resource name (``docker-compose.yml``, ...)."""
    return (resources.files("vnet.compose") / name).read_bytes()


def write_tree(dest: str | os.PathLike, *, force: bool = False, wheel: bool = True) -> list[Path]:
    """Write the compose project into ``dest``; returns the files written.

    A file that exists with other contents is kept unless ``force``: the call raises
    TreeError naming it, before writing anything. Identical files are left as they are.
    """
    dest = Path(dest)
    plan: list[tuple[Path, bytes]] = []
    clashes = []
    for rel, name in FILES.items():
        path = dest / rel
        data = packaged(name)
        if path.exists():
            if path.read_bytes() == data:
                continue
            if not force:
                clashes.append(str(path))
        plan.append((path, data))
    if clashes:
        raise TreeError(f"{', '.join(clashes)} already exist{'s' if len(clashes) == 1 else ''} with other "
                        "contents: use --force to overwrite, or another folder")
    written = []
    for path, data in plan:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()  # a checkout's docker-compose.yml -> compose/docker-compose.yml
        path.write_bytes(data)
        if path.relative_to(dest).as_posix() in EXECUTABLE:
            path.chmod(0o755)
        written.append(path)
    if wheel:
        try:
            written.append(build_wheel(dest / "compose" / "wheelhouse"))
        except Exception as exc:  # the folder is still useful with build.sh
            raise TreeError(f"wrote {dest}, but could not put vnet's wheel in compose/wheelhouse: {exc}") from exc
    return written


def build_command(dest: str | os.PathLike) -> list[str]:
    return ["bash", str(Path(dest) / "compose" / "build.sh")]


def build_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """build.sh's environment: this Python (the one with vnet) makes the wheels."""
    return dict(os.environ if env is None else env, PYTHON=sys.executable)


def build_image(dest: str | os.PathLike, *, timeout: float = 1800, quiet: bool = False) -> str:
    """Run ``DEST/compose/build.sh``; returns its output, raises TreeError when it fails."""
    proc = subprocess.run(build_command(dest), cwd=dest, env=build_env(), text=True, timeout=timeout,
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None)
    if proc.returncode != 0:
        tail = (proc.stdout or "")[-4000:]
        raise TreeError(f"{' '.join(build_command(dest))} failed ({proc.returncode})" + (f":\n{tail}" if tail else ""))
    return proc.stdout or ""


async def build_image_async(dest: str | os.PathLike, *, timeout: float = 1800) -> str:
    """``build_image`` for asyncio callers (its output captured)."""
    return await asyncio.to_thread(build_image, dest, timeout=timeout, quiet=True)
