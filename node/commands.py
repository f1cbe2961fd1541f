"""The node's control commands: the rtnetlink analogue. Each ``_cmd_NAME`` method answers the
control request NAME (``vnet ip``, ``vnet ping``, ``vnet capture``, ...): links and their
flags (and 802.1Q sub-interfaces), addresses, neighbours, routes and forwarding, ethtool
operations, ICMP echo, traceroute and ARP probes, UDP sockets, raw frame injection and
captures (an ETH_P_ALL tap, like an AF_PACKET socket). They are mixed into
the node daemon, whose device, stack and link they act on; a bad request is a ControlError
with a sentence saying what would be accepted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import time
from typing import Any

from vnet.node import ethtool
from vnet.node.netdevice import (
    ETH_P_ALL,
    IFF_LOWER_UP,
    IFF_NAMES,
    IFF_PROMISC,
    IFF_UP,
    NetdevError,
    dev_add_pack,
    dev_change_flags,
    dev_get_flags,
    dev_get_stats,
    dev_remove_pack,
    dev_set_mac_address,
    dev_set_mtu,
    netif_carrier_ok,
    qdisc_get_stats,
)
from vnet.node.skbuff import PACKET_OUTGOING, skb_mac_header
from vnet.node.stack import DestUnreachable, StackError, TimeExceeded
from vnet.node.vlandev import is_vlan_dev, vlan_dev_create, vlan_dev_destroy, vlan_dev_real_dev, vlan_dev_vlan_id
from vnet.node.stack.ether import mac_str, parse_mac
from vnet.node.zmqlink import ZmqLink
from vnet.proto.capture import (DEFAULT_BUFFER, DEFAULT_SNAPLEN, Capture, CaptureLimitError, CaptureSession,
                                FilterError, check_limits, compile_filter, filter_engine)
from vnet.proto.ratelimit import RateLimit
from vnet.proto.control import ControlError
from vnet.proto.policy import NODE_POLICY

log = logging.getLogger(__name__)

UDP_QUEUE_LEN = 1024


class NodeCommands:
    """The handlers a node's control socket serves (rtnetlink's doit handlers, and the
    AF_PACKET/AF_INET sockets the tools would open), with the state requests wait on: echo
    and ARP waiters, bound UDP ports' queues, captures. The daemon that mixes this in provides
    ``config``, ``dev``, ``ns``, ``stack``, ``link``, ``_loop``, ``_xmit`` and ``_after_stack``,
    and feeds the waiters from the stack's events."""

    def __init__(self) -> None:
        self._echo_waiters: dict[tuple[int, int], tuple[bytes, asyncio.Future]] = {}
        self._arp_waiters: dict[bytes, list[asyncio.Future]] = {}
        self._udp_queues: dict[int, asyncio.Queue] = {}
        self._udp_renewed: dict[int, float] = {}  # port -> when its lease was last renewed
        self._udp_readers: dict[int, int] = {}  # port -> udp_recv requests waiting on it
        self._udp_expiry = None
        self.udp_lease_expired = 0
        self.udp_lease_timeout = UDP_LEASE_TIMEOUT
        self.udp_queue_drops = 0
        self.tx_no_dev = 0  # stack frames for a device that went before they could be sent
        self.conflicts: list[dict] = []
        self._ping_idents = itertools.count(os.getpid())  # one echo identifier per ping request
        self._icmp_waiters: dict[tuple[int, int], asyncio.Future] = {}  # (sport, dport) -> a probe's answer
        self._captures: dict[int, CaptureSession] = {}
        self._capture_ids = itertools.count(1)
        self._taps: dict[str, Any] = {}  # device name -> its ETH_P_ALL tap, while a capture is on it
        self._capture_dev: dict[int, str] = {}  # capture id -> the device it taps
        self._capture_timer: asyncio.TimerHandle | None = None  # _expire_captures, while the tap is in place
        self.tap_errors = 0  # exceptions a capture raised in the tap, survived
        self._tap_log = RateLimit()

    def _handlers(self) -> dict[str, Any]:
        return {name: getattr(self, "_cmd_" + name) for name in CONTROL_COMMANDS}

    def _policy(self) -> dict:
        return {name: NODE_POLICY[name] for name in CONTROL_COMMANDS}

    def _cmd_health(self) -> dict:
        nics = self._nics_health()
        return {
            "name": self.config.name,
            "carrier": all(n["carrier"] for n in nics),  # every NIC's
            "up": bool(self.dev.flags & IFF_UP),
            "attached": self.link.attached,
            "refused": next((link.refused for link in self.links.values() if link.refused), None),
            "addresses": self.stack.addresses(),
            "metrics": self.metrics_url(),
            "nics": nics,
        }

    def _cmd_link_show(self) -> list[dict]:
        return [_link_info(dev, self._link_of(dev)) for dev in self.ns.devices()]

    def _cmd_link_set(self, dev: str = "vnet0", state: str | None = None, mtu: int | None = None,
                      address: str | None = None, promisc: bool | None = None) -> dict:
        """``ip link set``: MTU and address first, then the flags, as iproute2 orders them."""
        d = self._dev(dev)
        if state not in (None, "up", "down"):
            raise ControlError(f"link state {state!r}: use up or down")
        if mtu is not None:
            netdev_call(dev_set_mtu, d, mtu)
        if address is not None:
            netdev_call(dev_set_mac_address, d, _stack_call(parse_mac, address))
        flags = dev_get_flags(d)
        if state is not None:
            flags = flags | IFF_UP if state == "up" else flags & ~IFF_UP
        if promisc is not None:
            flags = flags | IFF_PROMISC if promisc else flags & ~IFF_PROMISC
        netdev_call(dev_change_flags, d, flags)
        self._after_stack()
        return _link_info(d, self._link_of(d))

    def _cmd_addr_show(self, dev: str | None = None) -> dict:
        """The addresses of ``dev``, or of every device (each says its "dev")."""
        if dev is not None:
            self._dev(dev)
        return {"dev": dev or self.dev.name, "addresses": _stack_call(self.stack.addresses, dev),
                "conflicts": self.conflicts}

    def _cmd_addr_add(self, cidr: str, dev: str = "vnet0") -> dict:
        self._dev(dev)
        self._xmit(_stack_call(lambda: self.stack.add_address(cidr, self._loop.time(), dev=self._stack_dev(dev))))
        self._after_stack()
        return self._cmd_addr_show(dev)

    def _cmd_addr_del(self, cidr: str, dev: str = "vnet0") -> dict:
        self._dev(dev)
        _stack_call(lambda: self.stack.del_address(cidr, dev=self._stack_dev(dev)))
        return self._cmd_addr_show(dev)

    def _stack_dev(self, name: str) -> str:
        if name not in self.stack.devs:
            raise ControlError(f"vnet's stack does not run on {name} (it runs on {', '.join(self.stack.devs)})")
        return name

    # -- routes and forwarding (ip route, sysctl net.ipv4.ip_forward) --------------------------

    def _cmd_route_show(self) -> list[dict]:
        return self.stack.route_show()

    def _cmd_route_add(self, dst: str, via: str | None = None, dev: str | None = None, metric: int = 0) -> dict:
        if dev is not None:
            self._dev(dev)
            self._stack_dev(dev)
        return _stack_call(lambda: self.stack.route_add(dst, via=via, dev=dev, metric=metric))

    def _cmd_route_del(self, dst: str, via: str | None = None, dev: str | None = None) -> dict:
        return _stack_call(lambda: self.stack.route_del(dst, via=via, dev=dev))

    def _cmd_route_get(self, dst: str) -> dict:
        return _stack_call(lambda: self.stack.route_get(dst))

    def _cmd_forwarding_set(self, on: bool | None = None) -> dict:
        """net.ipv4.ip_forward: set it (``on``), or only read it (None)."""
        if on is not None:
            self.stack.forwarding = on
        return {"forwarding": self.stack.forwarding}

    # -- 802.1Q sub-interfaces (ip link add ... type vlan) -----------------------------------

    def _cmd_link_add(self, link: str, name: str, vlan: int) -> dict:
        """A VLAN sub-interface ``name`` over ``link`` for VID ``vlan``, created down (as
        `ip link add` leaves it); vnet's stack runs on it (addresses, routes)."""
        real = self._dev(link)
        dev = netdev_call(vlan_dev_create, self.ns, real, name, vlan)
        try:
            _stack_call(lambda: self.stack.add_device(name, bytes(dev.dev_addr), dev.mtu))
        except ControlError:
            vlan_dev_destroy(dev)
            raise
        return _link_info(dev, self.link)

    def _cmd_link_del(self, name: str) -> dict:
        dev = self._dev(name)
        if not is_vlan_dev(dev):
            raise ControlError(f"{name} is not a VLAN sub-interface (only those can be deleted)")
        if name in self.stack.devs:
            self.stack.del_device(name)
        netdev_call(vlan_dev_destroy, dev)
        self._after_stack()
        return {"name": name, "deleted": True}

    def _cmd_dhcp_show(self) -> dict:
        now = self._loop.time()
        return {
            "client": self.stack.dhcp_client_state(now) if self.config.dhcp else None,
            "server": self.stack.dhcp_server_show(now) if self.config.dhcp_server else None,
        }

    def _cmd_neigh_show(self) -> list[dict]:  # every device's, each row with its "dev"
        return self.stack.neigh_show(self._loop.time())

    def _cmd_neigh_flush(self) -> int:
        return self.stack.neigh_flush()

    def _cmd_stats(self, dev: str = "vnet0") -> dict:
        """``dev``'s counters (vnet0's by default), the stack's, and under "nics" every NIC's.
        A NIC is found among the node's own (so the final counters can be read after close
        unregistered it), any other device in the namespace."""
        d = next((n for n in self.nics if n.name == dev), None) or self._dev(dev)
        return {
            "dev": d.name,
            "stats64": _stats64(d),
            "ethtool": ethtool.ethtool_get_stats(d),
            "stack": self.stack.counters(),
            "link": self._link_of(d).counters(),
            "nics": {n.name: {"stats64": _stats64(n), "link": self.links[n.name].counters()} for n in self.nics},
            "udp_queue_drops": self.udp_queue_drops,
            "udp_lease_expired": self.udp_lease_expired,
            "tx_no_dev": self.tx_no_dev,
            "control": self.control.counters(),
            "captures": len(self._captures),
            "tap_errors": self.tap_errors,
        }

    def _cmd_ethtool(self, op: str, dev: str = "vnet0", rx_pending: int | None = None,
                     tx_pending: int | None = None, rx_usecs: int | None = None,
                     rx_frames: int | None = None) -> Any:
        d = self._dev(dev)
        given = {"rx_pending": rx_pending, "tx_pending": tx_pending, "rx_usecs": rx_usecs, "rx_frames": rx_frames}
        ring = {k: given[k] for k in ("rx_pending", "tx_pending") if given[k] is not None}
        coalesce = {k: given[k] for k in ("rx_usecs", "rx_frames") if given[k] is not None}
        wrong = [k for k, v in given.items() if v is not None and k not in
                 (ring if op == "set_ringparam" else coalesce if op == "set_coalesce" else ())]
        if wrong:
            raise ControlError(f"ethtool {op} takes no {', '.join(wrong)}")
        ops = {
            "drvinfo": lambda: ethtool.ethtool_get_drvinfo(d),
            "link": lambda: ethtool.ethtool_get_link(d),
            "stats": lambda: ethtool.ethtool_get_stats(d),
            "get_ringparam": lambda: ethtool.ethtool_get_ringparam(d),
            "set_ringparam": lambda: ethtool.ethtool_set_ringparam(d, **ring),
            "get_coalesce": lambda: ethtool.ethtool_get_coalesce(d),
            "set_coalesce": lambda: ethtool.ethtool_set_coalesce(d, **coalesce),
        }
        if op not in ops:
            raise ControlError(f"ethtool op {op!r}: one of {', '.join(ops)}")
        result = netdev_call(ops[op])
        return _plain(result)

    async def _cmd_ping(self, dst: str, seq: int = 1, size: int = 56, timeout: float = 4.0,
                        ident: int | None = None) -> dict:
        ident = next(self._ping_idents) & 0xFFFF if ident is None else ident
        dst_ip = _parse_ip(dst)
        key = (ident, seq)
        if key in self._echo_waiters:
            raise ControlError(f"echo id {ident} seq {seq} is already waiting for a reply")
        fut = self._loop.create_future()
        self._echo_waiters[key] = (dst_ip, fut)
        try:
            sent = self._loop.time()
            self._xmit(_stack_call(self.stack.send_echo, dst, ident, seq, size, sent))
            self._after_stack()
            try:
                got = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                return {"seq": seq, "dst": dst, "status": "timeout"}
            if got is None:
                return {"seq": seq, "dst": dst, "status": "unreachable", "error": "Destination Host Unreachable"}
            ev, when = got
            if isinstance(ev, (DestUnreachable, TimeExceeded)):  # a router's answer
                return {"seq": seq, "dst": dst, "status": "unreachable" if isinstance(ev, DestUnreachable)
                        else "ttl_exceeded", "from": ip_str(ev.src), "error": _icmp_error_text(ev)}
            return {"seq": seq, "dst": dst, "status": "reply", "ttl": ev.ttl, "bytes": ev.size,
                    "rtt_ms": (when - sent) * 1000.0, "from": ip_str(ev.src)}
        finally:
            self._echo_waiters.pop(key, None)

    async def _cmd_arping(self, dst: str, timeout: float = 1.0) -> dict:
        ip = _parse_ip(dst)
        fut = self._loop.create_future()
        self._arp_waiters.setdefault(ip, []).append(fut)
        sent = self._loop.time()
        try:
            self._xmit(_stack_call(self.stack.arp_probe, dst, sent))
            self._after_stack()
            try:
                ev, when = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                return {"dst": dst, "status": "timeout"}
            return {"dst": dst, "status": "reply", "mac": mac_str(ev.mac), "rtt_ms": (when - sent) * 1000.0}
        finally:
            waiters = self._arp_waiters.get(ip, [])
            if fut in waiters:
                waiters.remove(fut)

    def _icmp_error_event(self, ev, now: float) -> None:
        """An ICMP error about something we sent: to the traceroute probe or ping it quotes."""
        if ev.proto == 17:
            fut = self._icmp_waiters.get((ev.orig_sport, ev.orig_dport))
        elif ev.proto == 1:
            waiter = self._echo_waiters.get((ev.orig_sport, ev.orig_dport))
            fut = waiter[1] if waiter is not None else None
        else:
            fut = None
        if fut is not None and not fut.done():
            fut.set_result((ev, now))

    async def _cmd_traceroute(self, dst: str, max_hops: int = 30, timeout: float = 1.0, probes: int = 1,
                              port: int = 33434) -> dict:
        """traceroute(8): UDP probes to ``port``, ``port`` + 1, ... with TTL 1, 2, ...; each
        router on the way answers time exceeded, the destination port unreachable. Returns
        {"dst", "hops": [{"ttl", "ip" (None: no answer), "rtt_ms", "probes": [{"ip", "rtt_ms",
        "note"}], "note"}], "reached"}; a note is traceroute's !N, !H, !F-MTU, !P..."""
        _parse_ip(dst)
        sport = _stack_call(self.stack.udp_bind, 0)  # ours alone: the answers quote it
        hops: list[dict] = []
        reached = False
        dport = port
        try:
            for ttl in range(1, max_hops + 1):
                answers = []
                stop = False
                for _ in range(probes):
                    got = await self._probe(dst, sport, dport & 0xFFFF, ttl, timeout)
                    dport += 1
                    if got is None:
                        answers.append({"ip": None, "rtt_ms": None, "note": ""})
                        continue
                    ev, rtt = got
                    note = "" if isinstance(ev, TimeExceeded) or ev.code == 3 else _UNREACH_NOTES.get(ev.code, f"!<{ev.code}>")
                    answers.append({"ip": ip_str(ev.src), "rtt_ms": rtt, "note": note})
                    if isinstance(ev, DestUnreachable):
                        stop = True
                        reached = reached or (ev.code == 3 and ip_str(ev.src) == dst)
                first = next((a for a in answers if a["ip"] is not None), answers[0])
                hops.append({"ttl": ttl, "ip": first["ip"], "rtt_ms": first["rtt_ms"], "note": first["note"],
                             "probes": answers})
                if stop:
                    break
        finally:
            self.stack.udp_unbind(sport)
        return {"dst": dst, "hops": hops, "reached": reached}

    async def _probe(self, dst: str, sport: int, dport: int, ttl: int, timeout: float):
        """One traceroute probe: (the ICMP error event, rtt in ms), or None after ``timeout``."""
        key = (sport, dport)
        fut = self._loop.create_future()
        self._icmp_waiters[key] = fut
        try:
            sent = self._loop.time()
            self._xmit(_stack_call(lambda: self.stack.send_udp(sport, dst, dport, b"", sent, ttl=ttl)))
            self._after_stack()
            try:
                ev, when = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                return None
            return ev, (when - sent) * 1000.0
        finally:
            self._icmp_waiters.pop(key, None)

    # -- UDP sockets ---------------------------------------------------------------------------
    # A bound port is a lease, so that a reader that died (``vnet udp listen`` killed with
    # SIGKILL) does not hold its port forever: ``udp_bind`` grants it, every ``udp_recv`` on
    # the port renews it (a pending one holds it), and a port with no reader waiting and no
    # renewal for UDP_LEASE_TIMEOUT seconds is unbound (``udp_lease_expired`` counts them).

    def _cmd_udp_bind(self, port: int) -> dict:
        port = _stack_call(self.stack.udp_bind, port)  # port 0: the ephemeral port picked
        self._udp_queues[port] = asyncio.Queue(UDP_QUEUE_LEN)
        self._udp_renewed[port] = self._loop.time()
        if self._udp_expiry is None:
            self._udp_expiry = self._loop.call_later(self.udp_lease_timeout / 3, self._expire_udp)
        return {"port": port, "lease": self.udp_lease_timeout}

    def _cmd_udp_unbind(self, port: int) -> dict:
        _stack_call(self.stack.udp_unbind, port)
        self._udp_queues.pop(port, None)
        self._udp_renewed.pop(port, None)
        return {"port": port}

    def _cmd_udp_send(self, dst: str, port: int, data: bytes | str, sport: int = 0) -> dict:
        if isinstance(data, str):
            data = data.encode()
        sport = sport or 32768 + (os.getpid() % 28000)
        self._xmit(_stack_call(self.stack.send_udp, sport, dst, port, data, self._loop.time()))
        self._after_stack()
        return {"dst": dst, "port": port, "sport": sport, "bytes": len(data)}

    async def _cmd_udp_recv(self, port: int, timeout: float = 1.0, max: int = 64) -> list[dict]:
        queue = self._udp_queues.get(port)
        if queue is None:
            raise ControlError(f"udp port {port} is not bound here: udp_bind it first "
                               f"(a binding nobody reads for {self.udp_lease_timeout:g} s is released)")
        self._udp_readers[port] = self._udp_readers.get(port, 0) + 1
        out = []
        try:
            try:
                ev = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                return out
        finally:
            self._udp_readers[port] -= 1
            if not self._udp_readers[port]:
                del self._udp_readers[port]
            if port in self._udp_renewed:
                self._udp_renewed[port] = self._loop.time()
        out.append(ev)
        while len(out) < max and not queue.empty():
            out.append(queue.get_nowait())
        return [{"src": ip_str(e.src_ip), "sport": e.src_port, "dst": ip_str(e.dst_ip), "port": e.dst_port,
                 "data": bytes(e.data)} for e in out]

    def _expire_udp(self) -> None:
        """Unbind the ports whose lease ran out: no ``udp_recv`` waiting, none for
        self.udp_lease_timeout seconds. Runs every third of the timeout while a port is bound."""
        self._udp_expiry = None
        now = self._loop.time()
        for port, renewed in list(self._udp_renewed.items()):
            if port not in self._udp_readers and now - renewed > self.udp_lease_timeout:
                log.warning("udp port %d unread for %.0f s (its reader went away): unbound", port, now - renewed)
                self.udp_lease_expired += 1
                self._cmd_udp_unbind(port)
        if self._udp_renewed:
            self._udp_expiry = self._loop.call_later(self.udp_lease_timeout / 3, self._expire_udp)

    def _cmd_inject(self, frames: list[bytes], dev: str = "vnet0") -> dict:
        d = self._dev(dev)
        if not isinstance(frames, list) or not all(isinstance(f, (bytes, bytearray)) for f in frames):
            raise ControlError("inject: frames must be a list of binary frames")
        for sent, frame in enumerate(frames):
            try:
                self._xmit([bytes(frame)], d)
            except ControlError as exc:  # the driver's size checks, as packet_snd's
                raise ControlError(f"inject: frame {sent + 1} of {len(frames)} ({len(frame)} bytes): {exc}; "
                                   f"{sent} sent before it") from None
        return {"sent": len(frames)}

    # -- capture (an ETH_P_ALL tap, like an AF_PACKET socket) --------------------------------

    def _tap_rcv(self, skb, dev) -> None:
        # A capture must never take the datapath down with it, nor the other captures: what
        # a session raises (a bug) is counted in tap_errors and logged rate-limited, and the
        # frame goes on.
        direction = "out" if skb.pkt_type == PACKET_OUTGOING else "in"
        frame = bytes(skb_mac_header(skb))
        ts = time.time()  # pcap timestamps are wall-clock
        name = getattr(dev, "name", None)
        for cid, session in list(self._captures.items()):
            if name is not None and self._capture_dev.get(cid, name) != name:  # another device's
                continue
            try:
                session.offer(ts, direction, (frame,))
            except Exception as exc:
                self.tap_errors += 1
                self._tap_log.log(log, logging.ERROR, "capture %d: %s: %s (frame not captured; tap_errors %d)",
                                  cid, type(exc).__name__, exc, self.tap_errors, now=self._loop.time())

    async def _cmd_capture_start(self, filter: str = "", count: int | None = None, buffer: int = DEFAULT_BUFFER,
                                 snaplen: int = DEFAULT_SNAPLEN, dev: str = "vnet0") -> dict:
        """Start a capture of ``dev`` (an ETH_P_ALL tap); its filter compiles off the event loop
        (libpcap's optimiser can take seconds over a long expression), so frames keep moving."""
        d = self._dev(dev)
        try:
            limits = check_limits(buffer, count, snaplen)
            match = await asyncio.to_thread(compile_filter, filter)
            capture = Capture(filter, *limits, match=match)
        except (FilterError, CaptureLimitError) as exc:
            raise ControlError(str(exc)) from None
        cid = next(self._capture_ids)
        self._captures[cid] = CaptureSession(capture, self._loop.time())
        self._capture_dev[cid] = d.name
        if d.name not in self._taps:
            self._taps[d.name] = dev_add_pack(d, ETH_P_ALL, self._tap_rcv)
        if self._capture_timer is None:
            self._capture_timer = self._loop.call_later(CAPTURE_IDLE_TIMEOUT / 3, self._expire_captures)
        return {"id": cid, "engine": filter_engine(), "snaplen": capture.snaplen, **capture.stats()}

    async def _cmd_capture_read(self, id: int, timeout: float = 1.0, max: int = 1024) -> dict:
        """Frames captured since the last read (waits up to ``timeout`` for the first one)."""
        session = self._captures.get(id)
        if session is None:
            raise ControlError(f"no capture {id} on this node (it was stopped, or expired unread)")
        return await session.read(self._loop.time, timeout, max)

    def _cmd_capture_stop(self, id: int) -> dict:
        session = self._captures.pop(id, None)
        if session is None:
            raise ControlError(f"no capture {id} on this node")
        name = self._capture_dev.pop(id, None)
        if name in self._taps and name not in self._capture_dev.values():
            del self._taps[name]
            d = self.ns.get(name)
            if d is not None:
                dev_remove_pack(d, ETH_P_ALL, self._tap_rcv)
        if not self._captures:
            if self._capture_timer is not None:
                self._capture_timer.cancel()
                self._capture_timer = None
        return session.capture.stats()

    def _expire_captures(self) -> None:
        """Stop captures nobody has read for a while (a reader that died must not leave a tap
        behind); runs every third of the idle timeout while the tap is in place."""
        self._capture_timer = None
        now = self._loop.time()
        for cid, session in list(self._captures.items()):
            if session.idle_for(now) > CAPTURE_IDLE_TIMEOUT:
                log.warning("capture %d unread for %.0f s: stopped", cid, session.idle_for(now))
                self._cmd_capture_stop(cid)
        if self._captures:
            self._capture_timer = self._loop.call_later(CAPTURE_IDLE_TIMEOUT / 3, self._expire_captures)

    # -- helpers ------------------------------------------------------------------------------

    def _dev(self, name: str):
        dev = self.ns.get(name)
        if dev is None:
            names = ", ".join(d.name for d in self.ns.devices())
            raise ControlError(f"no device {name!r} on node {self.config.name} (devices: {names})")
        return dev



