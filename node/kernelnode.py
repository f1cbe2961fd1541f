"""A node whose upper layer is the Linux kernel's own network stack (``--stack kernel``).

The same daemon as ``NodeDaemon`` below the upper edge: the ZeroMQ link to the switch, vnet0's
driver model (qdisc, TX ring, NAPI, counters), the control endpoint, captures. Above it,
instead of vnet's stack, a TAP named vnet0 in the node's network namespace (``TapEdge``,
node/tap.py): what the kernel sends goes through ``dev_queue_xmit``, what the switch delivers
is written to the TAP after NAPI and ``netif_receive_skb``. Any program run in the namespace
(ping, iperf3, dnsmasq, a server) is on the LAN.

The daemon's own sockets stay in the namespace it started in (the switch is on loopback
there); only the TAP and the rtnetlink queries are made inside the node's namespace. If
``--netns NAME`` does not exist the daemon creates it and removes it when it stops; one the
LAN made is the LAN's to remove. Without ``--netns`` the TAP is in the daemon's own
namespace (a container's).

Control commands (node/commands.py's, some answered differently): the driver-level ones are
the same (link, ethtool, stats, inject, captures); ``health``, ``addr_show`` and ``neigh_show`` report the kernel's view over
rtnetlink; ``ping`` and ``arping`` run the system's tools in the namespace; the commands that
only vnet's stack can serve (udp_*, addr_add/del, neigh_flush, dhcp_show) say so, naming the
way to do it with the kernel's tools.

Several NICs (``--nic``): one TAP per NIC (vnet0, vnet1, ... in the namespace), each with its
own driver instance, link and TapEdge in its path, each with its NIC's MAC and addresses.
``--gateway`` and ``--route`` become the kernel's routes, ``--forwarding`` its forwarding
sysctls (node/kroute.py); the kernel routes between the NICs as any Linux router does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import shutil
from typing import Any

import zmq.asyncio

from vnet.node import ethtool
from vnet.node.commands import CONTROL_COMMANDS, _parse_ip, _stats64, netdev_call
from vnet.node.daemon import NodeDaemon, StartError
from vnet.node.kroute import KernelRouteError, kernel_forwarding_set, kernel_routes_add, kernel_sysctls_restore
from vnet.node.netdevice import (
    IFF_UP, NETDEV_CHANGEADDR, NETDEV_CHANGEMTU, DeviceNamespace, dev_open, register_netdevice_notifier,
)
from vnet.node.metrics import NodeCollector
from vnet.node.netns import NetnsError, netns_create, netns_exists, netns_remove
from vnet.node.tap import TapConfig, TapError, tap_create, tap_kernel_view, tap_set_link
from vnet.node.tapedge import TapEdge
from vnet.node.vnic import vnic_remove
from vnet.proto.control import ControlError, ControlServer, node_control_endpoint

log = logging.getLogger(__name__)

KERNEL_ONLY = {
    "udp_bind": "UDP sockets", "udp_unbind": "UDP sockets", "udp_send": "UDP sockets", "udp_recv": "UDP sockets",
    "addr_add": "addresses (ip addr add)", "addr_del": "addresses (ip addr del)",
    "neigh_flush": "the neighbour table (ip neigh flush)", "dhcp_show": "DHCP (udhcpc, dnsmasq)",
    **{name: "routes and forwarding (ip route, sysctl net.ipv4.ip_forward)"
       for name in ("route_show", "route_add", "route_del", "route_get", "forwarding_set")},
    "traceroute": "traceroute (the system's traceroute)",
    "link_add": "VLAN sub-interfaces (ip link add ... type vlan)", "link_del": "VLAN sub-interfaces (ip link del)",
}
PING_RE = re.compile(r"bytes from ([0-9.]+): icmp_seq=\d+ ttl=(\d+) time=([0-9.]+) ms")
ARPING_RE = re.compile(r"from ([0-9a-fA-F:]{17}) \(([0-9.]+)\): index=\d+ time=([0-9.]+) (usec|msec|sec)")


class KernelNodeDaemon(NodeDaemon):
    """One node with the kernel's stack on vnet0 (see the module docstring)."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.tap = None  # vnet0's
        self.edge: TapEdge | None = None
        self.taps: dict = {}  # each NIC's TAP, by device name
        self.edges: dict[str, TapEdge] = {}
        self._made_netns = False
        self._sysctls: dict[str, str] = {}  # what --forwarding replaced, put back at exit
        self._syncs: set[asyncio.Task] = set()  # rtnetlink updates of the kernel's vnet0 in flight

    def _tap_config(self, dev=None, addresses=None) -> TapConfig:
        dev = dev or self.dev
        return TapConfig(name=dev.name, netns=self.config.netns, mac=bytes(dev.dev_addr), mtu=dev.mtu,
                         addresses=list(self.config.addresses if addresses is None else addresses))

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        try:
            if cfg.netns is not None and not netns_exists(cfg.netns):
                await asyncio.to_thread(netns_create, cfg.netns)
                self._made_netns = True
        except NetnsError as exc:
            raise StartError(str(exc)) from None
        self._ctx = zmq.asyncio.Context()
        self._link_ctx = zmq.asyncio.Context()
        self.ns = DeviceNamespace()
        self._probe_nics()
        for dev, addresses in zip(self.nics, self._nic_addresses()):
            try:
                tap = await asyncio.to_thread(tap_create, self._tap_config(dev, addresses))
            except TapError as exc:
                raise StartError(str(exc)) from None
            self.taps[dev.name] = tap
            self.edges[dev.name] = edge = TapEdge(tap, dev, self._loop)
            edge.start()
        self.tap, self.edge = self.taps["vnet0"], self.edges["vnet0"]
        register_netdevice_notifier(self.ns, self._netdev_event)
        self.control = ControlServer(self._ctx, cfg.control or node_control_endpoint(cfg.name), self._handlers(),
                                     policy=self._policy())
        self.control.start()
        await self._start_metrics()
        for dev in self.nics:
            dev_open(dev)
        await self._apply_kernel_routes()

    async def _apply_kernel_routes(self) -> None:
        """--forwarding, --gateway and --route into the kernel of the node's namespace."""
        cfg = self.config
        routes = ([("0.0.0.0/0", cfg.gateway)] if cfg.gateway else []) + list(cfg.routes)
        try:
            if cfg.forwarding:
                self._sysctls = await asyncio.to_thread(kernel_forwarding_set, cfg.netns, list(self.taps))
            if routes:
                await asyncio.to_thread(kernel_routes_add, cfg.netns, routes)
        except KernelRouteError as exc:
            raise StartError(str(exc)) from None

    async def close(self) -> None:
        """vnet0 down (BYE to the switch), the TAP closed (the kernel removes it), the
        namespace removed if this daemon made it, every socket closed."""
        for task in list(self._syncs):
            await asyncio.gather(task, return_exceptions=True)
        for edge in self.edges.values():
            edge.stop()
        for dev in reversed(self.nics):
            vnic_remove(dev)
        for tap in self.taps.values():
            tap.close()
        if self._sysctls and not self._made_netns:
            try:
                await asyncio.to_thread(kernel_sysctls_restore, self.config.netns, self._sysctls)
            except KernelRouteError as exc:
                log.error("%s", exc)
        if self._made_netns:
            try:
                netns_remove(self.config.netns)
            except NetnsError as exc:
                log.error("%s", exc)
        self._captures.clear()
        if self.control is not None:
            await self.control.close()
        await self._close_metrics()
        for link in self.links.values():
            link.close()
        for ctx in (self._ctx, self._link_ctx):
            if ctx is not None:
                ctx.term()

    def _after_stack(self) -> None:
        """No vnet stack here: nothing to hand out, no timer to arm."""

    def _netdev_event(self, event: int, dev) -> None:
        """The model's MTU or MAC changed (`vnet ip link set`): the kernel's vnet0 follows, so
        the NIC's filter still passes its frames and its frames still fit."""
        tap = self.taps.get(dev.name)
        if tap is None or self.edges[dev.name].dev is not dev or event not in (NETDEV_CHANGEMTU, NETDEV_CHANGEADDR):
            return
        change = {"mtu": dev.mtu} if event == NETDEV_CHANGEMTU else {"mac": bytes(dev.dev_addr)}
        task = self._loop.create_task(self._sync_kernel_link(tap, change))
        self._syncs.add(task)
        task.add_done_callback(self._syncs.discard)

    async def _sync_kernel_link(self, tap, change: dict) -> None:
        try:
            await asyncio.to_thread(tap_set_link, tap.config, **change)
        except TapError as exc:
            log.error("%s", exc)

    def _handlers(self) -> dict[str, Any]:
        handlers = {}
        for name in CONTROL_COMMANDS:
            if name in KERNEL_ONLY:
                handlers[name] = self._refuser(name)
            else:
                handlers[name] = getattr(self, "_cmd_" + name)
        return handlers

    def _refuser(self, name: str):
        what = KERNEL_ONLY[name]

        def refuse(**_: Any) -> None:
            raise ControlError(f"node {self.config.name} runs the kernel's stack: {what} are the kernel's here; "
                               f"run the system's tools in its namespace, e.g. `vnet --node {self.config.name} "
                               f"exec -- ip addr` (or `busybox nc -u`, `udhcpc`, `dnsmasq`)")
        return refuse

    async def _kernel(self, dev: str = "vnet0") -> dict:
        tap = self.taps.get(dev)
        if tap is None:
            raise ControlError(f"no device {dev!r} on node {self.config.name} (devices: {', '.join(self.taps)})")
        try:
            return await asyncio.to_thread(tap_kernel_view, tap.config)
        except TapError as exc:
            raise ControlError(str(exc)) from None

    async def _kernels(self) -> dict[str, dict]:
        """The kernel's view of every NIC's TAP, by name."""
        return {name: await self._kernel(name) for name in self.taps}

    # -- commands with the kernel's answers ---------------------------------------------------

    async def _cmd_health(self) -> dict:
        kernels = await self._kernels()
        nics = self._nics_health()
        for nic in nics:
            nic["kernel_operstate"] = kernels[nic["dev"]]["operstate"]
        return {
            "name": self.config.name,
            "stack": "kernel",
            "netns": self.config.netns,
            "carrier": all(n["carrier"] for n in nics),  # every NIC's
            "up": bool(self.dev.flags & IFF_UP),
            "attached": self.link.attached,
            "refused": next((link.refused for link in self.links.values() if link.refused), None),
            "addresses": [{**a, "dev": name} for name, k in kernels.items() for a in k["addresses"]],
            "kernel_operstate": kernels["vnet0"]["operstate"],
            "nics": nics,
            "metrics": self.metrics_url(),
        }

    async def _cmd_addr_show(self, dev: str | None = None) -> dict:
        names = [dev] if dev is not None else list(self.taps)
        addresses = [{**a, "dev": name} for name in names for a in (await self._kernel(name))["addresses"]]
        return {"dev": dev or self.dev.name, "addresses": addresses, "conflicts": []}

    async def _cmd_neigh_show(self) -> list[dict]:
        return [{**n, "dev": name} for name, k in (await self._kernels()).items() for n in k["neigh"]]

    def final_stats(self) -> dict:
        """After a clean stop the TAP and its namespace are gone: the driver model's counters,
        the TAP edge's and the link's (the kernel's own died with the interface)."""
        out = {"dev": self.dev.name, "stack_kind": "kernel", "stats64": _stats64(self.dev),
               "ethtool": self._ethtool_stats(), "tap": self.edge.counters(), "link": self.link.counters()}
        if len(self.nics) > 1:
            out["nics"] = self._nics_stats()
        return out

    def _nics_stats(self) -> dict:
        return {d.name: {"stats64": _stats64(d), "tap": self.edges[d.name].counters(),
                         "link": self.links[d.name].counters()} for d in self.nics}

    async def _cmd_stats(self, dev: str = "vnet0") -> dict:
        d = self._dev(dev)
        kernel = await self._kernel(dev)
        out = {
            "dev": d.name,
            "stack_kind": "kernel",
            "stats64": _stats64(d),
            "ethtool": self._ethtool_stats(dev),
            "stack": {},
            "tap": self.edges[dev].counters(),
            "kernel": {"stats64": kernel["stats64"], "operstate": kernel["operstate"], "mtu": kernel["mtu"]},
            "link": self.links[dev].counters(),
            "nics": self._nics_stats(),
            "udp_queue_drops": 0,
            "captures": len(self._captures),
        }
        return out

    def _metrics_collector(self) -> NodeCollector:
        """The driver model's devices; the neighbour table is the kernel's (not read here)."""
        return NodeCollector(self.ns, ethtool_stats=self._dev_ethtool_stats)

    def _dev_ethtool_stats(self, dev) -> dict:
        return self._ethtool_stats(dev.name) if dev.name in self.edges else ethtool.ethtool_get_stats(dev)

    def _ethtool_stats(self, dev: str = "vnet0") -> dict:
        edge = self.edges[dev]  # the device itself: after close it is no longer in the namespace
        return {**ethtool.ethtool_get_stats(edge.dev), **edge.counters()}

    def _cmd_ethtool(self, op: str, dev: str = "vnet0", **params: Any) -> Any:
        if op == "stats":
            if dev not in self.edges:
                self._dev(dev)  # no such device: the error names the devices
                raise ControlError(f"{dev} has no TAP on node {self.config.name}: ethtool -S works on "
                                   f"{', '.join(self.edges)}")
            return netdev_call(self._ethtool_stats, dev)
        return super()._cmd_ethtool(op, dev, **params)

    def _netns_argv(self, argv: list[str]) -> list[str]:
        ns = self.config.netns
        return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)

    async def _run(self, argv: list[str], timeout: float) -> tuple[int, str]:
        if shutil.which(argv[0]) is None:
            raise ControlError(f"{argv[0]} is not installed on the node's host: install it "
                               f"(Debian: apt-get install {'iputils-ping' if argv[0] == 'ping' else argv[0]})")
        proc = await asyncio.create_subprocess_exec(*self._netns_argv(argv), stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT,
                                                    stdin=asyncio.subprocess.DEVNULL)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, ""
        return proc.returncode, out.decode(errors="replace")

    async def _cmd_ping(self, dst: str, seq: int = 1, size: int = 56, timeout: float = 4.0,
                        ident: int | None = None) -> dict:
        """One echo request from the kernel's stack: the system's ping in the namespace."""
        _parse_ip(dst)
        wait = max(1, math.ceil(float(timeout)))
        code, out = await self._run(["ping", "-n", "-c", "1", "-W", str(wait), "-s", str(int(size)), dst],
                                    wait + 5)
        m = PING_RE.search(out)
        if m:
            return {"seq": seq, "dst": dst, "status": "reply", "ttl": int(m.group(2)), "bytes": int(size) + 8,
                    "rtt_ms": float(m.group(3)), "from": m.group(1), "tool": "ping"}
        if "Unreachable" in out:
            return {"seq": seq, "dst": dst, "status": "unreachable", "error": "Destination Host Unreachable"}
        return {"seq": seq, "dst": dst, "status": "timeout"}

    async def _dev_for(self, dst: str) -> str:
        """The NIC whose kernel addresses' network holds ``dst`` (vnet0 if none does)."""
        if len(self.taps) == 1:
            return "vnet0"
        ip = ipaddress.IPv4Address(dst)
        for name, kernel in (await self._kernels()).items():
            for a in kernel["addresses"]:
                if ip in ipaddress.IPv4Interface(f"{a['address']}/{a['prefixlen']}").network:
                    return name
        return "vnet0"

    async def _cmd_arping(self, dst: str, timeout: float = 1.0) -> dict:
        """One ARP request from the kernel's vnet0: the system's arping in the namespace."""
        _parse_ip(dst)
        code, out = await self._run(["arping", "-c", "1", "-w", f"{float(timeout):g}", "-i", await self._dev_for(dst),
                                     dst], float(timeout) + 5)
        m = ARPING_RE.search(out)
        if not m:
            return {"dst": dst, "status": "timeout"}
        scale = {"usec": 1e-3, "msec": 1.0, "sec": 1e3}[m.group(4)]
        return {"dst": dst, "status": "reply", "mac": m.group(1).lower(), "rtt_ms": float(m.group(3)) * scale,
                "tool": "arping"}

