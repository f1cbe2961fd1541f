"""A wheel of the vnet this Python runs, for the container image (``python -m vnet.compose.wheel DIR``).

The image installs vnet from a wheel built on the host, so containers run the same version
as the host that drives them, with no source checkout needed:

- an editable install (a source checkout) is built with ``pip wheel --no-deps``;
- a regular install is packed back into a wheel from its installed files, as listed in its
  ``RECORD``: the ``vnet`` package and its metadata, with a fresh ``WHEEL`` and ``RECORD``.

``--requirements`` prints vnet's own dependencies (no extras), one a line, for the
wheelhouse of build.sh.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

DIST = "vnet"
# Installer bookkeeping that does not belong in a wheel (the installer writes its own).
_SKIP_METADATA = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "WHEEL"}


class WheelError(Exception):
    """vnet's wheel could not be made; the message says why and what to do."""


def requirements() -> list[str]:
    """vnet's dependencies without the extras' (``pyzmq>=25``, ...)."""
    reqs = importlib.metadata.requires(DIST) or []
    return [r.split(";", 1)[0].strip() for r in reqs if "extra ==" not in r.replace("extra==", "extra ==")]


def source_tree() -> Path | None:
    """The source checkout of an editable install, else None."""
    dist = importlib.metadata.distribution(DIST)
    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    info = json.loads(raw)
    if not (info.get("dir_info") or {}).get("editable"):
        return None
    url = urlparse(info.get("url", ""))
    return Path(unquote(url.path)) if url.scheme == "file" else None


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _repack(dest: Path) -> Path:
    dist = importlib.metadata.distribution(DIST)
    version = dist.version
    files = dist.files
    if not files:
        raise WheelError("the installed vnet has no RECORD of its files: reinstall it with pip")
    info_dir = f"{DIST}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = []
    for rel in files:
        parts = rel.parts
        if "__pycache__" in parts or rel.suffix in (".pyc", ".pyo"):
            continue
        if parts[0] == DIST:
            entries.append((rel.as_posix(), Path(dist.locate_file(rel)).read_bytes()))
        elif parts[0].endswith(".dist-info") and len(parts) == 2 and parts[1] not in _SKIP_METADATA:
            entries.append((f"{info_dir}/{parts[1]}", Path(dist.locate_file(rel)).read_bytes()))
    if not any(name == f"{DIST}/__init__.py" for name, _ in entries):
        raise WheelError("the installed vnet's RECORD lists no vnet/__init__.py: reinstall it with pip")
    wheel_meta = (b"Wheel-Version: 1.0\nGenerator: vnet.compose.wheel\nRoot-Is-Purelib: true\n"
                  b"Tag: py3-none-any\n")
    entries.append((f"{info_dir}/WHEEL", wheel_meta))
    out = dest / f"{DIST}-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(entries):
            zf.writestr(name, data)
            record.append(f"{name},{_record_hash(data)},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return out


def _from_source(src: Path, dest: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="vnet-wheel.") as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                               "--no-deps", "-w", tmp, str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise WheelError(f"pip wheel {src} failed:\n{proc.stderr[-3000:]}")
        built = sorted(Path(tmp).glob(f"{DIST}-*.whl"))
        if not built:
            raise WheelError(f"pip wheel {src} made no vnet wheel")
        out = dest / built[0].name
        out.write_bytes(built[0].read_bytes())
        return out


def build_wheel(dest: str | Path) -> Path:
    """Write a wheel of the running vnet into ``dest`` (replacing older vnet wheels there)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        raise WheelError("vnet is not installed for this Python (pip install vnet)") from None
    for old in dest.glob(f"{DIST}-*.whl"):
        old.unlink()
    src = source_tree()
    return _from_source(src, dest) if src is not None and (src / "pyproject.toml").exists() else _repack(dest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--requirements"]:
        print("\n".join(requirements()))
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m vnet.compose.wheel DIR | --requirements", file=sys.stderr)
        return 2
    try:
        print(build_wheel(argv[0]))
    except WheelError as exc:
        print(f"vnet.compose.wheel: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
