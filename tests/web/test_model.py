"""The web view's model on hand-made samples and a manual clock: topology, trunks, nodes, VLANs,
rates and drops from two samples."""

from __future__ import annotations

import pytest

from vnet.web.model import LanView, NodeSample, Sample, SwitchSample, pair_trunks, port_node, rates, vlan_label


def counters(rx=0, tx=0, rxb=0, txb=0, **drops) -> dict:
    return {"rx_packets": rx, "tx_packets": tx, "rx_bytes": rxb, "tx_bytes": txb, "port_down": 0, "hwm": 0, **drops}


def port(name, c, admin="up", macs=(), vlan=None, **extra) -> dict:
    return {"port_id": 1, "name": name, "admin": admin, "macs": list(macs), "vlan": vlan, "mtu": 1500,
            "counters": c, **extra}


def node(name, ip, mac, neigh=(), links=()) -> NodeSample:
    return NodeSample(name, links=[{"name": "vnet0", "address": mac, "carrier": True, "operstate": "UP"}, *links],
                      addrs={"dev": "vnet0", "addresses": [{"address": ip, "prefixlen": 24, "state": "ok"}]},
                      neigh=list(neigh))


def one_switch(t: float, c1: dict, c2: dict, admin2: str = "up") -> Sample:
    sw = SwitchSample("switch", ports=[port("node1", c1, macs=["02:00:00:00:00:01"]),
                                       port("node2", c2, admin=admin2, macs=["02:00:00:00:00:02"],
                                            vlan={"port": "node2", "mode": "access", "vlan": 10})],
                      fdb=[{"mac": "02:00:00:00:00:01", "vlan": 0, "port": "node1", "age": 0.5}])
    return Sample(t, (sw,), (node("node1", "10.0.0.1", "02:00:00:00:00:01",
                                  neigh=[{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02", "state": "REACHABLE"}]),
                             node("node2", "10.0.0.2", "02:00:00:00:00:02",
                                  links=[{"name": "vnet0.20", "address": "02:00:00:00:00:02"}])))


def by_name(rows, name):
    return next(r for r in rows if r["name"] == name)


def test_first_sample_has_topology_and_no_rates():
    view = LanView("test")
    state = view.update(one_switch(100.0, counters(10, 10, 1000, 1000), counters(5, 5, 500, 500)))
    assert [s["name"] for s in state["switches"]] == ["switch"]
    assert state["interval"] is None
    p1 = by_name(state["switches"][0]["ports"], "node1")
    assert p1["kind"] == "node" and p1["node"] == "node1" and p1["dev"] == "vnet0"
    assert p1["rates"] == {"rx_pps": None, "tx_pps": None, "rx_bps": None, "tx_bps": None, "drops_ps": None}
    n1, n2 = state["nodes"]
    assert (n1["name"], n1["ips"], n1["macs"]) == ("node1", ["10.0.0.1/24"], ["02:00:00:00:00:01"])
    assert n1["neigh"] == [{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02", "state": "REACHABLE"}]
    assert n2["vlans"] == [10, 20]  # the access port's VLAN and the vnet0.20 sub-interface
    assert by_name(state["switches"][0]["ports"], "node2")["vlan"] == "access 10"
    assert state["links"] == [
        {"node": "node1", "dev": "vnet0", "switch": "switch", "port": "node1", "up": True},
        {"node": "node2", "dev": "vnet0", "switch": "switch", "port": "node2", "up": True},
    ]
    assert state["switches"][0]["fdb"][0]["port"] == "node1"
    assert state["trunks"] == []


def test_rates_and_drops_from_two_samples():
    view = LanView()
    view.update(one_switch(100.0, counters(10, 10, 1000, 1000), counters(5, 5, 500, 500)))
    state = view.update(one_switch(102.0, counters(110, 30, 11000, 3000), counters(5, 5, 500, 500, port_down=8),
                                   admin2="down"))
    assert state["interval"] == 2.0
    r1 = by_name(state["switches"][0]["ports"], "node1")["rates"]
    assert r1 == {"rx_pps": 50.0, "tx_pps": 10.0, "rx_bps": 40000.0, "tx_bps": 8000.0, "drops_ps": 0.0}
    p2 = by_name(state["switches"][0]["ports"], "node2")
    assert p2["admin"] == "down" and p2["drops"] == {"port_down": 8} and p2["drops_total"] == 8
    assert p2["rates"]["drops_ps"] == 4.0
    assert state["links"][1]["up"] is False


def test_a_counter_that_went_down_gives_no_rate():
    assert rates(counters(100, 100, 9000, 9000), counters(3, 3, 200, 200), 1.0)["rx_pps"] is None
    assert rates(counters(1), counters(2), 0.0)["rx_pps"] is None
    assert rates(None, counters(2), 1.0)["tx_bps"] is None


def test_node_ports_of_second_nics_and_unpolled_nodes():
    assert port_node("r1:vnet1") == ("r1", "vnet1")
    assert port_node("node3") == ("node3", "vnet0")
    sw = SwitchSample("s1", ports=[port("r1", counters()), port("r1:vnet1", counters()), port("ghost", counters())])
    state = LanView().update(Sample(1.0, (sw,), (node("r1", "10.0.0.1", "02:00:00:00:00:01"),)))
    r1 = by_name(state["nodes"], "r1")
    assert r1["ports"] == [{"switch": "s1", "port": "r1"}, {"switch": "s1", "port": "r1:vnet1"}]
    assert r1["error"] is None
    ghost = by_name(state["nodes"], "ghost")
    assert ghost["error"] and ghost["ips"] == []


def test_vlan_labels():
    assert vlan_label(None) is None
    assert vlan_label({"mode": "access", "vlan": 10}) == "access 10"
    assert vlan_label({"mode": "trunk", "allowed": [10, 11, 12, 20], "native": 10, "native_tagged": True}) == \
        "trunk 10-12,20 native 10 tagged"
    assert vlan_label({"mode": "trunk", "allowed": [30], "native": None}) == "trunk 30"


def two_switches(stp: bool) -> Sample:
    """s1 dials s2 (--trunk s2=ipc://DIR/s2.data): port s2 on s1, port s1 on s2."""
    s1_stp = s2_stp = None
    if stp:
        s1_stp = {"name": "s1", "bridge_id": "8000.02", "root_id": "8000.02", "root_port": None, "is_root": True,
                  "ports": [{"port": "s2", "role": "designated", "state": "forwarding",
                             "trunk": {"endpoint": "ipc:///run/lab/s2.data", "remote_port": "s1", "link": "up"}},
                            {"port": "a", "role": "designated", "state": "forwarding"}]}
        s2_stp = {"name": "s2", "bridge_id": "8000.03", "root_id": "8000.02", "root_port": "s1", "is_root": False,
                  "ports": [{"port": "s1", "role": "root", "state": "forwarding"}]}
    s1 = SwitchSample("s1", ports=[port("s2", counters(), bridge=True, trunk=True, link="up"),
                                   port("a", counters(), vlan={"mode": "access", "vlan": 10})], stp=s1_stp)
    s2 = SwitchSample("s2", ports=[port("s1", counters(), bridge=True, trunk=False, link="up"),
                                   port("b", counters())], stp=s2_stp)
    return Sample(5.0, (s1, s2), (node("a", "10.0.0.1", "02:00:00:00:00:0a"), node("b", "10.0.0.2", "02:00:00:00:00:0b")))


@pytest.mark.parametrize("stp", [True, False])
def test_trunks_between_switches(stp):
    state = LanView().update(two_switches(stp))
    assert {p["name"]: p["kind"] for p in state["switches"][0]["ports"]} == {"s2": "trunk", "a": "node"}
    assert state["trunks"] == [{"a": {"switch": "s1", "port": "s2"}, "b": {"switch": "s2", "port": "s1"}, "up": True}]
    assert sorted(n["name"] for n in state["nodes"]) == ["a", "b"]  # trunk ports are not nodes
    if stp:
        assert state["switches"][0]["stp"]["is_root"] is True
        assert by_name(state["switches"][1]["ports"], "s1")["stp"] == {"role": "root", "state": "forwarding"}
    else:
        assert state["switches"][0]["stp"] is None


def test_trunk_names_without_bridge_flags_and_renamed_far_ports():
    # ports named after the other switch are trunks even before the HELLO's bridge flag shows
    s1 = SwitchSample("s1", ports=[port("s2", counters())])
    s2 = SwitchSample("s2", ports=[port("s1", counters())])
    state = LanView().update(Sample(1.0, (s1, s2)))
    assert state["trunks"] == [{"a": {"switch": "s1", "port": "s2"}, "b": {"switch": "s2", "port": "s1"}, "up": True}]
    assert state["nodes"] == []
    # as=up1 on the far side, two far switches with a port of that name: the endpoint decides
    ends = [{"switch": "core", "port": "t1", "remote_port": "up1", "endpoint": "ipc:///d/e2.data", "up": True},
            {"switch": "e1", "port": "up1", "remote_port": None, "up": True},
            {"switch": "e2", "port": "up1", "remote_port": None, "up": False}]
    assert pair_trunks(ends, {"core", "e1", "e2"}) == [
        {"a": {"switch": "core", "port": "t1"}, "b": {"switch": "e2", "port": "up1"}, "up": False},
        {"a": {"switch": "e1", "port": "up1"}, "b": None, "up": True},
    ]


def test_a_switch_that_did_not_answer_is_shown_with_its_error():
    state = LanView().update(Sample(1.0, (SwitchSample("switch", error="no answer from ipc://x within 2 s"),)))
    assert state["switches"][0]["error"].startswith("no answer")
    assert state["switches"][0]["ports"] == [] and state["nodes"] == []


def test_a_triangle_of_switches_pairs_every_trunk():
    """s2 dials s1; s3 dials s1 and s2 (as `vnet switch --trunk s1=ipc://DIR/s1.data`)."""
    def dial(far):
        return {"endpoint": f"ipc:///run/lab/{far}.data", "remote_port": None, "link": "up"}
    ends = [{"switch": "s1", "port": "s2", "remote_port": None, "up": True},
            {"switch": "s1", "port": "s3", "remote_port": None, "up": True},
            {"switch": "s2", "port": "s1", "remote_port": "s2", "endpoint": dial("s1")["endpoint"], "up": True},
            {"switch": "s2", "port": "s3", "remote_port": None, "up": True},
            {"switch": "s3", "port": "s1", "remote_port": "s3", "endpoint": dial("s1")["endpoint"], "up": True},
            {"switch": "s3", "port": "s2", "remote_port": "s3", "endpoint": dial("s2")["endpoint"], "up": False}]
    pairs = {frozenset([(p["a"]["switch"], p["a"]["port"]), (p["b"]["switch"], p["b"]["port"])]): p["up"]
             for p in pair_trunks(ends, {"s1", "s2", "s3"})}
    assert pairs == {frozenset([("s2", "s1"), ("s1", "s2")]): True,
                     frozenset([("s3", "s1"), ("s1", "s3")]): True,
                     frozenset([("s3", "s2"), ("s2", "s3")]): False}
