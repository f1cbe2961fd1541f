"""A node's configuration: what it is (name, addresses, MAC, NIC settings) and where its switch
is. A frozen value, checked when it is made: a bad setting is a ValueError naming the setting and
what would be accepted (the ``vnet node`` command's exit code 2), never a daemon that starts and
then fails."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from vnet.node.stack.dhcp import DhcpPool
from vnet.node.stack.ether import parse_mac
from vnet.node.vnic import VNIC_RING_MAX
from vnet.proto import auth
from vnet.proto.httpserve import parse_listen
from vnet.proto.wire import DEFAULT_DATA_PORT

# sizeof(sockaddr_un.sun_path) is 108 on Linux, one of them the terminating NUL: an ipc://
# endpoint's path is at most this long (ZeroMQ's IPC_PATH_MAX_LEN).
IPC_PATH_MAX = 107


@dataclass(frozen=True)
class NodeConfig:
    """What a node is: its name, where the switch is, its addresses and NIC settings."""

    name: str
    switch: str = f"tcp://127.0.0.1:{DEFAULT_DATA_PORT}"
    addresses: tuple[str, ...] = ()
    control: str | None = None
    mac: str | None = None
    mtu: int = 1500
    tx_ring_size: int = 256
    rx_ring_size: int = 256
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 3.0
    dhcp: bool = False
    dhcp_server: str | None = None
    lease_file: str | None = None
    lease_time: float = 3600.0
    curve_secret: str | None = None  # this node's key pair (.key_secret): CURVE to the switch
    curve_server_key: str | None = None  # the LAN's public key (the switch's .key)
    stack: str = "vnet"  # the upper layer on vnet0: vnet's own stack, or the kernel's through a TAP
    netns: str | None = None  # kernel stack: the network namespace of its vnet0 (None: the daemon's own)
    metrics: str | None = None  # the Prometheus endpoint, HOST:PORT (`vnet node` default 127.0.0.1:0); None: none
    gateway: str | None = None  # the default route's gateway (--gateway)
    routes: tuple[tuple[str, str], ...] = ()  # static routes (CIDR, gateway) (--route CIDR=GW)
    forwarding: bool = False  # net.ipv4.ip_forward (--forwarding)

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", tuple(self.addresses))
        object.__setattr__(self, "routes", tuple(tuple(r) for r in self.routes))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the setting and what would be accepted."""
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"node name {self.name!r}: use letters, digits, '-', '_' or '.'")
        if not self.switch.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"switch endpoint {self.switch!r}: expected tcp://HOST:PORT")
        if self.control is not None and not auth.is_loopback_or_local(self.control):
            raise ValueError(f"control endpoint {self.control!r}: a node's control socket is for its own host or "
                             f"container; use ipc://PATH (the default) or tcp://127.0.0.1:PORT")
        if (self.curve_secret is None) != (self.curve_server_key is None):
            raise ValueError("CURVE needs both curve_secret (this node's .key_secret) and curve_server_key "
                             "(the switch's .key); `vnet keygen DIR NODE...` writes both")
        if self.curve_secret is not None:
            self.curve()
        for what, endpoint in (("switch endpoint", self.switch), ("control endpoint", self.control)):
            check_ipc_path(what, endpoint)
        seen: dict[ipaddress.IPv4Address, str] = {}
        for cidr in self.addresses:
            iface = _host_address(cidr)
            if iface.ip in seen:  # the stack refuses a second one (AddrTable.add)
                raise ValueError(f"address {cidr!r}: {iface.ip} is already given ({seen[iface.ip]}); "
                                 f"give each address once")
            seen[iface.ip] = cidr
        if self.mac is not None:
            mac = parse_mac(self.mac)
            if mac[0] & 1 or mac == bytes(6):
                raise ValueError(f"mac {self.mac}: a NIC's address must be unicast and not all zeros "
                                 f"(clear the low bit of the first byte, e.g. 02:00:00:00:00:01)")
        if not 0 < self.heartbeat_interval < self.heartbeat_timeout:
            raise ValueError(f"heartbeat: need 0 < interval < timeout (typically 3 intervals), got interval "
                             f"{self.heartbeat_interval:g} s and timeout {self.heartbeat_timeout:g} s")
        for ring, size in (("tx ring", self.tx_ring_size), ("rx ring", self.rx_ring_size)):
            if not 1 <= size <= VNIC_RING_MAX:
                raise ValueError(f"{ring} size {size}: must be between 1 and {VNIC_RING_MAX} descriptors")
        if not 68 <= self.mtu <= 9000:
            raise ValueError(f"mtu {self.mtu}: must be between 68 and 9000")
        if self.dhcp_server is not None:
            if not self.addresses:
                raise ValueError("dhcp server: the node needs a static address (--address) to serve from")
            first, last = self.dhcp_pool()
            iface = ipaddress.IPv4Interface(self.addresses[0])
            DhcpPool.check(str(iface.ip), iface.network.prefixlen, str(first), str(last))
        if self.lease_time < 10:
            raise ValueError(f"lease time {self.lease_time:g} s: must be at least 10 s")
        if self.stack not in ("vnet", "kernel"):
            raise ValueError(f"stack {self.stack!r}: use vnet (vnet's own, the default) or kernel (a TAP)")
        if self.stack == "vnet" and self.netns is not None:
            raise ValueError("netns: only a kernel-stack node has a namespace (add --stack kernel)")
        if self.stack == "kernel" and (self.dhcp or self.dhcp_server):
            raise ValueError("dhcp: a kernel-stack node runs the system's DHCP programs in its namespace "
                             "(udhcpc, dnsmasq: `vnet --node NAME exec -- ...`), not vnet's")
        if self.metrics is not None:
            parse_listen(self.metrics)
        self._check_routes()
        if self.netns is not None and (not self.netns or "/" in self.netns or len(self.netns) > 64):
            raise ValueError(f"netns {self.netns!r}: a namespace name of up to 64 characters without '/'")

    def _check_routes(self) -> None:
        gateways = [("gateway", self.gateway)] if self.gateway is not None else []
        for route in self.routes:
            if len(route) != 2:
                raise ValueError(f"route {route!r}: give CIDR=GATEWAY, e.g. 10.0.2.0/24=10.0.1.1")
            cidr, gw = route
            try:
                ipaddress.IPv4Network(cidr)
            except ValueError as exc:
                raise ValueError(f"route {cidr}={gw}: {exc}; give the network, e.g. 10.0.2.0/24") from None
            gateways.append((f"route {cidr}={gw}", gw))
        for what, gw in gateways:
            try:
                ip = ipaddress.IPv4Address(gw)
            except ValueError:
                raise ValueError(f"{what}: {gw!r} is not an IPv4 address") from None
            if self.stack == "kernel":
                raise ValueError(f"{what}: a kernel-stack node's routes are the kernel's "
                                 f"(`vnet --node {self.name} exec -- ip route add ...`)")
            if self.dhcp:
                raise ValueError(f"{what}: routes need static addresses; a DHCP node has no address "
                                 f"to reach {gw} through when it starts (use --address)")
            nets = [ipaddress.IPv4Interface(a).network for a in self.addresses]
            if not any(ip in n for n in nets):
                raise ValueError(f"{what}: {gw} is not inside the network of any address ("
                                 f"{', '.join(map(str, nets)) or 'none'}); a gateway must be on-link")

    def curve(self) -> auth.CurveClient | None:
        """The CURVE client keys, read from their files (KeyFileError saying what is wrong)."""
        if self.curve_secret is None:
            return None
        return auth.CurveClient.from_files(self.curve_secret, self.curve_server_key)

    def dhcp_pool(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        """The DHCP server's pool, from "FIRST-LAST"."""
        try:
            first, last = (ipaddress.IPv4Address(p.strip()) for p in self.dhcp_server.split("-"))
        except ValueError:
            raise ValueError(f"dhcp pool {self.dhcp_server!r}: expected FIRST-LAST, e.g. 10.0.0.100-10.0.0.199") from None
        return first, last



def check_ipc_path(what: str, endpoint: str | None) -> None:
    """An ``ipc://PATH`` endpoint whose path a Unix socket cannot hold: ValueError saying so
    (binding it would fail later, in the middle of starting the daemon)."""
    if endpoint is None or not endpoint.startswith("ipc://"):
        return
    path = endpoint[len("ipc://"):]
    if len(path.encode()) > IPC_PATH_MAX:
        raise ValueError(f"{what} {endpoint!r}: the socket path is {len(path.encode())} bytes, over the "
                         f"{IPC_PATH_MAX} a Unix socket holds (sun_path); use a shorter path, e.g. a shorter "
                         f"VNET_RUNTIME_DIR")


def _host_address(cidr: str) -> ipaddress.IPv4Interface:
    """``cidr`` as a host address the stack accepts (what ``AddrTable.add`` and ``parse_cidr``
    refuse is refused here first, with the setting named): A.B.C.D/LEN, LEN a number up to 30,
    a unicast address that is neither the network's nor its broadcast address."""
    try:
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError as exc:
        raise ValueError(f"address {cidr!r}: {exc}; expected A.B.C.D/PREFIX") from None
    plen = cidr.partition("/")[2]
    if not (plen.isascii() and plen.isdigit()):
        raise ValueError(f"address {cidr!r}: give the prefix as a length, e.g. {iface.ip}/{iface.network.prefixlen}")
    ip = iface.ip
    if ip.is_multicast or ip.is_loopback or ip.is_unspecified or ip.packed[0] >= 240:
        kind = ("multicast" if ip.is_multicast else "loopback" if ip.is_loopback
                else "unspecified" if ip.is_unspecified else "reserved (240.0.0.0/4)")
        raise ValueError(f"address {cidr!r}: a {kind} address cannot be an interface address; "
                         f"use a unicast address such as 10.0.0.1/24")
    if iface.network.prefixlen > 30 or ip in (iface.network.network_address, iface.network.broadcast_address):
        raise ValueError(f"address {cidr!r}: not a usable host address in {iface.network}")
    return iface
