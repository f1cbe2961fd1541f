"""Fixtures for the kernel-stack tests: real TAPs in real network namespaces.

These need root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and /dev/net/tun; without them every test
here is skipped with the reason. Namespaces are named ``vt<pid>-<n>`` and removed at teardown
whatever the test did. Traffic stays inside the namespaces.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess

import pytest

from vnet.node.netns import netns_create, netns_exists, netns_remove


def kernel_stack_missing() -> str | None:
    """Why the kernel-stack tests cannot run here, or None."""
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (load the tun module, or pass the device to the container)"
    if os.geteuid() != 0:
        return "needs root: TAPs and network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip) as the oracle"
    return None


MISSING = kernel_stack_missing()

# Run a command as root without the capabilities a TAP and a namespace need: dropped from the
# bounding set, so the program runs without them while the interpreter stays readable.
NO_NET_CAPS = ["setpriv", "--bounding-set=-net_admin,-sys_admin", "--inh-caps=-net_admin,-sys_admin"]
needs_kernel = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture
def netns_factory():
    """``make() -> name``: a fresh network namespace with lo up, removed at teardown."""
    if MISSING:
        pytest.skip(MISSING)
    made: list[str] = []
    counter = itertools.count()

    def make() -> str:
        name = f"vt{os.getpid()}-{next(counter)}"
        if netns_exists(name):
            netns_remove(name)
        netns_create(name)
        made.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "pids", name], capture_output=True)
        netns_remove(name)


def ip_link_stats(netns: str | None, ifname: str = "vnet0") -> dict:
    """The kernel's counters for ``ifname``: `ip -s -j link show` (the oracle)."""
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-s", "-j", "link", "show", ifname]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=10).stdout
    return json.loads(out)[0]["stats64"]


def in_netns(netns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]
