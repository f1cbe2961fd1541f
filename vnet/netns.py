"""The network namespaces a LAN makes for its kernel-stack nodes, and the cleanup of those a
LAN killed with SIGKILL left behind.

Each kernel-stack node of LAN ``L`` lives in namespace ``vnet-L-NODE`` (``ip netns``
names: no 15-character limit, but short is kind to `ip netns list`). Namespaces outlive the
process that made them, so every one has an owner file, ``OWNER_DIR/NAME.json``, written
*before* the namespace is made and removed *after* it is gone: ``{"pid", "start", "lan",
"members"}``, where ``start`` is the owner's start time from /proc (a recycled pid does not
pass for the owner) and ``members`` the node daemons that work in it. At the next start,
``remove_leftovers()`` takes every owner file whose owner is gone: it stops the members and
the processes still inside, removes the namespace and says so ("removed leftover namespace
vnet-demo-node1 from an earlier run"). Namespaces without an owner file are not ours and
are never touched.
"""

from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import dataclass, field
from typing import Callable

from vnet.node.netns import NetnsError, netns_create, netns_exists, netns_pids, netns_remove

OWNER_DIR = "/run/vnet/netns"
NETNS_PREFIX = "vnet-"
_NAME_OK = re.compile(r"^[A-Za-z0-9_.-]+$")


def lan_netns_name(lan: str, node: str) -> str:
    """The namespace of ``node`` on LAN ``lan``: ``vnet-LAN-NODE``."""
    for what, text in (("LAN name", lan), ("node name", node)):
        if not _NAME_OK.match(text):
            raise ValueError(f"{what} {text!r}: use letters, digits, '-', '_' or '.' for a namespace name")
    name = f"{NETNS_PREFIX}{lan}-{node}"
    if len(name) > 64:
        raise ValueError(f"namespace name {name!r} is longer than 64 characters: use a shorter LAN or node name")
    return name


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None
    if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, start: int | None) -> bool:
    return start is not None and process_start_time(pid) == start


@dataclass
class OwnerRecord:
    """Who made a namespace and who works in it (the contents of an owner file)."""

    netns: str
    pid: int
    start: int | None
    lan: str
    members: list[list[int]] = field(default_factory=list)  # [pid, start] of node daemons

    def to_json(self) -> str:
        return json.dumps({"netns": self.netns, "pid": self.pid, "start": self.start, "lan": self.lan,
                           "members": self.members})

    @classmethod
    def from_json(cls, text: str) -> "OwnerRecord":
        d = json.loads(text)
        return cls(str(d["netns"]), int(d["pid"]), d.get("start"), str(d.get("lan", "")),
                   [list(map(int, m)) for m in d.get("members", [])])


class LanNamespaces:
    """The namespaces one LAN owns: create per node, record the node daemons, remove all."""

    def __init__(self, lan: str, owner_dir: str = OWNER_DIR) -> None:
        self.lan = lan
        self.owner_dir = owner_dir
        self.names: list[str] = []

    def _owner_path(self, name: str) -> str:
        return os.path.join(self.owner_dir, f"{name}.json")

    def create(self, node: str) -> str:
        """Make ``vnet-LAN-NODE`` (owner file first) and return its name. NetnsError if it
        exists: a live LAN of the same name owns it, or it is not ours."""
        name = lan_netns_name(self.lan, node)
        if netns_exists(name):
            raise NetnsError(f"network namespace {name} already exists: another LAN named {self.lan!r} is running, "
                             f"or it is not vnet's; pick another LAN name or remove it (ip netns del {name})")
        os.makedirs(self.owner_dir, mode=0o700, exist_ok=True)
        me = os.getpid()
        record = OwnerRecord(name, me, process_start_time(me), self.lan)
        _write_atomic(self._owner_path(name), record.to_json())
        try:
            netns_create(name)
        except BaseException:
            _unlink(self._owner_path(name))
            raise
        self.names.append(name)
        return name

    def add_member(self, name: str, pid: int) -> None:
        """Record a node daemon working in ``name`` (stopped if the LAN dies unannounced)."""
        path = self._owner_path(name)
        with open(path) as fh:
            record = OwnerRecord.from_json(fh.read())
        record.members.append([pid, process_start_time(pid) or 0])
        _write_atomic(path, record.to_json())

    def remove(self, name: str) -> None:
        """Stop what still runs inside, remove the namespace, then its owner file."""
        _stop_pids(netns_pids(name))
        netns_remove(name)
        _unlink(self._owner_path(name))
        if name in self.names:
            self.names.remove(name)

    def remove_all(self) -> list[str]:
        """Remove every namespace this LAN made; returns the names of those that failed."""
        failed = []
        for name in list(self.names):
            try:
                self.remove(name)
            except (NetnsError, OSError):
                failed.append(name)
        return failed


def remove_leftovers(owner_dir: str = OWNER_DIR, say: Callable[[str], None] | None = None) -> list[str]:
    """Remove the namespaces whose owner is gone (a LAN killed with SIGKILL), stopping their
    node daemons and anything still running inside; report each with ``say``."""
    removed = []
    try:
        entries = sorted(os.listdir(owner_dir))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.endswith(".json"):
            continue
        path = os.path.join(owner_dir, entry)
        try:
            with open(path) as fh:
                record = OwnerRecord.from_json(fh.read())
        except (OSError, ValueError, KeyError, TypeError):
            record = None
        if record is not None and _alive(record.pid, record.start):
            continue
        name = record.netns if record is not None else entry[:-len(".json")]
        if record is not None:
            _stop_pids([pid for pid, start in record.members if _alive(pid, start)])
        existed = netns_exists(name)
        if existed:
            _stop_pids(netns_pids(name))
            netns_remove(name)
        _unlink(path)
        if existed:
            removed.append(name)
            if say is not None:
                say(f"removed leftover namespace {name} from an earlier run")
    return removed


def _stop_pids(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL what is still there after ``grace`` seconds (polled)."""
    import time

    me = os.getpid()
    pids = [p for p in pids if p != me]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _exists(p)]
        if pids:
            time.sleep(0.01)  # polling for exit with a deadline, not a readiness guess
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours has exited: it only waits to be reaped
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
