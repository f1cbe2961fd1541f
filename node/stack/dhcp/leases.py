"""The DHCP server's leases: a binding of a client identifier to an address, as dhcpd's
lease database holds them, and the reading of a saved set of them.

``restore_leases`` takes what ``DhcpServer.leases_to_dict()`` returned (possibly long ago,
possibly edited by hand, possibly damaged) and keeps every entry it can use. An entry it
cannot use is skipped with a reason, never fatal: a bad client identifier, address, expiry
or hostname, an entry that is not a map, an address outside the pool (the pool changed
since it was saved), or an address two clients claim (the later expiry wins).
"""

from __future__ import annotations

import math
from typing import Callable

from ..common import StackError
from ..ipv4 import ip_str, parse_ip

LEASE_ENTRY_FORMAT = ('client id hex -> {"ip": "a.b.c.d", "expires": <seconds>, '
                      '"hostname": str or null}')


class Lease:
    """A binding: client identifier -> address until ``expires`` (absolute, the clock of
    ``now``). Kept after expiry as the memory of who had the address."""

    __slots__ = ("client_id", "ip", "expires", "hostname")

    def __init__(self, client_id: bytes, ip: bytes, expires: float, hostname: str | None):
        self.client_id = client_id
        self.ip = ip
        self.expires = expires
        self.hostname = hostname


class BadLeaseEntry(ValueError):
    """One saved lease entry that cannot be used; the message says why."""


def _short(v, limit: int = 40) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _key(key) -> str:
    """A saved key as a log line shows it: as is when it is short printable text."""
    if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 40:
        return key
    return _short(key, 20)


def parse_lease_entry(key, entry) -> Lease:
    """A ``Lease`` from one saved entry, or BadLeaseEntry saying what is wrong with it."""
    if not isinstance(key, str):
        raise BadLeaseEntry(f"client id {_short(key)} is not a hex string")
    try:
        cid = bytes.fromhex(key)
    except ValueError:
        raise BadLeaseEntry("client id is not hex") from None
    if not cid:
        raise BadLeaseEntry("client id is empty")
    if not isinstance(entry, dict):
        raise BadLeaseEntry(f"entry {_short(entry)} is not a map")
    if "ip" not in entry:
        raise BadLeaseEntry("no ip")
    try:
        ip = parse_ip(entry["ip"]) if isinstance(entry["ip"], str) else None
    except StackError:
        ip = None
    if ip is None:
        raise BadLeaseEntry(f"ip {_short(entry['ip'])} is not an IPv4 address")
    expires = entry.get("expires")
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) \
            or not math.isfinite(expires):
        raise BadLeaseEntry(f"expires {_short(expires)} is not a finite number of seconds")
    hostname = entry.get("hostname")
    if hostname is not None and not isinstance(hostname, str):
        raise BadLeaseEntry(f"hostname {_short(hostname)} is not a string")
    return Lease(cid, ip, float(expires), hostname)


def restore_leases(saved, in_pool: Callable[[bytes], bool]
                   ) -> tuple[dict[bytes, Lease], list[str]]:
    """The usable leases of ``saved`` by client id, and one "<key>: <reason>" line for each
    entry skipped. ``saved`` itself must be a dict (StackError otherwise: the caller's
    mistake; a lease file that is not a map is the file reader's to handle)."""
    if not isinstance(saved, dict):
        raise StackError(f"DHCP leases must be a dict as leases_to_dict() returns "
                         f"({LEASE_ENTRY_FORMAT}), not {type(saved).__name__}")
    leases: dict[bytes, Lease] = {}
    by_ip: dict[bytes, Lease] = {}
    skipped: list[str] = []
    for key, entry in saved.items():
        try:
            ls = parse_lease_entry(key, entry)
        except BadLeaseEntry as e:
            skipped.append(f"{_key(key)}: {e}")
            continue
        if not in_pool(ls.ip):
            skipped.append(f"{_key(key)}: {ip_str(ls.ip)} is not in the pool")
            continue
        if ls.client_id in leases:
            skipped.append(f"{_key(key)}: a second entry for client {ls.client_id.hex()}")
            continue
        old = by_ip.get(ls.ip)
        if old is not None:
            if old.expires >= ls.expires:
                skipped.append(f"{_key(key)}: {ip_str(ls.ip)} is also leased to "
                               f"{old.client_id.hex()}, which expires later")
                continue
            skipped.append(f"{old.client_id.hex()}: {ip_str(ls.ip)} is also leased to "
                           f"{ls.client_id.hex()}, which expires later")
            del leases[old.client_id]
        leases[ls.client_id] = by_ip[ls.ip] = ls
    return leases, skipped
