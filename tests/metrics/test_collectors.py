"""The collectors without processes: a node's devices on an in-memory cable and a switch core
fed by hand, rendered and parsed as Prometheus would (no sockets, time by hand)."""

from __future__ import annotations


from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vnet.node.link import wire_pair
from vnet.node.loop import ManualLoop
from vnet.node.metrics import NodeCollector, ethtool_metric_name
from vnet.node.netdevice import DeviceNamespace, dev_open, dev_queue_xmit, netif_carrier_off, netif_carrier_on
from vnet.node.skbuff import alloc_skb, skb_put_data
from vnet.node.vnic import vnic_probe
from vnet.proto import wire
from vnet.switch.core import PORT_COUNTERS, SwitchCore
from vnet.switch.fdb import Fdb
from vnet.switch.metrics import DROP_REASONS, SwitchCollector, stp_state
from vnet.switch.pipeline import PortTools

OTHER = b"\x02\x00\x00\x00\x00\x99"


def scrape(collector) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one rendering, through the text format."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    text = generate_latest(reg).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def node_bench():
    loop = ManualLoop()
    far, near = wire_pair(loop)
    ns = DeviceNamespace("dut")
    dev = vnic_probe(ns, loop, near, node_name="dut")
    got: list[bytes] = []
    far.open(got.extend, lambda up: None)
    dev_open(dev)
    loop.run_ready()
    return loop, ns, dev, far, got


def send(dev, size: int = 64) -> None:
    frame = OTHER + bytes(dev.dev_addr) + b"\x88\xb5" + bytes(size - 14)
    skb = alloc_skb(len(frame))
    skb_put_data(skb, frame)
    skb.dev = dev
    dev_queue_xmit(skb)


def test_node_collector_reads_live_counters_with_node_exporter_names():
    loop, ns, dev, far, got = node_bench()
    neigh = [{"state": "REACHABLE"}, {"state": "STALE"}, {"state": "REACHABLE"}]
    collector = NodeCollector(ns, neigh=lambda: neigh)
    before = scrape(collector)
    vnet0 = (("device", "vnet0"),)
    assert before[("node_network_transmit_packets_total", vnet0)] == 0
    assert before[("node_network_up", vnet0)] == 1
    assert before[("node_network_mtu_bytes", vnet0)] == 1500
    for _ in range(3):
        send(dev, 100)
    loop.run_ready()
    after = scrape(collector)  # no refresh step: the next scrape sees the counters as they are
    assert after[("node_network_transmit_packets_total", vnet0)] == 3 == len(got)
    assert after[("node_network_transmit_bytes_total", vnet0)] == 300
    assert after[(ethtool_metric_name("tx_queue_0_packets"), vnet0)] == 3
    for name in ("receive_packets", "receive_bytes", "receive_errs", "receive_drop", "receive_multicast",
                 "transmit_errs", "transmit_drop", "carrier_changes"):
        assert (f"node_network_{name}_total", vnet0) in after
    assert after[("vnet_neigh_entries", (("device", "vnet0"), ("state", "reachable")))] == 2
    assert after[("vnet_neigh_entries", (("device", "vnet0"), ("state", "stale")))] == 1


def test_every_ethtool_statistic_is_exported():
    from vnet.node.ethtool import ethtool_get_stats

    loop, ns, dev, far, got = node_bench()
    samples = scrape(NodeCollector(ns))
    for stat, value in ethtool_get_stats(dev).items():
        assert samples[(ethtool_metric_name(stat), (("device", "vnet0"),))] == value
    assert not any(name == "vnet_neigh_entries" for name, _ in samples)  # no table given: none exported


def test_carrier_changes_and_new_devices_appear():
    loop, ns, dev, far, got = node_bench()
    collector = NodeCollector(ns)
    base = scrape(collector)[("node_network_carrier_changes_total", (("device", "vnet0"),))]
    netif_carrier_off(dev)
    netif_carrier_on(dev)
    samples = scrape(collector)
    assert samples[("node_network_carrier_changes_total", (("device", "vnet0"),))] == base + 2
    # a second NIC registered later is in the next scrape, with no change to the collector
    vnic_probe(ns, loop, wire_pair(loop)[1], node_name="dut1")
    assert ("node_network_up", (("device", "vnet1"),)) in scrape(collector)


