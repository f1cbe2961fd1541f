"""The DHCP client state machine (RFC 2131 section 4.4, figure 5), plus CHECKING: the ACKed
address is on the interface and RFC 5227 DAD from arp.py runs before we call it bound. It
talks to the stack through the ``Dhcp`` layer (send a message, add/remove/inspect an
address). The states and their transitions are one table, ``DHCP_TRANSITIONS``; an illegal
transition raises ``DhcpStateError``.

Timings (DhcpParams), shortened for an emulated LAN where a reply takes microseconds:
retransmissions 1, 2, 4, 8, 16, 16... s (RFC 2131 4.1 suggests 4, 8, ... 64 s), each
multiplied by uniform(1 - jitter, 1 + jitter) when the stack has an ``rng``; a REQUEST is sent
``request_tries`` (4) times before going back to INIT. T1 = 0.5 and T2 = 0.875 of the lease
unless options 58/59 say otherwise; retransmissions in RENEWING/REBINDING halve the time left
to T2/expiry with a floor of ``renew_min`` (4 s; RFC: 60 s). After a DECLINE the client waits
``decline_wait`` (10 s, RFC 2131 3.1.5) before DISCOVER; consecutive NAKs back off too.
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Callable

from ..common import StackError
from ..events import DhcpBound, DhcpLost
from ..ipv4 import IFA_CONFLICT, IFA_OK, LIMITED_BROADCAST, ZERO_IP, ip_str
from .codec import (
    BOOTREQUEST, BROADCAST_FLAG, CLIENT_PARAM_REQ, INFINITE_LEASE, DhcpMessage, MsgType,
    dhcp_options, is_unicast, prefix_from_mask,
)
from .counters import DhcpCounters

if TYPE_CHECKING:
    from .layer import Dhcp


class DhcpStateError(RuntimeError):
    """An illegal client state transition: a bug in the client, not bad input."""


class DhcpState(enum.Enum):
    """RFC 2131 figure 5, plus STOPPED and CHECKING (the ACKed address is on the interface,
    tentative, while DAD runs; RFC 2131 3.1.5's ARP check)."""

    STOPPED = "stopped"
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    CHECKING = "checking"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    INIT_REBOOT = "init-reboot"
    REBOOTING = "rebooting"


_S = DhcpState
DHCP_TRANSITIONS: dict[DhcpState, frozenset[DhcpState]] = {
    _S.STOPPED: frozenset({_S.INIT, _S.INIT_REBOOT}),
    _S.INIT: frozenset({_S.SELECTING, _S.STOPPED}),
    _S.SELECTING: frozenset({_S.REQUESTING, _S.STOPPED}),
    _S.REQUESTING: frozenset({_S.CHECKING, _S.INIT, _S.STOPPED}),
    _S.INIT_REBOOT: frozenset({_S.REBOOTING, _S.STOPPED}),
    _S.REBOOTING: frozenset({_S.CHECKING, _S.INIT, _S.STOPPED}),
    _S.CHECKING: frozenset({_S.BOUND, _S.INIT, _S.STOPPED}),
    _S.BOUND: frozenset({_S.RENEWING, _S.STOPPED}),
    _S.RENEWING: frozenset({_S.BOUND, _S.REBINDING, _S.CHECKING, _S.INIT, _S.STOPPED}),
    _S.REBINDING: frozenset({_S.BOUND, _S.CHECKING, _S.INIT, _S.STOPPED}),
}
_WAITING_REPLY = frozenset({_S.SELECTING, _S.REQUESTING, _S.REBOOTING})
_HAS_LEASE = frozenset({_S.BOUND, _S.RENEWING, _S.REBINDING})


@dataclass(frozen=True)
class DhcpParams:
    """Client timings (seconds); see the module docstring for the reasoning."""

    retrans_initial: float = 1.0  # first retransmission timeout (RFC 2131: 4 s)
    retrans_max: float = 16.0  # backoff cap (RFC 2131: 64 s)
    jitter: float = 0.25  # timeouts x uniform(1 - jitter, 1 + jitter), with an rng
    request_tries: int = 4  # REQUESTs in REQUESTING/REBOOTING before INIT
    init_delay: float = 1.0  # before the first DISCOVER: uniform(0, this), with an rng
    decline_wait: float = 10.0  # after a DECLINE, before DISCOVER (RFC 2131 3.1.5)
    renew_min: float = 4.0  # floor of RENEWING/REBINDING retransmissions (RFC: 60 s)
    min_lease: float = 10.0  # ACKs with shorter leases are refused (bad_fields)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise StackError(f"DHCP parameter {f.name}={v!r}: must be a number >= 0")
        if self.retrans_initial <= 0 or self.request_tries < 1 or self.jitter >= 1:
            raise StackError("DHCP parameters: retrans_initial must be > 0, request_tries "
                             ">= 1 and jitter < 1")


class DhcpClient:
    """The client state machine on one interface. ``link`` is the ``Dhcp`` layer: it sends
    messages and adds, removes and inspects addresses. Every method returns frames."""

    def __init__(self, link: Dhcp, client_id: bytes, hostname: str | None,
                 previous_ip: bytes | None, params: DhcpParams, rng, counters: DhcpCounters,
                 emit: Callable) -> None:
        self.link = link
        self.client_id = client_id  # the whole option 61 value, type byte included
        self.hostname = hostname
        self.p = params
        self.rng = rng
        self.c = counters
        self.emit = emit
        self.state = _S.STOPPED
        self.deadline: float | None = None
        self.xid = 0
        self._xids = 0
        self.tries = 0  # transmissions of the current message
        self.started = 0.0  # when the current exchange began (secs field)
        self.sent_at = 0.0  # first transmission of the current REQUEST (lease start)
        self.wanted = previous_ip  # the address to ask for (INIT-REBOOT, DISCOVER opt 50)
        self.ip: bytes | None = None  # offered / requested / bound address
        self.prefixlen = 0
        self.server: bytes | None = None
        self.lease_time: int | None = None
        self.t1 = self.t2 = self.expiry = None  # absolute; None: infinite lease
        self.added = False  # we put self.ip on the interface (and so take it off)
        self.bound = False  # DhcpBound was emitted for self.ip (DhcpLost pairs with it)
        self.router: bytes | None = None  # the lease's router (option 3)
        self.naks = 0  # consecutive NAKs, for the back-off
        self.last_now = 0.0

    # -- the state machine -----------------------------------------------------------------

    def _set_state(self, new: DhcpState) -> None:
        if new not in DHCP_TRANSITIONS[self.state]:
            raise DhcpStateError(f"DHCP client: illegal transition {self.state.name} -> "
                                 f"{new.name}")
        self.state = new

    def _new_xid(self) -> None:
        if self.rng is not None:
            self.xid = self.rng.getrandbits(32)
        else:
            self._xids += 1
            self.xid = (zlib.crc32(self.client_id + self.link.mac) + self._xids * 0x9E3779B9) \
                & 0xFFFFFFFF

    def _timeout(self, tries: int) -> float:
        d = min(self.p.retrans_max, self.p.retrans_initial * 2 ** min(tries - 1, 30))
        if self.rng is not None and self.p.jitter:
            d *= self.rng.uniform(1 - self.p.jitter, 1 + self.p.jitter)
        return d

    def _halving(self, now: float, until: float) -> float:
        """RFC 2131 4.4.5: wait half the time left to ``until``, not less than renew_min."""
        left = until - now
        return now + left / 2 if left / 2 >= self.p.renew_min else until

    def start(self, now: float) -> list[bytes]:
        self.last_now = now
        delay = 0.0
        if self.rng is not None and self.p.init_delay:
            delay = self.rng.uniform(0, self.p.init_delay)
        if self.wanted is not None:
            self._set_state(_S.INIT_REBOOT)
        else:
            self._set_state(_S.INIT)
        self.deadline = now + delay
        return self.tick(now) if delay <= 0 else []

    def stop(self, now: float, release: bool) -> list[bytes]:
        self.last_now = now
        frames: list[bytes] = []
        if self.state in _HAS_LEASE and release and self.ip is not None:
            msg = self._msg(MsgType.RELEASE, now, ciaddr=self.ip, server_id=self.server)
            frames = self.link.send(msg, self.ip, self.server or LIMITED_BROADCAST, now)
        self._drop_address("released" if release else "stopped")
        self._set_state(_S.STOPPED)
        self.deadline = None
        return frames

    # -- sending ---------------------------------------------------------------------------

    def _msg(self, mtype: MsgType, now: float, *, ciaddr: bytes = ZERO_IP,
             requested: bytes | None = None, server_id: bytes | None = None) -> DhcpMessage:
        asking = mtype in (MsgType.DISCOVER, MsgType.REQUEST)
        opts = dhcp_options(
            msg_type=mtype, requested_ip=requested, server_id=server_id,
            client_id=self.client_id, hostname=self.hostname if asking else None,
            param_req_list=CLIENT_PARAM_REQ if asking else None)
        # No address yet: ask for broadcast replies (RFC 2131 4.1).
        flags = BROADCAST_FLAG if asking and ciaddr == ZERO_IP else 0
        return DhcpMessage(op=BOOTREQUEST, xid=self.xid, chaddr=self.link.mac, ciaddr=ciaddr,
                           secs=max(0, min(0xFFFF, int(now - self.started))), flags=flags,
                           options=opts)

    def _transmit(self, now: float) -> list[bytes]:
        """(Re)send the message of the current state and arm the retransmission timer."""
        st = self.state
        self.tries += 1
        if self.tries > 1:
            self.c.retransmits += 1
        if st == _S.SELECTING:
            msg = self._msg(MsgType.DISCOVER, now, requested=self.wanted)
            self.deadline = now + self._timeout(self.tries)
            return self.link.send(msg, ZERO_IP, LIMITED_BROADCAST, now)
        if st == _S.REQUESTING or st == _S.REBOOTING:
            msg = self._msg(MsgType.REQUEST, now, requested=self.ip,
                            server_id=self.server if st == _S.REQUESTING else None)
            self.deadline = now + self._timeout(self.tries)
            return self.link.send(msg, ZERO_IP, LIMITED_BROADCAST, now)
        if st == _S.RENEWING:
            msg = self._msg(MsgType.REQUEST, now, ciaddr=self.ip)
            self.deadline = self._halving(now, self.t2)
            return self.link.send(msg, self.ip, self.server, now)
        if st == _S.REBINDING:
            msg = self._msg(MsgType.REQUEST, now, ciaddr=self.ip)
            self.deadline = self._halving(now, self.expiry)
            return self.link.send(msg, self.ip, LIMITED_BROADCAST, now)
        raise DhcpStateError(f"DHCP client: nothing to transmit in {st.name}")

    def _begin(self, state: DhcpState, now: float, *, new_exchange: bool = True) -> list:
        self._set_state(state)
        if new_exchange:
            self._new_xid()
            self.started = now
        self.tries = 0
        self.sent_at = now
        return self._transmit(now)

    def _discover(self, now: float) -> list[bytes]:
        if self.state != _S.INIT:
            self._set_state(_S.INIT)
        self.ip = self.server = None
        return self._begin(_S.SELECTING, now)

    def _restart(self, now: float, wait: float) -> list[bytes]:
        """Back to INIT; DISCOVER after ``wait``."""
        self._set_state(_S.INIT)
        self.ip = self.server = None
        self.deadline = now + wait
        return self._discover(now) if wait <= 0 else []

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[bytes]:
        self.last_now = now
        frames = self.check(now)
        for _ in range(8):  # a late tick may pass T1, T2 and the expiry at once
            if self.deadline is None or self.deadline > now:
                break
            frames += self._timer(now)
        return frames

    def _timer(self, now: float) -> list[bytes]:
        st = self.state
        self.deadline = None
        if st == _S.INIT:
            return self._discover(now)
        if st == _S.INIT_REBOOT:
            self.ip = self.wanted
            return self._begin(_S.REBOOTING, now)
        if st == _S.SELECTING:
            return self._transmit(now)
        if st == _S.REQUESTING or st == _S.REBOOTING:
            if self.tries >= self.p.request_tries:  # no answer: start over (RFC 2131 3.1)
                return self._restart(now, 0)
            return self._transmit(now)
        if st == _S.BOUND:
            return self._begin(_S.RENEWING, now)
        if st == _S.RENEWING:
            if now >= self.t2:
                self._set_state(_S.REBINDING)
                return self._transmit(now)
            return self._transmit(now)
        if st == _S.REBINDING:
            if now >= self.expiry:
                self._drop_address("expired")
                return self._restart(now, 0)
            return self._transmit(now)
        return []

    def next_deadline(self) -> float | None:
        return self.deadline

    def link_up(self, now: float) -> list[bytes]:
        """Carrier back: a client waiting for a reply sends again now, backoff restarted
        (what was sent while the link was down was lost)."""
        if self.state in _WAITING_REPLY:
            self.tries = 0
            return self._transmit(now)
        return []

    # -- receiving -------------------------------------------------------------------------

    def receive(self, msg: DhcpMessage, src: bytes, now: float) -> list[bytes]:
        """A BOOTREPLY (decoded, from ``src``) that arrived on port 68."""
        self.last_now = now
        c = self.c
        if msg.chaddr != self.link.mac:
            c.not_for_us += 1
            return []
        mtype = msg.msg_type
        c.count(mtype, "received")
        if msg.xid != self.xid:
            c.ignored += 1
            return []
        st = self.state
        if mtype == MsgType.OFFER and st == _S.SELECTING:
            sid = msg.get("server_id")
            if sid is None or not is_unicast(sid) or not is_unicast(msg.yiaddr):
                c.bad("bad_fields")
                return []
            self.ip, self.server = msg.yiaddr, sid
            return self._begin(_S.REQUESTING, now, new_exchange=False)
        if mtype == MsgType.ACK and st in (_S.REQUESTING, _S.REBOOTING, _S.RENEWING, _S.REBINDING):
            sid = msg.get("server_id")
            if sid is not None and not is_unicast(sid):
                c.bad("bad_fields")
                return []
            if st == _S.REQUESTING and sid is not None and sid != self.server:
                c.ignored += 1
                return []
            return self._ack(msg, sid or self.server or src, now)
        if mtype == MsgType.NAK and st in (_S.REQUESTING, _S.REBOOTING, _S.RENEWING,
                                           _S.REBINDING):
            sid = msg.get("server_id")
            if st == _S.REQUESTING and sid is not None and sid != self.server:
                c.ignored += 1
                return []
            return self._nak(now)
        c.ignored += 1
        return []

    def _ack(self, msg: DhcpMessage, server: bytes, now: float) -> list[bytes]:
        lease = msg.get("lease_time")
        ip = msg.yiaddr
        if lease is None or lease < self.p.min_lease or not is_unicast(ip):
            self.c.bad("bad_fields")
            return []
        plen = prefix_from_mask(msg.get("subnet_mask"), ip)
        self.server = server
        routers = [r for r in msg.get("router") or () if is_unicast(r)]
        self.router = routers[0] if routers else None
        self.lease_time = lease
        if lease == INFINITE_LEASE:
            self.t1 = self.t2 = self.expiry = None
        else:
            t1, t2 = lease * 0.5, lease * 0.875
            o1, o2 = msg.get("t1"), msg.get("t2")
            if o1 is not None and o2 is not None and 0 < o1 < o2 < lease:
                t1, t2 = o1, o2
            elif o1 is not None and 0 < o1 < t2:
                t1 = o1
            elif o2 is not None and t1 < o2 < lease:
                t2 = o2
            start = self.sent_at  # RFC 2131 4.4.1: the lease runs from the request
            self.t1, self.t2, self.expiry = start + t1, start + t2, start + lease
        renewal = self.state in (_S.RENEWING, _S.REBINDING)
        if renewal and ip == self.ip and self.link.address_state(ip) == IFA_OK:
            self._set_state(_S.BOUND)
            self.deadline = self.t1
            self.emit(DhcpBound(ip, self.prefixlen, lease, server, renewal=True, router=self.router))
            return []
        if renewal:  # another address, or ours went missing: set it up afresh
            self._drop_address("changed")
        self._set_state(_S.CHECKING)
        self.deadline = None
        self.ip, self.prefixlen = ip, plen
        state = self.link.address_state(ip)
        frames: list[bytes] = []
        if state is None:
            try:
                frames = self.link.add_address(ip, plen, now)
            except StackError:
                self.c.bad("bad_fields")  # e.g. the subnet's broadcast address
                self.ip = None
                return frames + self._restart(now, self.p.decline_wait)
            self.added = True
        else:
            self.added = False  # configured by hand: adopt it, never delete it
        return frames + self.check(now)

    def check(self, now: float) -> list[bytes]:
        """In CHECKING: bound once DAD passes; DECLINE if it found the address in use."""
        if self.state != _S.CHECKING:
            return []
        state = self.link.address_state(self.ip)
        if state == IFA_OK:
            self._set_state(_S.BOUND)
            self.naks = 0
            self.wanted = self.ip
            self.deadline = self.t1
            self.bound = True
            self.emit(DhcpBound(self.ip, self.prefixlen, self.lease_time, self.server, router=self.router))
            return []
        if state == IFA_CONFLICT:  # RFC 2131 3.1.5: DECLINE, wait, start over
            ip = self.ip
            msg = self._msg(MsgType.DECLINE, now, requested=ip, server_id=self.server)
            frames = self.link.send(msg, ZERO_IP, LIMITED_BROADCAST, now)
            self._drop_address("declined")
            if self.wanted == ip:
                self.wanted = None
            return frames + self._restart(now, self.p.decline_wait)
        if state is None:  # deleted by hand while DAD ran: start over, nothing to decline
            self.added = False
            return self._restart(now, self.p.retrans_initial)
        return []

    def _nak(self, now: float) -> list[bytes]:
        if self.state in _HAS_LEASE:
            self._drop_address("nak")
        if self.wanted == self.ip:
            self.wanted = None
        self.naks += 1
        wait = 0.0 if self.naks == 1 else self._timeout(self.naks - 1)
        return self._restart(now, wait)

    def _drop_address(self, reason: str) -> None:
        ip = self.ip
        if ip is not None and self.added and self.link.address_state(ip) is not None:
            self.link.del_address(ip)
        if ip is not None and self.bound:
            self.emit(DhcpLost(ip, reason))
        self.added = self.bound = False
        self.lease_time = self.t1 = self.t2 = self.expiry = None

    # -- display ---------------------------------------------------------------------------

    def show(self, now: float | None = None) -> dict:
        now = self.last_now if now is None else now

        def left(t):
            return None if t is None else t - now

        has = self.state in _HAS_LEASE
        return {
            "state": self.state.value,
            "address": ip_str(self.ip) if self.ip is not None else None,
            "prefixlen": self.prefixlen if self.ip is not None and has else None,
            "server": ip_str(self.server) if self.server is not None else None,
            "lease_time": self.lease_time if has else None,
            "lease_remaining": left(self.expiry) if has else None,
            "renew_in": left(self.t1) if self.state == _S.BOUND else None,
            "rebind_in": left(self.t2) if has else None,
            "client_id": self.client_id.hex(),
            "hostname": self.hostname,
            "xid": self.xid,
            "next_timeout": left(self.deadline),
        }
