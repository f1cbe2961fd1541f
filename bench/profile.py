"""Profiles for the benchmark (``python3 -m bench --profile DIR``): py-spy samples the switch
and node processes while they carry traffic, and this module summarises what it wrote.

``start(pid, path, seconds)`` runs ``py-spy record --format raw`` (collapsed stacks, one
``frame;frame;... count`` line each) against a running process; ``summary(path)`` returns
the functions with the most samples, by self time and by inclusive time. Run it on a file
directly with ``python3 -m bench.profile FILE``. py-spy is installed with
``pip install py-spy``; without it (or without the right to ptrace) profiling is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from typing import Optional


def available() -> bool:
    return shutil.which("py-spy") is not None


def start(pid: int, path: str, seconds: float, rate: int = 250) -> Optional[subprocess.Popen]:
    if not available():
        return None
    return subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", str(rate), "--nonblocking",
                             "-d", str(max(1, int(round(seconds)))), "-o", path, "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(procs: list[Optional[subprocess.Popen]], timeout: float = 30.0) -> None:
    for p in procs:
        if p is None:
            continue
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _name(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    func, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{func} ({where})" if where else func


def summary(path: str, top: int = 15) -> dict:
    """{"samples": N, "self": [(name, pct)], "inclusive": [(name, pct)]} of a raw profile."""
    own: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    with open(path, errors="replace") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [_name(f) for f in stack.split(";")]
            own[frames[-1]] += n
            for name in set(frames):
                incl[name] += n
    pct = (lambda c: [(k, round(100.0 * v / total, 1)) for k, v in c.most_common(top)]) if total else (lambda c: [])
    return {"samples": total, "self": pct(own), "inclusive": pct(incl)}


def render(title: str, s: dict) -> str:
    lines = [f"{title}: {s['samples']} samples"]
    lines.append(f"  {'self %':>6}  function" + " " * 44 + f"{'incl %':>6}  function")
    rows = max(len(s["self"]), len(s["inclusive"]))
    for i in range(rows):
        a = s["self"][i] if i < len(s["self"]) else ("", "")
        b = s["inclusive"][i] if i < len(s["inclusive"]) else ("", "")
        lines.append(f"  {a[1]:>6}  {a[0][:50]:<50}  {b[1]:>6}  {b[0][:60]}")
    return "\n".join(lines)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(render(p, summary(p)))
