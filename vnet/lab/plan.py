"""From a lab to what to run: sans-I/O.

``plan(lab, endpoints)`` returns the ``vnet switch`` and ``vnet node`` argument lists (without
the leading ``vnet``) and the control calls to make once they are up. Each node is first
``NodeConfig``'s keyword arguments (``node_config``: a packed node's entry in a ``vnet nodes``
file), its argument list rendered from them (``config_argv``): one source for both. ``endpoints`` says how
the daemons find each other: ipc sockets in a runtime directory for the embedded lab
(``LocalEndpoints``), TCP by service name for containers (``ComposeEndpoints``).

Port names follow the switch's contract: a node's vnet0 attaches as NODE, its vnetK as
NODE:vnetK. A link is a trunk dialed by its first endpoint (``--trunk PORT=ENDPOINT,as=REMOTE``)
whose port is named after the other switch on each side, with ``#k`` when two switches have
more than one link (the k-th of them). Trunk VLANs become ``--vlan PORT=trunk:...`` on both
switches, a NIC's ``vlan`` ``--vlan PORT=access:N`` on its switch. Impairments are
``impair(port, dir="out", ...)`` calls: on both ports of a link, on a NIC's switch port.
Switches come in dependency order: the one a trunk dials before the one that dials it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from vnet.lab.schema import Lab, Link, Nic, Node, Switch

DATA_PORT = 5540
CONTROL_PORT = 5541


def node_port(node: str, index: int) -> str:
    """The switch port of ``node``'s NIC vnetINDEX."""
    return node if index == 0 else f"{node}:vnet{index}"


@dataclass(frozen=True)
class LocalEndpoints:
    """ipc sockets in ``runtime_dir``: NAME.data and NAME.sock per switch, NAME.ctl per node."""

    runtime_dir: str

    def switch_bind(self, name: str) -> str:
        return f"ipc://{self.runtime_dir}/{name}.data"

    def switch_data(self, name: str) -> str:
        return self.switch_bind(name)

    def switch_control(self, name: str) -> str:
        return f"ipc://{self.runtime_dir}/{name}.sock"

    def node_control(self, name: str) -> str | None:
        return f"ipc://{self.runtime_dir}/{name}.ctl"


@dataclass(frozen=True)
class ComposeEndpoints:
    """One container per daemon on a Docker network: switches by service name over TCP,
    control on the container's loopback, node control on its default ipc socket."""

    def switch_bind(self, name: str) -> str:
        return f"tcp://0.0.0.0:{DATA_PORT}"

    def switch_data(self, name: str) -> str:
        return f"tcp://{name}:{DATA_PORT}"

    def switch_control(self, name: str) -> str:
        return f"tcp://127.0.0.1:{CONTROL_PORT}"

    def node_control(self, name: str) -> str | None:
        return None


@dataclass(frozen=True)
class Trunk:
    """One link as the two switches see it."""

    link: Link
    dialer: str
    dialer_port: str  # on the dialing switch, named after the other
    remote: str
    remote_port: str  # on the dialed switch, named after the dialer


@dataclass(frozen=True)
class ControlCall:
    """A control request to a switch once the lab is up, e.g. ``impair``."""

    switch: str
    cmd: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SwitchProc:
    name: str
    argv: list[str]
    dials: tuple[str, ...]  # the switches its trunks dial: started before it


@dataclass(frozen=True)
class NodeProc:
    name: str
    argv: list[str]
    stack: str
    switches: tuple[str, ...]  # of its NICs, in order
    config: dict[str, Any] = field(default_factory=dict)  # the same node as NodeConfig's keywords (argv's source)


@dataclass(frozen=True)
class Plan:
    switches: list[SwitchProc]
    nodes: list[NodeProc]
    calls: list[ControlCall]


def trunks(lab: Lab) -> list[Trunk]:
    """Every link as a trunk: its ports' names on both switches."""
    pair = Counter(frozenset(link.endpoints) for link in lab.links)
    seen: Counter = Counter()
    out = []
    for link in lab.links:
        a, b = link.endpoints
        key = frozenset(link.endpoints)
        seen[key] += 1
        suffix = f"#{seen[key]}" if pair[key] > 1 else ""
        out.append(Trunk(link, a, f"{b}{suffix}", b, f"{a}{suffix}"))
    return out


def _trunk_vlan(link: Link) -> str:
    spec = "trunk:" + ",".join(str(v) for v in link.vlans)
    if link.native is not None:
        spec += f":native={link.native}"
    return spec


def switch_order(lab: Lab) -> list[Switch]:
    """Dialed before dialer (a depth-first topological order, declaration order among
    equals); a cycle of dials is cut where it closes (ZeroMQ's connect retries until the
    other end binds, so the order only spares retries)."""
    dials = defaultdict(list)
    for link in lab.links:
        dials[link.endpoints[0]].append(link.endpoints[1])
    order: list[Switch] = []
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        if state.get(name):
            return
        state[name] = "visiting"
        for other in dials[name]:
            visit(other)
        state[name] = "done"
        order.append(lab.switch(name))

    for s in lab.switches:
        visit(s.name)
    return order