CONTROL_COMMANDS = (
    "health", "link_show", "link_set", "addr_show", "addr_add", "addr_del", "neigh_show",
    "neigh_flush", "stats", "ethtool", "ping", "arping", "udp_bind", "udp_unbind", "udp_send",
    "udp_recv", "inject", "dhcp_show", "capture_start", "capture_read", "capture_stop",
    "route_show", "route_add", "route_del", "route_get", "forwarding_set", "traceroute", "link_add", "link_del",
)

# traceroute(8)'s annotations of a destination unreachable, by code
_UNREACH_NOTES = {0: "!N", 1: "!H", 2: "!P", 4: "!F", 9: "!X", 10: "!X", 13: "!X"}
_UNREACH_TEXT = {0: "Destination Net Unreachable", 1: "Destination Host Unreachable",
                 2: "Destination Protocol Unreachable", 3: "Destination Port Unreachable",
                 4: "Frag needed"}


def _icmp_error_text(ev) -> str:
    """What ping(8) prints for an ICMP error from a router."""
    if isinstance(ev, TimeExceeded):
        return "Time to live exceeded"
    return _UNREACH_TEXT.get(ev.code, f"Dest Unreachable, Bad Code: {ev.code}")

CAPTURE_IDLE_TIMEOUT = 30.0  # seconds a capture may go unread before it is stopped
UDP_LEASE_TIMEOUT = 30.0  # seconds a bound UDP port may go unread before it is unbound