# -- the switch ------------------------------------------------------------------------------

MAC = {n: bytes([2, 0, 0, 0, 0, i]) for i, n in enumerate("ab", 1)}


def eth(dst: bytes, src: bytes) -> bytes:
    return dst + src + b"\x08\x00" + b"x" * 46


def switch_core():
    core = SwitchCore(mtu=1500, fdb=Fdb(ageing_time=300))
    for n in "ab":
        out = core.handle(f"peer-{n}".encode(), wire.hello(n, [], 1500), 0.0)
        assert out[0][1][0] == wire.MSG_WELCOME
    return core


def test_switch_collector_ports_drops_fdb_and_impairments():
    core = switch_core()
    tools = PortTools(core)
    now = [1.0]
    collector = SwitchCollector(core, tools, lambda: now[0])
    # a -> b unicast after b is learned, and one runt from a
    core.handle(b"peer-b", wire.frames_msg([eth(b"\xff" * 6, MAC["b"])]), 1.0)
    core.handle(b"peer-a", wire.frames_msg([eth(MAC["b"], MAC["a"]), b"short"]), 1.0)
    tools.impair("b", 1.0, loss=0.0, delay="10ms")
    s = scrape(collector)
    a = (("port", "a"),)
    assert s[("vnet_switch_port_rx_packets_total", a)] == 1
    assert s[("vnet_switch_port_drops_total", (("port", "a"), ("reason", "runt")))] == 1
    # every drop reason of PORT_COUNTERS is one label of the one family, per port
    reasons = {dict(lbl)["reason"] for name, lbl in s if name == "vnet_switch_port_drops_total"}
    assert reasons == set(DROP_REASONS) and set(DROP_REASONS) < set(PORT_COUNTERS)
    assert s[("vnet_switch_drops_total", (("reason", "runt"),))] == 1
    assert s[("vnet_switch_fdb_entries", (("vlan", "0"),))] == 2
    assert s[("vnet_switch_fdb_learned_total", ())] == 2
    assert s[("vnet_switch_port_admin_up", a)] == 1
    assert s[("vnet_switch_ports", ())] == 2
    assert s[("vnet_switch_attached_total", ())] == 2
    assert s[("vnet_switch_impair_frames_total", (("dir", "in"), ("port", "b")))] == 0
    assert ("vnet_switch_impair_total", (("action", "loss"), ("dir", "out"), ("port", "b"))) in s
    assert not any(name == "vnet_switch_port_stp_state" for name, _ in s)  # no port has STP here
    core.set_admin("a", False)
    assert scrape(collector)[("vnet_switch_port_admin_up", a)] == 0


def test_stp_state_exported_only_for_ports_that_have_one():
    assert stp_state(None) is None
    assert stp_state("forwarding") == ("forwarding", 3)
    assert stp_state("BLOCKING") == ("blocking", 4)
    assert stp_state(2) == ("learning", 2)

    core = switch_core()
    a = core.port_list[0]
    a.bridge = True  # the far end is a switch: spanning tree runs on this port
    a.stp_state = "discarding"
    s = scrape(SwitchCollector(core, None, lambda: 0.0))
    assert s[("vnet_switch_port_stp_state", (("port", "a"), ("state", "discarding")))] == 4  # BR_STATE_BLOCKING
    assert not any(name == "vnet_switch_port_stp_state" and dict(lbl)["port"] == "b" for name, lbl in s)


def test_port_vlan_membership_exported_per_vlan():
    from vnet.switch.vlan import PortVlan

    core = switch_core()
    core.set_vlan("a", PortVlan("access", vlan=10), 0.0)
    core.set_vlan("b", PortVlan("trunk", allowed=(10, 20), native=20), 0.0)
    s = scrape(SwitchCollector(core, None, lambda: 0.0))
    members = {(dict(lbl)["port"], dict(lbl)["vlan"], dict(lbl)["tagged"])
               for name, lbl in s if name == "vnet_switch_port_vlan"}
    assert members == {("a", "10", "false"), ("b", "10", "true"), ("b", "20", "false")}
