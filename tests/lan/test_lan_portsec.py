"""Port security through the real switch daemon: a MAC limit per port, drop or shutdown."""

from __future__ import annotations

import subprocess
import sys

from tests.lan.helpers import frame, poll_until, port_counters, pytest


def _spoofed(i: int) -> str:
    return f"02:66:00:00:00:{i:02x}"


def _switch_cli(lan, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vnet.cli", "switch", *args, "--switch-control", lan.switch.control],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.vnet_lan(nodes=2, switch_args=["--max-macs", "2"])
async def test_a_port_over_its_mac_limit_drops_and_counts(vnet_lan):
    lan = vnet_lan
    a, b = lan.nodes
    assert (await a.ping(b.ip)).ok  # a's own MAC is one of its two
    # a sends as 5 other sources: one more fits, four are violations, 10 frames each
    async with await b.capture(f"ether dst host {b.mac} and not arp and not icmp") as cap:
        await a.inject([frame(b.mac, _spoofed(i)) for i in range(5) for _ in range(10)])
        got = await cap.read_until(10, timeout=10)
        counters = await poll_until(lambda: _psec(lan, "node1", 40), "40 frames counted port_security")
        assert counters["port_security"] == 40
        assert len(got) == 10 and {f["frame"][6:12].hex(":") for f in got} == {_spoofed(0)}
        assert await cap.read(timeout=0.3) == []
    fdb = {e["mac"]: e["port"] for e in await lan.switch.fdb()}
    assert sum(port == "node1" for port in fdb.values()) == 2
    assert (await a.ping(b.ip)).ok  # the port itself keeps working

    r = _switch_cli(lan, "port-security", "--json")
    assert r.returncode == 0 and '"max_macs": 2' in r.stdout and '"violation": "drop"' in r.stdout


async def _psec(lan, name: str, at_least: int) -> dict | None:
    c = (await port_counters(lan))[name]
    return c if c["port_security"] >= at_least else None


@pytest.mark.vnet_lan(nodes=2, heartbeat_interval=0.2, heartbeat_timeout=1.0)
async def test_shutdown_on_violation_cuts_the_port_until_it_is_brought_up(vnet_lan):
    lan = vnet_lan
    a, b = lan.nodes
    r = _switch_cli(lan, "port-security", "--max-macs", "1", "--violation", "shutdown")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "max-macs 1 violation shutdown"
    assert (await a.ping(b.ip)).ok
    await a.inject([frame(b.mac, _spoofed(1))])

    async def carrier(node, up):
        return (await node.health())["carrier"] == up

    await poll_until(lambda: carrier(a, False), "node1 to lose carrier: its port shut down", timeout=5)
    stats = await lan.switch.stats()
    assert stats["totals"]["psec_shutdowns"] == 1 and stats["per_port"]["node1"]["port_security"] == 1
    assert [p["admin"] for p in await lan.switch.ports() if p["name"] == "node1"] == ["down"]
    r = _switch_cli(lan, "port", "node1", "up")
    assert r.returncode == 0, r.stderr
    await poll_until(lambda: carrier(a, True), "node1 back after `vnet switch port node1 up`", timeout=5)
    assert (await a.ping(b.ip, count=2)).ok


def test_bad_port_security_settings_are_refused():
    r = subprocess.run([sys.executable, "-m", "vnet.cli", "switch", "--bind", "tcp://127.0.0.1:0",
                        "--max-macs", "-1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "max_macs must be an integer from 0" in r.stderr
    r = subprocess.run([sys.executable, "-m", "vnet.cli", "switch", "--violation", "explode"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "invalid choice" in r.stderr
