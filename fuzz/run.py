"""Run one fuzz target coverage-guided with atheris (libFuzzer), one process.

    python fuzz/run.py --target wire --runs 250000 [--max-len N] [--timeout S]

The corpus lives in fuzz/corpus/<target>/ (not in git; seeded from the target's SEEDS),
crashes and hangs are written to fuzz/artifacts/<target>/. The last line is a summary:
inputs, seconds, inputs/s, coverage (libFuzzer's cov/ft), crashes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("wire", "control", "dhcp", "stack", "capture")


def child(target: str, argv: list[str]) -> None:
    import atheris

    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=["vnet"]):
        mod = __import__(f"fuzz_{target}")
    atheris.Setup([sys.argv[0], *argv], mod.TestOneInput)
    atheris.Fuzz()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=TARGETS, required=True)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--max-len", type=int, default=None)
    ap.add_argument("--timeout", type=int, default=5, help="seconds per input: a hang")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.child:
        child(args.target, rest)
        return 0
    sys.path.insert(0, str(HERE))
    mod = __import__(f"fuzz_{args.target}")
    corpus = HERE / "corpus" / args.target
    artifacts = HERE / "artifacts" / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    for seed in getattr(mod, "SEEDS", []):
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    max_len = args.max_len or getattr(mod, "MAX_LEN", 4096)
    cmd = [sys.executable, __file__, "--child", "--target", args.target,
           f"-runs={args.runs}", f"-max_len={max_len}", f"-timeout={args.timeout}",
           f"-seed={args.seed}", f"-artifact_prefix={artifacts}/", "-print_final_stats=1",
           "-rss_limit_mb=2048", *rest, str(corpus)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, errors="replace")
    cov = ft = "?"
    done = None
    crashed = []
    for line in proc.stderr:
        sys.stderr.write(line)
        if m := re.search(r"cov: (\d+) ft: (\d+)", line):
            cov, ft = m.groups()
        if m := re.match(r"Done (\d+) runs in (\d+) second", line):
            done = int(m.group(1))
        if m := re.search(r"Test unit written to (\S+)", line):
            crashed.append(m.group(1))
    rc = proc.wait()
    secs = time.monotonic() - t0
    runs = done if done is not None else args.runs if rc == 0 else "?"
    rate = f"{runs / secs:.0f}" if isinstance(runs, int) else "?"
    print(f"fuzz {args.target}: {runs} inputs in {secs:.0f} s ({rate}/s), cov {cov} ft {ft}, "
          f"corpus {len(os.listdir(corpus))}, crashes {len(crashed)}"
          + "".join(f"\n  {c}" for c in crashed) + f", exit {rc}", flush=True)
    return 0 if rc == 0 and not crashed else 1


if __name__ == "__main__":
    sys.exit(main())
