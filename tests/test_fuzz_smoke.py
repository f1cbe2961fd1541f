"""A small budget of the fuzz targets in fuzz/ (the big coverage-guided runs use atheris,
``python fuzz/run.py``; see docs/reliability.md): each target's TestOneInput over its seeds,
their byte mutations and random bytes, deterministic, no atheris needed. A target raising
means the decoder broke its contract (an unexpected exception or an uncounted drop)."""

from __future__ import annotations

import importlib
import random
import sys
import time
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
TARGETS = ("wire", "control", "dhcp", "stack", "capture")
INPUTS = 2000
SLOW = 1.0  # seconds: an input this slow is a hang


def target(name: str):
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    return importlib.import_module(f"fuzz_{name}")


def inputs(mod, n: int, rng: random.Random):
    seeds = list(getattr(mod, "SEEDS", [])) or [b""]
    yield from seeds
    for i in range(n):
        if i % 2:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 8)):
                op = rng.randrange(3)
                pos = rng.randint(0, len(data))
                if op == 0 and data:
                    data[min(pos, len(data) - 1)] = rng.randrange(256)
                elif op == 1:
                    data[pos:pos] = rng.randbytes(rng.randint(1, 8))
                else:
                    del data[pos:pos + rng.randint(1, 8)]
            yield bytes(data[:mod.MAX_LEN])
        else:
            yield rng.randbytes(rng.randint(0, min(mod.MAX_LEN, 600)))


@pytest.mark.parametrize("name", TARGETS)
def test_target_keeps_its_contract(name):
    mod = target(name)
    rng = random.Random(f"vnet-fuzz-{name}")
    slowest = 0.0
    for data in inputs(mod, INPUTS, rng):
        t0 = time.perf_counter()
        try:
            mod.TestOneInput(data)
        except BaseException as exc:
            raise AssertionError(f"fuzz_{name} failed on input {data!r}") from exc
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < SLOW, f"an input took {slowest:.2f} s"
