"""The TAP character device: the kernel's own stack reached through /dev/net/tun.

The educational driver this project grew from lists "a userspace backend reached through a
character device" as its next phase; this is that backend turned around: the Linux kernel's
network stack (any program: ping, iperf3, a DHCP server) sits on top of vnet's driver model,
and this module is its file descriptor. ``TapEdge`` (node/tapedge.py) wires it onto vnet0.

- ``tap_create(TapConfig)`` opens /dev/net/tun, TUNSETIFF with IFF_TAP | IFF_NO_PI |
  IFF_TUN_EXCL (a name that exists is refused, never attached to), non-blocking, inside the
  node's network namespace if one is named (``netns_entered``: only around the ioctl and the
  rtnetlink configuration; the fd keeps working from the caller's namespace), then sets the
  MAC, MTU and addresses and brings it (and a fresh namespace's lo) up over rtnetlink
  (pyroute2). Every failure closes the fd, which removes the interface (it is not
  persistent): nothing is left half-made. It uses pyroute2's blocking API, so call it from a
  thread without a running event loop; so is ``tap_kernel_view``, the kernel's own account
  of the interface (addresses, neighbours, stats64).
- ``TapDevice`` is the thin I/O shell: ``read_batch`` reads frames until EAGAIN (or a
  budget), ``write`` writes one frame, ``set_carrier`` is TUNSETCARRIER; each outcome has a
  named counter (``TapStats``).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from .netns import NetnsError, netns_entered

log = logging.getLogger(__name__)

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
TUNSETCARRIER = 0x400454E2  # _IOW('T', 226, int)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_TUN_EXCL = 0x8000
IFNAMSIZ = 16
IFREQ_SIZE = 40
TAP_READ_BUDGET = 256  # frames read per readable event; the reader fires again if more wait
TAP_READ_SIZE = 65536  # a read takes one whole frame; bigger than any MTU we allow


class TapError(Exception):
    """The TAP could not be made or configured; the message says what to do."""


@dataclass
class TapConfig:
    """What the kernel's vnet0 is: its name, namespace, MAC, MTU and addresses."""

    name: str = "vnet0"
    netns: str | None = None
    mac: bytes | None = None
    mtu: int = 1500
    addresses: list[str] = field(default_factory=list)

    def where(self) -> str:
        return f"network namespace {self.netns}" if self.netns else "this network namespace"


@dataclass
class TapStats:
    """The TAP edge's counters, as ``ethtool -S`` shows them on the model's vnet0."""

    tap_read_frames: int = 0  # frames the kernel sent (read from the TAP)
    tap_read_bytes: int = 0
    tap_read_errors: int = 0
    tap_tx_oversize: int = 0  # read, longer than the model's MTU + header (+4 tagged): dropped
    tap_tx_runts: int = 0  # read, shorter than an Ethernet header: dropped
    tap_write_frames: int = 0  # frames written to the TAP (the kernel received them)
    tap_write_bytes: int = 0
    tap_write_errors: int = 0  # write() failed (EAGAIN, EIO, ...): the frame is lost
    tap_short_writes: int = 0  # write() took less than the frame: the frame is lost


