"""Helpers for the LAN integration tests: real switch and node processes over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from vnet.lan import Lan, poll_until

EXPERIMENTAL_ETHERTYPE = 0x88B5  # IEEE 802 local experimental: no stack handles it


def frame(dst: str, src: str, payload: bytes = b"vnet-test", ethertype: int = EXPERIMENTAL_ETHERTYPE, size: int = 60) -> bytes:
    """A raw Ethernet frame, padded to ``size`` bytes."""
    raw = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + ethertype.to_bytes(2, "big") + payload
    return raw.ljust(size, b"\0")


async def port_counters(lan: Lan) -> dict[str, dict]:
    """Switch per-port counters keyed by node name."""
    return {p["name"]: p["counters"] for p in await lan.switch.ports()}


async def fdb_macs(lan: Lan) -> dict[str, str]:
    """mac -> port name, from the switch's FDB."""
    return {e["mac"]: e["port"] for e in await lan.switch.fdb()}


async def stats64(node) -> dict:
    return (await node.link())["stats64"]


__all__ = ["frame", "port_counters", "fdb_macs", "stats64", "poll_until", "EXPERIMENTAL_ETHERTYPE", "pytest"]


async def eventually(pred, timeout: float = 10.0, what: str = "condition"):
    """Poll ``pred`` (sync or async) every 10 ms until it is truthy; AssertionError naming
    ``what`` after ``timeout`` s. Returns the truthy value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)  # poll interval, not a readiness assumption
