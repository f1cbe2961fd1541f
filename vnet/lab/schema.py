"""The lab model: a whole topology (switches, the links between them, nodes and their NICs)
as frozen dataclasses, the form vnet/lab/load.py gives a lab file once it is checked.

A ``Link`` is a cable between two switches (802.1Q trunk when it carries ``vlans``); a
``Nic`` is one of a node's interfaces (vnet0, vnet1, ...) plugged into a switch port, an
access port when it names a ``vlan``. ``Impairment`` is netem's qdisc parameters as the
switch's ``impair`` control takes them (switch/impair.py parses the values). Nothing here
does I/O: vnet/lab/plan.py turns a ``Lab`` into processes and control calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

STACKS = ("vnet", "kernel")
IMPAIR_KEYS = ("delay", "jitter", "loss", "rate", "duplicate", "corrupt", "reorder", "queue", "seed")


@dataclass(frozen=True)
class Impairment:
    """netem-like settings on one switch port's egress (``impair(port, dir="out", ...)``);
    values as on ``vnet switch impair``'s command line ("5ms", "1%", "10mbit")."""

    delay: str | None = None
    jitter: str | None = None
    loss: str | None = None
    rate: str | None = None
    duplicate: str | None = None
    corrupt: str | None = None
    reorder: str | None = None
    queue: str | None = None
    seed: str | None = None

    def params(self) -> dict[str, str]:
        """The settings given, as the switch's ``impair`` control keywords."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class Stp:
    """A bridge's spanning-tree parameters (IEEE 802.1D: bridge priority, hello time, max
    age, forward delay; seconds); None: the switch's default."""

    priority: int | None = None
    hello: float | None = None
    max_age: float | None = None
    forward_delay: float | None = None


@dataclass(frozen=True)
class Switch:
    name: str
    stp: Stp = Stp()
    line: int = 0


@dataclass(frozen=True)
class Link:
    """A cable between two switches; the first endpoint dials the second. ``vlans``: the
    VLANs the trunk carries tagged (empty: the link is VLAN-transparent); ``native``: the
    one it carries untagged."""

    endpoints: tuple[str, str]
    vlans: tuple[int, ...] = ()
    native: int | None = None
    impair: Impairment | None = None
    line: int = 0


@dataclass(frozen=True)
class Nic:
    """One of a node's interfaces: the first is vnet0, the next vnet1, ... ``address`` is a
    CIDR or "dhcp"; ``vlan`` makes its switch port an access port in that VLAN."""

    switch: str
    address: str
    vlan: int | None = None
    gateway: str | None = None
    mac: str | None = None
    impair: Impairment | None = None
    line: int = 0

    @property
    def dhcp(self) -> bool:
        return self.address == "dhcp"


@dataclass(frozen=True)
class Node:
    name: str
    nics: tuple[Nic, ...]
    stack: str = "vnet"
    forwarding: bool = False
    dhcp_server: str | None = None
    routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, gateway)
    line: int = 0

    @property
    def gateway(self) -> str | None:
        """The node's default route: the one gateway its NICs name (load.py checks they agree)."""
        return next((n.gateway for n in self.nics if n.gateway), None)

    def static_ips(self) -> list[str]:
        return [n.address.split("/")[0] for n in self.nics if not n.dhcp]


@dataclass(frozen=True)
class Lab:
    name: str
    switches: tuple[Switch, ...]
    links: tuple[Link, ...] = ()
    nodes: tuple[Node, ...] = ()
    mtu: int | None = None
    nodes_per_process: int | None = None  # packed nodes: several node daemons' worth in one process
    path: str = "<lab>"
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def switch(self, name: str) -> Switch:
        for s in self.switches:
            if s.name == name:
                return s
        raise KeyError(f"lab {self.name}: no switch {name!r} ({', '.join(s.name for s in self.switches)})")

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"lab {self.name}: no node {name!r} ({', '.join(n.name for n in self.nodes)})")
