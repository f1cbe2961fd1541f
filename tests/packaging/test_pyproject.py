"""pyproject.toml maps the repository's folders under the one import name ``vnet`` by hand
(setuptools' package-dir); a package folder missing from that list would be left out of the
wheel (and so of the container image) while an editable install still finds it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_installed_under_vnet():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping, listed = cfg["package-dir"], set(cfg["packages"])
    found = set()
    for top, dotted in (("vnet", "vnet"), ("proto", "vnet.proto"), ("node", "vnet.node"),
                        ("switch", "vnet.switch"), ("compose", "vnet.compose")):
        assert mapping.get(dotted) == top, f"{dotted} should map to {top}/"
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([dotted, *rel.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages (and package-dir)"
    assert listed - found == set(), "these are listed but have no folder"
    for name in listed:  # each listed package resolves to a real folder through package-dir
        base = max((k for k in mapping if name == k or name.startswith(k + ".")), key=len)
        folder = ROOT / mapping[base] / Path(*name[len(base):].lstrip(".").split(".")) if name != base else ROOT / mapping[base]
        assert (folder / "__init__.py").exists(), name
