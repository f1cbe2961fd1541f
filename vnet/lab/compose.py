"""``vnet lab compose``: the same lab as a docker-compose file, a container per daemon.

Every switch and node is a service running the very ``vnet switch`` / ``vnet node`` command
the embedded lab runs (vnet/lab/plan.py with ``ComposeEndpoints``: switches reach each other
by service name over TCP on a Docker bridge network, each control endpoint stays on its
container's loopback). As in vnet's own compose file (compose/docker-compose.yml), a
kernel-stack node runs as root with NET_ADMIN and /dev/net/tun (and, when the lab gives it a
default route, first deletes the one Docker gave its container: the lab's takes its place, and
the switches are on the container's own subnet), and a service waits for the
switches it plugs into (and a dialing switch for the switch it dials) to be healthy. A
switch with impairments on its ports runs under ``sh``, which applies them (``vnet switch
impair``, retried until the port has attached) once the switch is up.
"""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from vnet.lab.plan import CONTROL_PORT, ComposeEndpoints, plan
from vnet.lab.schema import Lab

IMAGE = "${VNET_IMAGE:-vnet:latest}"


def _impair_argv(params: dict[str, Any]) -> list[str]:
    argv = ["vnet", "switch", "impair", params["port"], "--dir", params["dir"]]
    for key, value in params.items():
        if key not in ("port", "dir"):
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def _switch_command(argv: list[str], impairs: list[dict[str, Any]]) -> list[str]:
    if not impairs:
        return ["vnet", *argv]
    # $$: compose's own interpolation would eat a single $
    lines = [f"{shlex.join(['vnet', *argv])} & pid=$$!", "trap 'kill -TERM $$pid' TERM INT"]
    for params in impairs:
        lines.append(f"(until {shlex.join(_impair_argv(params))} >/dev/null 2>&1; do sleep 0.5; done) &")
    lines += ["wait $$pid", "wait $$pid"]  # the second: after a trapped signal, for the switch's exit
    return ["sh", "-c", "\n".join(lines)]


def _takes_default_route(node) -> bool:
    """Whether the node gets a default route from the lab: a gateway, a 0.0.0.0/0 route, or a
    DHCP lease's router."""
    return bool(node.gateway) or any(dst == "0.0.0.0/0" for dst, _ in node.routes) or any(
        nic.dhcp for nic in node.nics)


def compose_dict(lab: Lab) -> dict[str, Any]:
    """The compose file's content for ``lab``."""
    p = plan(lab, ComposeEndpoints())
    labels = {"com.vnet.project": "vnet", "com.vnet.lab": lab.name}
    base = {"image": IMAGE, "labels": labels, "networks": ["lab"], "stop_signal": "SIGTERM",
            "stop_grace_period": "5s"}
    healthy = {"condition": "service_healthy"}
    services: dict[str, Any] = {}
    for sw in p.switches:
        impairs = [c.params for c in p.calls if c.switch == sw.name and c.cmd == "impair"]
        svc = {**base, "hostname": sw.name, "command": _switch_command(sw.argv, impairs),
               "environment": {"VNET_ROLE": "switch", "VNET_SWITCH_CONTROL": f"tcp://127.0.0.1:{CONTROL_PORT}"}}
        if sw.dials:
            svc["depends_on"] = {d: healthy for d in dict.fromkeys(sw.dials)}
        services[sw.name] = svc
    servers = [n.name for n in lab.nodes if n.dhcp_server]
    for node, proc in zip(lab.nodes, p.nodes):
        svc = {**base, "hostname": node.name, "command": ["vnet", *proc.argv],
               "environment": {"VNET_ROLE": "node", "VNET_NODE": node.name}}
        if node.stack == "kernel":
            svc.update({"user": "root", "cap_add": ["NET_ADMIN"], "devices": ["/dev/net/tun"]})
            if _takes_default_route(node):
                svc["command"] = ["sh", "-c", f"ip route del default 2>/dev/null; exec {shlex.join(svc['command'])}"]
        needs = list(dict.fromkeys(proc.switches))
        if any(nic.dhcp for nic in node.nics):
            needs += [s for s in servers if s != node.name]
        svc["depends_on"] = {d: healthy for d in needs}
        services[node.name] = svc
    return {"services": services,
            "networks": {"lab": {"driver": "bridge", "labels": labels}}}


def compose_text(lab: Lab) -> str:
    header = (f"# vnet lab {lab.name!r} as containers, written by `vnet lab compose {lab.path}`.\n"
              f"# Every switch and node of the lab is a service running the same vnet command the embedded\n"
              f"# lab runs. The image: `vnet compose --build DIR` once (vnet:latest), then:\n"
              f"#   docker compose -p {project(lab)} -f THIS_FILE up -d\n"
              f"#   docker compose -p {project(lab)} -f THIS_FILE exec NODE vnet ping -c 3 IP\n"
              f"#   docker compose -p {project(lab)} -f THIS_FILE down\n"
              f"# `vnet lab demo {lab.path} --docker` does all that; `vnet web --docker {project(lab)}` shows it.\n")
    return header + yaml.dump(compose_dict(lab), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                              width=100)


def project(lab: Lab) -> str:
    """A compose project name for the lab (lower case, as compose wants it)."""
    return f"vnet-lab-{lab.name}".lower().replace(".", "-")


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people: no anchors, multi-line strings (a switch's sh script) as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)
