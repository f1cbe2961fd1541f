"""The embedded LAN supervises its daemons: a death it did not cause is reported and mended
(or, past the restart budget, the LAN fails saying why); its daemons die with it; a LAN that
was killed is cleaned up after by the next one; a daemon's final counters survive a stdout
that is gone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from vnet.lan import Lan, LanError, poll_until
from vnet.pidfile import LanPidfile, proc_starttime
from vnet.proto.control import FINAL_PREFIX, ControlClient
from vnet.supervisor import RestartPolicy


# -- the policy, by hand ----------------------------------------------------------------------

def test_policy_restarts_three_times_a_minute_then_gives_up_until_the_window_passes():
    policy = RestartPolicy(restarts=3, window=60.0)
    assert [policy.decide("switch", -9, t, node=False)[0] for t in (0.0, 10.0, 20.0)] == [True] * 3
    restart, reason = policy.decide("switch", -9, 30.0, node=False)
    assert not restart and "restarted 3 times in the last 60 s" in reason
    assert policy.decide("node1", -9, 30.0)[0]  # each daemon has a budget of its own
    assert policy.decide("switch", -9, 60.0, node=False)[0]  # the death at 0.0 is out of the window


def test_policy_never_restarts_a_refused_node_nor_with_restarts_0():
    restart, reason = RestartPolicy(3, 60.0).decide("node1", 3, 0.0)
    assert not restart and "refused" in reason
    restart, reason = RestartPolicy(0, 60.0).decide("switch", 1, 0.0, node=False)
    assert not restart and "restarts=0" in reason


# -- the pidfile, in this process ---------------------------------------------------------------

async def test_a_pidfile_whose_lan_still_runs_is_an_error_naming_it(tmp_path):
    LanPidfile(str(tmp_path)).write({}, [])  # this process is the running LAN
    with pytest.raises(LanError, match=rf"another vnet LAN \(pid {os.getpid()}\) runs with the runtime directory"):
        await LanPidfile(str(tmp_path)).clean_leftovers()
    assert (tmp_path / "lan.pid").exists()  # not ours to remove


async def test_a_dead_lans_pidfile_never_signals_a_recycled_pid_and_its_sockets_are_removed(tmp_path):
    sock = tmp_path / "node1.ctl"
    sock.write_text("")
    doc = {"pid": 2 ** 22 + 1, "starttime": 1,  # no such process
           "children": {"node1": {"pid": os.getpid(), "starttime": proc_starttime(os.getpid()) + 1}},  # recycled
           "sockets": [str(sock)]}
    (tmp_path / "lan.pid").write_text(json.dumps(doc))
    said = await LanPidfile(str(tmp_path)).clean_leftovers()
    assert said == f"cleaned up 0 processes and 1 socket file left by an earlier vnet lan up (pid {2 ** 22 + 1})"
    assert not sock.exists() and not (tmp_path / "lan.pid").exists()  # and this process still runs


# -- the Lan object -----------------------------------------------------------------------------

async def test_lan_reports_and_restarts_a_killed_switch_and_node_then_fails_past_its_budget():
    reported = []
    async with Lan(2, restarts=1, restart_window=60.0, heartbeat_interval=0.2, heartbeat_timeout=0.6,
                   on_death=reported.append) as lan:
        a, b = lan.nodes
        old = lan.pids()
        os.kill(old["switch"], signal.SIGKILL)
        await poll_until(_async(lambda: lan.deaths), "the switch's death to be reported", timeout=10)
        death = lan.deaths[0]
        assert (death.name, death.pid, death.returncode, death.restart) == ("switch", old["switch"], -9, True)
        assert "killed by signal 9 (SIGKILL); restarting it" in death.report()
        assert "switch listening on" in death.log_tail and "'node2' attached" in death.log_tail
        assert reported == [death]
        await poll_until(_async(lambda: lan.pids().get("switch", old["switch"]) != old["switch"]),
                         "a new switch", timeout=20)
        await poll_until(lambda: _attached(lan, {"node1", "node2"}), "both nodes on the new switch", timeout=20)
        assert (await a.ping(b.ip, count=1)).ok  # they re-attached by themselves

        os.kill(old["node2"], signal.SIGKILL)
        await poll_until(_async(lambda: len(lan.deaths) == 2), "node2's death to be reported", timeout=10)
        assert (lan.deaths[1].name, lan.deaths[1].returncode) == ("node2", -9)
        await poll_until(_async(lambda: lan.pids().get("node2", old["node2"]) != old["node2"]), "a new node2",
                         timeout=20)
        await b.wait_ready(20)
        assert b.mac == (await b.link())["address"]  # the handle follows the new node2
        await poll_until(lambda: _attached(lan, {"node1", "node2"}), "the new node2 on the switch", timeout=20)
        assert (await a.ping(b.ip, count=1)).ok and lan.failure is None

        os.kill(lan.pids()["switch"], signal.SIGKILL)  # its second death within the minute
        error = await _within(lan.wait_failure(), 10)
        assert "switch killed by signal 9 (SIGKILL) and is not restarted" in str(error)
        assert "restarted 1 times in the last 60 s" in str(error)
        assert lan.deaths[-1].restart is False


async def test_deaths_the_lan_causes_are_not_reported():
    async with Lan(2, restarts=1) as lan:
        await lan.kill_switch()
        await lan.start_switch()
        await lan.stop_node("node2", signal.SIGKILL)
        await lan.nodes[0].wait_ready(20)
        await lan.restart_switch()
        await lan.nodes[0].wait_ready(20)
    assert lan.deaths == [] and lan.failure is None


# -- vnet lan up, a real process ----------------------------------------------------------------

class Running:
    """A subprocess whose stdout and stderr lines are collected by reader threads, so a test
    can wait for a line with a deadline."""

    def __init__(self, args: list[str], env: dict, **kwargs) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "vnet.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, **kwargs)
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(f, lines), daemon=True)
                         for f, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def text(self) -> str:
        return f"stdout:\n{''.join(self.out)}\nstderr:\n{''.join(self.err)}"

    def wait_for(self, what: str, where: str = "err", timeout: float = 30.0) -> str:
        lines = self.err if where == "err" else self.out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if what in line:
                    return line
            if self.proc.poll() is not None:
                for t in self._threads:
                    t.join(5)
                if any(what in line for line in lines):
                    return next(line for line in lines if what in line)
                raise AssertionError(f"exited ({self.proc.returncode}) without {what!r}\n{self.text()}")
            time.sleep(0.02)  # poll interval
        raise AssertionError(f"no {what!r} within {timeout:g} s\n{self.text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for t in self._threads:
            t.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lan_up(tmp_path, ports: tuple[int, int], nodes: int = 2) -> Running:
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    env.pop("VNET_NODE", None)
    return Running(["lan", "up", "--nodes", str(nodes), "--bind", f"tcp://127.0.0.1:{ports[0]}",
                    "--switch-control", f"tcp://127.0.0.1:{ports[1]}"], env)


def children(tmp_path) -> dict[str, int]:
    with open(tmp_path / "lan.pid") as fh:
        return {name: c["pid"] for name, c in json.load(fh)["children"].items()}


def wait_until(fn, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = fn()
        if result:
            return result
        time.sleep(0.05)  # poll interval
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def ping(tmp_path, node: str, ip: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "vnet.cli", "--node", node, "ping", "-c", "1", "-W", "1", ip],
                          capture_output=True, text=True, env=env, timeout=30)


def test_lan_up_restarts_a_killed_switch_and_node_and_exits_past_its_budget(tmp_path):
    lan = lan_up(tmp_path, (free_port(), free_port()))
    try:
        lan.wait_for("Ctrl-C", where="out")
        pids = children(tmp_path)
        os.kill(pids["switch"], signal.SIGKILL)
        line = lan.wait_for(f"switch (pid {pids['switch']}) killed by signal 9 (SIGKILL); restarting it")
        assert "the end of its log" in lan.text()
        lan.wait_for("switch restarted")
        wait_until(lambda: ping(tmp_path, "node1", "10.0.0.2").returncode == 0, "node1 to reach node2 again")

        node2 = children(tmp_path)["node2"]
        os.kill(node2, signal.SIGKILL)
        lan.wait_for(f"node2 (pid {node2}) killed by signal 9 (SIGKILL); restarting it")
        lan.wait_for("node2 restarted")
        wait_until(lambda: ping(tmp_path, "node1", "10.0.0.2").returncode == 0, "node1 to reach a new node2")

        for n in range(3):  # the switch's 2nd, 3rd, 4th death within the minute: 3 restarts, then none
            switch = wait_until(lambda: _new_pid(tmp_path, "switch", pids["switch"]), "a new switch")
            pids["switch"] = switch
            os.kill(switch, signal.SIGKILL)
            if n < 2:
                lan.wait_for(f"switch (pid {switch}) killed by signal 9 (SIGKILL); restarting it")
        assert lan.proc.wait(30) == 1, lan.text()
        lan.wait_for("not restarting it: it was restarted 3 times in the last 60 s already")
        lan.wait_for("vnet: error: the LAN failed: switch killed by signal 9 (SIGKILL) and is not restarted")
        assert "Traceback" not in lan.text() and line
        assert not (tmp_path / "lan.pid").exists()
    finally:
        lan.stop()


def _new_pid(tmp_path, name: str, old: int) -> int | None:
    try:
        pid = children(tmp_path).get(name)
    except (OSError, ValueError):
        return None
    return pid if pid != old and proc_starttime(pid) else None


def test_killing_lan_up_takes_its_daemons_with_it_and_the_next_one_starts(tmp_path):
    ports = (free_port(), free_port())
    first = lan_up(tmp_path, ports, nodes=3)
    try:
        first.wait_for("Ctrl-C", where="out")
        pids = children(tmp_path)
        assert sorted(pids) == ["node1", "node2", "node3", "switch"]
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        wait_until(lambda: not any(proc_starttime(p) for p in pids.values()), "every daemon to exit", timeout=15)
    finally:
        first.stop()
    second = lan_up(tmp_path, ports, nodes=3)
    try:
        second.wait_for("Ctrl-C", where="out")
        assert "Address already in use" not in second.text()
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) == 0, second.text()
    finally:
        second.stop()


def test_the_next_lan_up_cleans_up_a_daemon_left_by_a_killed_one_and_says_so(tmp_path):
    ports = (free_port(), free_port())
    first = lan_up(tmp_path, ports)
    try:
        first.wait_for("Ctrl-C", where="out")
        pids = children(tmp_path)
        os.kill(pids["switch"], signal.SIGSTOP)  # frozen: it cannot act on the SIGTERM its parent's death sends
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        wait_until(lambda: not proc_starttime(pids["node1"]) and not proc_starttime(pids["node2"]),
                   "the nodes to exit", timeout=15)
        assert proc_starttime(pids["switch"])  # the leftover, holding the switch's ports
    finally:
        first.stop()
    second = lan_up(tmp_path, ports)
    try:
        # "cleaned up 1 process (switch pid S) [and N socket files] left by an earlier vnet lan
        # up (pid L)": the socket files are there or not, as the nodes' exits left them
        second.wait_for(f"cleaned up 1 process (switch pid {pids['switch']})")
        second.wait_for(f"left by an earlier vnet lan up (pid {first.proc.pid})")
        second.wait_for("Ctrl-C", where="out")
        assert not proc_starttime(pids["switch"])
        assert ping(tmp_path, "node1", "10.0.0.2").returncode == 0
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) == 0, second.text()
    finally:
        second.stop()
        try:
            os.kill(pids["switch"], signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- final counters ------------------------------------------------------------------------------

def _switch(tmp_path, control_port: int = 0, **popen) -> subprocess.Popen:
    return _daemon(tmp_path, ["switch", "--bind", "tcp://127.0.0.1:0", "--switch-control",
                              f"tcp://127.0.0.1:{control_port}"], **popen)


def _daemon(tmp_path, args: list[str], **popen) -> subprocess.Popen:
    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "vnet.cli", *args], stderr=subprocess.PIPE, text=True, env=env,
                            **popen)


def _final_file(tmp_path, name: str = "switch") -> dict:
    with open(tmp_path / f"{name}.final.json") as fh:
        return json.load(fh)


@pytest.mark.parametrize("name, args, key", [
    ("switch", ["switch", "--bind", "tcp://127.0.0.1:0", "--switch-control", "tcp://127.0.0.1:0"], "ports"),
    ("node1", ["node", "--name", "node1", "--address", "10.0.0.1/24", "--switch", "tcp://127.0.0.1:1"], "stats64"),
])
def test_final_counters_survive_a_pipe_nobody_reads_any_more(tmp_path, name, args, key):
    daemon = _daemon(tmp_path, args, stdout=subprocess.PIPE)
    try:
        assert daemon.stdout.readline().startswith("vnet-ready ")
        daemon.stdout.close()  # the reader is gone (the LAN that started it was killed)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, err
        assert "Traceback" not in err and "BrokenPipe" not in err
        final = _final_file(tmp_path, name)
        assert key in final, final  # its counters, as its `stats` control command has them
        line = next(l for l in err.splitlines() if l.startswith(FINAL_PREFIX))
        assert json.loads(line[len(FINAL_PREFIX):]) == final
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_a_node_prints_its_final_counters_after_a_clean_stop(tmp_path):
    node = _daemon(tmp_path, ["node", "--name", "node1", "--address", "10.0.0.1/24", "--switch", "tcp://127.0.0.1:1"],
                   stdout=subprocess.PIPE)
    try:
        assert node.stdout.readline().startswith("vnet-ready ")
        node.send_signal(signal.SIGTERM)
        out, err = node.communicate(timeout=30)
        assert node.returncode == 0, err
        final = json.loads(out.strip().splitlines()[-1][len(FINAL_PREFIX):])
        assert final["node"] == "node1" and "tx_packets" in final["stats64"] and "carrier_losses" in final["link"]
        assert not (tmp_path / "node1.final.json").exists()  # stdout worked: no file
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


def test_final_counters_survive_a_closed_stdout(tmp_path):
    port = free_port()
    sw = _switch(tmp_path, port, stdout=None, preexec_fn=lambda: os.close(1))
    try:
        with ControlClient(f"tcp://127.0.0.1:{port}", timeout=1.0) as client:
            wait_until(lambda: _answers(client), "the switch to answer on its control endpoint", timeout=30)
        sw.send_signal(signal.SIGTERM)
        _, err = sw.communicate(timeout=30)
        assert sw.returncode == 0, err
        assert "Traceback" not in err
        assert _final_file(tmp_path)
        assert f"the final counters are also in {tmp_path}/switch.final.json" in err
    finally:
        if sw.poll() is None:
            sw.kill()
            sw.wait()


def _answers(client: ControlClient) -> bool:
    try:
        client.call("stats")
        return True
    except TimeoutError:
        return False


# -- helpers ---------------------------------------------------------------------------------------

async def _attached(lan: Lan, names: set[str]) -> bool:
    return {p["name"] for p in await lan.switch.ports()} == names

def _async(fn):
    async def call():
        return fn()
    return call


async def _within(aw, timeout: float):
    import asyncio

    return await asyncio.wait_for(aw, timeout)
