"""The web view's model of a LAN: samples of the daemons' control answers in, one JSON-able
picture of the topology out (sans-I/O: no sockets, time is the sample's).

A ``Sample`` is what one poll collected at time ``t`` (a monotonic clock): per switch its
``ports``, ``stats``, ``fdb``, ``vlan_show`` and ``stp_show`` answers (None where the switch
has no spanning tree), per node its ``link_show``, ``addr_show`` and ``neigh_show``.
``LanView.update(sample)`` turns it into the state the page draws, as ``bridge`` and ``ip``
would print it together:

- switches, each with its ports: a node's port (named after the node, ``NODE:vnetK`` for a
  node's second NIC) or a trunk (a port whose far end is another switch: the HELLO said
  ``bridge``, or the port carries another switch's name, or ``stp_show`` names its trunk);
- trunks, the pairs of trunk ports that face each other (one side only when the far switch is
  not polled);
- nodes with their names, IPv4 addresses, MACs and VLANs (their switch port's access VLAN, and
  802.1Q sub-interfaces ``vnet0.10``), and their neighbour tables;
- per port the rates between this sample and the previous one (packets and bits a second,
  each direction) and the drops (the switch's drop counters of the port, their sum and its rate),
  as ``sar -n DEV`` derives rates from two readings of the same counters.

A counter that went down between two samples (the port re-attached, the switch restarted)
gives no rate for that interval rather than a negative one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The switch's per-port counters that count a frame the switch dropped (switch/core.py,
# PORT_COUNTERS; STP's stp_discarding where the switch runs spanning tree).
DROP_COUNTERS = (
    "runt", "oversize", "bad_src", "malformed", "same_port", "unroutable", "hwm", "port_down",
    "port_security", "vlan_tagged", "vlan_disallowed", "vlan_untagged", "stp_discarding",
)
RATE_COUNTERS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes")


@dataclass(frozen=True)
class SwitchSample:
    """One switch's answers at one poll; ``error`` says why they are missing."""

    name: str
    ports: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    fdb: list[dict] = field(default_factory=list)
    vlans: list[dict] = field(default_factory=list)
    stp: dict | None = None
    error: str | None = None


@dataclass(frozen=True)
class NodeSample:
    """One node's answers at one poll; ``error`` says why they are missing."""

    name: str
    links: list[dict] = field(default_factory=list)
    addrs: dict = field(default_factory=dict)
    neigh: list[dict] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Sample:
    """Everything one poll collected, at monotonic time ``t`` (seconds)."""

    t: float
    switches: tuple[SwitchSample, ...]
    nodes: tuple[NodeSample, ...] = ()


def port_node(port_name: str) -> tuple[str, str]:
    """The node and NIC behind a node port: ``node2`` -> (node2, vnet0), ``r1:vnet1`` -> (r1, vnet1)."""
    node, sep, dev = port_name.partition(":")
    return node, (dev if sep else "vnet0")


def vlan_label(row: dict | None) -> str | None:
    """A ``vlan_show`` row in words: ``access 10``, ``trunk 10,20 native 10``; None: no VLAN config."""
    if not row or row.get("mode") is None:
        return None
    if row["mode"] == "access":
        return f"access {row['vlan']}"
    text = f"trunk {_vids(row.get('allowed') or [])}"
    if row.get("native") is not None:
        text += f" native {row['native']}{' tagged' if row.get('native_tagged') else ''}"
    return text


def _vids(vids: list[int]) -> str:
    """10,11,12,20 -> '10-12,20' (as --vlan specs write them)."""
    out: list[str] = []
    vids = sorted(vids)
    i = 0
    while i < len(vids):
        j = i
        while j + 1 < len(vids) and vids[j + 1] == vids[j] + 1:
            j += 1
        out.append(str(vids[i]) if i == j else f"{vids[i]}-{vids[j]}")
        i = j + 1
    return ",".join(out)


