"""Labs end to end: real switch and node processes from a lab file.

Each example's ``vnet lab demo`` exits 0 (every node answered every other), and the
``vnet_lab`` marker and fixture hand out handles by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vnet.handles import LanError
from vnet.lab import load_lab
from vnet.lab.demo import ping_all
from vnet.lab.run import LabRunner
from vnet.lan import vnet_command

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "labs"

def needs_kernel_stack():
    """The kernel-stack node of a lab needs root, /dev/net/tun and the system's ping."""
    lacking = os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ping") is None
    return pytest.mark.skipif(lacking, reason="a kernel-stack node needs root, /dev/net/tun and the system's ping")


def demo(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*vnet_command(), "lab", "demo", str(path)], capture_output=True, text=True, timeout=300)


@needs_kernel_stack()
def test_campus_demo():
    done = demo(EXAMPLES / "campus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_two_vlans_router_demo():
    done = demo(EXAMPLES / "two-vlans-router.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_redundant_trunk_demo():
    done = demo(EXAMPLES / "redundant-trunk.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_switch_demo_command():
    done = demo(EXAMPLES / "one-switch.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6/6 pairs answered: OK" in done.stdout


async def test_one_switch_lab_every_pair_answers():
    """Today's LAN (`vnet lan up --nodes 3`) as a lab: the demo's matrix, all answered."""
    async with LabRunner(load_lab(EXAMPLES / "one-switch.yml")) as lab:
        records = await ping_all(lab, count=2)
        ports = {p["name"] for p in await lab.switch("sw").ports()}
    assert len(records) == 6 and all(r["ok"] for r in records), records
    assert {(r["src"], r["dst"], r["ip"]) for r in records} >= {("node1", "node2", "10.0.0.2"),
                                                                ("node3", "node1", "10.0.0.1")}
    assert ports == {"node1", "node2", "node3"}  # NIC vnet0 attaches under the node's name


async def test_a_dhcp_node_and_an_impaired_port(tmp_path):
    f = tmp_path / "d.yml"
    f.write_text("""\
switches: {sw: {}}
nodes:
  srv: {dhcp_server: 10.0.0.100-10.0.0.110, nics: [{switch: sw, address: 10.0.0.1/24}]}
  cli: {nics: [{switch: sw, address: dhcp, impair: {delay: 20ms}}]}
""")
    async with LabRunner(load_lab(f)) as lab:
        ips = await lab.addresses("cli")
        shown = await lab.switch("sw").impair_show("cli")
        records = await ping_all(lab, count=1)
    assert len(ips) == 1 and ips[0].startswith("10.0.0.1")
    assert shown["out"]["settings"]["delay"] == "20ms" and shown["in"]["settings"]["delay"] == "0s"
    assert all(r["ok"] for r in records), records


async def test_a_failed_start_leaves_nothing(tmp_path):
    """A node that cannot start (its address refused by the daemon) fails the start; the
    switch that was up is stopped and the runtime directory removed."""
    f = tmp_path / "bad.yml"
    f.write_text("switches: {sw: {}}\nnodes: {n: {nics: [{switch: sw, address: 10.0.0.1/24, mac: '01:00:00:00:00:01'}]}}\n")
    runner = LabRunner(load_lab(f), start_timeout=20)
    with pytest.raises(LanError, match="n failed to start"):
        await runner.start()
    assert not os.path.exists(runner.runtime_dir)
    assert runner._procs == {}


@pytest.mark.vnet_lab("../../examples/labs/one-switch.yml")
async def test_marker_and_fixture_give_handles_by_name(vnet_lab):
    node1, node3 = vnet_lab.node("node1"), vnet_lab.node("node3")
    assert node1.name == "node1" and node1.ip == "10.0.0.1"
    assert (await node1.ping(node3.ip, count=2)).received >= 1
    fdb = await vnet_lab.switch("sw").fdb()
    assert {e["port"] for e in fdb} >= {"node1", "node3"}
    with pytest.raises(KeyError, match="no node 'nope'"):
        vnet_lab.node("nope")


@needs_kernel_stack()
async def test_a_kernel_stack_node_pings_with_the_systems_ping(tmp_path):
    f = tmp_path / "k.yml"
    f.write_text("name: kping\nswitches: {sw: {}}\nnodes:\n"
                 "  v: {nics: [{switch: sw, address: 10.0.0.1/24}]}\n"
                 "  k: {stack: kernel, nics: [{switch: sw, address: 10.0.0.2/24}]}\n")
    async with LabRunner(load_lab(f)) as lab:
        assert lab.node("k").netns == "vnet-kping-k"
        records = await ping_all(lab, count=2)
    assert [(r["src"], r["ip"], r["ok"]) for r in records] == [("v", "10.0.0.2", True), ("k", "10.0.0.1", True)]


def test_up_then_down_from_another_shell(tmp_path):
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    up = subprocess.Popen([*vnet_command(), "lab", "up", str(EXAMPLES / "one-switch.yml")], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in up.stdout:  # its ready message ends with how to stop it
            lines.append(line)
            if "stops the lab" in line:
                break
        text = "".join(lines)
        assert "switch sw" in text and "node   node1" in text and "10.0.0.1/24" in text, text
        # each daemon's Prometheus endpoint: the switch's and every node's
        assert text.count("metrics http://127.0.0.1:") == 4, text
        down = subprocess.run([*vnet_command(), "lab", "down", "flat"], env=env, capture_output=True, text=True,
                              timeout=60)
        assert down.returncode == 0 and "stopped lab flat" in down.stdout, down.stderr
        assert up.wait(timeout=30) == 0
        assert not (tmp_path / "lab-flat" / "lan.pid").exists()
    finally:
        up.kill()
        up.wait()


async def test_a_second_start_in_the_same_directory_is_refused(tmp_path):
    """The same lab twice (two `vnet lab up`): the second is refused, naming the first, and
    leaves the first's pidfile and daemons alone."""
    lab = load_lab(EXAMPLES / "one-switch.yml")
    async with LabRunner(lab, runtime_dir=str(tmp_path)) as first:
        second = LabRunner(lab, runtime_dir=str(tmp_path))
        with pytest.raises(LanError, match=f"pid {os.getpid()}"):
            await second.start()
        assert (tmp_path / "lan.pid").exists()
        assert (await first.node("node1").ping("10.0.0.2")).ok
    assert not (tmp_path / "lan.pid").exists()
