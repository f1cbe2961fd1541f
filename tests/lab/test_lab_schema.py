"""vnet/lab/lab.schema.json (for editors and CI): a valid JSON Schema that accepts every
example and rejects what the loader rejects for its shape."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "labs"
SCHEMA = json.loads(files("vnet.lab").joinpath("lab.schema.json").read_text())
GOOD = yaml.safe_load((EXAMPLES / "campus.yml").read_text())


def validator():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yml")), ids=lambda p: p.name)
def test_accepts_the_examples(path):
    validator().validate(yaml.safe_load(path.read_text()))


def _bad(change):
    doc = json.loads(json.dumps(GOOD))
    change(doc)
    return doc


@pytest.mark.parametrize("doc", [
    _bad(lambda d: d.update(nmae="x")),
    _bad(lambda d: d.pop("switches")),
    _bad(lambda d: d["links"][0].update(vlans=[5000])),
    _bad(lambda d: d["links"][0].update(endpoints=["core"])),
    _bad(lambda d: d["links"][2]["impair"].update(dealy="5ms")),
    _bad(lambda d: d["nodes"]["a1"]["nics"][0].update(vlan=0)),
    _bad(lambda d: d["nodes"]["a1"]["nics"][0].update(address="10.0.10.1")),
    _bad(lambda d: d["nodes"]["a1"]["nics"][0].pop("switch")),
    _bad(lambda d: d["nodes"]["b1"].update(stack="bsd")),
    _bad(lambda d: d["nodes"]["r1"].update(forwarding="yes")),
    _bad(lambda d: d["nodes"].update({"bad name": {"nics": [{"switch": "core", "address": "10.0.0.1/24"}]}})),
    _bad(lambda d: d["switches"].update(core={"stp": {"priority": 100}})),
    _bad(lambda d: d.update(nodes_per_process=0)),
], ids=lambda d: "bad")
def test_rejects_bad_files(doc):
    assert list(validator().iter_errors(doc))


def test_the_schema_ships_in_the_package():
    import tomllib

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "lab.schema.json" in data["vnet.lab"]
