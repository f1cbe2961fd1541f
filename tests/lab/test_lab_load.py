"""The lab loader: the examples load; every mistake is reported as FILE:LINE: where: what,
with the fix, and all of a file's mistakes at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnet.lab import LabError, load_lab, parse_lab

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "labs"

GOOD = """\
name: t
switches: {s1: {}, s2: {}}
links:
  - {endpoints: [s1, s2], vlans: [10]}
nodes:
  a: {nics: [{switch: s1, vlan: 10, address: 10.0.0.1/24}]}
  b: {nics: [{switch: s2, vlan: 10, address: 10.0.0.2/24}]}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(LabError) as info:
        parse_lab(text, "/some/dir/t.yml")
    return info.value.errors


def one_error(text: str) -> str:
    errs = errors(text)
    assert len(errs) == 1, errs
    return errs[0]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yml")), ids=lambda p: p.name)
def test_examples_load_without_warnings(path):
    lab = load_lab(path)
    assert lab.switches and lab.nodes
    assert lab.warnings == ()


def test_campus_model():
    lab = load_lab(EXAMPLES / "campus.yml")
    assert lab.name == "campus"
    assert [s.name for s in lab.switches] == ["core", "edge1", "edge2"]
    assert [link.endpoints for link in lab.links] == [("core", "edge1"), ("core", "edge2"), ("edge1", "edge2")]
    assert lab.links[2].impair.params() == {"delay": "5ms", "loss": "1%"}
    a2, b1, r1 = lab.node("a2"), lab.node("b1"), lab.node("r1")
    assert a2.nics[0].dhcp and a2.nics[0].vlan == 10
    assert b1.stack == "kernel" and b1.gateway == "10.0.20.254"
    assert r1.forwarding and [n.address for n in r1.nics] == ["10.0.10.254/24", "10.0.20.254/24"]
    assert r1.gateway is None
    assert lab.node("dhcp10").dhcp_server == "10.0.10.100-10.0.10.199"


def test_undeclared_switch_names_the_line_and_the_declared_ones():
    text = GOOD.replace("a: {nics: [{switch: s1,", "a: {nics: [{switch: s11,")
    assert one_error(text) == "t.yml:6: node a: nic 1: switch 's11' is not declared (declared: s1, s2); did you mean 's1'?"


def test_the_example_of_the_brief():
    text = (EXAMPLES / "campus.yml").read_text().replace("{switch: edge2, vlan: 10, address: dhcp}",
                                                          "{switch: edge3, vlan: 10, address: dhcp}")
    assert one_error(text).startswith("t.yml:12: node a2: nic 1: switch 'edge3' is not declared "
                                      "(declared: core, edge1, edge2)")


