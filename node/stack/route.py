"""The routing table: the kernel's FIB (net/ipv4/fib_trie.c, the main table), sans-I/O.

A route says where packets for a prefix go: out of device ``dev``, to the gateway ``gw`` or,
with no gateway, to the destination itself (an on-link, "scope link" route). Lookup is
longest-prefix match, then the lowest metric, then the oldest route, as ``fib_table_lookup``
picks among aliases.

Routes come from three places, named by ``proto`` as ``ip route`` shows them:

- ``kernel``: the connected route of each usable address (``fib_add_ifaddr``): the address's
  network on its device, with the address as preferred source. ``sync_connected`` replaces a
  device's connected routes whenever its addresses change, so they appear when an address
  becomes usable (duplicate address detection passed) and go when it is deleted or lost.
- ``static``: added by the administrator (``ip route add``, the ``route_add`` command).
- ``boot``: from the node's configuration (``--gateway``, ``--route``), as iproute2 marks
  routes installed at boot.

A gateway route whose device has no usable address is dead and skipped by ``lookup`` (the
kernel's RTNH_F_DEAD / linkdown nexthops), so a less specific route can take over; it comes
back to life with the device's next usable address. Errors are StackErrors worded as
``ip route`` reports them, with the fix.
"""

from __future__ import annotations

from .common import StackError
from .ipv4 import ip_str, parse_ip

RTPROT_KERNEL = "kernel"
RTPROT_BOOT = "boot"
RTPROT_STATIC = "static"
RTPROT_DHCP = "dhcp"  # a DHCP client's (dhclient-script's) default route
RT_SCOPE_LINK = "link"
RT_SCOPE_UNIVERSE = "global"


