"""The DHCP server's address pool: its subnet and range (dhcpd.conf's ``subnet`` and
``range`` statements), checked once before anything starts.

``DhcpPool.check`` raises ``DhcpConfigError`` (a ``StackError``, so a ``ValueError``) with
the fix in the sentence for a pool that cannot work: outside the server's subnet, holding
the subnet's network or broadcast address, first above last, or nothing left once the
server's own and the static addresses are taken out. The node daemon calls it while it
validates its configuration, so ``vnet node --dhcp-server`` fails with that sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..common import StackError
from ..ipv4 import ip_str, parse_ip
from .codec import ip_to_u32, prefix_mask, u32_to_ip


class DhcpConfigError(StackError):
    """A DHCP server configuration that cannot work; the message says what to change."""


def _dotted(n: int) -> str:
    return ip_str(u32_to_ip(n))


def _parse(what: str, text) -> bytes:
    try:
        return parse_ip(text)
    except StackError as e:
        raise DhcpConfigError(f"DHCP {what}: {e}") from None


@dataclass(frozen=True, slots=True)
class DhcpPool:
    """Addresses ``first..last`` (as integers) of the subnet ``net``/``prefixlen`` served
    from ``server``, minus ``excluded`` (the server's own and the static addresses)."""

    server: bytes
    prefixlen: int
    mask: int
    net: int
    bcast: int
    first: int
    last: int
    excluded: frozenset

    @classmethod
    def check(cls, server_ip: bytes | str, prefixlen: int, pool_first: bytes | str,
              pool_last: bytes | str, static: Iterable = ()) -> DhcpPool:
        server = _parse("server address", server_ip)
        if isinstance(prefixlen, bool) or not isinstance(prefixlen, int) \
                or not 1 <= prefixlen <= 30:
            raise DhcpConfigError(f"DHCP server prefix length {prefixlen!r} must be 1..30")
        mask = prefix_mask(prefixlen)
        net = ip_to_u32(server) & mask
        bcast = net | (~mask & 0xFFFFFFFF)
        first = ip_to_u32(_parse("pool first address", pool_first))
        last = ip_to_u32(_parse("pool last address", pool_last))
        excluded = frozenset({server} | {_parse("static address", s) for s in static})
        pool = f"{_dotted(first)}-{_dotted(last)}"
        subnet = f"{_dotted(net)}/{prefixlen}"
        hosts = f"{_dotted(net + 1)}-{_dotted(bcast - 1)}"
        for name, v in (("first", first), ("last", last)):
            if v & mask != net:
                raise DhcpConfigError(
                    f"DHCP pool {pool}: the {name} address {_dotted(v)} is not inside the "
                    f"server's subnet {subnet} (the server is {ip_str(server)}/{prefixlen}); "
                    f"use host addresses within {hosts}")
        if first > last:
            raise DhcpConfigError(
                f"DHCP pool {pool} is empty: give the lower address first "
                f"({_dotted(last)}-{_dotted(first)})")
        if first == net:
            raise DhcpConfigError(
                f"DHCP pool {pool} includes {_dotted(net)}, the network address of "
                f"{subnet}: a pool holds host addresses only; start it at "
                f"{_dotted(net + 1)} or above")
        if last == bcast:
            raise DhcpConfigError(
                f"DHCP pool {pool} includes {_dotted(bcast)}, the broadcast address of "
                f"{subnet}: a pool holds host addresses only; end it at "
                f"{_dotted(bcast - 1)} or below")
        if sum(1 for x in excluded if first <= ip_to_u32(x) <= last) > last - first:
            srv = ip_str(server)
            own = f"only the server's own address {srv}" if first == last == ip_to_u32(server) \
                else f"no address left once the server's own ({srv}) and the static " \
                     "addresses are excluded"
            raise DhcpConfigError(
                f"DHCP pool {pool} has {own}; widen it to take addresses the server does "
                f"not use, within {hosts}")
        return cls(server, prefixlen, mask, net, bcast, first, last, excluded)

    def size(self) -> int:
        """Addresses the server can give out."""
        return self.last - self.first + 1 - sum(
            1 for x in self.excluded if self.first <= ip_to_u32(x) <= self.last)
