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
class NicConfig:
    """One more NIC of a node (vnet1, vnet2, ...): its own driver instance on its own link to its
    own switch, as a second PCI NIC is a second net_device with its own rings. ``spec`` is the
    ``--nic`` text it came from, named in errors."""

    switch: str
    addresses: tuple[str, ...] = ()
    mac: str | None = None
    dhcp: bool = False
    spec: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", tuple(self.addresses))

    @classmethod
    def parse(cls, spec: str) -> "NicConfig":
        """``switch=EP[,address=CIDR|dhcp][,mac=MAC]`` (address may repeat); ValueError naming
        the spec and what would be accepted."""
        usage = "expected switch=ENDPOINT[,address=CIDR|dhcp][,mac=MAC], e.g. switch=tcp://127.0.0.1:5556,address=10.1.0.1/24"
        switch, mac, dhcp, addresses = None, None, False, []
        for part in spec.split(","):
            key, sep, value = part.strip().partition("=")
            if not sep or not value:
                raise ValueError(f"--nic {spec!r}: {part.strip()!r} is not KEY=VALUE; {usage}")
            if key == "switch":
                if switch is not None:
                    raise ValueError(f"--nic {spec!r}: switch is given twice; a NIC has one switch")
                switch = value
            elif key == "address":
                if value == "dhcp":
                    dhcp = True
                else:
                    addresses.append(value)
            elif key == "mac":
                mac = value
            else:
                raise ValueError(f"--nic {spec!r}: unknown key {key!r} (switch, address, mac); {usage}")
        if switch is None:
            raise ValueError(f"--nic {spec!r}: no switch; {usage}")
        return cls(switch=switch, addresses=tuple(addresses), mac=mac, dhcp=dhcp, spec=spec)


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
    nics: tuple[NicConfig, ...] = ()  # vnet1, vnet2, ...: one more NIC each (--nic)
    gateway: str | None = None  # the default route's next hop (--gateway)
    routes: tuple[tuple[str, str], ...] = ()  # static routes (CIDR, GW) (--route CIDR=GW)
    forwarding: bool = False  # IPv4 forwarding between the NICs (--forwarding)

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", tuple(self.addresses))
        object.__setattr__(self, "nics", tuple(NicConfig.parse(n) if isinstance(n, str) else n for n in self.nics))
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
            _check_mac("mac", self.mac)
        self._validate_nics(seen)
        self._validate_routes()
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
        if self.netns is not None and (not self.netns or "/" in self.netns or len(self.netns) > 64):
            raise ValueError(f"netns {self.netns!r}: a namespace name of up to 64 characters without '/'")

    def _validate_nics(self, seen: dict[ipaddress.IPv4Address, str]) -> None:
        macs = {self.mac.lower(): "vnet0"} if self.mac else {}
        for k, nic in enumerate(self.nics, 1):
            where = f"--nic {nic.spec or nic.switch!r} (vnet{k})"
            if not nic.switch.startswith(("tcp://", "ipc://", "inproc://")):
                raise ValueError(f"{where}: switch endpoint {nic.switch!r}: expected tcp://HOST:PORT")
            check_ipc_path(f"{where}: switch endpoint", nic.switch)
            for cidr in nic.addresses:
                try:
                    iface = _host_address(cidr)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                if iface.ip in seen:
                    raise ValueError(f"{where}: address {cidr!r}: {iface.ip} is already given ({seen[iface.ip]}); "
                                     f"give each address once")
                seen[iface.ip] = cidr
            if nic.dhcp and (nic.addresses or self.stack == "kernel"):
                raise ValueError(f"{where}: address=dhcp: " + (
                    "a NIC gets its address either by DHCP or statically, not both" if nic.addresses else
                    "a kernel-stack node runs the system's DHCP programs in its namespace "
                    "(udhcpc -i vnetK), not vnet's"))
            if nic.dhcp:
                raise ValueError(f"{where}: address=dhcp: vnet's DHCP client runs on vnet0 only (--dhcp); "
                                 f"give vnet{k} a static address=CIDR")
            if nic.mac is not None:
                try:
                    _check_mac("mac", nic.mac)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                if nic.mac.lower() in macs:
                    raise ValueError(f"{where}: mac {nic.mac} is {macs[nic.mac.lower()]}'s too; each NIC needs "
                                     f"its own MAC")
                macs[nic.mac.lower()] = f"vnet{k}"

    def _validate_routes(self) -> None:
        """--gateway and --route: well formed, and each gateway on-link (inside the network of
        a static address of some NIC), as the kernel's fib_check_nh wants it."""
        gateways = [("--gateway", self.gateway)] if self.gateway is not None else []
        for route in self.routes:
            if len(route) != 2:
                raise ValueError(f"--route {route!r}: expected CIDR=GW, e.g. 10.2.0.0/24=10.1.0.1")
            cidr, gw = route
            try:
                ipaddress.IPv4Network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"--route {cidr}={gw}: destination {cidr!r}: {exc}; expected a network such "
                                 f"as 10.2.0.0/24") from None
            gateways.append((f"--route {cidr}={gw}", gw))
        statics = list(self.addresses) + [a for nic in self.nics for a in nic.addresses]
        nets = [ipaddress.IPv4Interface(a).network for a in statics]
        for what, gw in gateways:
            _gateway_ip(what, gw)
            if not any(ipaddress.IPv4Address(gw) in n for n in nets):
                if self.dhcp and self.stack == "vnet":
                    raise ValueError(f"{what}: routes need static addresses; a DHCP node has no address "
                                     f"to reach {gw} through when it starts (use --address)")
                raise ValueError(f"{what}: {gw} is not inside the network of any address ("
                                 f"{', '.join(map(str, nets)) or 'none'}); a gateway must be on-link")

    def nic_names(self) -> list[str]:
        """The NICs' device names, vnet0 first."""
        return [f"vnet{k}" for k in range(1 + len(self.nics))]

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


def parse_route(text: str) -> tuple[str, str]:
    """``--route CIDR=GW`` as (CIDR, GW); ValueError saying what would be accepted."""
    cidr, sep, gw = text.partition("=")
    if not sep or not cidr or not gw:
        raise ValueError(f"--route {text!r}: expected CIDR=GW, e.g. 10.2.0.0/24=10.1.0.1")
    return cidr.strip(), gw.strip()


def port_name(node: str, k: int) -> str:
    """The switch port a node's NIC vnetK attaches as: the node's name for vnet0, NODE:vnetK else."""
    return node if k == 0 else f"{node}:vnet{k}"


def _gateway_ip(what: str, text: str) -> None:
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"{what}: gateway {text!r} is not an IPv4 address, e.g. 10.1.0.1") from None
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or text == "255.255.255.255":
        raise ValueError(f"{what}: gateway {text} must be a unicast address on one of the node's networks")


def _check_mac(what: str, text: str) -> None:
    mac = parse_mac(text)
    if mac[0] & 1 or mac == bytes(6):
        raise ValueError(f"{what} {text}: a NIC's address must be unicast and not all zeros "
                         f"(clear the low bit of the first byte, e.g. 02:00:00:00:00:01)")


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