@pytest.mark.parametrize("text, line, needle", [
    (GOOD.replace("name: t", "nmae: t"), 1, "unknown key 'nmae'; did you mean 'name'?"),
    (GOOD.replace("vlans: [10]", "vlans: [10], vlnas: [2]"), 4, "link 1: unknown key 'vlnas'; did you mean 'vlans'?"),
    (GOOD.replace("vlan: 10, address: 10.0.0.1/24", "vlan: 10, adress: 10.0.0.1/24"), 6,
     "unknown key 'adress'; did you mean 'address'?"),
    (GOOD.replace("vlans: [10]", "vlans: [10, 5000]"), 4, "5000 is out of range: give a VLAN id from 1 to 4094"),
    (GOOD.replace("{switch: s1, vlan: 10", "{switch: s1, vlan: 0"), 6, "give a VLAN id from 1 to 4094"),
    (GOOD.replace("vlan: 10, address: 10.0.0.1/24", "vlan: ten, address: 10.0.0.1/24"), 6, "expected a VLAN id"),
    (GOOD.replace("10.0.0.1/24", "10.0.0.300/24"), 6, "address '10.0.0.300/24'"),
    (GOOD.replace("10.0.0.1/24", "10.0.0.1"), 6, "no prefix length; give CIDR"),
    (GOOD.replace("10.0.0.1/24", "10.0.0.0/24"), 6, "is the network address of 10.0.0.0/24"),
    (GOOD.replace("10.0.0.1/24}", "10.0.0.1/24, gateway: 10.0.1.254}"), 6,
     "gateway 10.0.1.254 is outside 10.0.0.0/24"),
    (GOOD.replace("endpoints: [s1, s2]", "endpoints: [s1, s1]"), 4, "links switch 's1' to itself"),
    (GOOD.replace("endpoints: [s1, s2]", "endpoints: [s1]"), 4, "give two switch names"),
    (GOOD.replace("b: {nics: [{switch: s2", "s2: {nics: [{switch: s2"), 7, "s2: the name is taken by a switch (line 2)"),
    (GOOD.replace("a: {nics", "a b: {nics"), 6, "name 'a b' is not usable"),
    (GOOD.replace("vlans: [10]", "vlans: [10], impair: {delay: fast}"), 4, "delay"),
    (GOOD.replace("vlans: [10]", "vlans: [10], impair: {jitter: 5ms}"), 4, "jitter needs a delay"),
    (GOOD.replace("vlans: [10]", "vlans: [10, 10]"), 4, "VLAN 10 is listed twice"),
    (GOOD.replace("vlans: [10]", "vlans: [10], native: 20"), 4, "VLAN 20 is not in the link's vlans"),
    (GOOD.replace("a: {nics", "a: {stack: kernal, nics"), 6, "did you mean 'kernel'?"),
    (GOOD.replace("a: {nics", "a: {forwarding: yes please, nics"), 6, "give true or false"),
    (GOOD.replace("a: {nics: [{switch: s1, vlan: 10, address: 10.0.0.1/24}]}", "a: {nics: []}"), 6, "is empty"),
    (GOOD.replace("a: {nics: [{switch: s1, vlan: 10, address: 10.0.0.1/24}]}", "a: {}"), 6, "has no nics"),
    (GOOD + "nodes_per_process: 0\n", 8, "nodes_per_process: 0 is out of range"),
    (GOOD.replace("a: {nics", "a: {dhcp_server: 10.0.1.1-10.0.1.9, nics"), 6, "is not inside 10.0.0.0/24"),
    (GOOD.replace("a: {nics: [{switch: s1, vlan: 10, address: 10.0.0.1/24}]}",
                  "a: {nics: [{switch: s1, address: 10.0.0.1/24, gateway: 10.0.0.254},"
                  " {switch: s2, address: 10.0.1.1/24, gateway: 10.0.1.254}]}"), 6, "different gateways"),
    (GOOD.replace("{switch: s2, vlan: 10, address: 10.0.0.2/24}", "{switch: s2, address: dhcp}")
     .replace("b: {nics", "b: {stack: kernel, nics"), 7, "kernel-stack node gets no DHCP lease"),
    (GOOD.replace("address: 10.0.0.1/24}", "address: 10.0.0.1/24, mac: zz}"), 6, "mac 'zz'"),
    (GOOD.replace("name: t", "name: " + "l" * 32).replace("a: {nics", "a" * 30 + ": {stack: kernel, nics"), 6,
     "longer than 64 characters"),
    (GOOD.replace("switches: {s1: {}, s2: {}}", "switches: {s1: {stp: {priority: 100}}, s2: {}}"), 2,
     "give a multiple of 4096"),
    (GOOD.replace("switches: {s1: {}, s2: {}}", "switches: [s1, s2]"), 2, "expected a mapping"),
    (GOOD.replace("name: t\n", "name: t\nname: u\n"), 2, "key 'name': is given twice"),
])
def test_mistakes_name_the_line_and_the_fix(text, line, needle):
    errs = errors(text)
    assert any(e.startswith(f"t.yml:{line}: ") and needle in e for e in errs), errs


def test_all_mistakes_at_once():
    text = GOOD.replace("nmae", "x").replace("name: t", "nmae: t").replace("vlans: [10]", "vlans: [9999]")
    assert len(errors(text)) == 2


def test_bad_yaml_names_the_line():
    err = one_error("switches: {s1: {}\nnodes: [\n")
    assert err.startswith("t.yml:") and "not valid YAML" in err


def test_missing_switches_and_unreadable_file(tmp_path):
    assert "declares no switches" in one_error("name: x\n")
    with pytest.raises(LabError, match="cannot read the lab file"):
        load_lab(tmp_path / "nope.yml")


def test_a_vlan_no_trunk_carries_is_a_warning():
    lab = parse_lab(GOOD.replace("vlans: [10]", "vlans: [20]"), "t.yml")
    assert len(lab.warnings) == 1
    assert lab.warnings[0].startswith("t.yml:6: vlan 10: NICs in VLAN 10 are on switches no trunk carrying it joins")


def test_defaults_and_the_name_from_the_file():
    lab = parse_lab("switches: {s: {}, t: {stp: {hello: 1}}}\ndefaults: {stack: kernel, mtu: 9000, "
                    "stp: {priority: 8192, hello: 2}}\nnodes: {n: {nics: [{switch: s, address: 10.0.0.1/24}]}}\n"
                    "nodes_per_process: 8\n", "/x/my lab.yml")
    assert lab.name == "my-lab" and lab.mtu == 9000 and lab.nodes_per_process == 8
    assert lab.node("n").stack == "kernel"
    assert lab.switch("s").stp.priority == 8192 and lab.switch("s").stp.hello == 2.0
    assert lab.switch("t").stp.priority == 8192 and lab.switch("t").stp.hello == 1.0
