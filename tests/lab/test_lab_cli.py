"""``vnet lab``'s errors and its file-only commands: a bad lab file is exit 2 with every
FILE:LINE: message; ``compose`` writes the file; ``down`` stops the ``vnet lab up`` named by
the lab's pidfile (real processes stand in for it here) and cleans up after a killed one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vnet.cli import main
from vnet.pidfile import proc_starttime

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "labs"


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("VNET_RUNTIME_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("cmd", ["up", "demo", "compose"])
def test_a_bad_file_is_exit_2_with_every_error(cmd, tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text("switches: {s1: {}}\nnodes:\n  a: {nics: [{switch: s9, address: 10.0.0.1/24}]}\n"
                   "  b: {nics: [{switch: s1, address: 10.0.0.2/24, vlan: 9999}]}\n")
    assert main(["lab", cmd, str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yml:3: node a: nic 1: switch 's9' is not declared (declared: s1)" in err
    assert "bad.yml:4: node b: nic 1: vlan: 9999 is out of range" in err


def test_a_missing_file(tmp_path, capsys):
    assert main(["lab", "up", str(tmp_path / "none.yml")]) == 2
    assert "none.yml: cannot read the lab file" in capsys.readouterr().err


def test_warnings_go_to_stderr(tmp_path, capsys):
    f = tmp_path / "w.yml"
    f.write_text("switches: {s1: {}, s2: {}}\nlinks: [{endpoints: [s1, s2]}]\nnodes:\n"
                 "  a: {nics: [{switch: s1, vlan: 7, address: 10.0.0.1/24}]}\n"
                 "  b: {nics: [{switch: s2, vlan: 7, address: 10.0.0.2/24}]}\n")
    assert main(["lab", "compose", str(f)]) == 0
    out, err = capsys.readouterr()
    assert "vnet: warning: w.yml:4: vlan 7:" in err
    assert yaml.safe_load(out)["services"]["a"]["command"][:2] == ["vnet", "node"]


def test_compose_writes_the_file(tmp_path, capsys):
    out = tmp_path / "campus-compose.yml"
    assert main(["lab", "compose", str(EXAMPLES / "campus.yml"), "-o", str(out)]) == 0
    assert set(yaml.safe_load(out.read_text())["services"]) >= {"core", "edge1", "edge2", "a1", "b1"}


def test_down_without_a_lab(runtime, capsys):
    assert main(["lab", "down", "nosuch"]) == 2
    assert "no lab 'nosuch' is running" in capsys.readouterr().err
    assert main(["lab", "down"]) == 2
    assert "no lab is running here" in capsys.readouterr().err


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_down_stops_the_lab_up_that_runs_it(runtime, capsys):
    owner = _sleeper()  # stands in for `vnet lab up`: SIGTERM is what it gets
    try:
        lab_dir = runtime / "lab-campus"
        lab_dir.mkdir()
        doc = {"pid": owner.pid, "starttime": None, "children": {}, "sockets": []}
        while doc["starttime"] is None:
            doc["starttime"] = proc_starttime(owner.pid)
        (lab_dir / "lan.pid").write_text(json.dumps(doc))
        assert main(["lab", "down", str(EXAMPLES / "campus.yml")]) == 0
        assert f"stopped lab campus (vnet lab up, pid {owner.pid})" in capsys.readouterr().out
        assert owner.wait(timeout=10) == -15
    finally:
        owner.kill()
        owner.wait()


def test_down_cleans_up_after_a_killed_lab(runtime, capsys):
    child = _sleeper()  # a daemon left behind by a `vnet lab up` killed with SIGKILL
    try:
        lab_dir = runtime / "lab-flat"
        lab_dir.mkdir()
        sock = lab_dir / "sw.sock"
        sock.write_text("")
        start = None
        while start is None:
            start = proc_starttime(child.pid)
        (lab_dir / "lan.pid").write_text(json.dumps({
            "pid": 999999999, "starttime": 1, "children": {"sw": {"pid": child.pid, "starttime": start}},
            "sockets": [str(sock)]}))
        assert main(["lab", "down"]) == 0  # the only lab here
        out = capsys.readouterr().out
        assert "lab flat was not running; cleaned up 1 process (sw pid" in out
        assert child.wait(timeout=10) == -15
        assert not sock.exists() and not (lab_dir / "lan.pid").exists()
    finally:
        child.kill()
        child.wait()
