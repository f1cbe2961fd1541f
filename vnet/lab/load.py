"""Reading a lab file: YAML in, a checked ``Lab`` (vnet/lab/schema.py) out.

The YAML is read with a SafeLoader that keeps where each mapping, key and list item was
(PyYAML's node marks), so every mistake is reported as ``FILE:LINE: where: what, and the
fix``, e.g. ``campus.yml:7: node a2: nic 1: switch 'edge3' is not declared (declared: core,
edge1, edge2)``. All the mistakes in a file are found in one pass and raised together as one
``LabError``; doubts that do not stop the lab from running (a VLAN no trunk carries between
two of its NICs) are ``Lab.warnings``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections import defaultdict
from typing import Any

import yaml

from vnet.lab.schema import IMPAIR_KEYS, STACKS, Impairment, Lab, Link, Nic, Node, Stp, Switch
from vnet.netns import lan_netns_name
from vnet.switch.impair import parse_params

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
NAME_FIX = "use 1 to 32 letters, digits, '-', '_' or '.', starting with a letter or digit"
MAC_RE = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")

LAB_KEYS = ("name", "switches", "links", "nodes", "defaults", "nodes_per_process")
DEFAULTS_KEYS = ("stack", "stp", "mtu")
SWITCH_KEYS = ("stp",)
STP_KEYS = ("priority", "hello", "max_age", "forward_delay")
LINK_KEYS = ("endpoints", "vlans", "native", "impair")
NODE_KEYS = ("nics", "stack", "forwarding", "dhcp_server", "routes")
NIC_KEYS = ("switch", "address", "vlan", "gateway", "mac", "impair")


class LabError(ValueError):
    """A lab file that cannot be run: ``errors`` holds one ``FILE:LINE: ...`` sentence each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class _Map(dict):
    """A YAML mapping that remembers its line and each key's line."""

    def __init__(self, *args: Any, line: int = 0) -> None:
        super().__init__(*args)
        self.line, self.lines = line, {}


