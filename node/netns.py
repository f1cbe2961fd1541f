"""Named network namespaces (``ip netns``): create, remove, list, and enter one for the
calling thread only.

A namespace named NAME is a bind mount of a namespace file on ``/run/netns/NAME``, as
iproute2 makes it, so ``ip netns exec NAME ...`` and this module see the same ones.
``netns_entered(name)`` switches only the calling thread (setns(2) with CLONE_NEWNET acts on
the thread): sockets and devices made inside the block belong to the namespace and keep
working after the thread switches back. The node daemon uses it to create its TAP in the
node's namespace while its ZeroMQ sockets stay in the namespace it started in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from contextlib import contextmanager
from typing import Iterator

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000


class NetnsError(Exception):
    """A namespace could not be created, entered or removed; the message says what to do."""


def netns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def netns_list() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def netns_pids(name: str) -> list[int]:
    """``ip netns pids NAME``: the processes whose network namespace is NAME."""
    try:
        target = os.stat(netns_path(name))
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry))
    return pids


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or len(name) > 64:
        raise NetnsError(f"network namespace name {name!r}: use up to 64 letters, digits, '-', '_' or '.'")


def _privilege_hint() -> str:
    return "run as root or give the process CAP_SYS_ADMIN and CAP_NET_ADMIN"


def netns_create(name: str) -> None:
    """``ip netns add NAME``; NetnsError if it exists or cannot be made."""
    _check_name(name)
    if netns_exists(name):
        raise NetnsError(f"network namespace {name} already exists: pick another name or remove it "
                         f"(ip netns del {name})")
    from pyroute2 import netns as pr_netns

    try:
        pr_netns.create(name)
    except OSError as exc:
        _cleanup_mountpoint(name)
        if exc.errno == errno.EPERM:
            raise NetnsError(f"cannot create network namespace {name}: permission denied; "
                             f"{_privilege_hint()}") from None
        raise NetnsError(f"cannot create network namespace {name}: {exc}") from None
    if not netns_exists(name):
        raise NetnsError(f"cannot create network namespace {name}: {_privilege_hint()}")


def _cleanup_mountpoint(name: str) -> None:
    try:
        os.unlink(netns_path(name))
    except OSError:
        pass


def netns_remove(name: str) -> bool:
    """``ip netns del NAME``: unmount and unlink; False if it did not exist. Processes still
    inside keep the namespace alive until they exit, as with iproute2."""
    _check_name(name)
    if not netns_exists(name):
        return False
    libc = _libc()
    path = netns_path(name).encode()
    if libc.umount2(path, 2) != 0:  # MNT_DETACH
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (half-made)
            raise NetnsError(f"cannot remove network namespace {name}: {os.strerror(err)}; "
                             f"{_privilege_hint()}")
    try:
        os.unlink(netns_path(name))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise NetnsError(f"cannot remove network namespace {name}: {exc}") from None
    return True


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            raise NetnsError(f"cannot enter a network namespace: permission denied; {_privilege_hint()}")
        raise NetnsError(f"cannot enter a network namespace: {os.strerror(err)}")


@contextmanager
def netns_entered(name: str | None) -> Iterator[None]:
    """Run the block with the calling thread in namespace ``name`` (None: stay where it is),
    then switch the thread back, even if the block raised."""
    if name is None:
        yield
        return
    _check_name(name)
    try:
        target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(f"no network namespace {name}: create it (ip netns add {name}) "
                         f"or leave out the namespace option") from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(target)
        raise
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
