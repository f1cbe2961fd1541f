"""The layer contract (docs/architecture.md, "Layers"), checked on the source.

    vnet.proto                      the leaf: imports no other vnet layer
    vnet.node, vnet.switch          import vnet.proto (and themselves), never each other
    vnet.compose                    image tooling: imports only itself
    vnet (front end)                may import any of them

Every import statement is read with ``ast`` (including imports inside functions), so a
lazy import cannot slip past the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> the layer it installs as, and the layers it may import
LAYERS = {
    "proto": ("vnet.proto", {"vnet.proto"}),
    "node": ("vnet.node", {"vnet.node", "vnet.proto"}),
    "switch": ("vnet.switch", {"vnet.switch", "vnet.proto"}),
    "compose": ("vnet.compose", {"vnet.compose"}),
}
TOP = ("vnet.proto", "vnet.node", "vnet.switch", "vnet.compose")


def _layer_of(module: str) -> str:
    for layer in TOP:
        if module == layer or module.startswith(layer + "."):
            return layer
    return "vnet"  # the front end


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's own package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def _files():
    for folder, (layer, _) in LAYERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            package = ".".join([layer, *parts[:-1]] if path.name != "__init__.py" else [layer, *parts])
            yield folder, path, package


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_layer_imports_only_what_it_may(folder):
    layer, allowed = LAYERS[folder]
    bad = []
    for f, path, package in _files():
        if f != folder:
            continue
        for line, name in _imports(path, package):
            if name != "vnet" and not name.startswith("vnet."):
                continue  # the standard library or a third-party package
            target = "vnet" if name == "vnet" else _layer_of(name)
            if target not in allowed:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({layer} may import {sorted(allowed)})")
    assert not bad, "layer contract broken:\n" + "\n".join(bad)


def test_contract_sees_every_layer():
    """The check reads real files: a layer with no imports to check would pass vacuously."""
    counts = {folder: sum(1 for f, *_ in _files() if f == folder) for folder in LAYERS}
    assert all(n > 0 for n in counts.values()), counts
    # and it does find the imports it is meant to judge
    node_imports = [n for f, p, pkg in _files() if f == "node" for _, n in _imports(p, pkg)]
    assert any(n.startswith("vnet.proto") for n in node_imports)


def test_contract_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from vnet.switch.core import SwitchCore\n")
    names = [n for _, n in _imports(bad, "vnet.node")]
    assert _layer_of(names[0]) == "vnet.switch" and "vnet.switch" not in LAYERS["node"][1]
