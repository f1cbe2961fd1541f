"""Packed nodes: a LAN whose nodes run many to a process (``vnet nodes``, node/pack.py).

Each packed node is still a whole node: its own control socket (reached as any node's), its
own counters; the process is supervised as the owner of its nodes (its death is theirs, and
the restart policy brings them back together); stopping the LAN leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys

import pytest

from vnet.lan import Lan, LanError, poll_until, vnet_command
from vnet.node.pack import PackConfig


async def _bounded(coros, limit: int = 32) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(coro):
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def test_300_packed_nodes_answer_their_control_sockets_ping_and_a_killed_process_is_restarted():
    lan = Lan(300, "10.0.0.0/23", nodes_per_process=100, restarts=1, start_timeout=90.0)
    async with lan:
        assert lan.packs == {f"pack{k + 1}": [f"node{i}" for i in range(100 * k + 1, 100 * k + 101)]
                             for k in range(3)}
        assert set(lan.pids()) == {"switch", "pack1", "pack2", "pack3"}
        assert lan.process_of("node150") == "pack2"

        # every node answers on its own control socket, as itself
        healths = await _bounded(n.health() for n in lan.nodes)
        assert [h["name"] for h in healths] == [n.name for n in lan.nodes]
        assert all(h["carrier"] and h["addresses"][0]["state"] == "ok" for h in healths)
        assert len({n.mac for n in lan.nodes}) == 300
        assert len(await lan.switch.ports()) == 300

        # a sample of pings, across processes and within one
        rng = random.Random(7)
        sources = rng.sample(lan.nodes, 30)  # one ping at a time from a node: (ident, seq) is its key
        pairs = [(a, rng.choice([n for n in lan.nodes if n is not a])) for a in sources]
        # (the nodes' gratuitous ARPs, 300 x 299 deliveries, may still be on their way: a first
        # echo lost to a full machine is not a failure, every pair answering is the check)
        results = await _bounded((a.ping(b.ip, count=3, timeout=5.0) for a, b in pairs), limit=10)
        assert all(r.received for r in results), [(a.name, b.name) for (a, b), r in zip(pairs, results) if not r.received]

        # a packed process killed: noticed as the death of all its nodes, and restarted with them
        old = lan.pids()["pack2"]
        os.kill(old, signal.SIGKILL)
        await poll_until(_async(lambda: lan.deaths), "the death of pack2 noticed", timeout=20.0)
        death = lan.deaths[0]
        assert death.name == "pack2" and death.pid == old and death.returncode == -signal.SIGKILL
        assert death.nodes == tuple(f"node{i}" for i in range(101, 201)) and death.restart
        assert "hosting 100 nodes (node101, node102, node103 ... node200)" in death.report()
        await poll_until(_async(lambda: lan.pids().get("pack2", old) != old), "a new pack2", timeout=60.0)
        assert lan.failure is None
        await _bounded(lan.node(f"node{i}").wait_ready(30.0) for i in range(101, 201))
        assert (await lan.node("node150").link())["address"] == lan.node("node150").mac  # the handle follows it
        assert (await lan.node("node1").ping(lan.node("node150").ip, count=2, timeout=5.0)).ok
        assert (await lan.node("node199").ping(lan.node("node300").ip, count=2, timeout=5.0)).ok

        with pytest.raises(LanError, match="shares its process pack1"):
            await lan.stop_node("node3")
    assert lan.pids() == {}
    finals = lan.finals()  # every node's final counters, from the processes' last lines
    assert set(finals) == {f"node{i}" for i in range(1, 301)}
    assert finals["node1"]["stats64"]["tx_packets"] > 0


def _async(fn):
    async def call():
        return fn()
    return call


async def test_packed_nodes_keep_counters_of_their_own():
    async with Lan(4, nodes_per_process=4) as lan:
        assert lan.packs == {"pack1": ["node1", "node2", "node3", "node4"]}
        a, b, c, d = lan.nodes
        before = {n.name: await n.stats() for n in lan.nodes}
        assert (await a.ping(b.ip, count=5)).ok
        for _ in range(7):
            await c.health()
        after = {n.name: await n.stats() for n in lan.nodes}

        def delta(node, *path):
            x, y = before[node], after[node]
            for key in path:
                x, y = x[key], y[key]
            return y - x

        icmp_out = [k for k in after["node1"]["stack"]["icmp"] if "echo" in k and "out" in k]
        assert delta("node1", "stats64", "tx_packets") >= 5 and delta("node2", "stats64", "rx_packets") >= 5
        assert delta("node3", "stats64", "tx_packets") == 0 and delta("node4", "stats64", "tx_packets") == 0
        assert delta("node3", "stats64", "rx_packets") < 5  # at most ARP's broadcast, never the echoes
        for key in icmp_out:
            assert delta("node3", "stack", "icmp", key) == 0 and delta("node4", "stack", "icmp", key) == 0
        # each stats call is counted by the node it went to: c's own health calls are c's
        assert delta("node3", "control", "requests") == 8  # 7 health + the 2nd stats call
        assert delta("node4", "control", "requests") == 1
        assert (await lan.switch.stats())["totals"]["rx_packets"] > 0


def test_a_pack_config_is_checked_with_the_setting_named(tmp_path):
    with pytest.raises(ValueError, match=r"nodes\[1\] has unknown settings \['colour'\]"):
        PackConfig.from_dict({"nodes": [{"name": "a", "switch": "ipc:///x"},
                                        {"name": "b", "switch": "ipc:///x", "colour": 1}]})
    with pytest.raises(ValueError, match="node name 'a' is given twice"):
        PackConfig.from_dict({"nodes": [{"name": "a", "switch": "ipc:///x"}, {"name": "a", "switch": "ipc:///x"}]})
    with pytest.raises(ValueError, match="only vnet-stack nodes"):
        PackConfig.from_dict({"nodes": [{"name": "a", "switch": "ipc:///x", "stack": "kernel"}]})
    with pytest.raises(ValueError, match=r"nodes\[0\] \(a\): address '10.0.0.0/24'"):
        PackConfig.from_dict({"nodes": [{"name": "a", "switch": "ipc:///x", "addresses": ["10.0.0.0/24"]}]})
    with pytest.raises(ValueError, match="a kernel-stack node needs a process of its own"):
        Lan(4, nodes_per_process=2, stack="kernel")
    bad = tmp_path / "pack.json"
    bad.write_text("{not json")
    proc = subprocess.run([*vnet_command(), "nodes", "--config", str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "is not JSON" in proc.stderr


async def test_a_node_that_cannot_start_is_reported_and_the_others_run(tmp_path):
    """One node of a pack whose control socket path is taken by a file: reported as failed,
    its siblings start and answer."""
    async with Lan(2) as lan:
        (tmp_path / "taken.ctl").write_text("not a socket")
        cfg = tmp_path / "pack.json"
        nodes = [{"name": f"p{i}", "switch": lan.switch.data, "addresses": [f"10.0.0.{100 + i}/24"],
                  "control": f"ipc://{tmp_path}/{'taken' if i == 2 else f'p{i}'}.ctl"} for i in range(1, 4)]
        import json
        cfg.write_text(json.dumps({"nodes": nodes}))
        proc = await asyncio.create_subprocess_exec(
            *vnet_command(), "nodes", "--config", str(cfg), "--log-level", "warning",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path)))
        try:
            lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode() for _ in range(3)]
            assert sorted(line.split()[0] for line in lines) == ["vnet-failed", "vnet-ready", "vnet-ready"]
            failed = next(line for line in lines if line.startswith("vnet-failed"))
            assert '"node": "p2"' in failed and "not a socket" in failed
            assert (await lan.nodes[0].ping("10.0.0.103", count=1)).ok
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        assert sorted(line.split('"node": "')[1].split('"')[0] for line in out.decode().splitlines()
                      if line.startswith("vnet-final")) == ["p1", "p3"]


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for child, parent in parents.items():
            if parent == p and child not in out:
                out.add(child)
                todo.append(child)
    return out


def test_vnet_lan_up_packed_prints_every_node_reaches_them_by_name_and_sigterm_leaves_nothing(tmp_path):
    runtime = tmp_path / "rt"
    env = dict(os.environ, VNET_RUNTIME_DIR=str(runtime))
    up = subprocess.Popen([*vnet_command(), "lan", "up", "--nodes", "60", "--nodes-per-process", "20"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in up.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        else:
            pytest.fail(f"vnet lan up ended early:\n{''.join(lines)}{up.stderr.read()}")
        named = [line.split()[0] for line in lines if line.startswith("  node")]
        assert named == [f"node{i}" for i in range(1, 61)]
        assert any("60 nodes in 3 processes" in line for line in lines)
        kids = _children(up.pid)
        assert len(kids) == 4  # the switch and three packs
        health = subprocess.run([*vnet_command(), "--node", "node42", "health"], capture_output=True,
                                text=True, env=env, timeout=30)
        assert health.returncode == 0 and "node node42 carrier up, addresses 10.0.0.42/24 ok" in health.stdout
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    gone = [p for p in kids if os.path.exists(f"/proc/{p}")]
    assert gone == [], f"left behind: {gone}"
    assert not [f for f in os.listdir(runtime) if f.endswith(".ctl")]


async def test_packed_nodes_speak_curve_each_with_its_own_key():
    async with Lan(4, curve=True, nodes_per_process=2) as lan:
        assert lan.packs == {"pack1": ["node1", "node2"], "pack2": ["node3", "node4"]}
        assert (await lan.nodes[0].ping(lan.nodes[3].ip, count=2)).ok
        assert (await lan.nodes[1].ping(lan.nodes[0].ip, count=2)).ok
        assert {p["name"] for p in await lan.switch.ports()} == {"node1", "node2", "node3", "node4"}


@pytest.mark.vnet_lan(nodes=6, nodes_per_process=3)
async def test_the_vnet_lan_fixture_packs_nodes(vnet_lan):
    assert vnet_lan.packs == {"pack1": ["node1", "node2", "node3"], "pack2": ["node4", "node5", "node6"]}
    assert (await vnet_lan.nodes[2].ping(vnet_lan.nodes[3].ip, count=1)).ok
