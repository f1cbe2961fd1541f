"""Helpers shared by the benchmark's orchestrator (bench/run.py) and its worker processes
(bench/worker.py): frame builders, the worker process protocol, percentiles.

Every measured party runs in its own process, started as ``python -m bench.worker ROLE
JSON-ARGS``. A worker prints ``bench-ready {json}`` once it is set up, reads commands from
its stdin (``go``, ``expect N``, ``stop``), and prints ``bench-result {json}`` when done.
Times it reports are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on
the machine), so the orchestrator can subtract one process's start from another's end.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from typing import Any, Optional

READY = "bench-ready "
RESULT = "bench-result "
ETH_P_BENCH = 0x88B5  # IEEE 802 "local experimental" ethertype: nobody else handles it
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mac(n: int) -> bytes:
    """A locally administered unicast MAC numbered ``n``."""
    return bytes([0x02, 0xBE, 0x00, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF])


def make_frame(dst: bytes, src: bytes, size: int, ethertype: int = ETH_P_BENCH) -> bytes:
    """A whole Ethernet frame of ``size`` bytes (no FCS): header, then a counting payload."""
    if size < 14:
        raise ValueError(f"a frame has at least 14 bytes, got {size}")
    payload = bytes(i & 0xFF for i in range(size - 14))
    return dst + src + ethertype.to_bytes(2, "big") + payload


def records(frame: bytes, count: int) -> bytes:
    """``count`` copies of ``frame`` as one FRAMES payload (switch/wire.py: 2-byte length + frame)."""
    return (len(frame).to_bytes(2, "big") + frame) * count


def emit(prefix: str, obj: dict) -> None:
    sys.stdout.write(prefix + json.dumps(obj) + "\n")
    sys.stdout.flush()


class Sampler:
    """(time, count) pairs at most every ``every`` seconds: the receiver's delivery curve,
    from which the orchestrator reads the rate over the sender's active window."""

    __slots__ = ("samples", "next", "every")

    def __init__(self, every: float = 0.002) -> None:
        self.samples: list[tuple[float, int]] = []
        self.next = 0.0
        self.every = every

    def add(self, now: float, count: int) -> None:
        if now >= self.next:
            self.samples.append((now, count))
            self.next = now + self.every


def count_at(samples: list, t: float) -> tuple[float, int]:
    """The last sample at or before ``t`` (or the first one)."""
    best = samples[0]
    for s in samples:
        if s[0] > t:
            break
        best = s
    return best[0], best[1]


def window_rate(samples: list, t0: float, t1: float, skip: float = 0.1) -> Optional[float]:
    """Frames per second delivered between t0 + skip * (t1 - t0) (the pipeline filling) and
    t1 (the sender's last send), from a receiver's samples; None without enough samples."""
    if not samples:
        return None
    a_t, a_n = count_at(samples, t0 + skip * (t1 - t0))
    b_t, b_n = count_at(samples, t1)
    if b_t <= a_t:
        return None
    return (b_n - a_n) / (b_t - a_t)


def percentile(values: list[float], p: float) -> Optional[float]:
    """The p-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: list[float]) -> Optional[float]:
    return percentile(values, 50.0)


class WorkerError(RuntimeError):
    """A worker process failed, or did not answer in time."""


class Worker:
    """One worker process, owned by the orchestrator: spawn, wait for ready, talk, reap."""

    def __init__(self, role: str, args: dict, log_dir: str, cmd: Optional[list[str]] = None) -> None:
        self.role = role
        self.log_path = os.path.join(log_dir, f"{role}-{os.getpid()}-{time.monotonic_ns()}.log")
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONUNBUFFERED="1")
        argv = cmd or [sys.executable, "-m", "bench.worker", role, json.dumps(args)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, cwd=ROOT, env=env)
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _line(self, prefix: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(prefix):
                    return json.loads(text[len(prefix):])
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"{self.role}: no {prefix.strip()} line within {timeout:g} s\n{self.log_tail()}")
            if self._sel.select(left):
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise WorkerError(f"{self.role} exited with status {self.proc.returncode} before "
                                      f"its {prefix.strip()} line\n{self.log_tail()}")
                self._buf += chunk

    def ready(self, timeout: float = 30.0, prefix: str = READY) -> dict:
        return self._line(prefix, timeout)

    def result(self, timeout: float = 60.0) -> dict:
        return self._line(RESULT, timeout)

    def tell(self, line: str) -> None:
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def log_tail(self, n: int = 30) -> str:
        self._log.flush()
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after ``grace``; closes the pipes and the log."""
        p = self.proc
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._sel.close()
        self._log.close()
        return p.returncode


def rss_kib(pid: int) -> Optional[int]:
    """VmRSS of a process in KiB (from /proc/PID/status), None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU time of a process and all its threads so far (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stdin_lines() -> Any:
    """A non-blocking reader of this worker's stdin commands: ``poll()`` -> list of lines."""

    class _Reader:
        def __init__(self) -> None:
            self.fd = sys.stdin.fileno()
            os.set_blocking(self.fd, False)
            self.buf = b""
            self.eof = False

        def poll(self) -> list[str]:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                return []
            if not chunk:
                self.eof = True
                return []
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            return [ln.decode().strip() for ln in lines if ln.strip()]

    return _Reader()