def _nic_spec(endpoints: Any, nic: Nic) -> str:
    spec = f"switch={endpoints.switch_data(nic.switch)},address={nic.address}"
    return spec + (f",mac={nic.mac}" if nic.mac else "")


def node_config(lab: Lab, node: Node, endpoints: Any) -> dict[str, Any]:
    """``node`` as ``NodeConfig``'s keyword arguments (node/config.py), JSON-ready: what a
    pack's entry (``vnet nodes``) takes, and what ``node_argv`` renders as ``vnet node``
    options. Only what the lab sets is given; the rest is NodeConfig's default."""
    first, *more = node.nics
    cfg: dict[str, Any] = {"name": node.name, "switch": endpoints.switch_data(first.switch)}
    if first.dhcp:
        cfg["dhcp"] = True
    else:
        cfg["addresses"] = [first.address]
    if first.mac:
        cfg["mac"] = first.mac
    control = endpoints.node_control(node.name)
    if control:
        cfg["control"] = control
    if lab.mtu:
        cfg["mtu"] = lab.mtu
    if more:
        cfg["nics"] = [_nic_spec(endpoints, nic) for nic in more]  # NicConfig.parse takes the --nic text
    if node.gateway:
        cfg["gateway"] = node.gateway
    if node.routes:
        cfg["routes"] = [[dst, gw] for dst, gw in node.routes]
    if node.forwarding:
        cfg["forwarding"] = True
    if node.dhcp_server:
        cfg["dhcp_server"] = node.dhcp_server
    if node.stack != "vnet":
        cfg["stack"] = node.stack
    return cfg


# NodeConfig field -> its `vnet node` option (vnet/cli/node.py); a list is the option repeated
_OPTIONS = {"name": "--name", "switch": "--switch", "addresses": "--address", "dhcp": "--dhcp", "mac": "--mac",
            "control": "--control", "mtu": "--mtu", "nics": "--nic", "gateway": "--gateway", "routes": "--route",
            "forwarding": "--forwarding", "dhcp_server": "--dhcp-server", "stack": "--stack"}


def config_argv(cfg: dict[str, Any]) -> list[str]:
    """``node_config``'s dict as ``vnet node`` arguments."""
    argv = ["node"]
    for key, value in cfg.items():
        opt = _OPTIONS[key]
        if value is True:
            argv.append(opt)
        elif isinstance(value, list):
            for item in value:
                argv += [opt, "=".join(item) if isinstance(item, list) else str(item)]
        else:
            argv += [opt, str(value)]
    return argv


def node_argv(lab: Lab, node: Node, endpoints: Any) -> list[str]:
    return config_argv(node_config(lab, node, endpoints))


def plan(lab: Lab, endpoints: Any) -> Plan:
    """The processes and control calls that bring ``lab`` up."""
    by_switch: dict[str, list[str]] = defaultdict(list)  # extra argv per switch
    dialed: dict[str, list[str]] = defaultdict(list)
    calls: list[ControlCall] = []
    for t in trunks(lab):
        trunk = f"{t.dialer_port}={endpoints.switch_data(t.remote)}"
        by_switch[t.dialer] += ["--trunk", f"{trunk},as={t.remote_port}"]
        dialed[t.dialer].append(t.remote)
        if t.link.vlans:
            by_switch[t.dialer] += ["--vlan", f"{t.dialer_port}={_trunk_vlan(t.link)}"]
            by_switch[t.remote] += ["--vlan", f"{t.remote_port}={_trunk_vlan(t.link)}"]
        if t.link.impair:
            for sw, port in ((t.dialer, t.dialer_port), (t.remote, t.remote_port)):
                calls.append(ControlCall(sw, "impair", {"port": port, "dir": "out", **t.link.impair.params()}))
    nodes = []
    for node in lab.nodes:
        for k, nic in enumerate(node.nics):
            port = node_port(node.name, k)
            if nic.vlan is not None:
                by_switch[nic.switch] += ["--vlan", f"{port}=access:{nic.vlan}"]
            if nic.impair:
                calls.append(ControlCall(nic.switch, "impair", {"port": port, "dir": "out", **nic.impair.params()}))
        cfg = node_config(lab, node, endpoints)
        nodes.append(NodeProc(node.name, config_argv(cfg), node.stack, tuple(n.switch for n in node.nics), cfg))
    switches = []
    for sw in switch_order(lab):
        argv = ["switch", "--name", sw.name, "--bind", endpoints.switch_bind(sw.name),
                "--switch-control", endpoints.switch_control(sw.name)]
        if lab.mtu:
            argv += ["--mtu", str(lab.mtu)]
        for opt, value in (("--stp-priority", sw.stp.priority), ("--stp-hello", sw.stp.hello),
                           ("--stp-max-age", sw.stp.max_age), ("--stp-forward-delay", sw.stp.forward_delay)):
            if value is not None:
                argv += [opt, f"{value:g}" if isinstance(value, float) else str(value)]
        switches.append(SwitchProc(sw.name, argv + by_switch[sw.name], tuple(dialed[sw.name])))
    return Plan(switches, nodes, calls)
