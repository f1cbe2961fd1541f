"""The DHCP server (RFC 2131 section 4.3) for one subnet, pure: message in -> (reply,
destination) out. Leases are keyed by client identifier (option 61, else hardware type 1 +
chaddr) and survive expiry as a memory of who had which address; ``leases_to_dict()`` /
``leases=`` persist them.

Allocation (RFC 2131 4.3.1): the client's current offer, else its lease (also expired, as
long as nobody else has had the address since), else the address it asks for (option 50) if
free, else the lowest address never leased, else the address of the longest-expired lease of
another client (which that client then forgets). Never: an address bound to another client
and unexpired, offered to another client (for ``offer_hold``), DECLINEd (for
``decline_hold``), the server's own or a static one. The server does not ping before offering
(RFC 2131's SHOULD); the client's DAD catches a static host in the pool.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

from ..events import DhcpLeasesChanged
from ..ipv4 import LIMITED_BROADCAST, ZERO_IP, ip_str, parse_ip
from .codec import (
    BOOTREPLY, BOOTREQUEST, INFINITE_LEASE, OPT_CLIENT_ID, DhcpMessage, MsgType, client_key,
    dhcp_options, ip_to_u32, u32_to_ip,
)
from .counters import DhcpCounters
from .leases import Lease, restore_leases
from .pool import DhcpConfigError, DhcpPool


def _num(v, what: str, lo: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v < lo:
        raise DhcpConfigError(f"DHCP {what} {v!r} must be a number >= {lo}")
    return v


class DhcpServer:
    """An RFC 2131 server for one subnet, pure: ``handle(msg, now)`` returns the reply and
    where to send it (``LIMITED_BROADCAST`` or the client's ``ciaddr``), or None.

    The pool is ``pool_first..pool_last`` minus the server's address and ``static`` ones.
    ``lease_time`` (s, >= 10), ``offer_hold`` (how long an OFFER reserves its address),
    ``decline_hold`` (how long a DECLINEd address stays out of the pool). ``router``: an
    address for option 3, or None. ``leases``: a dict from ``leases_to_dict()``,
    restored as ``restore`` does (bad entries skipped and counted, never fatal).

    ``changed`` turns True when the leases change (a binding, renewal, release, decline)
    and ``emit(DhcpLeasesChanged())`` is called then, once until ``mark_saved()``.
    """

    def __init__(self, server_ip: bytes | str, prefixlen: int, pool_first: bytes | str,
                 pool_last: bytes | str, *, lease_time: float = 3600,
                 offer_hold: float = 60.0, decline_hold: float = 600.0,
                 static: Iterable = (), router: bytes | str | None = None,
                 leases: dict | None = None, counters: DhcpCounters | None = None,
                 emit: Callable | None = None) -> None:
        pool = DhcpPool.check(server_ip, prefixlen, pool_first, pool_last, static)
        self.ip, self.prefixlen = pool.server, pool.prefixlen
        self.mask, self.net, self.bcast = pool.mask, pool.net, pool.bcast
        self.first, self.last = pool.first, pool.last
        self.excluded = pool.excluded
        self.pool = pool
        self.lease_time = int(_num(lease_time, "lease time", 10))
        if self.lease_time >= INFINITE_LEASE:
            raise DhcpConfigError(f"DHCP lease time must be below {INFINITE_LEASE} s")
        self.offer_hold = _num(offer_hold, "offer hold time", 0)
        self.decline_hold = _num(decline_hold, "decline hold time", 0)
        self.router = None if router is None else parse_ip(router)
        self.c = counters if counters is not None else DhcpCounters()
        self.emit = emit
        self.leases: dict[bytes, Lease] = {}  # client id -> lease, bound or expired
        self.by_ip: dict[bytes, Lease] = {}  # the same leases by address
        self.offers: dict[bytes, tuple[bytes, float]] = {}  # client id -> (ip, until)
        self.offered: dict[bytes, bytes] = {}  # ip -> client id
        self.declined: dict[bytes, float] = {}  # ip -> until
        self.changed = False
        self.skipped: list[str] = []  # why, one "<key>: <reason>" line each
        if leases is not None:
            self.restore(leases)

    # -- persistence -----------------------------------------------------------------------

    def leases_to_dict(self) -> dict[str, dict]:
        """{client id hex: {"ip": "10.0.0.10", "expires": <absolute time>, "hostname":
        str | None}}, JSON-serialisable, expired leases included."""
        return {cid.hex(): {"ip": ip_str(ls.ip), "expires": ls.expires,
                            "hostname": ls.hostname}
                for cid, ls in sorted(self.leases.items(), key=lambda kv: kv[1].ip)}

    def mark_saved(self) -> None:
        self.changed = False

    @property
    def leases_skipped(self) -> int:
        """Saved lease entries not restored (why: ``skipped``); a DhcpCounters counter."""
        return self.c.leases_skipped

    def restore(self, saved: dict) -> list[str]:
        """Add the usable entries of ``saved`` (a ``leases_to_dict()`` result) to the
        leases; the rest are skipped and counted (``leases_skipped``). Returns one
        "<key>: <reason>" line per skipped entry (also kept in ``skipped``)."""
        leases, skipped = restore_leases(saved, self._in_pool)
        for cid, ls in leases.items():
            old = self.leases.pop(cid, None)
            if old is not None:
                self.by_ip.pop(old.ip, None)
            other = self.by_ip.get(ls.ip)
            if other is not None:
                del self.leases[other.client_id]
            self.leases[cid] = self.by_ip[ls.ip] = ls
        self.c.leases_skipped += len(skipped)
        self.skipped += skipped
        return skipped

    def _changed(self) -> None:
        if not self.changed:
            self.changed = True
            if self.emit is not None:
                self.emit(DhcpLeasesChanged())

    # -- the pool --------------------------------------------------------------------------

    def _in_subnet(self, ip: bytes) -> bool:
        n = ip_to_u32(ip)
        return n & self.mask == self.net and n != self.net and n != self.bcast

    def _in_pool(self, ip: bytes) -> bool:
        return self.first <= ip_to_u32(ip) <= self.last and ip not in self.excluded

    def _expire(self, now: float) -> None:
        for cid, (ip, until) in list(self.offers.items()):
            if until < now:
                self._drop_offer(cid)
        for ip, until in list(self.declined.items()):
            if until < now:
                del self.declined[ip]

    def _drop_offer(self, cid: bytes) -> None:
        o = self.offers.pop(cid, None)
        if o is not None and self.offered.get(o[0]) == cid:
            del self.offered[o[0]]

    def _taken_by_other(self, ip: bytes, cid: bytes, now: float) -> bool:
        """Someone else has ``ip``: static, ours, declined, offered or bound (unexpired)."""
        if ip in self.excluded or ip in self.declined:
            return True
        o = self.offered.get(ip)
        if o is not None and o != cid:
            return True
        ls = self.by_ip.get(ip)
        return ls is not None and ls.client_id != cid and ls.expires > now

    def _available(self, ip: bytes, cid: bytes, now: float) -> bool:
        return self._in_pool(ip) and not self._taken_by_other(ip, cid, now)

    def _own_lease(self, cid: bytes, ip: bytes) -> bool:
        """``ip`` is ``cid``'s lease (bound or expired: nobody has had it since) and still
        ours to give."""
        ls = self.leases.get(cid)
        return ls is not None and ls.ip == ip and self._in_pool(ip) \
            and ip not in self.declined and self.offered.get(ip, cid) == cid

    def _pick(self, cid: bytes, requested: bytes | None, now: float) -> bytes | None:
        o = self.offers.get(cid)
        if o is not None and self._available(o[0], cid, now):
            return o[0]
        ls = self.leases.get(cid)
        if ls is not None and self._own_lease(cid, ls.ip):
            return ls.ip
        if requested is not None and self._available(requested, cid, now):
            return requested
        used = self.by_ip.keys() | self.offered.keys() | self.declined.keys() | self.excluded
        free = self.last - self.first + 1 - sum(
            1 for x in used if self.first <= ip_to_u32(x) <= self.last)
        for n in range(self.first, self.last + 1) if free > 0 else ():  # lowest never leased
            ip = u32_to_ip(n)
            if ip not in self.by_ip and ip not in self.offered and ip not in self.declined \
                    and ip not in self.excluded:
                return ip
        old = [ls for ls in self.by_ip.values() if ls.expires <= now
               and ls.ip not in self.offered and ls.ip not in self.declined]
        if old:  # recycle the longest-expired lease of another client
            return min(old, key=lambda ls: (ls.expires, ls.ip)).ip
        return None

    def _bind(self, cid: bytes, ip: bytes, now: float, hostname: str | None) -> Lease:
        self._drop_offer(cid)
        other = self.by_ip.get(ip)
        if other is not None and other.client_id != cid:
            del self.leases[other.client_id]  # a recycled address: its old client forgets
        ls = self.leases.get(cid)
        if ls is not None and ls.ip != ip:
            del self.by_ip[ls.ip]
        if ls is not None and hostname is None:
            hostname = ls.hostname
        ls = self.leases[cid] = self.by_ip[ip] = Lease(cid, ip, now + self.lease_time,
                                                       hostname)
        self._changed()
        return ls

    # -- messages --------------------------------------------------------------------------

    def _reply(self, req: DhcpMessage, mtype: MsgType, *, yiaddr: bytes = ZERO_IP,
               ciaddr: bytes = ZERO_IP, lease: bool = True,
               message: str | None = None) -> DhcpMessage:
        cid = req.options.get(OPT_CLIENT_ID)
        if mtype == MsgType.NAK:
            opts = dhcp_options(msg_type=mtype, server_id=self.ip, message=message,
                                client_id=cid)
        else:
            lt = self.lease_time if lease else None
            opts = dhcp_options(
                msg_type=mtype, server_id=self.ip, lease_time=lt,
                t1=lt // 2 if lt else None, t2=lt * 7 // 8 if lt else None,
                subnet_mask=u32_to_ip(self.mask), router=[self.router] if self.router else None,
                client_id=cid)
        return DhcpMessage(op=BOOTREPLY, xid=req.xid, chaddr=req.chaddr, ciaddr=ciaddr,
                           yiaddr=yiaddr, giaddr=req.giaddr, flags=req.flags, options=opts)

    def _nak(self, req: DhcpMessage, why: str) -> tuple[DhcpMessage, bytes]:
        return self._reply(req, MsgType.NAK, message=why), LIMITED_BROADCAST

    def _ack(self, req: DhcpMessage, ls: Lease) -> tuple[DhcpMessage, bytes]:
        ack = self._reply(req, MsgType.ACK, yiaddr=ls.ip, ciaddr=req.ciaddr)
        return ack, (req.ciaddr if req.ciaddr != ZERO_IP else LIMITED_BROADCAST)

    def handle(self, msg: DhcpMessage, now: float) -> tuple[DhcpMessage, bytes] | None:
        """A BOOTREQUEST from a client: (reply, destination IP) or None (silence)."""
        c = self.c
        mtype = msg.msg_type
        if msg.op != BOOTREQUEST or mtype is None:
            c.bad("bad_op" if msg.op != BOOTREQUEST else "not_dhcp")
            return None
        c.count(mtype, "received")
        if msg.giaddr != ZERO_IP:
            c.ignored += 1  # relayed: vnet is one LAN, no relay agents
            return None
        self._expire(now)
        cid = client_key(msg)
        handler = {MsgType.DISCOVER: self._discover, MsgType.REQUEST: self._request,
                   MsgType.DECLINE: self._decline, MsgType.RELEASE: self._release,
                   MsgType.INFORM: self._inform}.get(mtype)
        out = handler(msg, cid, now) if handler is not None else None
        if out is None and mtype in (MsgType.OFFER, MsgType.ACK, MsgType.NAK):
            c.ignored += 1  # server messages sent as requests
        return out

    def _discover(self, msg: DhcpMessage, cid: bytes, now: float):
        requested = msg.get("requested_ip")
        ip = self._pick(cid, requested, now)
        if ip is None:
            self.c.pool_exhausted += 1
            return None
        self._drop_offer(cid)
        self.offers[cid] = (ip, now + self.offer_hold)
        self.offered[ip] = cid
        return self._reply(msg, MsgType.OFFER, yiaddr=ip), LIMITED_BROADCAST

    def _request(self, msg: DhcpMessage, cid: bytes, now: float):
        c = self.c
        server_id = msg.get("server_id")
        requested = msg.get("requested_ip")
        hostname = msg.get("hostname")
        if server_id is not None:  # SELECTING
            if server_id != self.ip:
                self._drop_offer(cid)  # it took another server's offer
                c.ignored += 1
                return None
            if requested is None:
                c.bad("bad_fields")
                return None
            o = self.offers.get(cid)
            if (o is not None and o[0] == requested) or self._own_lease(cid, requested) \
                    or self._available(requested, cid, now):
                return self._ack(msg, self._bind(cid, requested, now, hostname))
            return self._nak(msg, "requested address not available")
        if msg.ciaddr != ZERO_IP:  # RENEWING (unicast) or REBINDING (broadcast)
            return self._renew(msg, cid, msg.ciaddr, hostname, now)
        if requested is None:  # INIT-REBOOT
            c.bad("bad_fields")
            return None
        ip = requested
        if not self._in_subnet(ip):
            return self._nak(msg, "wrong network")
        if self._own_lease(cid, ip):
            return self._ack(msg, self._bind(cid, ip, now, hostname))
        if self._taken_by_other(ip, cid, now):
            return self._nak(msg, "address in use")
        if cid in self.leases:
            return self._nak(msg, "not your lease")
        c.ignored += 1  # RFC 2131 4.3.2: no record of this client, remain silent
        return None

    def _renew(self, msg: DhcpMessage, cid: bytes, ip: bytes, hostname, now: float):
        """A bound client extending its lease on ``ip`` (its ciaddr, which it uses)."""
        if not self._in_subnet(ip):
            return self._nak(msg, "wrong network")
        ls = self.leases.get(cid)
        if ls is not None and ls.ip != ip:
            return self._nak(msg, "not your lease")
        if not self._in_pool(ip):
            if ip in self.excluded:
                return self._nak(msg, "address reserved")
            self.c.ignored += 1  # in the subnet, not ours to manage
            return None
        other = self.by_ip.get(ip)
        if other is not None and other.client_id != cid and other.expires > now:
            return self._nak(msg, "address in use")
        # The client holds the address and defends it: a server that lost its lease file
        # adopts the binding, and a DECLINE of it (by a newcomer whose DAD met this very
        # client) or an offer of it to someone else was the mistake, not this lease.
        self.declined.pop(ip, None)
        o = self.offered.get(ip)
        if o is not None and o != cid:
            self._drop_offer(o)
        return self._ack(msg, self._bind(cid, ip, now, hostname))

    def _decline(self, msg: DhcpMessage, cid: bytes, now: float):
        ip = msg.get("requested_ip")
        sid = msg.get("server_id")
        ls = self.leases.get(cid)
        o = self.offers.get(cid)
        if ip is None or (sid is not None and sid != self.ip) or not (
                (ls is not None and ls.ip == ip) or (o is not None and o[0] == ip)):
            self.c.ignored += 1  # only the client an address was given to can decline it
            return None
        self.declined[ip] = now + self.decline_hold
        self._drop_offer(cid)
        if ls is not None and ls.ip == ip:
            del self.leases[cid]
            del self.by_ip[ip]
            self._changed()
        return None

    def _release(self, msg: DhcpMessage, cid: bytes, now: float):
        sid = msg.get("server_id")
        ls = self.leases.get(cid)
        if (sid is not None and sid != self.ip) or ls is None or ls.ip != msg.ciaddr:
            self.c.ignored += 1
            return None
        self._drop_offer(cid)
        if ls.expires > now:
            ls.expires = now  # remembered, so the client gets it back if still free
            self._changed()
        return None

    def _inform(self, msg: DhcpMessage, cid: bytes, now: float):
        if not self._in_subnet(msg.ciaddr):
            self.c.ignored += 1
            return None
        return self._reply(msg, MsgType.ACK, ciaddr=msg.ciaddr, lease=False), msg.ciaddr

    # -- display ---------------------------------------------------------------------------

    def show(self, now: float) -> list[dict]:
        """Leases, offers and declined addresses, by address: [{ip, state (bound, expired,
        offered, declined), client_id (hex), hostname, remaining (s, < 0 if expired)}]."""
        self._expire(now)
        rows: dict[bytes, dict] = {}
        for ls in self.by_ip.values():
            rows[ls.ip] = {"ip": ip_str(ls.ip),
                           "state": "bound" if ls.expires > now else "expired",
                           "client_id": ls.client_id.hex(), "hostname": ls.hostname,
                           "remaining": ls.expires - now}
        for cid, (ip, until) in self.offers.items():
            ls = self.leases.get(cid)
            rows[ip] = {"ip": ip_str(ip), "state": "offered", "client_id": cid.hex(),
                        "hostname": ls.hostname if ls else None, "remaining": until - now}
        for ip, until in self.declined.items():
            rows[ip] = {"ip": ip_str(ip), "state": "declined", "client_id": None,
                        "hostname": None, "remaining": until - now}
        return [rows[ip] for ip in sorted(rows)]

    def pool_size(self) -> int:
        return self.pool.size()
