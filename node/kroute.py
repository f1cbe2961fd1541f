"""The kernel's IPv4 routing for a kernel-stack node: static routes over rtnetlink and the
forwarding sysctls, in the node's network namespace.

- ``kernel_routes_add(netns, routes)``: ``ip route add DST via GW`` for each (DST, GW), the
  default route as 0.0.0.0/0 (``--gateway``). The routes go with the node's interfaces: a
  route through a TAP is removed with it, so nothing outlives the node.
- ``kernel_forwarding_set(netns, devices)``: ``net.ipv4.ip_forward=1`` and
  ``conf.all.forwarding=1`` (a router), and ``send_redirects=0`` on all, default and each of
  ``devices`` (the kernel ORs all with the device's): a router whose two segments share no
  shortcut must not teach hosts one, so the path a test measures is the routed one.
  Returns the values it replaced; ``kernel_sysctls_restore`` puts them back (the daemon does,
  at exit, for a namespace it did not make).

All blocking (pyroute2, /proc/sys): call them from a thread. /proc/sys/net is the namespace
of the thread that opens it, so each runs inside ``netns_entered``. Failures are KernelRouteError
with a sentence saying what to fix.
"""

from __future__ import annotations

import ipaddress

from .netns import NetnsError, netns_entered

SYSCTL_ROOT = "/proc/sys/net/ipv4"


class KernelRouteError(Exception):
    """A route or sysctl the kernel refused; the message says what to fix."""


def kernel_routes_add(netns: str | None, routes: list[tuple[str, str]]) -> None:
    """Add each (destination CIDR, gateway) to the main table of ``netns``."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    where = f"namespace {netns}" if netns else "this namespace"
    try:
        with netns_entered(netns):
            ipr = IPRoute()
            try:
                for dst, gw in routes:
                    net = ipaddress.IPv4Network(dst)
                    try:
                        ipr.route("add", dst=str(net.network_address), dst_len=net.prefixlen, gateway=gw)
                    except NetlinkError as exc:
                        hint = ("the gateway must be on one of the node's networks (give the NIC an address "
                                "in its subnet)" if exc.code in (101, 22) else "is the route there already?")
                        raise KernelRouteError(f"cannot add route {dst} via {gw} in {where}: {exc}; "
                                               f"{hint}") from None
            finally:
                ipr.close()
    except NetnsError as exc:
        raise KernelRouteError(str(exc)) from None


def _sysctl_paths(devices: list[str]) -> dict[str, str]:
    paths = {"ip_forward": "1", "conf/all/forwarding": "1", "conf/all/send_redirects": "0",
             "conf/default/send_redirects": "0"}
    for dev in devices:
        paths[f"conf/{dev}/send_redirects"] = "0"
    return paths


def _write_sysctls(netns: str | None, values: dict[str, str]) -> dict[str, str]:
    """Write each value; return what was there before."""
    previous: dict[str, str] = {}
    try:
        with netns_entered(netns):
            for path, value in values.items():
                full = f"{SYSCTL_ROOT}/{path}"
                try:
                    with open(full) as fh:
                        previous[path] = fh.read().strip()
                    with open(full, "w") as fh:
                        fh.write(value)
                except OSError as exc:
                    raise KernelRouteError(f"cannot set {full.replace('/proc/sys/', '').replace('/', '.')}="
                                           f"{value}: {exc.strerror}; run as root (CAP_NET_ADMIN)") from None
    except NetnsError as exc:
        raise KernelRouteError(str(exc)) from None
    return previous


def kernel_forwarding_set(netns: str | None, devices: list[str]) -> dict[str, str]:
    """IPv4 forwarding on, ICMP redirects off (see the module docstring); the old values."""
    return _write_sysctls(netns, _sysctl_paths(devices))


def kernel_sysctls_restore(netns: str | None, previous: dict[str, str]) -> None:
    """Put back what ``kernel_forwarding_set`` replaced (a device already gone is skipped)."""
    from pathlib import Path

    try:
        with netns_entered(netns):
            for path, value in previous.items():
                full = Path(SYSCTL_ROOT, path)
                if full.exists():
                    full.write_text(value)
    except (NetnsError, OSError) as exc:
        raise KernelRouteError(f"cannot restore the forwarding sysctls: {exc}") from None
