"""The DHCP server's lease: a binding of a client identifier to an address, as dhcpd's
lease database holds them."""

from __future__ import annotations


class Lease:
    """A binding: client identifier -> address until ``expires`` (absolute, the clock of
    ``now``). Kept after expiry as the memory of who had the address."""

    __slots__ = ("client_id", "ip", "expires", "hostname")

    def __init__(self, client_id: bytes, ip: bytes, expires: float, hostname: str | None):
        self.client_id = client_id
        self.ip = ip
        self.expires = expires
        self.hostname = hostname