def rates(prev: dict | None, cur: dict, dt: float | None) -> dict:
    """Rates between two readings of one port's counters: rx/tx packets and bits a second,
    drops a second. None for each when there is no earlier reading, no time passed, or a
    counter went down (the port was re-attached)."""
    cur_drops = sum(int(cur.get(k, 0)) for k in DROP_COUNTERS)
    out: dict[str, float | None] = {"rx_pps": None, "tx_pps": None, "rx_bps": None, "tx_bps": None,
                                    "drops_ps": None}
    if prev is None or not dt or dt <= 0:
        return out
    prev_drops = sum(int(prev.get(k, 0)) for k in DROP_COUNTERS)
    deltas = {k: int(cur.get(k, 0)) - int(prev.get(k, 0)) for k in RATE_COUNTERS}
    if any(d < 0 for d in deltas.values()) or cur_drops < prev_drops:
        return out
    out["rx_pps"] = deltas["rx_packets"] / dt
    out["tx_pps"] = deltas["tx_packets"] / dt
    out["rx_bps"] = deltas["rx_bytes"] * 8 / dt
    out["tx_bps"] = deltas["tx_bytes"] * 8 / dt
    out["drops_ps"] = (cur_drops - prev_drops) / dt
    return out


def _is_trunk(row: dict, stp_ports: dict[str, dict], own: str, switch_names: set[str]) -> bool:
    name = row["name"]
    return bool(row.get("bridge") or row.get("trunk") or "trunk" in stp_ports.get(name, {})
                or (name in switch_names and name != own))