class TapDevice:
    """An open TAP file descriptor (``struct tun_file``'s user side), non-blocking."""

    def __init__(self, fd: int, config: TapConfig) -> None:
        self.fd = fd
        self.config = config
        self.name = config.name
        self.stats = TapStats()
        self.eof = False  # read() returned nothing: nothing more will come

    def read_batch(self, budget: int = TAP_READ_BUDGET) -> list[bytes]:
        """Frames the kernel sent, until EAGAIN or ``budget`` frames."""
        frames: list[bytes] = []
        st = self.stats
        fd = self.fd
        while len(frames) < budget:
            try:
                frame = os.read(fd, TAP_READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                st.tap_read_errors += 1
                log.warning("%s: read from the TAP failed: %s", self.name, exc)
                break
            if not frame:  # a TAP never ends; a closed peer (a test's socket pair) does
                st.tap_read_errors += 1
                self.eof = True
                break
            st.tap_read_frames += 1
            st.tap_read_bytes += len(frame)
            frames.append(frame)
        return frames

    def write(self, frame: bytes | memoryview) -> bool:
        """Hand one frame to the kernel; False (and a counter) if it did not take it whole."""
        st = self.stats
        try:
            n = os.write(self.fd, frame)
        except OSError:
            st.tap_write_errors += 1
            return False
        if n != len(frame):
            st.tap_short_writes += 1
            return False
        st.tap_write_frames += 1
        st.tap_write_bytes += n
        return True

    def set_carrier(self, on: bool) -> None:
        """The kernel's carrier on this TAP (TUNSETCARRIER): what `ip link` shows as NO-CARRIER."""
        try:
            fcntl.ioctl(self.fd, TUNSETCARRIER, struct.pack("i", 1 if on else 0))
        except OSError as exc:  # kernels before 4.19 lack it: the kernel then always has carrier
            log.debug("%s: TUNSETCARRIER: %s", self.name, exc)

    def close(self) -> None:
        """Close the fd: the kernel removes the interface (it is not persistent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def counters(self) -> dict[str, int]:
        return asdict(self.stats)


def tap_create(config: TapConfig) -> TapDevice:
    """Make and configure the TAP (see the module docstring); TapError saying what to do."""
    name = config.name
    if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or " " in name:
        raise TapError(f"interface name {name!r}: use 1 to {IFNAMSIZ - 1} characters without '/' or spaces")
    for cidr in config.addresses:
        try:
            ipaddress.IPv4Interface(cidr)
        except ValueError as exc:
            raise TapError(f"address {cidr!r}: {exc}; expected A.B.C.D/PREFIX") from None
    try:
        with netns_entered(config.netns):
            return _tap_create_here(config)
    except NetnsError as exc:
        raise TapError(str(exc)) from None


def _tap_create_here(config: TapConfig) -> TapDevice:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    name = config.name
    try:
        ipr = IPRoute()
    except OSError as exc:
        raise TapError(f"cannot open an rtnetlink socket in {config.where()}: {exc}") from None
    try:
        if ipr.link_lookup(ifname=name):
            raise TapError(f"interface {name} already exists in {config.where()}: another node uses it, "
                           f"or an earlier run left it; remove it (ip link del {name}) or pick another name")
        lo = ipr.link_lookup(ifname="lo")
        if config.netns and lo:
            ipr.link("set", index=lo[0], state="up")  # a fresh namespace's loopback starts down
        fd = _tun_open(config)
        try:
            try:
                index = ipr.link_lookup(ifname=name)[0]
                settings: dict[str, Any] = {"mtu": config.mtu}
                if config.mac is not None:
                    settings["address"] = ":".join(f"{b:02x}" for b in config.mac)
                ipr.link("set", index=index, **settings)
                for cidr in config.addresses:
                    iface = ipaddress.IPv4Interface(cidr)
                    ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                             broadcast=str(iface.network.broadcast_address))
                ipr.link("set", index=index, state="up")
            except (NetlinkError, OSError, IndexError) as exc:
                raise TapError(f"cannot configure {name} in {config.where()}: {exc}") from None
        except BaseException:
            os.close(fd)  # the interface goes with it: nothing half-made stays behind
            raise
        return TapDevice(fd, config)
    finally:
        ipr.close()


def _tun_open(config: TapConfig) -> int:
    name = config.name
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TapError(f"no {TUN_PATH}: load the tun module (modprobe tun), or in a container pass the "
                       f"device (docker run --device /dev/net/tun, compose `devices: [/dev/net/tun]`)") from None
    except PermissionError:
        raise TapError(f"cannot open {TUN_PATH}: permission denied; run as root or give the process "
                       f"access to the device and CAP_NET_ADMIN") from None
    ifr = struct.pack(f"{IFNAMSIZ}sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL).ljust(IFREQ_SIZE, b"\0")
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EPERM:
            raise TapError(f"cannot create TAP {name}: the process lacks CAP_NET_ADMIN; run as root, or give "
                           f"it the capability (docker: --cap-add NET_ADMIN)") from None
        if exc.errno in (errno.EBUSY, errno.EEXIST, errno.EINVAL):
            raise TapError(f"cannot create TAP {name}: an interface of that name already exists in "
                           f"{config.where()}; remove it (ip link del {name}) or pick another name") from None
        raise TapError(f"cannot create TAP {name}: {exc}") from None
    return fd


def tap_set_link(config: TapConfig, *, mtu: int | None = None, mac: bytes | None = None) -> None:
    """``ip link set vnet0 mtu M address A`` in the TAP's namespace: keeps the kernel's vnet0
    in step with the model's when either changes there. Blocking (pyroute2): call it from a
    thread. TapError if rtnetlink refuses."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    settings: dict[str, Any] = {}
    if mtu is not None:
        settings["mtu"] = mtu
    if mac is not None:
        settings["address"] = ":".join(f"{b:02x}" for b in mac)
    if not settings:
        return
    try:
        with netns_entered(config.netns):
            ipr = IPRoute()
            try:
                index = ipr.link_lookup(ifname=config.name)
                if not index:
                    raise TapError(f"interface {config.name} is gone from {config.where()}")
                ipr.link("set", index=index[0], **settings)
            finally:
                ipr.close()
    except NetnsError as exc:
        raise TapError(str(exc)) from None
    except NetlinkError as exc:
        raise TapError(f"cannot set {', '.join(settings)} of {config.name} in {config.where()}: {exc}") from None


NUD_STATES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
              0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT", 0x00: "NONE"}


def tap_kernel_view(config: TapConfig) -> dict:
    """What the kernel says about its vnet0 (rtnetlink, in the TAP's namespace): the IPv4
    addresses as the vnet stack reports its own, the neighbours, the link's stats64,
    operstate and MTU. Blocking (pyroute2): call it from a thread. TapError if it is gone."""
    from pyroute2 import IPRoute

    try:
        with netns_entered(config.netns):
            return _kernel_view_here(config, IPRoute)
    except NetnsError as exc:
        raise TapError(str(exc)) from None


def _kernel_view_here(config: TapConfig, IPRoute) -> dict:
    ipr = IPRoute()
    try:
        links = ipr.get_links(ifname=config.name)
        if not links:
            raise TapError(f"interface {config.name} is gone from {config.where()}")
        link = links[0]
        index = link["index"]
        addresses = [{"address": a.get_attr("IFA_ADDRESS"), "prefixlen": a["prefixlen"], "state": "ok",
                      "broadcast": a.get_attr("IFA_BROADCAST")}
                     for a in ipr.get_addr(index=index, family=2)]
        neigh = [{"ip": n.get_attr("NDA_DST"), "mac": n.get_attr("NDA_LLADDR"),
                  "state": NUD_STATES.get(n["state"], hex(n["state"]))}
                 for n in ipr.get_neighbours(ifindex=index, family=2)]
        return {"name": config.name, "netns": config.netns, "index": index, "mtu": link.get_attr("IFLA_MTU"),
                "operstate": link.get_attr("IFLA_OPERSTATE"), "address": link.get_attr("IFLA_ADDRESS"),
                "addresses": addresses, "neigh": neigh, "stats64": dict(link.get_attr("IFLA_STATS64") or {})}
    finally:
        ipr.close()
