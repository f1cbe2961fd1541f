"""Every `vnet` command against a live embedded LAN, as a user runs it: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.lan.helpers import poll_until, stats64


def vnet(lan, *args: str, node: str | None = "node1", timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, VNET_RUNTIME_DIR=lan.runtime_dir, VNET_SWITCH_CONTROL=lan.switch.control)
    env.pop("VNET_NODE", None)
    cmd = [sys.executable, "-m", "vnet.cli", *args]
    if node:
        cmd[3:3] = ["--node", node]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


async def test_ip_commands(vnet_lan):
    a, b, _ = vnet_lan.nodes
    out = ok(vnet(vnet_lan, "ip", "link"))
    assert "vnet0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500" in out and a.mac in out
    out = ok(vnet(vnet_lan, "ip", "-s", "link"))
    assert "RX:  bytes packets" in out and "TX:  bytes packets" in out
    links = json.loads(ok(vnet(vnet_lan, "ip", "link", "--json")))
    assert links[0]["name"] == "vnet0" and links[0]["address"] == a.mac
    out = ok(vnet(vnet_lan, "ip", "addr"))
    assert f"inet {a.ip}/24" in out
    ok(vnet(vnet_lan, "ip", "addr", "add", "10.0.0.77/24", "dev", "vnet0"))
    assert "10.0.0.77" in {x["address"] for x in json.loads(ok(vnet(vnet_lan, "ip", "addr", "--json")))["addresses"]}
    ok(vnet(vnet_lan, "ip", "addr", "del", "10.0.0.77/24"))
    ok(vnet(vnet_lan, "ping", "-c", "1", b.ip))
    out = ok(vnet(vnet_lan, "ip", "neigh"))
    assert f"{b.ip} dev vnet0 lladdr {b.mac}" in out
    ok(vnet(vnet_lan, "ip", "neigh", "flush"))
    assert json.loads(ok(vnet(vnet_lan, "ip", "neigh", "show", "--json"))) == []
    ok(vnet(vnet_lan, "ip", "link", "set", "vnet0", "promisc", "on"))
    assert "PROMISC" in ok(vnet(vnet_lan, "ip", "link"))
    ok(vnet(vnet_lan, "ip", "link", "set", "vnet0", "promisc", "off", "mtu", "1400"))
    link = json.loads(ok(vnet(vnet_lan, "ip", "link", "--json")))[0]
    assert link["mtu"] == 1400 and "PROMISC" not in link["flags"]
    ok(vnet(vnet_lan, "ip", "link", "set", "vnet0", "down"))
    assert "state DOWN" in ok(vnet(vnet_lan, "ip", "link"))
    ok(vnet(vnet_lan, "ip", "link", "set", "vnet0", "up"))
    await a.wait_ready()


async def test_ethtool_commands(vnet_lan):
    out = ok(vnet(vnet_lan, "ethtool", "-i", "vnet0"))
    assert "driver: vnet" in out
    out = ok(vnet(vnet_lan, "ethtool", "-S", "vnet0"))
    assert "NIC statistics:" in out and "rx_queue_0_packets" in out
    ok(vnet(vnet_lan, "ethtool", "-G", "vnet0", "rx", "512", "tx", "128"))
    out = ok(vnet(vnet_lan, "ethtool", "-g", "vnet0"))
    assert "RX:\t\t512" in out and "TX:\t\t128" in out
    ok(vnet(vnet_lan, "ethtool", "-C", "vnet0", "rx-usecs", "10", "rx-frames", "8"))
    out = ok(vnet(vnet_lan, "ethtool", "-c", "vnet0"))
    assert "rx-usecs: 10" in out and "rx-frames: 8" in out
    assert "Link detected: yes" in ok(vnet(vnet_lan, "ethtool", "vnet0"))


async def test_ping_arping_udp_inject(vnet_lan):
    a, b, c = vnet_lan.nodes
    out = ok(vnet(vnet_lan, "ping", "-c", "3", "-i", "0.05", b.ip))
    assert f"64 bytes from {b.ip}: icmp_seq=1 ttl=64" in out
    assert "3 packets transmitted, 3 received, 0% packet loss" in out and "rtt min/avg/max/mdev" in out
    doc = json.loads(ok(vnet(vnet_lan, "ping", "-c", "2", "-i", "0.05", "--json", b.ip)))
    assert doc["received"] == 2
    out = ok(vnet(vnet_lan, "arping", c.ip))
    assert f"Unicast reply from {c.ip} [{c.mac}]" in out

    listen = subprocess.Popen(
        [sys.executable, "-m", "vnet.cli", "--node", "node2", "udp", "listen", "7000", "-c", "1", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, VNET_RUNTIME_DIR=vnet_lan.runtime_dir),
    )
    try:
        async def listener_done() -> bool:
            # `udp listen` binds once its process is up: send until it has heard one and exited
            ok(vnet(vnet_lan, "udp", "send", f"{b.ip}:7000", "ping-7000"))
            return listen.poll() is not None

        await poll_until(listener_done, "the listener hears a datagram", timeout=30, every=0.1)
        out, err = listen.communicate(timeout=20)
    finally:
        listen.kill()
    assert listen.returncode == 0, err
    assert json.loads(out.splitlines()[0])["data"] == "ping-7000"

    before = await stats64(b)
    out = ok(vnet(vnet_lan, "inject", f"Ether(dst='{b.mac}')/IP(dst='{b.ip}')/UDP(dport=9)/Raw(b'x')"))
    assert "injected 1 frame" in out
    await poll_until(lambda: _rx_grew(b, before), "b receives the injected frame")


async def _rx_grew(node, before) -> bool:
    return (await stats64(node))["rx_packets"] > before["rx_packets"]


async def test_switch_commands(vnet_lan):
    a, b, _ = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok
    out = ok(vnet(vnet_lan, "switch", "fdb", node=None))
    assert f"{a.mac} dev node1" in out
    ports = json.loads(ok(vnet(vnet_lan, "switch", "ports", "--json", node=None)))
    assert {p["name"] for p in ports} == {"node1", "node2", "node3"}
    stats = json.loads(ok(vnet(vnet_lan, "switch", "stats", "--json", node=None)))
    assert stats["per_port"]["node1"]["rx_packets"] >= 1
    assert "rx_packets" in ok(vnet(vnet_lan, "switch", "stats", node=None))
    ok(vnet(vnet_lan, "switch", "set-ageing", "120", node=None))
    stats = json.loads(ok(vnet(vnet_lan, "switch", "stats", "--json", node=None)))
    assert stats["fdb"]["ageing_time"] == 120.0
    # live traffic (ARP re-confirmation) may relearn a MAC at any moment: count what was flushed
    assert int(ok(vnet(vnet_lan, "switch", "flush", "--json", node=None))) >= 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["ping", "-c", "0", "10.0.0.2"], "-c needs a count"),
        (["ping", "-c", "1", "not-an-ip"], "not an IPv4 address"),
        (["ping", "-c", "1", "192.168.7.1"], "not on-link"),
        (["ip", "link", "set", "vnet0", "mtu", "20"], "mtu"),
        (["ip", "link", "set", "vnet0", "address", "01:00:00:00:00:01"], "address"),
        (["ip", "link", "set", "vnet9", "up"], "no device"),
        (["ethtool", "-G", "vnet0", "rx", "0"], ""),
        (["ethtool", "-C", "vnet0", "rx-bogus", "1"], "unknown parameter"),
        (["udp", "send", "10.0.0.2", "x"], "expected IP:PORT"),
        (["inject", "NoSuchLayer()"], "neither a pcap file nor a scapy expression"),
    ],
)
async def test_wrong_use_is_a_clear_error(vnet_lan, args, message):
    proc = vnet(vnet_lan, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "vnet: error:" in proc.stderr and message in proc.stderr


async def test_usage_errors_exit_nonzero(vnet_lan):
    proc = vnet(vnet_lan, "ping", node=None)
    assert proc.returncode == 2 and "usage:" in proc.stderr
    proc = vnet(vnet_lan, "ip", "tunnel", node=None)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = vnet(vnet_lan, "ip", "link", node=None)  # three nodes run here: which one?
    assert proc.returncode == 2 and "several nodes" in proc.stderr


def test_lan_demo_json():
    proc = subprocess.run([sys.executable, "-m", "vnet.cli", "lan", "demo", "--nodes", "3", "--count", "1", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and len(doc["pairs"]) == 6 and all(p["received"] == 1 for p in doc["pairs"])


async def test_inject_frames_from_a_pcap_file(vnet_lan, tmp_path):
    from scapy.all import Ether, Raw, wrpcap

    a, b, _ = vnet_lan.nodes
    path = tmp_path / "frames.pcap"
    wrpcap(str(path), [Ether(dst=b.mac, src=a.mac, type=0x88B5) / Raw(bytes([i]) * 50) for i in range(5)])
    before = await stats64(b)
    out = ok(vnet(vnet_lan, "inject", str(path)))
    assert "injected 5 frame(s)" in out
    await poll_until(lambda: _rx_grew_by(b, before, 5), "b receives the five frames from the pcap")


async def _rx_grew_by(node, before, n: int) -> bool:
    return (await stats64(node))["rx_packets"] >= before["rx_packets"] + n


def test_lan_up_runs_until_sigterm_and_cleans_up(tmp_path):
    import signal

    env = dict(os.environ, VNET_RUNTIME_DIR=str(tmp_path))
    env.pop("VNET_NODE", None)
    proc = subprocess.Popen([sys.executable, "-m", "vnet.cli", "lan", "up", "--nodes", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:  # the LAN prints its nodes, then how to stop it
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        assert any("node2" in l and "10.0.0.2" in l for l in lines), "".join(lines) + proc.stderr.read()
        ping = subprocess.run([sys.executable, "-m", "vnet.cli", "--node", "node1", "ping", "-c", "2", "-i", "0.1",
                               "10.0.0.2"], capture_output=True, text=True, env=env, timeout=60)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert sorted(p.name for p in tmp_path.glob("*.ctl")) == ["node1.ctl", "node2.ctl"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert list(tmp_path.glob("*.ctl")) == []  # every node closed its control socket
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_health_of_a_node_and_of_the_switch(vnet_lan):
    out = ok(vnet(vnet_lan, "health"))
    assert out.startswith("healthy: node node1 carrier up, addresses 10.0.0.1/24 ok")
    assert ok(vnet(vnet_lan, "health", "--switch", node=None)).startswith("healthy: switch answers, 3 ports")
    await vnet_lan.nodes[0].link_set(state="down")
    proc = vnet(vnet_lan, "health")
    assert proc.returncode == 1 and "no carrier" in proc.stdout
    await vnet_lan.nodes[0].link_set(state="up")


async def test_call_sends_any_request(vnet_lan):
    a, b, _ = vnet_lan.nodes
    result = json.loads(ok(vnet(vnet_lan, "call", "ping", json.dumps({"dst": b.ip, "seq": 7}))))
    assert result["status"] == "reply" and result["seq"] == 7
    frame_hex = (bytes.fromhex(b.mac.replace(":", "")) + bytes.fromhex(a.mac.replace(":", "")) + b"\x88\xb5").hex()
    sent = json.loads(ok(vnet(vnet_lan, "call", "inject", json.dumps({"frames": [{"$bytes": frame_hex + "00" * 46}]}))))
    assert sent == {"sent": 1}
    proc = vnet(vnet_lan, "call", "no_such_command")
    assert proc.returncode == 2 and "unknown command 'no_such_command'" in proc.stderr