class LanView:
    """The state of the page, updated from one sample after another (the previous one gives
    the rates). ``state`` is the last picture; ``update`` returns it."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        self._prev: Sample | None = None
        self._prev_counters: dict[tuple[str, str], dict] = {}
        self.state: dict = self._empty()

    def _empty(self) -> dict:
        return {"source": self.source, "t": None, "interval": None, "switches": [], "trunks": [], "nodes": [],
                "links": []}

    def update(self, sample: Sample) -> dict:
        dt = None if self._prev is None else sample.t - self._prev.t
        switch_names = {s.name for s in sample.switches}
        nodes_by_name = {n.name: n for n in sample.nodes}
        counters: dict[tuple[str, str], dict] = {}
        switches: list[dict] = []
        trunk_ends: list[dict] = []
        links: list[dict] = []
        node_ports: dict[str, list[dict]] = {}
        for sw in sample.switches:
            stp_ports = {p["port"]: p for p in (sw.stp or {}).get("ports", [])}
            vlan_rows = {r["port"]: r for r in sw.vlans}
            ports = []
            for row in sorted(sw.ports, key=lambda r: _natural(r["name"])):
                name = row["name"]
                c = row.get("counters") or sw.stats.get("per_port", {}).get(name, {})
                counters[(sw.name, name)] = c
                stp = stp_ports.get(name)
                trunk = _is_trunk(row, stp_ports, sw.name, switch_names)
                port = {
                    "name": name,
                    "port_id": row.get("port_id"),
                    "admin": row.get("admin", "up"),
                    "link": row.get("link", "up"),
                    "kind": "trunk" if trunk else "node",
                    "macs": list(row.get("macs", [])),
                    "vlan": vlan_label(row.get("vlan") or vlan_rows.get(name)),
                    "counters": {k: int(c.get(k, 0)) for k in RATE_COUNTERS},
                    "drops": {k: int(c[k]) for k in DROP_COUNTERS if c.get(k)},
                    "drops_total": sum(int(c.get(k, 0)) for k in DROP_COUNTERS),
                    "rates": rates(self._prev_counters.get((sw.name, name)), c, dt),
                    "stp": None if stp is None else {"role": stp.get("role"), "state": stp.get("state")},
                    "impaired": bool(row.get("impaired")),
                    "mirrors": int(row.get("mirrors", 0) or 0),
                }
                ports.append(port)
                if trunk:
                    dial = (stp or {}).get("trunk") or {}
                    trunk_ends.append({"switch": sw.name, "port": name, "remote_port": dial.get("remote_port"),
                                       "endpoint": dial.get("endpoint"),
                                       "up": port["admin"] == "up" and port["link"] == "up"})
                else:
                    node, dev = port_node(name)
                    port["node"], port["dev"] = node, dev
                    links.append({"node": node, "dev": dev, "switch": sw.name, "port": name,
                                  "up": port["admin"] == "up"})
                    node_ports.setdefault(node, []).append({"switch": sw.name, **port})
            stp_view = None
            if sw.stp is not None:
                stp_view = {k: sw.stp.get(k) for k in ("bridge_id", "root_id", "root_port", "is_root")}
            switches.append({"name": sw.name, "error": sw.error, "ports": ports, "fdb": list(sw.fdb),
                             "stp": stp_view, "totals": dict(sw.stats.get("totals", {}))})
        nodes = [self._node(name, node_ports.get(name, []), nodes_by_name.get(name))
                 for name in sorted(set(node_ports) | set(nodes_by_name), key=_natural)]
        self._prev, self._prev_counters = sample, counters
        self.state = {"source": self.source, "t": sample.t, "interval": dt, "switches": switches,
                      "trunks": pair_trunks(trunk_ends, switch_names), "nodes": nodes, "links": links}
        return self.state

    @staticmethod
    def _node(name: str, ports: list[dict], sample: NodeSample | None) -> dict:
        addrs = (sample.addrs.get("addresses", []) if sample else []) or []
        links = sample.links if sample else []
        vlans: set[int] = set()
        for p in ports:
            label = p.get("vlan") or ""
            if label.startswith("access "):
                vlans.add(int(label.split()[1]))
        for link in links:
            base, dot, vid = link.get("name", "").partition(".")
            if dot and vid.isdigit():
                vlans.add(int(vid))
        macs = [link["address"] for link in links if link.get("address")] or \
            [m for p in ports for m in p.get("macs", [])[:1]]
        return {
            "name": name,
            "ips": [f"{a['address']}/{a['prefixlen']}" if a.get("prefixlen") is not None else a["address"]
                    for a in addrs if a.get("address")],
            "macs": macs,
            "vlans": sorted(vlans),
            "nics": [{"dev": link.get("name"), "mac": link.get("address"), "carrier": link.get("carrier"),
                      "operstate": link.get("operstate")} for link in links],
            "ports": [{"switch": p["switch"], "port": p["name"]} for p in ports],
            "neigh": [{"ip": n.get("ip"), "mac": n.get("mac"), "state": n.get("state")}
                      for n in (sample.neigh if sample else [])],
            "error": sample.error if sample else "not polled (no control endpoint here)",
        }


def pair_trunks(ends: list[dict], switch_names: set[str]) -> list[dict]:
    """Match trunk ports that face each other. A dialing switch's port knows where it dials
    (``stp_show``'s trunk ``endpoint``, in a lab ``ipc://DIR/FAR.data``) and its remote port
    (``remote_port``, by default the dialer's name); the far switch's port has that name. Two
    ends that know neither face each other when each is named after the other's switch. An
    end with no partner among the polled switches is a trunk to a switch not shown (``b`` None)."""
    used: set[int] = set()
    out: list[dict] = []
    order = sorted(range(len(ends)), key=lambda i: ends[i].get("remote_port") is None)  # dialers first
    for i in order:
        if i in used:
            continue
        a = ends[i]
        best, best_score = None, 0
        for j, b in enumerate(ends):
            if j == i or j in used or b["switch"] == a["switch"]:
                continue
            score = _facing(a, b)
            if score > best_score:
                best, best_score = j, score
        used.add(i)
        pair: dict[str, Any] = {"a": {"switch": a["switch"], "port": a["port"]}, "b": None, "up": a["up"]}
        if best is not None:
            b = ends[best]
            used.add(best)
            pair["b"] = {"switch": b["switch"], "port": b["port"]}
            pair["up"] = a["up"] and b["up"]
        elif a["port"] in switch_names:
            pair["peer"] = a["port"]  # the far switch by name; its side not seen (yet)
        out.append(pair)
    return out


def _facing(a: dict, b: dict) -> int:
    """How surely port ``b`` is the far end of trunk port ``a`` (0: it is not)."""
    remote = a.get("remote_port")
    if remote is None:
        if b.get("remote_port") is not None:
            return _facing(b, a)
        return 1 if a["port"] == b["switch"] and b["port"] == a["switch"] else 0
    if b["port"] != remote:
        return 0
    stem = (a.get("endpoint") or "").rsplit("/", 1)[-1].removesuffix(".data")
    if stem == b["switch"]:
        return 3
    return 2 if a["port"] == b["switch"] else 1


def _natural(name: str) -> tuple:
    """node2 before node10."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))
