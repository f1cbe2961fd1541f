"""The node daemon: vnet0 on a ZeroMQ link to the switch, the host stack on vnet0, and the
node's control endpoint (the rtnetlink analogue). The only node layer that owns sockets,
tasks and the clock.

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
from vnet.node.config import NodeConfig
from vnet.node.leasefile import restore_lease_file, save_lease_file
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
    DhcpLost,
    EchoReply,
    HostStack,
    NeighFailed,
    UdpDatagram,
)
from vnet.node.stack.ether import mac_str, parse_mac
from vnet.node.vnic import vnic_probe, vnic_remove
from vnet.node.zmqlink import ZmqLink
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
        self.stack: HostStack | None = None
        self.control: ControlServer | None = None
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
        self.link = ZmqLink(
            self._link_ctx or self._shared_ctx,
            cfg.switch,
            self._hello,
            heartbeat_interval=cfg.heartbeat_interval,
            heartbeat_timeout=cfg.heartbeat_timeout,
            on_refused=lambda reason: self.refused.set(),
            on_mtu=self._switch_mtu,
            curve=cfg.curve(),
        )
        self.ns = DeviceNamespace()
        mac = parse_mac(cfg.mac) if cfg.mac else None
        self.dev = vnic_probe(
            self.ns,
            self._loop,
            self.link,
            mac=mac,
            node_name=cfg.name,
            tx_ring_size=cfg.tx_ring_size,
            rx_ring_size=cfg.rx_ring_size,
        )
        if cfg.mtu != self.dev.mtu:
            dev_set_mtu(self.dev, cfg.mtu)
        self.stack = HostStack(bytes(self.dev.dev_addr), mtu=self.dev.mtu)
        dev_add_pack(self.ns, ETH_P_ARP, self._stack_rcv)
        dev_add_pack(self.ns, ETH_P_IP, self._stack_rcv)
        for mc in self.stack.mc_list():  # the all-hosts group, as ip_mc_up joins it
            dev_mc_add(self.dev, mc)
        register_netdevice_notifier(self.ns, self._netdev_event)
        self.control = ControlServer(self._ctx or self._shared_ctx, control, self._handlers(),
                                     policy=self._policy())
        self.control.start()
        dev_open(self.dev)
        now = self._loop.time()
        for cidr in cfg.addresses:
            self._xmit(self.stack.add_address(cidr, now))
        if cfg.dhcp_server:
            first, last = cfg.dhcp_pool()
            self.stack.dhcp_server_start(cfg.addresses[0], str(first), str(last), cfg.lease_time)
            if cfg.lease_file:
                restore_lease_file(self.stack.dhcp.server, cfg.lease_file, now, time.time())
        if cfg.dhcp:
            self._xmit(self.stack.dhcp_client_start(now, cfg.name.encode(), hostname=cfg.name,
                                                    previous_ip=self._read_dhcp_state()))
        self._after_stack()

    async def close(self) -> None:
        """Bring vnet0 down (BYE to the switch), stop serving, close every socket."""
        if self._timer is not None:
            self._timer.cancel()
        if self._udp_expiry is not None:
            self._udp_expiry.cancel()
        if self.dev is not None:
            vnic_remove(self.dev)  # closes vnet0 first: the link says BYE
        for _, fut in self._echo_waiters.values():
            fut.cancel()
        self._captures.clear()
        if self._capture_timer is not None:
            self._capture_timer.cancel()
            self._capture_timer = None
        if self.control is not None:
            await self.control.close()
        if self.link is not None:
            await self.link.aclose()
        for ctx in (self._ctx, self._link_ctx):
            if ctx is not None:
                ctx.term()

    def _hello(self) -> tuple[str, list[bytes], int]:
        return self.config.name, [bytes(self.dev.dev_addr)], self.dev.mtu

    def final_stats(self) -> dict:
        """The counters printed after a clean stop (``vnet-final``): the ``stats`` answer."""
        return self._cmd_stats()

    def _switch_mtu(self, mtu: int) -> None:
        """The switch's MTU is below vnet0's: lower vnet0's (the switch would drop the rest)."""
        if self.dev is not None and mtu < self.dev.mtu:
            try:
                dev_set_mtu(self.dev, mtu)
            except NetdevError as exc:  # below the device's minimum: keep it, frames count tx_oversize
                log.error("cannot lower %s's MTU to the switch's %d: %s", self.dev.name, mtu, exc)

    # -- driver <-> stack glue ----------------------------------------------------------------

    def _stack_rcv(self, skb, dev) -> None:
        self._xmit(self.stack.receive_skb(skb, self._loop.time()))
        self._after_stack()

    def _netdev_event(self, event: int, dev) -> None:
        if dev is not self.dev or self.stack is None:
            return
        now = self._loop.time()
        if event == NETDEV_CHANGEADDR:
            self._xmit(self.stack.set_mac(bytes(dev.dev_addr), now))
        elif event == NETDEV_CHANGEMTU:
            self.stack.set_mtu(dev.mtu)
        elif event in (NETDEV_UP, NETDEV_CHANGE):
            if dev.flags & IFF_UP and netif_carrier_ok(dev):
                self._xmit(self.stack.link_up(now))
            else:
                self.stack.link_down(now)
        elif event == NETDEV_DOWN:
            self.stack.link_down(now)
        self._after_stack()

    def _xmit(self, frames: list[bytes], dev=None) -> int:
        """Hand whole frames to ``dev_queue_xmit`` (vnet0 by default); return how many."""
        dev = dev or self.dev
        for frame in frames:
            skb = skb_from_frame(frame)
            skb.dev = dev
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
        elif isinstance(ev, AddressReady):
            log.info("address %s ready", ip_str(ev.ip))
        elif isinstance(ev, DhcpBound):
            if not ev.renewal:
                log.info("dhcp: bound to %s/%d from %s for %d s", ip_str(ev.ip), ev.prefixlen,
                         ip_str(ev.server), ev.lease_time)
            self._write_dhcp_state(ip_str(ev.ip))
        elif isinstance(ev, DhcpLost):
            log.warning("dhcp: lost %s (%s)", ip_str(ev.ip), ev.reason)
        elif isinstance(ev, DhcpLeasesChanged):
            self._save_leases()

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
            print_ready({"node": config.name, "control": daemon.control.endpoint,
                          "mac": mac_str(bytes(daemon.dev.dev_addr))})
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