def _parse_ip(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise ControlError(f"{text!r} is not an IPv4 address") from None


def ip_str(ip) -> str:
    if isinstance(ip, str):
        return ip
    if isinstance(ip, int):
        return str(ipaddress.IPv4Address(ip))
    return str(ipaddress.IPv4Address(bytes(ip)))


def _stack_call(fn, *args):
    try:
        return fn(*args)
    except StackError as exc:
        raise ControlError(str(exc)) from None


def netdev_call(fn, *args):
    try:
        return fn(*args)
    except NetdevError as exc:
        raise ControlError(str(exc)) from None


def _plain(obj: Any) -> Any:
    """Make driver results msgpack-able (dataclasses to dicts)."""
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    return obj


def _stats64(dev) -> dict:
    return _plain(dev_get_stats(dev))


def _link_info(dev, link: ZmqLink) -> dict:
    qdisc = _plain(qdisc_get_stats(dev))
    vlan = {"link": vlan_dev_real_dev(dev).name, "vlan": vlan_dev_vlan_id(dev)} if is_vlan_dev(dev) else {}
    return {
        **vlan,
        "ifindex": dev.ifindex,
        "name": dev.name,
        "flags": _flag_names(dev),
        "mtu": dev.mtu,
        "qdisc": qdisc["kind"],
        "qdisc_stats": qdisc,
        "operstate": dev.operstate,
        "txqueuelen": dev.txqueuelen,
        "address": mac_str(bytes(dev.dev_addr)),
        "broadcast": mac_str(bytes(dev.broadcast)),
        "promiscuity": dev.promiscuity,
        "carrier": bool(netif_carrier_ok(dev)),
        "switch": link.endpoint,
        "switch_port": link.port,
        "stats64": _stats64(dev),
    }


def _flag_names(dev) -> list[str]:
    """The flags as ``ip link`` prints them (NO-CARRIER first when up without carrier)."""
    flags = dev_get_flags(dev)
    names = [name for bit, name in IFF_NAMES if flags & bit]
    if flags & IFF_UP and not flags & IFF_LOWER_UP:
        names.insert(0, "NO-CARRIER")
    return names