class _Seq(list):
    """A YAML sequence that remembers its line and each item's line."""

    def __init__(self, *args: Any, line: int = 0) -> None:
        super().__init__(*args)
        self.line, self.lines = line, []


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry their lines (1-based)."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    m = _Map(line=node.start_mark.line + 1)
    for knode, vnode in node.value:
        key = loader.construct_object(knode, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.MarkedYAMLError("while reading a mapping", node.start_mark,
                                       "a key that is not a plain value", knode.start_mark) from None
        if key in m:
            loader.duplicates.append((knode.start_mark.line + 1, key))
        m[key] = loader.construct_object(vnode, deep=True)
        m.lines[key] = knode.start_mark.line + 1
    return m


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    s = _Seq((loader.construct_object(item, deep=True) for item in node.value), line=node.start_mark.line + 1)
    s.lines = [item.start_mark.line + 1 for item in node.value]
    return s


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def load_lab(path: str | os.PathLike) -> Lab:
    """Read and check the lab file at ``path``; LabError listing every mistake."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise LabError([f"{path}: cannot read the lab file: {exc.strerror or exc}"]) from None
    return parse_lab(text, path)


def parse_lab(text: str, path: str = "<lab>") -> Lab:
    """Check the lab file ``text`` (named ``path`` in errors) and return its model."""
    label = os.path.basename(path)
    loader = _Loader(text)
    loader.duplicates = []
    try:
        doc = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise LabError([f"{label}:{line}: not valid YAML: {exc.problem or exc.context}; "
                        f"check the indentation and the brackets around this line"]) from None
    except yaml.YAMLError as exc:
        raise LabError([f"{label}: not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    check = _Checker(label)
    for line, key in loader.duplicates:
        check.error(line, f"key {key!r}", "is given twice; keep one")
    lab = check.lab(doc, path)
    if check.errors:
        raise LabError(check.errors)
    return lab


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _undeclared(switch: Any, declared: list[str]) -> str:
    close = difflib.get_close_matches(str(switch), declared, n=1)
    return (f"switch {switch!r} is not declared (declared: {', '.join(declared) or 'none'})"
            + (f"; did you mean {close[0]!r}?" if close else ""))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", _Map: "a mapping",
            _Seq: "a list"}.get(type(value), type(value).__name__)


class _Checker:
    """Walks the YAML tree, collecting ``FILE:LINE: where: what`` errors and warnings."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, line: int, where: str, what: str) -> None:
        self.errors.append(f"{self.label}:{line}: {where}: {what}")

    def warn(self, line: int, where: str, what: str) -> None:
        self.warnings.append(f"{self.label}:{line}: {where}: {what}")

    # -- shapes ---------------------------------------------------------------------------------

    def mapping(self, value: Any, line: int, where: str, keys: tuple[str, ...], example: str) -> _Map | None:
        if value is None:
            value = _Map(line=line)
        if not isinstance(value, _Map):
            self.error(line, where, f"is {_kind(value)}, expected a mapping, e.g. {example}")
            return None
        for key in value:
            if key not in keys:
                self.error(value.lines[key], where, f"unknown key {key!r}; {_did_you_mean(key, keys)}"
                           f"known: {', '.join(keys)}")
        return value

    def seq(self, value: Any, line: int, where: str, example: str) -> _Seq | None:
        if not isinstance(value, _Seq):
            self.error(line, where, f"is {_kind(value)}, expected a list, e.g. {example}")
            return None
        return value

    def integer(self, value: Any, line: int, where: str, lo: int, hi: int, what: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(line, where, f"{value!r} is {_kind(value)}, expected {what} ({lo}..{hi})")
            return None
        if not lo <= value <= hi:
            self.error(line, where, f"{value} is out of range: give {what} from {lo} to {hi}")
            return None
        return value

    def vlan(self, value: Any, line: int, where: str) -> int | None:
        return self.integer(value, line, where, 1, 4094, "a VLAN id")

    def seconds(self, value: Any, line: int, where: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.error(line, where, f"{value!r}: give a positive number of seconds, e.g. 2 or 0.5")
            return None
        return float(value)

    def name(self, value: Any, line: int, where: str) -> bool:
        if not isinstance(value, str) or not NAME_RE.match(value):
            self.error(line, where, f"name {value!r} is not usable: {NAME_FIX}")
            return False
        return True

    def impairment(self, value: Any, line: int, where: str) -> Impairment | None:
        m = self.mapping(value, line, where, IMPAIR_KEYS, "{delay: 5ms, loss: 1%}")
        if m is None:
            return None
        ok = True
        raw: dict[str, str] = {}
        for key, v in m.items():
            if key not in IMPAIR_KEYS:
                continue
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                self.error(m.lines[key], where, f"{key} is {_kind(v)}; give a value such as 5ms, 1% or 10mbit")
                ok = False
                continue
            try:
                parse_params({key: v})
            except ValueError as exc:
                self.error(m.lines[key], where, str(exc))
                ok = False
                continue
            raw[key] = str(v)
        if ok and "jitter" in raw and "delay" not in raw:
            self.error(m.line, where, "jitter needs a delay to vary around; add delay: (e.g. delay: 20ms)")
            ok = False
        if ok and "reorder" in raw and "delay" not in raw:
            self.error(m.line, where, "reorder needs a delay (reordered frames skip it); add delay: (e.g. 10ms)")
            ok = False
        return Impairment(**raw) if ok and raw else None

    def stp(self, value: Any, line: int, where: str) -> Stp:
        m = self.mapping(value, line, where, STP_KEYS, "{priority: 4096, hello: 2}")
        if m is None:
            return Stp()
        out: dict[str, Any] = {}
        if "priority" in m:
            p = self.integer(m["priority"], m.lines["priority"], f"{where}: priority", 0, 61440, "a bridge priority")
            if p is not None and p % 4096:
                self.error(m.lines["priority"], f"{where}: priority", f"{p}: give a multiple of 4096 "
                           f"(IEEE 802.1D-2004), e.g. {p // 4096 * 4096}")
            elif p is not None:
                out["priority"] = p
        for key in ("hello", "max_age", "forward_delay"):
            if key in m:
                out[key] = self.seconds(m[key], m.lines[key], f"{where}: {key}")
        return Stp(**out)

    # -- the lab ------------------------------------------------------------------------------

    def lab(self, doc: Any, path: str) -> Lab:
        if doc is None:
            doc = _Map(line=1)
        top = self.mapping(doc, 1, "lab", LAB_KEYS, "name: demo, switches: {sw: {}}, nodes: {...}")
        if top is None:
            return Lab("lab", ())
        name = top.get("name")
        if name is None:
            name = re.sub(r"[^A-Za-z0-9_.-]", "-", os.path.splitext(os.path.basename(path))[0])[:32] or "lab"
        else:
            self.name(name, top.lines["name"], "lab name")
        defaults = self.mapping(top.get("defaults"), top.lines.get("defaults", 1), "defaults", DEFAULTS_KEYS,
                                "{stack: vnet, mtu: 1500}") or _Map()
        default_stack = "vnet"
        if "stack" in defaults:
            default_stack = self.stack(defaults["stack"], defaults.lines["stack"], "defaults: stack") or "vnet"
        default_stp = self.stp(defaults.get("stp"), defaults.lines.get("stp", 1), "defaults: stp")
        mtu = None
        if "mtu" in defaults:
            mtu = self.integer(defaults["mtu"], defaults.lines["mtu"], "defaults: mtu", 68, 65535, "an MTU")
        npp = None
        if "nodes_per_process" in top:
            npp = self.integer(top["nodes_per_process"], top.lines["nodes_per_process"], "nodes_per_process",
                               1, 4096, "a number of nodes per process")
        switches = self.switches(top, default_stp)
        declared = [s.name for s in switches]
        links = self.links(top, declared)
        nodes = self.nodes(top, declared, default_stack)
        names: dict[str, int] = {}
        for thing in (*switches, *nodes):
            if thing.name in names:
                self.error(thing.line, thing.name, f"the name is taken by a switch (line {names[thing.name]}); "
                           f"switches and nodes share one namespace (ports and services are named after them)")
            names[thing.name] = thing.line
        for node in nodes:
            if node.stack == "kernel":
                try:
                    lan_netns_name(str(name), node.name)
                except ValueError as exc:
                    self.error(node.line, f"node {node.name}", f"{exc} (a kernel-stack node's namespace is "
                               f"vnet-LAB-NODE)")
        self.vlans_carried(switches, links, nodes)
        return Lab(str(name), tuple(switches), tuple(links), tuple(nodes), mtu, npp, path, tuple(self.warnings))

    def stack(self, value: Any, line: int, where: str) -> str | None:
        if value not in STACKS:
            self.error(line, where, f"{value!r}: use {' or '.join(STACKS)} ({_did_you_mean(value, STACKS)}"
                       f"vnet: vnet's own stack; kernel: the kernel's, through a TAP in a namespace)")
            return None
        return value

    def switches(self, top: _Map, default_stp: Stp) -> list[Switch]:
        line = top.lines.get("switches", top.line)
        if "switches" not in top:
            self.error(line, "lab", "declares no switches; add e.g. switches: {sw1: {}}")
            return []
        m = self.mapping(top["switches"], line, "switches", tuple(top["switches"] or ()) if isinstance(
            top["switches"], _Map) else (), "{core: {}, edge1: {}}")
        if m is None:
            return []
        if not m:
            self.error(line, "switches", "is empty; declare at least one, e.g. switches: {sw1: {}}")
        out = []
        for name, body in m.items():
            where = f"switch {name}"
            if not self.name(name, m.lines[name], where):
                continue
            sm = self.mapping(body, m.lines[name], where, SWITCH_KEYS, "{stp: {priority: 4096}}")
            if sm is None:
                continue
            stp = self.stp(sm["stp"], sm.lines["stp"], f"{where}: stp") if "stp" in sm else default_stp
            if "stp" in sm:  # unset keys fall back to the defaults
                stp = Stp(*(a if a is not None else b for a, b in zip(
                    (stp.priority, stp.hello, stp.max_age, stp.forward_delay),
                    (default_stp.priority, default_stp.hello, default_stp.max_age, default_stp.forward_delay))))
            out.append(Switch(name, stp, m.lines[name]))
        return out

    def links(self, top: _Map, declared: list[str]) -> list[Link]:
        if "links" not in top or top["links"] is None:
            return []
        items = self.seq(top["links"], top.lines["links"], "links", "[{endpoints: [core, edge1]}]")
        if items is None:
            return []
        out = []
        for i, (body, line) in enumerate(zip(items, items.lines), 1):
            where = f"link {i}"
            m = self.mapping(body, line, where, LINK_KEYS, "{endpoints: [core, edge1], vlans: [10, 20]}")
            if m is None:
                continue
            if "endpoints" not in m:
                self.error(m.line, where, "has no endpoints; add endpoints: [SWITCH, SWITCH]")
                continue
            ends = m["endpoints"]
            eline = m.lines["endpoints"]
            if not isinstance(ends, _Seq) or len(ends) != 2 or not all(isinstance(e, str) for e in ends):
                self.error(eline, f"{where}: endpoints", f"{ends!r}: give two switch names, e.g. [core, edge1]")
                continue
            bad = [e for e in ends if e not in declared]
            for e in bad:
                self.error(eline, f"{where}: endpoints", _undeclared(e, declared))
            if bad:
                continue
            if ends[0] == ends[1]:
                self.error(eline, f"{where}: endpoints", f"links switch {ends[0]!r} to itself; a link joins two "
                           f"different switches")
                continue
            vlans: list[int] = []
            if "vlans" in m:
                vs = self.seq(m["vlans"], m.lines["vlans"], f"{where}: vlans", "[10, 20]")
                for v in vs or ():
                    vid = self.vlan(v, m.lines["vlans"], f"{where}: vlans")
                    if vid is not None:
                        if vid in vlans:
                            self.error(m.lines["vlans"], f"{where}: vlans", f"VLAN {vid} is listed twice")
                        else:
                            vlans.append(vid)
            native = None
            if "native" in m:
                native = self.vlan(m["native"], m.lines["native"], f"{where}: native")
                if native is not None and native not in vlans:
                    self.error(m.lines["native"], f"{where}: native", f"VLAN {native} is not in the link's vlans "
                               f"{vlans}; add it there")
                    native = None
            impair = self.impairment(m["impair"], m.lines["impair"], f"{where}: impair") if "impair" in m else None
            out.append(Link((ends[0], ends[1]), tuple(vlans), native, impair, m.line))
        return out

    def nodes(self, top: _Map, declared: list[str], default_stack: str) -> list[Node]:
        if "nodes" not in top or top["nodes"] is None:
            return []
        m = self.mapping(top["nodes"], top.lines["nodes"], "nodes",
                         tuple(top["nodes"]) if isinstance(top["nodes"], _Map) else (), "{a1: {nics: [...]}}")
        if m is None:
            return []
        return [n for name, body in m.items() if (n := self.node(name, body, m.lines[name], declared, default_stack))]

    def node(self, name: Any, body: Any, line: int, declared: list[str], default_stack: str) -> Node | None:
        where = f"node {name}"
        if not self.name(name, line, where):
            return None
        m = self.mapping(body, line, where, NODE_KEYS, "{nics: [{switch: sw1, address: 10.0.0.1/24}]}")
        if m is None:
            return None
        stack = self.stack(m["stack"], m.lines["stack"], f"{where}: stack") if "stack" in m else default_stack
        forwarding = m.get("forwarding", False)
        if not isinstance(forwarding, bool):
            self.error(m.lines["forwarding"], f"{where}: forwarding", f"{forwarding!r}: give true or false")
            forwarding = False
        if "nics" not in m:
            self.error(m.line, where, "has no nics; add nics: [{switch: SWITCH, address: CIDR}]")
            return None
        items = self.seq(m["nics"], m.lines["nics"], f"{where}: nics", "[{switch: sw1, address: 10.0.0.1/24}]")
        if items is None:
            return None
        if not items:
            self.error(m.lines["nics"], f"{where}: nics", "is empty; give at least one NIC")
            return None
        nics = [nic for i, (b, ln) in enumerate(zip(items, items.lines), 1)
                if (nic := self.nic(b, ln, f"{where}: nic {i}", declared, stack))]
        if len(nics) != len(items):
            return None
        gateways = {n.gateway for n in nics if n.gateway}
        if len(gateways) > 1:
            self.error(m.lines["nics"], where, f"its NICs name different gateways ({', '.join(sorted(gateways))}); "
                       f"a node has one default route: keep one gateway, and add routes: for the others")
        seen: dict[str, int] = {}
        for nic in nics:
            if nic.dhcp:
                continue
            ip = nic.address.split("/")[0]
            if ip in seen:
                self.error(nic.line, where, f"address {ip} is on two NICs (lines {seen[ip]} and {nic.line})")
            seen[ip] = nic.line
        dhcp_server = None
        if "dhcp_server" in m:
            dhcp_server = self.dhcp_range(m["dhcp_server"], m.lines["dhcp_server"], f"{where}: dhcp_server", nics[0])
        routes = []
        if "routes" in m:
            rm = self.mapping(m["routes"], m.lines["routes"], f"{where}: routes",
                              tuple(m["routes"]) if isinstance(m["routes"], _Map) else (),
                              "{10.0.30.0/24: 10.0.10.254}")
            for dst, gw in (rm or {}).items():
                rline = rm.lines[dst]
                try:
                    net = ipaddress.IPv4Network(str(dst))
                    gwip = ipaddress.IPv4Address(str(gw))
                except ValueError as exc:
                    self.error(rline, f"{where}: routes", f"{dst}: {gw}: {exc}; give CIDR: GATEWAY, "
                               f"e.g. 10.0.30.0/24: 10.0.10.254")
                    continue
                routes.append((str(net), str(gwip)))
        return Node(str(name), tuple(nics), stack or "vnet", forwarding, dhcp_server, tuple(routes), line)

    def dhcp_range(self, value: Any, line: int, where: str, nic: Nic) -> str | None:
        fix = "give FIRST-LAST, e.g. 10.0.10.100-10.0.10.199"
        if not isinstance(value, str) or value.count("-") != 1:
            self.error(line, where, f"{value!r}: {fix}")
            return None
        try:
            first, last = (ipaddress.IPv4Address(a.strip()) for a in value.split("-"))
        except ValueError as exc:
            self.error(line, where, f"{value!r}: {exc}; {fix}")
            return None
        if first > last:
            self.error(line, where, f"{value!r}: the first address is above the last; {fix}")
            return None
        if nic.dhcp:
            self.error(line, where, "a DHCP server needs a static address on its first NIC (vnet0), not dhcp")
            return None
        net = ipaddress.IPv4Interface(nic.address).network
        if first not in net or last not in net:
            self.error(line, where, f"{value} is not inside {net}, the subnet of its first NIC (vnet0), "
                       f"where it serves; pick addresses from {net}")
            return None
        return f"{first}-{last}"

    def nic(self, body: Any, line: int, where: str, declared: list[str], stack: str | None) -> Nic | None:
        m = self.mapping(body, line, where, NIC_KEYS, "{switch: sw1, address: 10.0.0.1/24}")
        if m is None:
            return None
        ok = True
        switch = m.get("switch")
        if switch is None:
            self.error(m.line, where, f"names no switch; add switch: (declared: {', '.join(declared)})")
            ok = False
        elif switch not in declared:
            self.error(m.lines["switch"], where, _undeclared(switch, declared))
            ok = False
        address = m.get("address")
        iface = None
        if address is None:
            self.error(m.line, where, "has no address; add address: CIDR (e.g. 10.0.0.1/24) or address: dhcp")
            ok = False
        elif address == "dhcp":
            if stack == "kernel":
                self.error(m.lines["address"], where, "a kernel-stack node gets no DHCP lease from vnet; give it a "
                           "static address, or use stack: vnet")
                ok = False
        else:
            try:
                if "/" not in str(address):
                    raise ValueError("no prefix length")
                iface = ipaddress.IPv4Interface(str(address))
            except ValueError as exc:
                self.error(m.lines["address"], where, f"address {address!r}: {exc}; give CIDR (e.g. 10.0.0.1/24) "
                           f"or dhcp")
                ok = False
            else:
                net = iface.network
                if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
                    self.error(m.lines["address"], where, f"address {address} is the "
                               f"{'network' if iface.ip == net.network_address else 'broadcast'} address of {net}; "
                               f"pick a host address")
                    ok = False
        vlan = None
        if "vlan" in m:
            vlan = self.vlan(m["vlan"], m.lines["vlan"], f"{where}: vlan")
            ok = ok and vlan is not None
        gateway = None
        if "gateway" in m:
            try:
                gw = ipaddress.IPv4Address(str(m["gateway"]))
            except ValueError as exc:
                self.error(m.lines["gateway"], where, f"gateway {m['gateway']!r}: {exc}; give an IPv4 address")
                ok = False
            else:
                gateway = str(gw)
                if iface is not None and gw not in iface.network:
                    self.error(m.lines["gateway"], where, f"gateway {gw} is outside {iface.network}, the NIC's "
                               f"subnet (address {address}); a gateway must be on the link: fix the address "
                               f"or the gateway")
                    ok = False
                elif iface is not None and gw == iface.ip:
                    self.error(m.lines["gateway"], where, f"gateway {gw} is the NIC's own address")
                    ok = False
        mac = m.get("mac")
        if mac is not None and not (isinstance(mac, str) and MAC_RE.match(mac)):
            self.error(m.lines["mac"], where, f"mac {mac!r}: give six hex pairs, e.g. 02:00:00:00:00:01")
            ok = False
        impair = self.impairment(m["impair"], m.lines["impair"], f"{where}: impair") if "impair" in m else None
        if not ok:
            return None
        return Nic(switch, str(iface) if iface else "dhcp", vlan, gateway, mac, impair, m.line)

    def vlans_carried(self, switches: list[Switch], links: list[Link], nodes: list[Node]) -> None:
        """Warn of a VLAN whose NICs sit on switches that no chain of trunks carrying it joins."""
        where: dict[int, dict[str, int]] = defaultdict(dict)  # vlan -> switch -> a line using it
        for node in nodes:
            for nic in node.nics:
                if nic.vlan is not None:
                    where[nic.vlan].setdefault(nic.switch, nic.line)
        for vlan, on in sorted(where.items()):
            if len(on) < 2:
                continue
            parent = {s: s for s in on}

            def find(s: str) -> str:
                while parent.setdefault(s, s) != s:
                    s = parent[s]
                return s

            for link in links:
                if vlan in link.vlans:
                    parent[find(link.endpoints[0])] = find(link.endpoints[1])
            groups: dict[str, list[str]] = defaultdict(list)
            for s in on:
                groups[find(s)].append(s)
            if len(groups) > 1:
                first = min(on.values())
                split = " | ".join(", ".join(sorted(g)) for g in groups.values())
                self.warn(first, f"vlan {vlan}", f"NICs in VLAN {vlan} are on switches no trunk carrying it joins "
                          f"({split}): they cannot reach each other; add {vlan} to a link's vlans:")
