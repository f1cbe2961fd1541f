"""Life cycle and bad input of kernel-stack nodes: SIGTERM removes what the daemon made, a LAN
killed with SIGKILL leaves namespaces the next start removes and reports, `vnet exec`, and
the sentences for a missing privilege or a taken name."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from vnet.lan import Lan, vnet_command
from vnet.netns import OWNER_DIR
from vnet.node.netns import netns_create, netns_exists, netns_remove

from .conftest import MISSING, NO_NET_CAPS

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def vnet(*args: str, env: dict | None = None, timeout: float = 60, user: bool = False) -> subprocess.CompletedProcess:
    cmd = [*vnet_command(), *args]
    if user:  # root without the capabilities a TAP and a namespace need (the interpreter stays readable)
        cmd = [*NO_NET_CAPS, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd="/")


def test_without_privileges_lan_and_node_exit_2_with_a_sentence(tmp_path):
    env = {"VNET_RUNTIME_DIR": str(tmp_path / "rt"), "HOME": str(tmp_path)}
    os.chmod(tmp_path, 0o777)
    r = vnet("lan", "demo", "--nodes", "1", "--stack", "kernel", env=env, user=True)
    assert r.returncode == 2, r.stderr
    assert "needs root" in r.stderr and "stack='vnet'" in r.stderr
    r = vnet("node", "--name", "nopriv", "--stack", "kernel", "--switch", "tcp://127.0.0.1:9", env=env, user=True)
    assert r.returncode == 2, r.stderr
    assert "CAP_NET_ADMIN" in r.stderr and "run as root" in r.stderr


async def test_sigterm_removes_the_tap_and_the_namespace_the_daemon_made(tmp_path):
    ns = f"vt{os.getpid()}-own"
    async with Lan(1, "10.35.0.0/24") as lan:
        proc = subprocess.Popen(
            [*vnet_command(), "node", "--name", "own", "--stack", "kernel", "--netns", ns, "--switch", lan.switch.data,
             "--address", "10.35.0.9/24", "--control", f"ipc://{tmp_path}/own.ctl"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "VNET_RUNTIME_DIR": str(tmp_path)})
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line.startswith("vnet-ready"), line + proc.stderr.read()
            assert netns_exists(ns)
            r = await lan.nodes[0].ping("10.35.0.9", count=2)
            assert r.ok
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 15) == 0
            assert not netns_exists(ns)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if netns_exists(ns):
                netns_remove(ns)


def test_a_taken_name_makes_the_node_exit_2_with_a_sentence(tmp_path):
    ns = f"vt{os.getpid()}-taken"
    netns_create(ns)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "vnet0", "type", "veth", "peer", "name", "other0"], check=True)
        r = vnet("node", "--name", "taken", "--stack", "kernel", "--netns", ns, "--switch", "tcp://127.0.0.1:9",
                 "--control", f"ipc://{tmp_path}/taken.ctl", env={"VNET_RUNTIME_DIR": str(tmp_path)})
        assert r.returncode == 2
        assert f"interface vnet0 already exists in network namespace {ns}" in r.stderr
        assert netns_exists(ns)  # not ours to remove: it existed before the daemon
    finally:
        netns_remove(ns)


LAN_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from vnet.lan import Lan
    async def main():
        lan = Lan(2, "10.36.0.0/24", stack="kernel", name=sys.argv[1])
        await lan.start()
        print(" ".join(n.netns for n in lan.nodes), flush=True)
        await asyncio.Event().wait()
    asyncio.run(main())
""")


async def test_a_lan_killed_with_sigkill_is_cleaned_up_by_the_next(capsys):
    name = f"k{os.getpid()}"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", LAN_SCRIPT, name, stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        namespaces = line.decode().split()
        assert namespaces == [f"vnet-{name}-node1", f"vnet-{name}-node2"]
        members = []
        for ns in namespaces:
            with open(os.path.join(OWNER_DIR, f"{ns}.json")) as fh:
                members += [pid for pid, _ in json.load(fh)["members"]]
        proc.kill()
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert all(netns_exists(ns) for ns in namespaces)  # SIGKILL: nobody cleaned up
    async with Lan(1, "10.37.0.0/24", stack="kernel") as lan:
        assert set(namespaces) <= set(lan.leftovers_removed)
        assert (await lan.nodes[0].health())["carrier"]
    err = capsys.readouterr().err
    for ns in namespaces:
        assert not netns_exists(ns)
        assert f"removed leftover namespace {ns} from an earlier run" in err
    for pid in members:  # the orphaned node daemons were stopped too
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


async def test_vnet_exec_runs_in_the_nodes_namespace_with_its_status():
    async with Lan(2, "10.38.0.0/24", stacks=["kernel", "vnet"]) as lan:
        env = {"VNET_RUNTIME_DIR": lan.runtime_dir}
        r = await asyncio.to_thread(vnet, "--node", "node1", "exec", "--", "ip", "-o", "-4", "addr", "show", "vnet0",
                                    env=env)
        assert r.returncode == 0 and "10.38.0.1/24" in r.stdout, r.stderr
        r = await asyncio.to_thread(vnet, "--node", "node1", "exec", "--", "sh", "-c", "exit 7", env=env)
        assert r.returncode == 7
        r = await asyncio.to_thread(vnet, "--node", "node2", "exec", "--", "true", env=env)
        assert r.returncode == 2 and "runs vnet's own stack" in r.stderr
        done = await lan.nodes[0].run(["ping", "-n", "-c", "1", "-W", "2", "10.38.0.2"], timeout=10)
        assert done.returncode == 0 and b"1 received" in done.stdout


def test_lan_demo_with_the_kernel_stack_pings_every_pair(tmp_path):
    r = vnet("lan", "demo", "--nodes", "2", "--stack", "kernel", "--count", "2", "--subnet", "10.40.0.0/24", "--json",
             env={"VNET_RUNTIME_DIR": str(tmp_path)}, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and len(out["pairs"]) == 2 and all(p["received"] == 2 for p in out["pairs"])
    assert not netns_exists("vnet-demo-node1") and not netns_exists("vnet-demo-node2")


async def test_a_daemon_without_netns_puts_vnet0_in_its_own_namespace(tmp_path, netns_factory):
    """As in a container: the daemon runs inside the node's namespace itself (here through
    `ip netns exec`, the switch reached over an ipc socket, which crosses namespaces)."""
    ns = netns_factory()
    async with Lan(1, "10.42.0.0/24", switch_bind=f"ipc://{tmp_path}/switch.sock") as lan:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *vnet_command(), "node", "--name", "inside", "--stack", "kernel",
             "--switch", lan.switch.data, "--address", "10.42.0.9/24", "--control", f"ipc://{tmp_path}/inside.ctl"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "VNET_RUNTIME_DIR": str(tmp_path)})
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line.startswith("vnet-ready"), line + proc.stderr.read()
            links = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "vnet0"], capture_output=True, text=True)
            assert links.returncode == 0  # vnet0 is in the daemon's namespace
            assert (await lan.nodes[0].ping("10.42.0.9", count=2)).ok
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 15) == 0
            assert netns_exists(ns)  # not made by the daemon: left alone
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