def _mask(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF


def parse_prefix(text: str) -> tuple[int, int]:
    """"10.0.1.0/24" (or "default", or a bare address: /32) -> (network as int, length).

    Host bits set are refused, as iproute2 refuses them ("Invalid prefix for given prefix
    length")."""
    if text == "default":
        return 0, 0
    if not isinstance(text, str) or text.count("/") > 1:
        raise StackError(f"bad route destination {text!r}: write a prefix such as 10.0.1.0/24, "
                         "an address (a /32 host route), or default")
    addr, _, plen_text = text.partition("/")
    ip = int.from_bytes(parse_ip(addr), "big")
    if not plen_text:
        return ip, 32
    if not (plen_text.isascii() and plen_text.isdigit() and 0 <= int(plen_text) <= 32):
        raise StackError(f"bad prefix length in {text!r}: it is 0..32, e.g. 10.0.1.0/24")
    plen = int(plen_text)
    if ip & ~_mask(plen) & 0xFFFFFFFF:
        net = ip & _mask(plen)
        raise StackError(f"invalid prefix for given prefix length: {text} has host bits set; "
                         f"the network is {ip_str(net.to_bytes(4, 'big'))}/{plen}")
    return ip, plen


def prefix_str(net: int, plen: int) -> str:
    if plen == 0:
        return "default"
    s = ip_str(net.to_bytes(4, "big"))
    return s if plen == 32 else f"{s}/{plen}"


class Route:
    """One route (a fib_alias and its one nexthop)."""

    __slots__ = ("net", "plen", "mask", "gw", "dev", "proto", "scope", "metric", "prefsrc", "seq")

    def __init__(self, net: int, plen: int, dev: str, gw: bytes | None = None, *,
                 proto: str = RTPROT_STATIC, metric: int = 0, prefsrc: bytes | None = None,
                 seq: int = 0) -> None:
        self.net = net
        self.plen = plen
        self.mask = _mask(plen)
        self.gw = gw
        self.dev = dev
        self.proto = proto
        self.scope = RT_SCOPE_UNIVERSE if gw is not None else RT_SCOPE_LINK
        self.metric = metric
        self.prefsrc = prefsrc
        self.seq = seq

    @property
    def dst(self) -> str:
        return prefix_str(self.net, self.plen)

    def as_dict(self) -> dict:
        """What ``ip -j route`` would say: dst, via (None on-link), dev, proto, scope,
        metric, src (preferred source, or None)."""
        return {"dst": self.dst, "via": ip_str(self.gw) if self.gw is not None else None,
                "dev": self.dev, "proto": self.proto, "scope": self.scope, "metric": self.metric,
                "src": ip_str(self.prefsrc) if self.prefsrc is not None else None}

    def __repr__(self) -> str:
        via = f" via {ip_str(self.gw)}" if self.gw is not None else ""
        return f"Route({self.dst}{via} dev {self.dev} proto {self.proto} metric {self.metric})"


class Fib:
    """The main routing table: routes by prefix length, then by network.

    ``live`` holds the devices with a usable address (kept by ``sync_connected``); gateway
    routes on other devices are dead and skipped by ``lookup``."""

    def __init__(self) -> None:
        self._tables: dict[int, dict[int, list[Route]]] = {}
        self._plens: list[int] = []  # prefix lengths in use, longest first
        self._seq = 0
        self.live: set[str] = set()

    # -- changes ---------------------------------------------------------------------------

    def add(self, route: Route) -> Route:
        """Insert ``route``; StackError if one with the same prefix and metric is there
        already ("File exists"). Connected routes are appended whatever is there (fib_magic's
        NLM_F_APPEND): an address never fails to become usable over a route."""
        same = self._tables.get(route.plen, {}).get(route.net, [])
        for r in same:
            if r.metric == route.metric and route.proto != RTPROT_KERNEL:
                raise StackError(f"route {route.dst} metric {route.metric} exists already "
                                 f"({'via ' + ip_str(r.gw) + ' ' if r.gw else ''}dev {r.dev}, "
                                 f"proto {r.proto}) (File exists); delete it first or give "
                                 "another metric")
        self._seq += 1
        route.seq = self._seq
        table = self._tables.get(route.plen)
        if table is None:
            table = self._tables[route.plen] = {}
            self._plens = sorted(self._tables, reverse=True)
        table.setdefault(route.net, []).append(route)
        table[route.net].sort(key=lambda r: (r.metric, r.seq))
        return route

    def _unlink(self, route: Route) -> None:
        table = self._tables[route.plen]
        rs = table[route.net]
        rs.remove(route)
        if not rs:
            del table[route.net]
            if not table:
                del self._tables[route.plen]
                self._plens = sorted(self._tables, reverse=True)

    def delete(self, net: int, plen: int, *, gw: bytes | None = None, dev: str | None = None
               ) -> Route:
        """Remove the first route for net/plen (matching ``gw``/``dev`` if given), any proto,
        as ``ip route del`` does; StackError if there is none ("No such process")."""
        for r in self._tables.get(plen, {}).get(net, []):
            if (gw is None or r.gw == gw) and (dev is None or r.dev == dev):
                self._unlink(r)
                return r
        raise StackError(f"no route {prefix_str(net, plen)} in the table (No such process); "
                         "`ip route show` lists them")

    def flush_dev(self, dev: str) -> int:
        """Remove every route through ``dev`` (the device went away); returns how many."""
        gone = [r for r in self.routes() if r.dev == dev]
        for r in gone:
            self._unlink(r)
        self.live.discard(dev)
        return len(gone)

    def sync_connected(self, dev: str, ifas) -> None:
        """Make ``dev``'s connected (proto kernel) routes those of ``ifas``, its usable
        addresses (Ifaddr objects): one per network, the first address as source."""
        want: dict[tuple[int, int], bytes] = {}
        for ifa in ifas:
            want.setdefault((ifa.net, ifa.prefixlen), ifa.ip)
        for r in [r for r in self.routes() if r.dev == dev and r.proto == RTPROT_KERNEL]:
            if want.get((r.net, r.plen)) == r.prefsrc:
                del want[(r.net, r.plen)]
            else:
                self._unlink(r)
        for (net, plen), src in want.items():
            self.add(Route(net, plen, dev, None, proto=RTPROT_KERNEL, prefsrc=src))
        if ifas:
            self.live.add(dev)
        else:
            self.live.discard(dev)

    # -- lookups ---------------------------------------------------------------------------

    def lookup(self, dst: bytes) -> Route | None:
        """The route for ``dst``: longest prefix, then lowest metric; dead routes skipped."""
        d = int.from_bytes(dst, "big")
        tables = self._tables
        live = self.live
        for plen in self._plens:
            rs = tables[plen].get(d & _mask(plen))
            if rs:
                for r in rs:
                    if r.gw is None or r.dev in live:
                        return r
        return None

    def routes(self) -> list[Route]:
        """Every route: default first, then by network and prefix length, then metric (the
        order ``ip route`` lists the main table in)."""
        out = [r for table in self._tables.values() for rs in table.values() for r in rs]
        out.sort(key=lambda r: (r.plen != 0, r.net, r.plen, r.metric, r.seq))
        return out

    def show(self) -> list[dict]:
        return [r.as_dict() for r in self.routes()]
