"""A LAN that cannot come up fails as a whole: a clear LanError, and no daemon left behind."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from vnet.lan import Lan, LanError


def processes_of(runtime_dir: str) -> list[int]:
    """The pids of live processes started for the LAN whose runtime directory is
    ``runtime_dir`` (in their command line, or in their environment as $VNET_RUNTIME_DIR)."""
    mark = runtime_dir.encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{what}", "rb") as fh:
                    if mark in fh.read():
                        pids.append(int(entry))
                        break
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return pids


class ThirdNodeMisconfigured(Lan):
    """A LAN whose third node is started with a bad option (``--mtu big``: a usage error)."""

    async def add_node(self, name=None, wait=True, extra_args=(), **kwargs):
        if self._next_index == 3:
            extra_args = [*extra_args, "--mtu", "big"]
        return await super().add_node(name, wait, extra_args, **kwargs)


async def test_a_node_that_cannot_start_stops_the_lan_and_its_siblings():
    runtime = tempfile.mkdtemp(prefix="vnet-fail-")
    try:
        lan = ThirdNodeMisconfigured(3, runtime_dir=runtime, start_timeout=20.0)
        with pytest.raises(LanError, match=r"node3 failed to start(.|\n)*argument --mtu: invalid int value"):
            await lan.start()
        assert lan._switch_proc is None and not lan._node_procs
        assert processes_of(runtime) == []
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


async def test_a_node_whose_control_socket_cannot_be_bound_fails_the_lan():
    runtime = tempfile.mkdtemp(prefix="vnet-fail-")
    try:
        os.mkdir(os.path.join(runtime, "node3.ctl"))  # a directory where node3's socket goes
        lan = Lan(3, runtime_dir=runtime, start_timeout=20.0)
        with pytest.raises(LanError, match=r"node3 failed to start(.|\n)*(Is a directory|exists and is not a socket)"):
            await lan.start()
        assert processes_of(runtime) == []
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


async def test_the_private_directory_of_a_killed_lan_is_removed_by_the_next(caplog):
    """A LAN killed with SIGKILL leaves its private runtime directory (vnet-lan-XXXX): the next
    LAN with a private directory stops what it left, removes it and says so, and removes an
    empty one long unused (a LAN killed before it started); a directory whose LAN still runs,
    and a fresh empty one, are left alone."""
    import json
    import logging
    import subprocess
    import sys

    from vnet.pidfile import proc_starttime

    # what a killed LAN leaves: its pidfile, a daemon still running, a socket file
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed = tempfile.mkdtemp(prefix="vnet-lan-")
    live = tempfile.mkdtemp(prefix="vnet-lan-")
    bare = tempfile.mkdtemp(prefix="vnet-lan-")
    stale = tempfile.mkdtemp(prefix="vnet-lan-")
    os.utime(stale, (0, 0))  # untouched since 1970
    try:
        sock = os.path.join(killed, "switch.data")
        open(sock, "w").close()
        with open(os.path.join(killed, "lan.pid"), "w") as fh:
            json.dump({"pid": dead.pid, "starttime": 1,
                       "children": {"switch": {"pid": daemon.pid, "starttime": proc_starttime(daemon.pid)}},
                       "sockets": [sock]}, fh)
        with open(os.path.join(live, "lan.pid"), "w") as fh:  # this test's process: it runs
            json.dump({"pid": os.getpid(), "starttime": proc_starttime(os.getpid()), "children": {},
                       "sockets": []}, fh)
        with caplog.at_level(logging.WARNING, logger="vnet.lan"):
            async with Lan(1):
                pass
        assert not os.path.exists(killed)
        assert daemon.wait(timeout=10) is not None
        assert os.path.isdir(live) and os.path.isdir(bare) and not os.path.exists(stale)
        assert any(f"removed {killed}" in r.getMessage() and "switch pid" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
    finally:
        daemon.kill()
        daemon.wait()
        for path in (killed, live, bare, stale):
            shutil.rmtree(path, ignore_errors=True)
