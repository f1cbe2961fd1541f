"""Labs with packed nodes (``nodes_per_process: N``): the lab's vnet-stack nodes run N to a
``vnet nodes`` process, started from the plan's NodeConfig dicts, which describe each node
as its ``vnet node`` arguments do."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from vnet.cli import build_parser
from vnet.cli.node import node_config
from vnet.handles import poll_until
from vnet.lab import load_lab
from vnet.lab.plan import ComposeEndpoints, LocalEndpoints, config_argv, plan
from vnet.lab.run import LabRunner
from vnet.lan import vnet_command
from vnet.node.config import NodeConfig
from vnet.pidfile import proc_starttime

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples" / "labs"
PACKED60 = HERE / "packed60.yml"


def _cli_config(argv: list[str]) -> NodeConfig:
    """NodeConfig as `vnet node ARGV` builds it (without its own metrics endpoint: a packed
    node has none of its own, the process serves them all)."""
    return dataclasses.replace(node_config(build_parser().parse_args(argv)), metrics=None)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yml")) + [PACKED60, HERE / "packed-small.yml"],
                         ids=lambda p: p.name)
@pytest.mark.parametrize("endpoints", [LocalEndpoints("/run/vnet/lab-x"), ComposeEndpoints()], ids=["local", "compose"])
def test_the_plans_dict_and_argv_describe_the_same_node(path, endpoints, monkeypatch):
    for var in ("VNET_NODE", "VNET_ADDRESS", "VNET_SWITCH", "VNET_CURVE_SECRET", "VNET_CURVE_SERVER_KEY"):
        monkeypatch.delenv(var, raising=False)
    lab = load_lab(path)
    for node in plan(lab, endpoints).nodes:
        cfg = json.loads(json.dumps(node.config))  # as a pack file carries it
        assert node.argv == config_argv(node.config)
        assert _cli_config(node.argv) == NodeConfig(**cfg), node.name


def test_campus_plan_dicts():
    lab = load_lab(EXAMPLES / "campus.yml")
    ep = LocalEndpoints("/r")
    configs = {n.name: n.config for n in plan(lab, ep).nodes}
    assert configs == {
        "a1": {"name": "a1", "switch": "ipc:///r/edge1.data", "addresses": ["10.0.10.1/24"],
               "control": "ipc:///r/a1.ctl", "gateway": "10.0.10.254"},
        "a2": {"name": "a2", "switch": "ipc:///r/edge2.data", "dhcp": True, "control": "ipc:///r/a2.ctl"},
        "b1": {"name": "b1", "switch": "ipc:///r/edge1.data", "addresses": ["10.0.20.1/24"],
               "control": "ipc:///r/b1.ctl", "gateway": "10.0.20.254", "stack": "kernel"},
        "r1": {"name": "r1", "switch": "ipc:///r/core.data", "addresses": ["10.0.10.254/24"],
               "control": "ipc:///r/r1.ctl", "nics": ["switch=ipc:///r/core.data,address=10.0.20.254/24"],
               "forwarding": True},
        "dhcp10": {"name": "dhcp10", "switch": "ipc:///r/core.data", "addresses": ["10.0.10.253/24"],
                   "control": "ipc:///r/dhcp10.ctl", "gateway": "10.0.10.254",
                   "dhcp_server": "10.0.10.100-10.0.10.199"},
    }
    r1 = NodeConfig(**configs["r1"])
    assert r1.nics[0].switch == "ipc:///r/core.data" and r1.nics[0].addresses == ("10.0.20.254/24",)


def _alive(pids) -> list[int]:
    return [pid for pid in pids if proc_starttime(pid) is not None]


async def test_sixty_packed_nodes_on_three_switches(tmp_path):
    """60 nodes, 20 to a process: three processes besides the switches, every node answers
    on its own control socket as itself, a sample of pings across switches and processes
    answers, one metrics endpoint per process; closing leaves no process."""
    lab = load_lab(PACKED60)
    assert lab.nodes_per_process == 20
    runner = LabRunner(lab, runtime_dir=str(tmp_path / "rt"), start_timeout=120.0)
    async with runner:
        names = [f"n{i}" for i in range(1, 61)]
        assert runner.packs == {f"_pack{k + 1}": names[20 * k:20 * k + 20] for k in range(3)}
        pids = runner.pids()
        assert set(pids) == {"sw1", "sw2", "sw3", "_pack1", "_pack2", "_pack3"}
        assert runner.process_of("n25") == "_pack2"
        recorded = json.loads((tmp_path / "rt" / "lan.pid").read_text())["children"]
        assert {name: c["pid"] for name, c in recorded.items()} == pids

        for name in names:
            health = await runner.node(name).health()
            assert health["name"] == name and health["carrier"], health
        assert len({runner.node(n).mac for n in names}) == 60
        urls = {pack: {runner.node(n).metrics_url for n in nodes} for pack, nodes in runner.packs.items()}
        assert all(len(u) == 1 and None not in u for u in urls.values()), urls
        assert len({u for s in urls.values() for u in s}) == 3

        rng = random.Random(3)
        for a, b in [rng.sample(names, 2) for _ in range(8)]:
            result = await runner.node(a).ping(runner.node(b).ip, count=3, timeout=5.0)
            assert result.received, (a, b)
    assert _alive(pids.values()) == []
    assert not (tmp_path / "rt" / "lan.pid").exists()


def test_lab_up_prints_the_processes_and_sigterm_leaves_nothing(tmp_path):
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    up = subprocess.Popen([*vnet_command(), "lab", "up", str(PACKED60)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "stops the lab" in line:
                break
        text = "".join(lines)
        assert "node   n21        control" in text and " in _pack2" in text, text + up.stderr.read()
        assert "process _pack3   20 nodes (n41 .. n60)  metrics http://127.0.0.1:" in text, text
        pidfile = tmp_path / "lab-packed60" / "lan.pid"
        pids = [c["pid"] for c in json.loads(pidfile.read_text())["children"].values()]
        assert len(pids) == 6
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
        assert _alive(pids) == []
        assert not pidfile.exists()
    finally:
        up.kill()
        up.wait()


def test_lab_down_stops_a_packed_lab(tmp_path):
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    small = HERE / "packed-small.yml"
    up = subprocess.Popen([*vnet_command(), "lab", "up", str(small)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        for line in up.stdout:
            if "stops the lab" in line:
                break
        pids = [c["pid"] for c in json.loads((tmp_path / "lab-packedsmall" / "lan.pid").read_text())["children"]
                .values()]
        down = subprocess.run([*vnet_command(), "lab", "down", "packedsmall"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert down.returncode == 0 and "stopped lab packedsmall" in down.stdout, down.stderr
        assert up.wait(timeout=30) == 0
        assert _alive(pids) == []
    finally:
        up.kill()
        up.wait()


@pytest.mark.vnet_lab("packed-small.yml")
async def test_the_fixture_runs_a_packed_lab(vnet_lab):
    """l1 and r1 share _pack1, l2 has _pack2 to itself; l1 reaches l2 through r1."""
    assert vnet_lab.packs == {"_pack1": ["l1", "r1"], "_pack2": ["l2"]}
    assert set(vnet_lab.pids()) == {"left", "right", "_pack1", "_pack2"}
    hops = await vnet_lab.node("l1").call("traceroute", dst="10.0.2.1", probes=3, wait=30.0)
    assert hops["reached"] and [h["ip"] for h in hops["hops"]] == ["10.0.1.254", "10.0.2.1"], hops


async def test_the_demo_pings_every_pair_of_a_packed_lab():
    from vnet.lab.demo import ping_all

    async with LabRunner(load_lab(HERE / "packed-small.yml")) as runner:
        records = await ping_all(runner, count=2)
    assert len(records) == 8 and all(r["ok"] for r in records), records  # r1 has two addresses


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                    reason="the campus has a kernel-stack node: root and /dev/net/tun")
async def test_a_kernel_stack_node_keeps_a_process_of_its_own():
    lab = dataclasses.replace(load_lab(EXAMPLES / "campus.yml"), nodes_per_process=2)
    async with LabRunner(lab) as runner:
        assert runner.packs == {"_pack1": ["a1", "a2"], "_pack2": ["r1", "dhcp10"]}
        assert runner.process_of("b1") == "b1" and "b1" in runner.pids()
        assert (await runner.node("a1").ping("10.0.20.1", count=3, timeout=5.0)).received
