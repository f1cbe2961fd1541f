"""``vnet top``: the view model on samples with times given by hand, and the command under a
pseudo-terminal against a real LAN (the screen, rates that move with traffic, ``q``)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios

import pytest

from vnet.lan import Lan
from vnet.top import Counts, Sample, TopModel, format_bps, format_pps, rates

# -- the view model --------------------------------------------------------------------------


def test_rates_from_two_samples_over_the_given_delta():
    model = TopModel()
    first = model.update(Sample(10.0, nodes={"a": Counts(rx_packets=100, rx_bytes=10_000, tx_packets=50,
                                                         tx_bytes=5_000, drops=1)}))
    assert first.interval is None and first.node("a").rates.rx_pps is None  # one sample: no rates yet
    frame = model.update(Sample(12.0, nodes={"a": Counts(rx_packets=300, rx_bytes=30_000, tx_packets=90,
                                                         tx_bytes=9_000, drops=5)}))
    r = frame.node("a").rates
    assert frame.interval == 2.0
    assert (r.rx_pps, r.tx_pps, r.rx_bps, r.tx_bps, r.drops_ps) == (100.0, 20.0, 80_000.0, 16_000.0, 2.0)
    assert frame.node("a").counts.drops == 5


def test_a_reset_counter_counts_from_zero_and_new_rows_have_no_rates():
    model = TopModel()
    model.update(Sample(0.0, ports={"a": Counts(rx_packets=1000)}))
    frame = model.update(Sample(0.5, ports={"a": Counts(rx_packets=10), "b": Counts(rx_packets=7)}))
    assert frame.port("a").rates.rx_pps == 20.0  # restarted: 10 since, over 0.5 s
    assert frame.port("b").rates.rx_pps is None


def test_drops_are_every_non_traffic_counter_and_down_nodes_are_rows():
    c = Counts.from_port_counters({"rx_packets": 5, "rx_bytes": 500, "tx_packets": 4, "tx_bytes": 400,
                                   "flooded": 3, "runt": 1, "hwm": 2, "some_new_reason": 4})
    assert (c.rx_packets, c.tx_bytes, c.drops) == (5, 400, 7)
    n = Counts.from_node_stats({"rx_packets": 1, "rx_dropped": 1, "rx_missed_errors": 2, "tx_dropped": 3})
    assert n.drops == 6
    frame = TopModel().update(Sample(1.0, nodes={"a": Counts()}, down={"b": "no answer"}))
    assert [r.name for r in frame.nodes] == ["a", "b"] and frame.node("b").down == "no answer"


def test_samples_out_of_order_are_refused():
    model = TopModel()
    model.update(Sample(5.0))
    with pytest.raises(ValueError, match="out of order"):
        model.update(Sample(5.0))


def test_formats():
    assert format_pps(None) == "-" and format_pps(0) == "0" and format_pps(12.5) == "12.5"
    assert format_pps(3200) == "3.2k" and format_bps(640) == "640 bit/s" and format_bps(9.4e6) == "9.4 Mbit/s"
    assert rates(None, Counts(), 1.0).rx_pps is None


# -- the command -----------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def _controlling_tty() -> None:
    """In the child: a session of its own whose controlling terminal is the pty (its stdin),
    so the terminal's Ctrl-C is a SIGINT to it, as in a shell."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Pty:
    """``vnet top`` on a pseudo-terminal of 40x140; the screen's text as it was written."""

    def __init__(self, lan: Lan, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        env = dict(os.environ, VNET_RUNTIME_DIR=lan.runtime_dir, VNET_SWITCH_CONTROL=lan.switch.control,
                   TERM="xterm-256color")
        for var in ("COLUMNS", "LINES", "NO_COLOR", "VNET_NODE"):
            env.pop(var, None)
        self.proc = subprocess.Popen([sys.executable, "-m", "vnet.cli", "top", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, preexec_fn=_controlling_tty)
        os.close(slave)
        os.set_blocking(self.master, False)
        self.raw = b""

    def read(self) -> str:
        try:
            while chunk := os.read(self.master, 65536):
                self.raw += chunk
        except (BlockingIOError, OSError):  # nothing more now / the child closed its side
            pass
        return ANSI.sub("", self.raw.decode(errors="replace"))

    def frames(self) -> list[str]:
        """The screens drawn so far (each begins with the heading line)."""
        return ["vnet top:" + f for f in self.read().split("vnet top:")[1:]]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def row(screen: str, table: str, name: str) -> list[str]:
    """The cells of ``name``'s row in the nodes' or the switch ports' table of one screen."""
    part = re.split(r"^switch ports", screen, flags=re.M)[0 if table == "nodes" else 1]
    for line in part.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1] == name:
            return cells[1:-1]
    raise AssertionError(f"no row {name!r} in the {table} table of:\n{screen}")


def pps(cell: str) -> float:
    """A pps cell back to a number ("-": none yet)."""
    if cell == "-":
        return 0.0
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(cell[-1], 1.0)
    return float(cell.rstrip("kMG")) * scale


async def until(pred, what: str, timeout: float = 30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := pred()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def test_top_under_a_pty_shows_every_node_rates_and_quits_on_q():
    async with Lan(3) as lan:
        a, b, c = lan.nodes
        term = Pty(lan)
        try:
            await until(lambda: any(all(n.name in f for n in lan.nodes) and "switch ports" in f
                                    for f in term.frames()), "a screen with every node")
            stop = asyncio.Event()

            async def traffic():
                while not stop.is_set():
                    await a.ping(b.ip, count=5, timeout=1.0)

            pinger = asyncio.create_task(traffic())
            try:
                def moving() -> bool:
                    frames = term.frames()
                    if not frames or "over" not in frames[-1]:
                        return False
                    screen = frames[-1]
                    node_tx = row(screen, "nodes", a.name)[2]  # cells: name, rx pps, tx pps, ...
                    port_tx = row(screen, "ports", b.name)[2]  # what the switch sends to node2
                    # above the 1 frame/s or so a node sends by itself at start (ARP announcements)
                    return pps(node_tx) >= 3 and pps(port_tx) >= 3
                await until(moving, "node1's tx and the switch's tx to node2 moving with the pings")
            finally:
                stop.set()
                await pinger
            os.write(term.master, b"q")
            code = await asyncio.to_thread(term.proc.wait, 15)
            assert code == 0, term.read()[-2000:]
            assert "Traceback" not in term.read()
        finally:
            term.close()


async def test_top_ctrl_c_exits_cleanly():
    async with Lan(1) as lan:
        term = Pty(lan)
        try:
            await until(lambda: any("node1" in f for f in term.frames()), "a screen")
            os.write(term.master, b"\x03")  # the terminal's interrupt character: SIGINT
            code = await asyncio.to_thread(term.proc.wait, 15)
            assert code == 0 and "Traceback" not in term.read()
        finally:
            term.close()


async def test_top_once_prints_one_frame_and_exits():
    async with Lan(2) as lan:
        env = dict(os.environ, VNET_RUNTIME_DIR=lan.runtime_dir, VNET_SWITCH_CONTROL=lan.switch.control,
                   COLUMNS="140")
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "vnet.cli", "top", "--once",
                                                        "--interval", "0.2"],
                                       capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("vnet top:") == 1 and "over 0.2" in proc.stdout
        for n in lan.nodes:
            assert row(proc.stdout, "nodes", n.name) and row(proc.stdout, "ports", n.name)
