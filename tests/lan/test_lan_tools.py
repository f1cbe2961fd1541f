"""The switch-side tools on a live embedded LAN: port mirror, cable cut, impairments.

Real switch and node processes; every wait polls with a deadline, and timing bounds are
generous (a loaded machine must not fail them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.lan.helpers import frame, poll_until, stats64

EXP = "ether proto 0x88b5"  # only the test's own frames


def vnet(lan, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, VNET_RUNTIME_DIR=lan.runtime_dir, VNET_SWITCH_CONTROL=lan.switch.control)
    env.pop("VNET_NODE", None)
    return subprocess.run([sys.executable, "-m", "vnet.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


async def port_row(lan, name: str) -> dict:
    return next(p for p in await lan.switch.ports() if p["name"] == name)


# -- mirror -----------------------------------------------------------------------------------


async def test_mirror_through_the_handle_sees_both_directions_in_order(vnet_lan):
    a, b, c = vnet_lan.nodes
    async with await vnet_lan.switch.mirror(b.name, EXP) as m:
        assert (await port_row(vnet_lan, b.name))["mirrors"] == 1
        await a.inject([frame(b.mac, a.mac, payload=bytes([i]) * 4) for i in range(3)])
        await m.read_until(3)
        await b.inject(frame(a.mac, b.mac, payload=b"back"))
        await c.inject(frame(a.mac, c.mac, payload=b"else"))  # another port's traffic: not mirrored
        await m.read_until(4)
    # "out": the switch sends to node2's port; "in": the switch receives from it
    assert [f["dir"] for f in m.frames] == ["out", "out", "out", "in"]
    assert [f["frame"][14:18] for f in m.frames] == [bytes([i]) * 4 for i in range(3)] + [b"back"]
    assert all(f["ts"] > 0 for f in m.frames) and m.stats["dropped"] == 0
    assert (await port_row(vnet_lan, b.name))["mirrors"] == 0


async def test_mirror_command_writes_a_pcap_with_exactly_the_frames(vnet_lan, tmp_path):
    from scapy.all import rdpcap

    a, b, _ = vnet_lan.nodes
    path = tmp_path / "port.pcap"
    env = dict(os.environ, VNET_RUNTIME_DIR=vnet_lan.runtime_dir, VNET_SWITCH_CONTROL=vnet_lan.switch.control)
    proc = subprocess.Popen([sys.executable, "-m", "vnet.cli", "switch", "mirror", b.name, "-w", str(path),
                             "-c", "4", *EXP.split()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        await poll_until(lambda: _mirrored(vnet_lan, b.name), "the mirror to start")
        sent = [frame(b.mac, a.mac, payload=b"to-b%d" % i) for i in range(2)]
        back = [frame(a.mac, b.mac, payload=b"from-b%d" % i) for i in range(2)]
        base_a, base_b = await _nohandler(a), await _nohandler(b)
        for i in range(2):  # each frame arrives before the next is sent: the order is known
            await a.inject(sent[i])
            await poll_until(lambda: _arrived(b, base_b + i + 1), f"node2 receives frame {i}")
            await b.inject(back[i])
            await poll_until(lambda: _arrived(a, base_a + i + 1), f"node1 receives reply {i}")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    packets = rdpcap(str(path))
    assert [bytes(p) for p in packets] == [sent[0], back[0], sent[1], back[1]]
    assert all(p.time > 0 for p in packets) and "4 packets captured" in err


async def _mirrored(lan, name: str) -> bool:
    return (await port_row(lan, name))["mirrors"] > 0


async def _nohandler(node) -> int:
    # frames of the experimental ethertype have no handler: rx_dropped counts each one
    return (await stats64(node))["rx_dropped"]


async def _arrived(node, n: int) -> bool:
    return await _nohandler(node) >= n


# -- cable cut ---------------------------------------------------------------------------------


async def test_port_down_cuts_carrier_and_traffic_until_it_is_restored(vnet_lan):
    a, b, _ = vnet_lan.nodes
    sw = vnet_lan.switch
    assert (await a.ping(b.ip)).ok
    row = await sw.port(b.name, up=False)
    assert row["admin"] == "down"
    await poll_until(lambda: _carrier(b, False), "node2 loses carrier")
    health = await b.health()
    assert health["attached"]  # still attached: heartbeats go on, only the cable is cut
    assert (await port_row(vnet_lan, b.name))["admin"] == "down"

    before = (await stats64(b))["tx_carrier_errors"]
    await b.inject(frame(a.mac, b.mac))  # no carrier: dropped and counted by node2's driver
    assert (await stats64(b))["tx_carrier_errors"] > before
    assert not (await a.ping(b.ip, timeout=0.5)).ok
    await a.inject(frame(b.mac, a.mac))  # to the cut port: dropped and counted by the switch
    await poll_until(lambda: _port_down(vnet_lan, b.name), "the switch counts port_down")

    # a node that re-attaches while its port is down gets carrier down again after WELCOME
    attaches = (await b.stats())["link"]["attaches"]
    await b.link_set(state="down")
    await b.link_set(state="up")
    await poll_until(lambda: _attaches(b, attaches + 1), "node2 re-attaches")
    assert not (await b.health())["carrier"]

    await sw.port(b.name, up=True)
    await b.wait_ready()
    assert (await port_row(vnet_lan, b.name))["admin"] == "up"
    assert (await a.ping(b.ip, count=2)).ok

    # and from the command line
    out = ok(vnet(vnet_lan, "switch", "port", b.name, "down"))
    assert "admin down" in out
    await poll_until(lambda: _carrier(b, False), "node2 loses carrier (CLI)")
    assert "state DOWN" in ok(vnet(vnet_lan, "switch", "ports"))
    ok(vnet(vnet_lan, "switch", "port", b.name, "up"))
    await b.wait_ready()
    proc = vnet(vnet_lan, "switch", "port", "nosuchnode", "down")
    assert proc.returncode == 2 and "nosuchnode" in proc.stderr


async def _carrier(node, up: bool) -> bool:
    return (await node.health())["carrier"] == up


async def _port_down(lan, name: str) -> bool:
    return (await port_row(lan, name))["counters"]["port_down"] > 0


async def _attaches(node, n: int) -> bool:
    return (await node.stats())["link"]["attaches"] >= n


# -- impairments ---------------------------------------------------------------------------------


async def test_loss_with_a_seed_over_10000_frames_is_near_the_setting_and_counted_exactly(vnet_lan):
    a, b, _ = vnet_lan.nodes
    sw = vnet_lan.switch
    shown = await sw.impair(a.name, direction="in", loss="10%", seed=1)
    assert shown["in"]["settings"]["loss"] == "10%" and shown["out"]["describe"] == "none"
    rx_before = (await port_row(vnet_lan, a.name))["counters"]["rx_packets"]
    total, chunk = 10_000, 500  # chunks the qdisc (1000 frames) always holds
    for start in range(0, total, chunk):
        await a.inject([frame(b.mac, a.mac, payload=i.to_bytes(4, "big")) for i in range(start, start + chunk)])
        await poll_until(lambda: _offered(sw, a.name, start + chunk), f"{start + chunk} frames at the switch")
    counters = (await sw.impair_show(a.name))["in"]["counters"]
    rx = (await port_row(vnet_lan, a.name))["counters"]["rx_packets"] - rx_before
    assert counters["frames"] == total
    assert rx + counters["impair_loss"] == total  # sent = delivered + impair_loss, exactly
    assert 850 <= counters["impair_loss"] <= 1150  # 10% +- 1.5 points
    stats = await sw.stats()
    assert stats["impair"][a.name]["in"]["impair_loss"] == counters["impair_loss"]


async def _offered(sw, name: str, n: int) -> bool:
    return (await sw.impair_show(name))["in"]["counters"]["frames"] >= n


async def test_delay_shows_in_ping_round_trips(vnet_lan):
    a, b, _ = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok  # ARP resolved before the delay
    await vnet_lan.switch.impair(b.name, delay="50ms")  # both directions: 100 ms a round trip
    res = await a.ping(b.ip, count=3)
    assert res.ok
    assert all(100.0 <= rtt < 1000.0 for rtt in res.rtts_ms), res.rtts_ms
    shown = await vnet_lan.switch.impair_show(b.name)
    assert shown["in"]["counters"]["impair_delayed"] >= 3 and shown["out"]["counters"]["impair_delayed"] >= 3
    await vnet_lan.switch.impair_clear(b.name)
    res = await a.ping(b.ip, count=3)
    assert res.ok and min(res.rtts_ms) < 100.0


async def test_combined_impairments_apply_together_and_keep_what_is_not_named(vnet_lan):
    a, b, _ = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok
    ok(vnet(vnet_lan, "switch", "impair", b.name, "--dir", "out", "--loss", "30%", "--delay", "40ms",
            "--seed", "3"))
    ok(vnet(vnet_lan, "switch", "impair", b.name, "--dir", "out", "--jitter", "5ms"))
    shown = json.loads(ok(vnet(vnet_lan, "switch", "impair", b.name, "--json")))
    assert shown["out"]["settings"]["loss"] == "30%"
    assert shown["out"]["settings"]["delay"] == "40ms" and shown["out"]["settings"]["jitter"] == "5ms"
    assert shown["in"]["describe"] == "none"
    text = ok(vnet(vnet_lan, "switch", "impair", b.name))
    assert "loss 30% delay 40ms jitter 5ms" in text

    res = await a.ping(b.ip, count=12, timeout=0.5)
    assert 0 < res.received < 12  # some lost ...
    assert all(rtt >= 35.0 for rtt in res.rtts_ms)  # ... and the rest delayed
    counters = (await vnet_lan.switch.impair_show(b.name))["out"]["counters"]
    assert counters["impair_loss"] >= 12 - res.received and counters["impair_delayed"] >= res.received

    proc = vnet(vnet_lan, "switch", "impair", b.name, "--delay", "20")
    assert proc.returncode == 2 and "unit" in proc.stderr
    proc = vnet(vnet_lan, "switch", "impair", b.name, "--rate", "10mbps")
    assert proc.returncode == 2 and "kbit" in proc.stderr
    ok(vnet(vnet_lan, "switch", "impair", b.name, "--clear"))
    assert json.loads(ok(vnet(vnet_lan, "switch", "impair", b.name, "--json")))["out"]["describe"] == "none"
    assert (await a.ping(b.ip, count=3)).ok


async def test_duplicates_and_corruption_reach_the_node_and_are_counted(vnet_lan):
    a, b, _ = vnet_lan.nodes
    sw = vnet_lan.switch
    await sw.impair(b.name, direction="out", duplicate="100%")
    async with await b.capture(EXP) as cap:
        await a.inject([frame(b.mac, a.mac, payload=bytes([i]) * 4) for i in range(3)])
        await cap.read_until(6)
    assert [f["frame"][14] for f in cap.frames] == [0, 0, 1, 1, 2, 2]
    assert (await sw.impair_show(b.name))["out"]["counters"]["impair_duplicate"] == 3

    await sw.impair(b.name, direction="out", duplicate="0%", corrupt="100%")
    sent = [frame(b.mac, a.mac, payload=bytes([i]) * 4) for i in range(3)]
    async with await b.capture(EXP) as cap:
        await a.inject(sent)
        await cap.read_until(3)
    for before, got in zip(sent, (f["frame"] for f in cap.frames)):
        assert got[:14] == before[:14] and got != before
        assert bin(int.from_bytes(got, "big") ^ int.from_bytes(before, "big")).count("1") == 1
    assert (await sw.impair_show(b.name))["out"]["counters"]["impair_corrupt"] == 3


async def test_frames_held_for_a_port_that_goes_away_are_counted_as_flushed(vnet_lan):
    a, b, _ = vnet_lan.nodes
    sw = vnet_lan.switch
    await sw.impair(b.name, direction="out", delay="5s")
    await a.inject([frame(b.mac, a.mac) for _ in range(4)])
    await poll_until(lambda: _held(sw, b.name, 4), "four frames held in node2's delay queue")
    await vnet_lan.stop_node(b.name)  # BYE: the port goes away with the frames still held
    await poll_until(lambda: _flushed(sw, b.name, 4), "the held frames counted as impair_flushed")


async def _held(sw, name: str, n: int) -> bool:
    return (await sw.impair_show(name))["out"]["held"] >= n


async def _flushed(sw, name: str, n: int) -> bool:
    return (await sw.impair_show(name))["out"]["counters"]["impair_flushed"] >= n


# -- a mirror can never hurt the datapath ------------------------------------------------------

LONG_FILTER = " or ".join(["arp"] * 3000)


async def test_a_3000_term_mirror_filter_keeps_the_switch_forwarding_and_mirrors(vnet_lan):
    a, b, _ = vnet_lan.nodes
    async with await vnet_lan.switch.mirror(b.name, LONG_FILTER) as m:
        await a.call("neigh_flush")  # the ping resolves b first: ARP crosses the port
        res = await a.ping(b.ip, count=3)
        assert res.ok, "the switch stopped forwarding"
        frames = await m.read_until(2)
    assert all(f["frame"][12:14] == b"\x08\x06" for f in frames)  # ARP, and only ARP
    assert {f["dir"] for f in frames} == {"in", "out"}
    assert (await vnet_lan.switch.call("stats"))["mirror_errors"] == 0


async def test_mirror_limits_are_refused_with_the_bounds_named(vnet_lan):
    b = vnet_lan.nodes[1]
    bad = [({"buffer": 10**15}, "1 to 65536 frames"), ({"buffer": 0}, "1 to 65536 frames"),
           ({"count": -1}, "at least 1"), ({"count": 0}, "at least 1"),
           ({"snaplen": 262145}, "1 to 262144 bytes"), ({"filter": "udp and ("}, "syntax error")]
    for args, words in bad:
        try:
            await vnet_lan.switch.call("mirror_start", port=b.name, **args)
        except Exception as exc:
            assert words in str(exc), (args, exc)
        else:
            raise AssertionError(f"mirror_start {args} was accepted")
    assert (await port_row(vnet_lan, b.name))["mirrors"] == 0
    proc = vnet(vnet_lan, "switch", "mirror", b.name, "--buffer", str(10**15))
    assert proc.returncode != 0 and "1 to 65536 frames" in proc.stderr
    proc = vnet(vnet_lan, "switch", "mirror", b.name, "-c", "-1")
    assert proc.returncode != 0 and "at least 1" in proc.stderr


async def test_a_filter_that_takes_seconds_to_compile_does_not_stall_forwarding(vnet_lan):
    """libpcap's optimiser takes seconds over hundreds of distinct terms; the switch compiles
    off its event loop, so pings cross meanwhile in milliseconds."""
    import asyncio

    a, b, _ = vnet_lan.nodes
    assert (await a.ping(b.ip)).ok  # ARP resolved: only ICMP below
    slow = " or ".join(f"port {p}" for p in range(1, 301))
    start = asyncio.ensure_future(vnet_lan.switch.call("mirror_start", wait=300, port=b.name, filter=slow))
    try:
        res = await a.ping(b.ip, count=3)
        overlapped = not start.done()
        assert res.ok and max(res.rtts_ms) < 1000, res.rtts_ms
        row = await start
    finally:
        if not start.done():
            start.cancel()
    await vnet_lan.switch.call("mirror_stop", id=row["id"])
    assert overlapped, "the compile ended before the pings: nothing was shown (make the filter longer)"
