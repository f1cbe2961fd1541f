"""Packet capture on a node: both directions, in order, as pcap and through the node handle."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vnet.proto.capture import Capture, FilterError, compile_filter
from tests.lan.helpers import frame, poll_until


async def test_capture_pcap_holds_exactly_the_frames_sent_in_order(vnet_lan, tmp_path):
    from scapy.all import ICMP, IP, rdpcap

    a, b, _ = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok  # resolve ARP first, so only ICMP crosses below
    path = tmp_path / "ping.pcap"
    env = dict(os.environ, VNET_RUNTIME_DIR=vnet_lan.runtime_dir)
    proc = subprocess.Popen([sys.executable, "-m", "vnet.cli", "--node", a.name, "capture", "-w", str(path),
                             "-c", "6", "icmp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        await poll_until(lambda: _capture_running(a), "the capture to start")
        res = await a.ping(b.ip, count=3)
        assert res.ok
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    packets = rdpcap(str(path))
    seen = [(p[IP].src, p[IP].dst, p[ICMP].type, p[ICMP].seq) for p in packets]
    assert seen == [
        (a.ip, b.ip, 8, 1), (b.ip, a.ip, 0, 1),
        (a.ip, b.ip, 8, 2), (b.ip, a.ip, 0, 2),
        (a.ip, b.ip, 8, 3), (b.ip, a.ip, 0, 3),
    ]
    assert all(p.time > 0 for p in packets) and "6 packets captured" in err


async def _capture_running(node) -> bool:
    return (await node.stats())["captures"] > 0


async def test_capture_through_the_node_handle_sees_both_directions(vnet_lan):
    a, b, c = vnet_lan.nodes
    async with await b.capture("ether proto 0x88b5") as cap:
        await a.inject([frame(b.mac, a.mac, payload=bytes([i]) * 4) for i in range(3)])
        await cap.read_until(3)
        await b.inject(frame(a.mac, b.mac, payload=b"back"))
        await cap.read_until(4)
    assert [f["dir"] for f in cap.frames] == ["in", "in", "in", "out"]
    assert [f["frame"][14:18] for f in cap.frames] == [bytes([i]) * 4 for i in range(3)] + [b"back"]
    assert cap.stats["dropped"] == 0


@pytest.mark.parametrize("engine", ["libpcap", "python"])
def test_capture_filters_mean_what_they_mean_to_tcpdump(engine):
    """udp, ip and host look at the Ethernet type, not through a tag (``vlan and udp`` does);
    the same with libpcap and with the fallback."""
    from vnet.proto.bpf import libpcap
    if engine == "libpcap" and libpcap() is None:
        pytest.skip("libpcap is not installed")
    from scapy.all import ARP, ICMP, IP, UDP, Dot1Q, Ether

    mac = "02:00:00:00:00:01"
    icmp = bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())
    udp = bytes(Ether() / IP(src="10.0.0.3", dst="10.0.0.1") / UDP(sport=5000, dport=53))
    arp = bytes(Ether() / ARP(psrc="10.0.0.2", pdst="10.0.0.9"))
    tagged = bytes(Ether() / Dot1Q(vlan=5) / IP(src="10.0.0.2", dst="10.0.0.7") / UDP(sport=1, dport=2))
    cases = {
        "icmp": [icmp], "udp": [udp], "arp": [arp], "ip": [icmp, udp], "vlan and udp": [tagged],
        "host 10.0.0.2": [icmp, arp], "src host 10.0.0.2": [arp], "dst host 10.0.0.2": [icmp],
        "vlan and src host 10.0.0.2": [tagged], "vlan 5 and ip": [tagged], "vlan 6": [],
        "port 53": [udp], "src port 5000 and udp": [udp], "not arp and not udp": [icmp, tagged],
        "( icmp or arp ) and host 10.0.0.2": [icmp, arp], "ether src host " + mac: [icmp],
        "ether proto 0x0806": [arp], "vlan": [tagged], "": [icmp, udp, arp, tagged],
    }
    for expr, expected in cases.items():
        match = compile_filter(expr, engine=engine)
        assert [f for f in (icmp, udp, arp, tagged) if match(f)] == expected, expr
    assert not compile_filter("host 10.0.0.2", engine=engine)(b"\x00" * 5)  # runts never match, never raise
    assert not compile_filter("not host 10.0.0.2", engine=engine)(b"\x00" * 5)  # BPF: a short read rejects
    for bad in ("host", "host 10.0.0.300", "port 70000", "bogus", "icmp and", "( icmp", "ether proto x"):
        with pytest.raises(FilterError):
            compile_filter(bad, engine=engine)


def test_capture_buffer_is_bounded_and_counts_drops():
    cap = Capture("", buffer=2)
    for i in range(5):
        cap.offer(float(i), "in", bytes([i]) * 14)
    assert [c.frame[0] for c in cap.take()] == [0, 1]
    assert cap.stats() == {"filter": "", "seen": 5, "matched": 5, "dropped": 3, "pending": 0}


async def test_a_3000_term_capture_filter_captures_and_the_node_keeps_working(vnet_lan):
    a, b, _ = vnet_lan.nodes
    async with await b.capture(" or ".join(["arp"] * 3000)) as cap:
        await a.call("neigh_flush")  # the ping resolves b first: ARP reaches b, b answers
        await b.call("neigh_flush")
        assert (await a.ping(b.ip, count=3)).ok
        frames = await cap.read_until(2)
    assert all(f["frame"][12:14] == b"\x08\x06" for f in frames)
    assert {f["dir"] for f in frames} == {"in", "out"}
    assert (await b.stats())["tap_errors"] == 0


async def test_capture_limits_are_refused_and_snaplen_cuts_frames(vnet_lan):
    a, b, _ = vnet_lan.nodes
    for args, words in [({"buffer": 10**15}, "1 to 65536 frames"), ({"count": -1}, "at least 1"),
                        ({"snaplen": 0}, "1 to 262144 bytes"), ({"buffer": "many"}, "buffer must be an? int"),
                        ({"filter": "ip[8"}, "syntax error"), ({"filter": 17}, "filter must be")]:
        with pytest.raises(Exception, match=words):
            await b.call("capture_start", **args)
    assert (await b.stats())["captures"] == 0
    started = await b.call("capture_start", filter="ether proto 0x88b5", snaplen=20)
    assert started["engine"].startswith("libpcap") and started["snaplen"] == 20
    await a.inject(frame(b.mac, a.mac, size=100))
    deadline_frames = []
    await poll_until(lambda: _read_into(b, started["id"], deadline_frames), "the cut frame")
    await b.call("capture_stop", id=started["id"])
    assert [(len(f["frame"]), f["len"]) for f in deadline_frames] == [(20, 100)]


async def _read_into(node, cid: int, into: list) -> bool:
    into.extend((await node.call("capture_read", id=cid, timeout=0.2))["frames"])
    return bool(into)


def test_capture_command_refuses_out_of_bounds_before_reaching_a_node():
    for args, words in [(["-c", "-1"], "at least 1"), (["--buffer", str(10**15)], "1 to 65536 frames"),
                        (["-s", "0"], "1 to 262144 bytes")]:
        done = subprocess.run([sys.executable, "-m", "vnet.cli", "--node", "nowhere", "capture", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and words in done.stderr, done.stderr


def test_a_capture_that_raises_never_stops_the_tap_and_is_counted_and_logged_rate_limited(caplog):
    """Any bug in a capture (here its filter raising) costs that capture the frame, never the
    node its datapath nor the other captures: counted in tap_errors, logged at most
    net_ratelimit's burst."""
    from types import SimpleNamespace

    from vnet.node.daemon import NodeConfig, NodeDaemon
    from vnet.node.skbuff import skb_from_frame, skb_reset_mac_header
    from vnet.proto.capture import CaptureSession

    daemon = NodeDaemon(NodeConfig(name="tap-test"))
    daemon._loop = SimpleNamespace(time=lambda: 0.0)
    broken = Capture("")

    def bug(frame, wirelen=None):
        raise RuntimeError("a bug in a filter")
    broken._match = bug
    good = Capture("")
    daemon._captures = {1: CaptureSession(broken, 0.0), 2: CaptureSession(good, 0.0)}
    with caplog.at_level("ERROR", logger="vnet.node.daemon"):
        for i in range(30):
            skb = skb_from_frame(frame("02:00:00:00:00:01", "02:00:00:00:00:02", bytes([i])))
            skb_reset_mac_header(skb)
            daemon._tap_rcv(skb, None)
    assert daemon.tap_errors == 30 and good.matched == 30
    assert 1 <= len([r for r in caplog.records if "a bug in a filter" in r.getMessage()]) <= 10
