"""The node daemon: vnet0 on a ZeroMQ link to the switch, the host stack on vnet0, and the
node's control endpoint (the rtnetlink analogue). The only node layer that owns sockets,
tasks and the clock.

A node may have more NICs (``--nic``: vnet1, vnet2, ...), as a host has more PCI NICs: each
is a driver instance of its own (its net_device, rings, NAPI, counters) on a ZmqLink of its
own to its own switch, attached there as port ``NODE:vnetK``; the stack has each as a device.

Glue, in kernel terms:

- the hardware model's Link is a ``ZmqLink`` to the switch (carrier follows the attachment);
- the host stack is bound to vnet0 as packet-type handlers for ETH_P_ARP and ETH_P_IP
  (``dev_add_pack``); the frames it returns go out through ``dev_queue_xmit``;
- netdevice notifier events drive the stack: carrier up -> gratuitous ARP, address and MTU
  changes -> the stack's copy;
- the stack's timers (ARP retries, ageing, DAD) run from one loop timer re-armed at
  ``stack.next_deadline()``;
- control requests (``vnet ip``, ``vnet ping``, ...) are served from ``CONTROL_COMMANDS``
  (node/commands.py); the configuration is a checked, frozen ``NodeConfig`` (node/config.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import sys
import time

import zmq
import zmq.asyncio

from vnet.node.commands import NodeCommands, ip_str, netdev_call
from vnet.node.config import NodeConfig, port_name
from vnet.node.leasefile import restore_lease_file, save_lease_file
from vnet.node.metrics import NodeCollector
from vnet.node.netdevice import (
    ETH_P_ARP,
    ETH_P_IP,
    IFF_UP,
    NETDEV_CHANGE,
    NETDEV_CHANGEADDR,
    NETDEV_CHANGEMTU,
    NETDEV_DOWN,
    NETDEV_UP,
    DeviceNamespace,
    NetdevError,
    dev_add_pack,
    dev_mc_add,
    dev_open,
    dev_queue_xmit,
    dev_set_mtu,
    netif_carrier_ok,
    register_netdevice_notifier,
)
from vnet.node.skbuff import skb_from_frame
from vnet.node.stack import (
    AddressConflict,
    AddressReady,
    ArpReply,
    DhcpBound,
    DhcpLeasesChanged,
    DestUnreachable,
    DhcpLost,
    EchoReply,
    HostStack,
    NeighFailed,
    StackError,
    TimeExceeded,
    UdpDatagram,
)
from vnet.node.stack.ether import mac_str, parse_mac
from vnet.node.stack.route import RTPROT_DHCP
from vnet.node.vnic import vnic_probe, vnic_remove
from vnet.node.zmqlink import ZmqLink
from vnet.proto.httpserve import MetricsServer, parse_listen
from vnet.proto.control import (
    ControlServer,
    EndpointInUse,
    claim_ipc_path,
    node_control_endpoint,
    print_final,
    print_ready,
    runtime_dir,
)

log = logging.getLogger(__name__)

__all__ = ["NodeConfig", "NodeDaemon", "StartError", "serve"]


class StartError(Exception):
    """The node cannot start for a reason its operator can fix (the sentence says how)."""


class NodeDaemon(NodeCommands):
    """One node: owns its ZeroMQ context, link, device namespace, stack and control server.
    The control commands it serves are NodeCommands' (node/commands.py).

    ``ctx``: a ZeroMQ context to open the link and control sockets on, owned by the caller
    (the host of many nodes in one process, node/pack.py); the node then makes none and
    terminates none, and closes only its own sockets."""

    def __init__(self, config: NodeConfig, ctx: zmq.asyncio.Context | None = None) -> None:
        super().__init__()
        self.config = config
        self._shared_ctx = ctx
        self._ctx: zmq.asyncio.Context | None = None  # the control socket's
        self._link_ctx: zmq.asyncio.Context | None = None  # the link's
        self._loop: asyncio.AbstractEventLoop | None = None
        self.link: ZmqLink | None = None
        self.ns: DeviceNamespace | None = None
        self.dev = None
        self.nics: list = []  # the NICs' devices, vnet0 first
        self._dhcp_gateway: str | None = None  # the default route a DHCP lease installed
        self.links: dict[str, ZmqLink] = {}  # each NIC's link, by device name
        self.stack: HostStack | None = None
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self.refused = asyncio.Event()

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        control = cfg.control or node_control_endpoint(cfg.name)
        if control.startswith("ipc://"):
            # before the link says HELLO: a second node of this name must not replace the
            # first one's switch port either (EndpointInUse)
            claim_ipc_path(control[len("ipc://"):])
        self._loop = asyncio.get_running_loop()
        if self._shared_ctx is None:
            self._ctx = zmq.asyncio.Context()
            # The link has a context (an I/O thread) of its own: ZeroMQ resolves the switch's
            # host name on it, and a name server that does not answer (a container cut off its
            # network) would otherwise stall the control socket with it.
            self._link_ctx = zmq.asyncio.Context()
        self.ns = DeviceNamespace()
        self._probe_nics()
        self.stack = HostStack(bytes(self.dev.dev_addr), mtu=self.dev.mtu)
        for dev in self.nics[1:]:
            self.stack.add_device(dev.name, bytes(dev.dev_addr), dev.mtu)
        dev_add_pack(self.ns, ETH_P_ARP, self._stack_rcv)
        dev_add_pack(self.ns, ETH_P_IP, self._stack_rcv)
        for dev in self.nics:
            for mc in self.stack.mc_list():  # the all-hosts group, as ip_mc_up joins it
                dev_mc_add(dev, mc)
        register_netdevice_notifier(self.ns, self._netdev_event)
        self.control = ControlServer(self._ctx or self._shared_ctx, control, self._handlers(),
                                     policy=self._policy())
        self.control.start()
        await self._start_metrics()
        for dev in self.nics:
            dev_open(dev)
        now = self._loop.time()
        for dev, addresses in zip(self.nics, self._nic_addresses()):
            for cidr in addresses:
                self._xmit(self.stack.add_address(cidr, now, dev=dev.name))
        self._apply_routes()
        if cfg.dhcp_server:
            first, last = cfg.dhcp_pool()
            self.stack.dhcp_server_start(cfg.addresses[0], str(first), str(last), cfg.lease_time,
                                         router=self._dhcp_router())
            if cfg.lease_file:
                restore_lease_file(self.stack.dhcp.server, cfg.lease_file, now, time.time())
        if cfg.dhcp:
            self._xmit(self.stack.dhcp_client_start(now, cfg.name.encode(), hostname=cfg.name,
                                                    previous_ip=self._read_dhcp_state()))
        self._after_stack()

    def _apply_routes(self) -> None:
        """The configuration's routing: net.ipv4.ip_forward, the default gateway and the
        static routes (proto boot), once the stack has its addresses."""
        cfg = self.config
        self.stack.forwarding = cfg.forwarding
        try:
            if cfg.gateway:
                self.stack.route_add("default", via=cfg.gateway, proto="boot")
            for cidr, gw in cfg.routes:
                self.stack.route_add(cidr, via=gw, proto="boot")
        except StackError as exc:
            raise StartError(f"route: {exc}") from None

    def _probe_nics(self) -> None:
        """One link and one driver instance per NIC (vnet0 from --switch, vnetK from the K-th
        --nic); MACs given or derived from the port name (the node's name for vnet0)."""
        cfg = self.config
        specs = [(cfg.switch, cfg.mac)] + [(nic.switch, nic.mac) for nic in cfg.nics]
        for k, (switch, mac) in enumerate(specs):
            name = f"vnet{k}"
            link = ZmqLink(
                self._link_ctx or self._shared_ctx,
                switch,
                self._hello_of(k),
                heartbeat_interval=cfg.heartbeat_interval,
                heartbeat_timeout=cfg.heartbeat_timeout,
                on_refused=lambda reason: self.refused.set(),
                on_mtu=lambda mtu, name=name: self._switch_mtu(mtu, name),
                curve=cfg.curve(),
            )
            self.links[name] = link
            dev = vnic_probe(self.ns, self._loop, link, mac=parse_mac(mac) if mac else None,
                             node_name=port_name(cfg.name, k), tx_ring_size=cfg.tx_ring_size,
                             rx_ring_size=cfg.rx_ring_size)
            if dev.name != name:
                raise StartError(f"NIC {k} registered as {dev.name}, not {name}")
            if cfg.mtu != dev.mtu:
                dev_set_mtu(dev, cfg.mtu)
            self.nics.append(dev)
        self.dev, self.link = self.nics[0], self.links["vnet0"]

    def _nic_addresses(self) -> list[tuple[str, ...]]:
        """Each NIC's static addresses, vnet0 first."""
        return [self.config.addresses] + [nic.addresses for nic in self.config.nics]

    def _link_of(self, dev) -> ZmqLink:
        """The link under ``dev`` (a sub-interface's is its lower NIC's: vnet0's by default)."""
        return self.links.get(dev.name.partition(".")[0], self.link)

    def _nics_health(self) -> list[dict]:
        return [{"dev": dev.name, "carrier": bool(netif_carrier_ok(dev)), "up": bool(dev.flags & IFF_UP),
                 "attached": self.links[dev.name].attached, "switch": self.links[dev.name].endpoint,
                 "port": port_name(self.config.name, k)} for k, dev in enumerate(self.nics)]

    async def close(self) -> None:
        """Bring the NICs down (BYE to their switches), stop serving, close every socket."""
        if self._timer is not None:
            self._timer.cancel()
        if self._udp_expiry is not None:
            self._udp_expiry.cancel()
        for dev in reversed(self.nics):
            vnic_remove(dev)  # closes the NIC first: its link says BYE
        for _, fut in self._echo_waiters.values():
            fut.cancel()
        self._captures.clear()
        if self._capture_timer is not None:
            self._capture_timer.cancel()
            self._capture_timer = None
        if self.control is not None:
            await self.control.close()
        await self._close_metrics()
        for link in self.links.values():
            await link.aclose()
        for ctx in (self._ctx, self._link_ctx):
            if ctx is not None:
                ctx.term()

    async def _start_metrics(self) -> None:
        """Serve ``/metrics`` on ``config.metrics`` (StartError when it cannot bind)."""
        listen = parse_listen(self.config.metrics) if self.config.metrics is not None else None
        if listen is None:
            return
        server = MetricsServer(*listen, [self._metrics_collector()])
        try:
            await server.start()
        except OSError as exc:
            raise StartError(f"cannot serve metrics on {self.config.metrics}: {exc.strerror or exc}; "
                             f"pick another port (0: any free one) or --metrics off") from None
        self.metrics = server

    async def _close_metrics(self) -> None:
        if self.metrics is not None:
            await self.metrics.close()

    def metrics_url(self) -> str | None:
        return self.metrics.url if self.metrics is not None else None

    def _metrics_collector(self) -> NodeCollector:
        return NodeCollector(self.ns, neigh=lambda: self.stack.neigh_show(self._loop.time()))

    def _hello(self) -> tuple[str, list[bytes], int]:
        return self.config.name, [bytes(self.dev.dev_addr)], self.dev.mtu

    def _hello_of(self, k: int):
        """NIC k's HELLO: its port name, its MAC, its MTU."""
        if k == 0:
            return self._hello
        name = f"vnet{k}"

        def hello() -> tuple[str, list[bytes], int]:
            dev = self.ns.get(name)
            return port_name(self.config.name, k), [bytes(dev.dev_addr)], dev.mtu
        return hello

    def final_stats(self) -> dict:
        """The counters printed after a clean stop (``vnet-final``): the ``stats`` answer."""
        return self._cmd_stats()

    def _switch_mtu(self, mtu: int, name: str = "vnet0") -> None:
        """The switch's MTU is below the NIC's: lower the NIC's (the switch would drop the rest)."""
        dev = self.ns.get(name) if self.ns is not None else None
        if dev is not None and mtu < dev.mtu:
            try:
                dev_set_mtu(dev, mtu)
            except NetdevError as exc:  # below the device's minimum: keep it, frames count tx_oversize
                log.error("cannot lower %s's MTU to the switch's %d: %s", dev.name, mtu, exc)

    # -- driver <-> stack glue ----------------------------------------------------------------

    def _stack_rcv(self, skb, dev) -> None:
        self._xmit(self.stack.receive_skb(skb, self._loop.time()))
        self._after_stack()

    def _netdev_event(self, event: int, dev) -> None:
        if self.stack is None or dev.name not in self.stack.devs:  # a device the stack runs on
            return
        now = self._loop.time()
        name = dev.name
        if event == NETDEV_CHANGEADDR:
            self._xmit(self.stack.set_mac(bytes(dev.dev_addr), now, dev=name))
        elif event == NETDEV_CHANGEMTU:
            self.stack.set_mtu(dev.mtu, dev=name)
        elif event in (NETDEV_UP, NETDEV_CHANGE):
            if dev.flags & IFF_UP and netif_carrier_ok(dev):
                self._xmit(self.stack.link_up(now, dev=name))
            else:
                self.stack.link_down(now, dev=name)
        elif event == NETDEV_DOWN:
            self.stack.link_down(now, dev=name)
        self._after_stack()

    def _xmit(self, frames: list[bytes], dev=None) -> int:
        """Hand whole frames to ``dev_queue_xmit`` (vnet0 by default, or the device a
        stack frame names: ``frame.dev``); return how many."""
        dev = dev or self.dev
        for frame in frames:
            skb = skb_from_frame(frame)
            name = getattr(frame, "dev", None)
            skb.dev = dev if name is None else self.ns.get(name)
            if skb.dev is None:  # the device went between the stack's output and here
                self.tx_no_dev += 1
                continue
            netdev_call(dev_queue_xmit, skb)
        return len(frames)

    def _after_stack(self) -> None:
        """Hand out the stack's events and re-arm its timer."""
        for ev in self.stack.next_events():
            self._on_event(ev)
        when = self.stack.next_deadline()
        if when == self._timer_when:
            return
        if self._timer is not None:
            self._timer.cancel()
        if self._udp_expiry is not None:
            self._udp_expiry.cancel()
            self._timer = None
        self._timer_when = when
        if when is not None:
            self._timer = self._loop.call_at(when, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_when = None
        self._xmit(self.stack.tick(self._loop.time()))
        self._after_stack()

    def _on_event(self, ev) -> None:
        now = self._loop.time()
        if isinstance(ev, EchoReply):
            waiter = self._echo_waiters.get((ev.ident, ev.seq))
            if waiter is not None and not waiter[1].done():
                waiter[1].set_result((ev, now))
        elif isinstance(ev, UdpDatagram):
            queue = self._udp_queues.get(ev.dst_port)
            if queue is None:
                return
            if queue.full():
                self.udp_queue_drops += 1
                return
            queue.put_nowait(ev)
        elif isinstance(ev, ArpReply):
            for fut in self._arp_waiters.pop(bytes(ev.ip), []):
                if not fut.done():
                    fut.set_result((ev, now))
        elif isinstance(ev, NeighFailed):
            ip = bytes(ev.ip)
            for dst, fut in self._echo_waiters.values():
                if dst == ip and not fut.done():
                    fut.set_result(None)
        elif isinstance(ev, AddressConflict):
            conflict = {"address": ip_str(ev.ip), "mac": mac_str(ev.mac)}
            self.conflicts.append(conflict)
            state = next((a["state"] for a in self.stack.addresses() if a["address"] == conflict["address"]), None)
            if state == "conflict":  # found by duplicate address detection: never used
                log.error("address %s is already in use by %s: not using it (duplicate address detection "
                          "failed; delete it and pick another)", conflict["address"], conflict["mac"])
            else:  # a conflict on an address in use: RFC 5227 2.4 (c), it stays ours
                log.error("address %s is also claimed by %s: keeping it in use and defending it "
                          "(one gratuitous ARP; check both hosts' configuration)",
                          conflict["address"], conflict["mac"])
        elif isinstance(ev, (DestUnreachable, TimeExceeded)):
            self._icmp_error_event(ev, now)
        elif isinstance(ev, AddressReady):
            log.info("address %s ready", ip_str(ev.ip))
        elif isinstance(ev, DhcpBound):
            if not ev.renewal:
                log.info("dhcp: bound to %s/%d from %s for %d s", ip_str(ev.ip), ev.prefixlen,
                         ip_str(ev.server), ev.lease_time)
            self._write_dhcp_state(ip_str(ev.ip))
            self._dhcp_default_route(ev.router)
        elif isinstance(ev, DhcpLost):
            log.warning("dhcp: lost %s (%s)", ip_str(ev.ip), ev.reason)
            self._dhcp_default_route(None)
        elif isinstance(ev, DhcpLeasesChanged):
            self._save_leases()

    def _dhcp_router(self) -> str | None:
        """The router the DHCP server offers (option 3): the node's --gateway when it is in the
        served network, else none."""
        cfg = self.config
        if cfg.gateway is None:
            return None
        served = ipaddress.IPv4Interface(cfg.addresses[0]).network
        return cfg.gateway if ipaddress.IPv4Address(cfg.gateway) in served else None

    def _dhcp_default_route(self, router: bytes | None) -> None:
        """What dhclient-script does with option 3: the lease's router becomes the default
        route (proto dhcp), replacing the previous lease's; a --gateway given by hand wins."""
        if self.config.gateway is not None:
            return
        via = None if router is None else ip_str(router)
        if via == self._dhcp_gateway:
            return
        if self._dhcp_gateway is not None:
            try:
                self.stack.route_del("default", via=self._dhcp_gateway)
            except StackError:
                pass  # already gone with its address
            self._dhcp_gateway = None
        if via is not None:
            try:
                self.stack.route_add("default", via=via, proto=RTPROT_DHCP)
            except StackError as exc:
                log.warning("dhcp: the lease's router %s is not usable as the default route: %s", via, exc)
                return
            self._dhcp_gateway = via

    # -- DHCP state on disk -------------------------------------------------------------------
    # Lease expiry times are on the loop's monotonic clock inside the stack and in wall-clock
    # time on disk, so a lease file survives a reboot of the host.

    def _dhcp_state_path(self) -> str:
        return os.path.join(runtime_dir(), f"{self.config.name}.dhcp")

    def _read_dhcp_state(self) -> str | None:
        """The address this node held before it restarted (INIT-REBOOT asks for it again)."""
        try:
            with open(self._dhcp_state_path()) as fh:
                return str(ipaddress.IPv4Address(fh.read().strip()))
        except (OSError, ValueError):
            return None

    def _write_dhcp_state(self, ip: str) -> None:
        _write_atomic(self._dhcp_state_path(), ip + "\n")

    def _save_leases(self) -> None:
        path = self.config.lease_file
        if not path:
            return
        try:
            save_lease_file(path, self.stack.dhcp_server_leases(), self._loop.time(), time.time())
        except OSError as exc:
            log.error("dhcp: cannot save leases to %s: %s", path, exc)


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)



async def serve(config: NodeConfig, ready_line: bool = True) -> int:
    """Run a node until SIGTERM/SIGINT (or a REFUSE from the switch); return an exit code.

    After a clean stop it prints its final counters (``vnet-final {json}``: the ``stats``
    control command's answer, taken after the BYE), as the switch does."""
    if config.stack == "kernel":
        from vnet.node.kernelnode import KernelNodeDaemon  # pyroute2 only for kernel-stack nodes

        daemon = KernelNodeDaemon(config)
    else:
        daemon = NodeDaemon(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await daemon.start()
        except StartError as exc:
            print(f"vnet node {config.name}: {exc}", file=sys.stderr)
            return 2
        except EndpointInUse as exc:  # a node of this name runs: its socket is not ours to take
            print(f"vnet node: {config.name} is already running ({exc})", file=sys.stderr)
            return 2
        if ready_line:
            ready = {"node": config.name, "control": daemon.control.endpoint,
                     "mac": mac_str(bytes(daemon.dev.dev_addr)), "metrics": daemon.metrics_url()}
            if len(daemon.nics) > 1:
                ready["nics"] = [{"dev": d.name, "mac": mac_str(bytes(d.dev_addr)), "port": port_name(config.name, k)}
                                 for k, d in enumerate(daemon.nics)]
            print_ready(ready)
        waiters = {loop.create_task(stop.wait()), loop.create_task(daemon.refused.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:  # the one still waiting is cancelled and awaited, not left pending
            for task in waiters:
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        code = 3 if daemon.refused.is_set() else 0
        if code:
            print(f"vnet node {config.name}: {daemon.link.refused}", file=sys.stderr)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await daemon.close()
    if ready_line:
        print_final({"node": config.name, **daemon.final_stats()}, config.name)
    return code

