"""The plan of campus.yml: each daemon's argv (the shared contracts' options) and the control
calls, and the order switches start in; the compose file built on the same plan."""

from __future__ import annotations

from pathlib import Path

import yaml

from vnet.lab import load_lab, parse_lab
from vnet.lab.compose import compose_dict, compose_text
from vnet.lab.plan import ComposeEndpoints, ControlCall, LocalEndpoints, node_port, plan, trunks

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "labs"
RT = "/run/x"


def campus():
    return plan(load_lab(EXAMPLES / "campus.yml"), LocalEndpoints(RT))


def test_switches_start_dialed_first():
    p = campus()
    assert [s.name for s in p.switches] == ["edge2", "edge1", "core"]
    assert {s.name: s.dials for s in p.switches} == {"edge2": (), "edge1": ("edge2",), "core": ("edge1", "edge2")}


def test_switch_argv():
    argv = {s.name: s.argv for s in campus().switches}
    assert argv["core"] == [
        "switch", "--name", "core", "--bind", f"ipc://{RT}/core.data", "--switch-control", f"ipc://{RT}/core.sock",
        "--trunk", f"edge1=ipc://{RT}/edge1.data,as=core", "--vlan", "edge1=trunk:10,20",
        "--trunk", f"edge2=ipc://{RT}/edge2.data,as=core", "--vlan", "edge2=trunk:10,20",
        "--vlan", "r1=access:10", "--vlan", "r1:vnet1=access:20", "--vlan", "dhcp10=access:10",
    ]
    assert argv["edge1"] == [
        "switch", "--name", "edge1", "--bind", f"ipc://{RT}/edge1.data", "--switch-control", f"ipc://{RT}/edge1.sock",
        "--vlan", "core=trunk:10,20",
        "--trunk", f"edge2=ipc://{RT}/edge2.data,as=edge1", "--vlan", "edge2=trunk:10,20",
        "--vlan", "a1=access:10", "--vlan", "b1=access:20",
    ]
    assert argv["edge2"] == [
        "switch", "--name", "edge2", "--bind", f"ipc://{RT}/edge2.data", "--switch-control", f"ipc://{RT}/edge2.sock",
        "--vlan", "core=trunk:10,20", "--vlan", "edge1=trunk:10,20", "--vlan", "a2=access:10",
    ]


def test_node_argv():
    argv = {n.name: n.argv for n in campus().nodes}
    assert argv["a1"] == ["node", "--name", "a1", "--switch", f"ipc://{RT}/edge1.data", "--address", "10.0.10.1/24",
                          "--control", f"ipc://{RT}/a1.ctl", "--gateway", "10.0.10.254"]
    assert argv["a2"] == ["node", "--name", "a2", "--switch", f"ipc://{RT}/edge2.data", "--dhcp",
                          "--control", f"ipc://{RT}/a2.ctl"]
    assert argv["b1"][-2:] == ["--stack", "kernel"]
    assert argv["r1"] == ["node", "--name", "r1", "--switch", f"ipc://{RT}/core.data", "--address", "10.0.10.254/24",
                          "--control", f"ipc://{RT}/r1.ctl",
                          "--nic", f"switch=ipc://{RT}/core.data,address=10.0.20.254/24", "--forwarding"]
    assert argv["dhcp10"][-4:] == ["--gateway", "10.0.10.254", "--dhcp-server", "10.0.10.100-10.0.10.199"]


def test_impairments_on_both_trunk_ports_egress():
    assert campus().calls == [
        ControlCall("edge1", "impair", {"port": "edge2", "dir": "out", "delay": "5ms", "loss": "1%"}),
        ControlCall("edge2", "impair", {"port": "edge1", "dir": "out", "delay": "5ms", "loss": "1%"}),
    ]


def test_parallel_links_and_nic_options():
    lab = parse_lab("""\
switches: {a: {stp: {priority: 4096, hello: 0.5}}, b: {}}
defaults: {mtu: 9000}
links:
  - {endpoints: [a, b], vlans: [5, 6], native: 5}
  - {endpoints: [b, a]}
nodes:
  n: {nics: [{switch: a, address: 10.0.0.1/24, mac: "02:00:00:00:00:01"},
             {switch: b, address: dhcp, vlan: 6, impair: {rate: 1mbit}}],
      routes: {10.9.0.0/16: 10.0.0.254}}
""", "p.yml")
    assert [(t.dialer, t.dialer_port, t.remote, t.remote_port) for t in trunks(lab)] == [
        ("a", "b#1", "b", "a#1"), ("b", "a#2", "a", "b#2")]
    p = plan(lab, LocalEndpoints(RT))
    a = next(s for s in p.switches if s.name == "a")
    assert a.argv[7:] == ["--mtu", "9000", "--stp-priority", "4096", "--stp-hello", "0.5",
                          "--trunk", f"b#1=ipc://{RT}/b.data,as=a#1", "--vlan", "b#1=trunk:5,6:native=5"]
    assert p.nodes[0].argv == ["node", "--name", "n", "--switch", f"ipc://{RT}/a.data", "--address", "10.0.0.1/24",
                               "--mac", "02:00:00:00:00:01", "--control", f"ipc://{RT}/n.ctl", "--mtu", "9000",
                               "--nic", f"switch=ipc://{RT}/b.data,address=dhcp", "--route", "10.9.0.0/16=10.0.0.254"]
    assert p.calls == [ControlCall("b", "impair", {"port": "n:vnet1", "dir": "out", "rate": "1mbit"})]
    assert node_port("n", 0) == "n" and node_port("n", 2) == "n:vnet2"


def test_compose_runs_the_same_commands_over_tcp():
    lab = load_lab(EXAMPLES / "campus.yml")
    doc = compose_dict(lab)
    services = doc["services"]
    assert set(services) == {"core", "edge1", "edge2", "a1", "a2", "b1", "r1", "dhcp10"}
    plan_tcp = plan(lab, ComposeEndpoints())
    core = next(s for s in plan_tcp.switches if s.name == "core")
    assert services["core"]["command"] == ["vnet", *core.argv]
    assert "--trunk" in core.argv and "edge1=tcp://edge1:5540,as=core" in core.argv
    assert services["core"]["depends_on"] == {"edge1": {"condition": "service_healthy"},
                                              "edge2": {"condition": "service_healthy"}}
    assert services["b1"]["cap_add"] == ["NET_ADMIN"] and services["b1"]["devices"] == ["/dev/net/tun"]
    assert services["b1"]["user"] == "root"
    assert "cap_add" not in services["a1"]
    assert set(services["a2"]["depends_on"]) == {"edge2", "dhcp10"}  # its lease comes from dhcp10
    assert "--control" not in services["a1"]["command"]
    script = services["edge1"]["command"][2]  # impaired: under sh, which applies the impairment
    assert services["edge1"]["command"][:2] == ["sh", "-c"]
    assert "vnet switch impair edge2 --dir out --delay 5ms --loss 1%" in script and "$$pid" in script
    assert yaml.safe_load(compose_text(lab)) == doc


def test_the_demo_matrix():
    from vnet.lab.demo import matrix

    text = matrix([{"src": "a1", "dst": "b1", "ip": "10.0.20.1", "ok": True},
                   {"src": "b1", "dst": "a1", "ip": "10.0.10.1", "ok": False}])
    assert text.splitlines() == ["from \\ to  b1 10.0.20.1  a1 10.0.10.1",
                                 "a1         ok            -",
                                 "b1         -             FAIL"]
