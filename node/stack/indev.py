"""One device as the IPv4 stack holds it: the kernel's ``struct in_device``.

The stack keeps one per device it runs on (vnet0, vnet1, vnet0.10...): the device state the
layers read (``Netdev``), its addresses (``AddrTable``) and its ARP with its own neighbour
table (``Arp``), as Linux keeps ifa_list and arp_tbl entries per device. The routing table
(route.py) names devices; ``HostStack.add_device`` makes them.
"""

from __future__ import annotations


class InDevice:
    """A device's IPv4 state: ``dev`` (Netdev), ``addrs`` (AddrTable), ``arp`` (Arp)."""

    __slots__ = ("dev", "addrs", "arp")

    def __init__(self, dev, addrs, arp) -> None:
        self.dev = dev
        self.addrs = addrs
        self.arp = arp

    @property
    def name(self) -> str:
        return self.dev.name

    def __repr__(self) -> str:
        return f"InDevice({self.dev.name}, {[a.cidr for a in self.addrs.all]})"
