"""Who owns a LAN's runtime directory: its pidfile, and cleaning up after an owner that died.

A running embedded LAN keeps ``<runtime dir>/lan.pid``, a JSON map: its own pid, and each
daemon's pid and the sockets they bind. Processes are named by pid *and* start time (field 22
of /proc/PID/stat, as ``ps`` and systemd tell a recycled pid apart), so a pid reused by
another program is never signalled. The next LAN to start in the directory reads the file:

- its owner still runs: the directory is taken (an error saying by which pid);
- its owner is gone (``kill -9``, a crash): the daemons it left are stopped (SIGTERM, then
  SIGKILL after a grace period; SIGCONT too, for a frozen one), the socket files they left
  are removed, and the caller is told what was cleaned.

The daemons normally die with their LAN (PR_SET_PDEATHSIG, vnet/lan.py); this file is what
catches the rest: a daemon that was stopped (SIGSTOP) when its parent died, a platform
without prctl, a parent killed between fork and prctl.

A LAN (or lab) with a private runtime directory (``vnet-lan-XXXX`` in the temporary folder)
removes it when it closes; one killed with SIGKILL cannot. ``sweep_private_dirs`` is what the
next such LAN does first: every directory of that name of this user whose pidfile names an
owner that no longer runs is cleaned up as above and removed, and said so.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import tempfile
import time

from vnet.handles import LanError, poll_until

PIDFILE = "lan.pid"
EMPTY_AGE = 600.0  # seconds an empty private runtime directory is kept (sweep_private_dirs)


def proc_starttime(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it does not run (a zombie
    does not run). Linux only: elsewhere every pid reads as gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # a zombie: dead, waiting for its parent (or init) to reap it
        return None
    return int(fields[19])


def _running(pid: int, starttime: int | None) -> bool:
    return starttime is not None and proc_starttime(pid) == starttime


class LanPidfile:
    """``<runtime_dir>/lan.pid`` of the LAN in this process."""

    def __init__(self, runtime_dir: str) -> None:
        self.path = os.path.join(runtime_dir, PIDFILE)

    def write(self, children: dict[str, int], sockets: list[str]) -> None:
        """Record this process and its daemons (name -> pid); atomically, so a reader never
        sees half a file."""
        doc = {
            "pid": os.getpid(),
            "starttime": proc_starttime(os.getpid()),
            "children": {name: {"pid": pid, "starttime": proc_starttime(pid)} for name, pid in children.items()},
            "sockets": sockets,
        }
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def clean_leftovers(self, grace: float = 5.0) -> str | None:
        """Stop what an earlier LAN in this directory left running and remove its sockets.
        Returns what was done, as a sentence, or None if there was nothing to do. Raises
        LanError if that LAN still runs."""
        try:
            with open(self.path) as fh:
                doc = json.load(fh)
            owner = int(doc["pid"])
            children = [(name, int(c["pid"]), c.get("starttime")) for name, c in doc.get("children", {}).items()]
            sockets = [str(s) for s in doc.get("sockets", [])]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.remove()  # unreadable: nothing in it can be trusted to name a process
            return f"removed an unreadable {self.path} ({exc.__class__.__name__}: {exc})"
        if _running(owner, doc.get("starttime")):
            raise LanError(f"another vnet LAN (pid {owner}) runs with the runtime directory "
                           f"{os.path.dirname(self.path)}; stop it first, or give this one another "
                           f"directory (VNET_RUNTIME_DIR)")
        left = [(name, pid, start) for name, pid, start in children if _running(pid, start)]
        for sig in (signal.SIGTERM, signal.SIGCONT):  # SIGCONT: a stopped daemon takes its SIGTERM
            for _, pid, _ in left:
                _signal(pid, sig)
        try:
            await poll_until(lambda: _all_gone(left), "the leftover daemons to exit", timeout=grace, every=0.05)
        except TimeoutError:
            for _, pid, start in left:
                if _running(pid, start):
                    _signal(pid, signal.SIGKILL)
            await poll_until(lambda: _all_gone(left), "the leftover daemons to be killed", timeout=5.0, every=0.05)
        removed = 0
        for path in sockets:
            try:
                os.unlink(path)
                removed += 1
            except OSError:
                pass
        self.remove()
        if not left and not removed:
            return None
        what = f"cleaned up {len(left)} process{'es' if len(left) != 1 else ''}"
        if left:
            what += f" ({', '.join(f'{name} pid {pid}' for name, pid, _ in left)})"
        if removed:
            what += f" and {removed} socket file{'s' if removed != 1 else ''}"
        return f"{what} left by an earlier vnet lan up (pid {owner})"


async def sweep_private_dirs(prefix: str, keep: str | None = None) -> list[str]:
    """Remove the private runtime directories (``<tmp>/<prefix>*``, this user's) of LANs that
    died without removing theirs: each whose pidfile names an owner that no longer runs has
    what it left stopped (``clean_leftovers``) and is deleted, and so is an empty one untouched
    for ``EMPTY_AGE`` seconds (a LAN killed before it started: a LAN makes its directory again
    when it starts). Left alone: ``keep`` (the caller's own), any whose owner runs, and any
    other without a pidfile. Returns a sentence per directory."""
    said = []
    for path in sorted(glob.glob(os.path.join(tempfile.gettempdir(), prefix + "*"))):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if path == keep or not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.getuid():
            continue
        if not os.path.exists(os.path.join(path, PIDFILE)):
            if not os.listdir(path) and time.time() - st.st_mtime > EMPTY_AGE:
                shutil.rmtree(path, ignore_errors=True)
                said.append(f"removed {path}, the empty runtime directory of a vnet LAN that never started")
            continue
        try:
            cleaned = await LanPidfile(path).clean_leftovers()
        except LanError:
            continue  # its LAN runs
        shutil.rmtree(path, ignore_errors=True)
        said.append(f"removed {path}, the runtime directory of a vnet LAN that was killed"
                    + (f" ({cleaned})" if cleaned else ""))
    return said


async def _all_gone(procs: list[tuple[str, int, int | None]]) -> bool:
    return not any(_running(pid, start) for _, pid, start in procs)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
