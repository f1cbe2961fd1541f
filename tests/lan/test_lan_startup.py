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
