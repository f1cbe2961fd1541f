"""Switches joined by trunks, with rapid spanning tree: real ``vnet switch`` and ``vnet node``
processes over ipc sockets (one embedded LAN per switch, its node on its own subnet, and a
shared subnet added to every node for the pings across). Every wait polls for its condition
with a deadline; nothing sleeps to wait for readiness."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from vnet.lan import Lan, poll_until, vnet_command

HELLO, MAX_AGE, FWD = 0.2, 2.0, 1.0
# the time RSTP may take to converge here: a cut is seen at once (both ends), and the rest is
# proposal/agreement; 3 hello times of BPDU ageing plus a forward delay bounds even the slow
# paths, and a loaded machine gets a margin on top
CONVERGENCE = 3 * HELLO + 2 * FWD + 3.0
STP_ARGS = ["--stp-hello", str(HELLO), "--stp-max-age", str(MAX_AGE), "--stp-forward-delay", str(FWD)]


def switch_args(name: str, priority: int, *trunks: str) -> list[str]:
    args = ["--name", name, "--stp-priority", str(priority), *STP_ARGS]
    for t in trunks:
        args += ["--trunk", t]
    return args


@contextlib.asynccontextmanager
async def switches(*specs: tuple[str, int, list[tuple[str, str]]]):
    """Start one LAN per switch, in order: ``(name, priority, [(port, remote switch), ...])``;
    each LAN's node1 also gets 10.9.0.I/24 and MAC 02:00:00:00:09:I (I: the switch's position,
    from 1; a node's MAC otherwise comes from its name, and every LAN's node is node1)."""
    lans: dict[str, Lan] = {}
    try:
        for i, (name, prio, trunks) in enumerate(specs, start=1):
            args = switch_args(name, prio, *(f"{port}={lans[remote].switch.data}" for port, remote in trunks))
            lan = Lan(nodes=1, subnet=f"10.0.{i}.0/24", switch_args=args, node_args=["--mac", f"02:00:00:00:09:{i:02x}"])
            lans[name] = lan
            await lan.start()
            await lan.nodes[0].addr_add(f"10.9.0.{i}/24")
            await lan.nodes[0].wait_ready()  # past duplicate address detection
        yield lans
    finally:
        for lan in reversed(list(lans.values())):
            await lan.close()


async def stp(lan: Lan) -> dict:
    return await lan.switch.stp_show()


async def trunk_ports(lans: dict[str, Lan]) -> dict[tuple[str, str], dict]:
    out = {}
    for name, lan in lans.items():
        for p in (await stp(lan))["ports"]:
            if not p["edge"]:
                out[(name, p["port"])] = p
    return out


async def converged(lans: dict[str, Lan], n_trunk_ports: int, blocked: int):
    """The trunk ports when every one is settled (forwarding, or discarding as alternate,
    backup or disabled) and exactly ``blocked`` of them block the loop (alternate or backup);
    else None."""
    ports = await trunk_ports(lans)
    if len(ports) != n_trunk_ports:
        return None
    for p in ports.values():
        ok = (p["state"] == "forwarding" and p["role"] in ("root", "designated")) or \
             (p["state"] == "discarding" and p["role"] in ("alternate", "backup", "disabled"))
        if not ok:
            return None
    if sum(p["role"] in ("alternate", "backup") for p in ports.values()) != blocked:
        return None
    return ports


async def pings(src, dst_ip: str) -> bool:
    return (await src.ping(dst_ip, count=1, timeout=0.5)).ok


async def test_two_switches_over_a_trunk_ping_across() -> None:
    async with switches(("a", 4096, []), ("b", 32768, [("to-a", "a")])) as lans:
        ports = await poll_until(lambda: converged(lans, 2, 0), "the trunk forwarding on both ends",
                                 timeout=CONVERGENCE + 10)
        assert ports[("b", "to-a")]["role"] == "root"
        assert ports[("a", "b")]["role"] == "designated"  # the remote port is named after the dialer
        a, b = lans["a"].nodes[0], lans["b"].nodes[0]
        assert await poll_until(lambda: pings(a, "10.9.0.2"), "a ping from a's node to b's", timeout=10)
        assert await pings(b, "10.9.0.1")
        # both ends learned the other side's node on the trunk port
        fdb_a = {e["mac"]: e["port"] for e in await lans["a"].switch.fdb()}
        fdb_b = {e["mac"]: e["port"] for e in await lans["b"].switch.fdb()}
        assert fdb_a[b.mac] == "b" and fdb_b[a.mac] == "to-a"
        show = await stp(lans["b"])
        assert show["name"] == "b" and show["root_id"] == (await stp(lans["a"]))["bridge_id"]
        assert show["root_port"] == "to-a" and show["root_path_cost"] == 20000
        stats = await lans["b"].switch.stats()
        assert stats["per_port"]["to-a"]["bpdu_rx"] > 0 and stats["per_port"]["to-a"]["bpdu_tx"] > 0
        assert stats["trunks"]["to-a"]["carrier"] is True
        ports_b = {p["name"]: p for p in await lans["b"].switch.ports()}
        assert ports_b["to-a"]["stp_state"] == "forwarding" and ports_b["to-a"]["trunk"]
        # the CLI: vnet switch stp
        proc = await asyncio.create_subprocess_exec(*vnet_command(), "switch", "stp", "--switch-control",
                                                    lans["b"].switch.control, stdout=asyncio.subprocess.PIPE)
        text = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
        assert proc.returncode == 0
        assert f"root {show['root_id']} root port to-a root path cost 20000" in text
        assert [line.split()[:3] for line in text.splitlines() if line.strip().startswith("to-a")] == \
            [["to-a", "root", "forwarding"]]


async def test_a_loop_of_three_switches_blocks_one_port_and_fails_over() -> None:
    async with switches(("a", 4096, []), ("b", 32768, [("to-a", "a")]),
                        ("c", 36864, [("to-a", "a"), ("to-b", "b")])) as lans:
        ports = await poll_until(lambda: converged(lans, 6, 1), "one trunk port blocking the loop",
                                 timeout=CONVERGENCE + 10)
        blocked = [k for k, p in ports.items() if p["state"] == "discarding"]
        assert blocked == [("c", "to-b")]  # c is the worst bridge, on the link not towards the root
        a, b, c = (lans[n].nodes[0] for n in "abc")

        # no storm: a broadcast goes round once, so the flood counters stay bounded
        before = {n: (await lan.switch.stats())["totals"] for n, lan in lans.items()}
        assert (await c.arping("10.9.0.2", timeout=2.0))
        assert await poll_until(lambda: pings(b, "10.9.0.3"), "a ping from b's node to c's", timeout=10)
        after = {n: (await lan.switch.stats())["totals"] for n, lan in lans.items()}
        for n in lans:
            assert after[n]["flooded"] - before[n]["flooded"] < 50, (n, before[n], after[n])
        assert after["c"]["stp_discarding"] > before["c"]["stp_discarding"]  # the broadcast met the block

        # cut the active trunk c-a at a's end: c hears CARRIER 0, the alternate port takes over
        await lans["a"].switch.port("c", False)
        assert await poll_until(lambda: pings(b, "10.9.0.3"), "the ping through the blocked trunk",
                                timeout=CONVERGENCE)
        ports = await poll_until(lambda: converged(lans, 6, 0), "no trunk port blocking after the cut",
                                 timeout=CONVERGENCE)
        assert ports[("c", "to-b")]["role"] == "root"
        assert ports[("c", "to-a")]["role"] == "disabled" and ports[("a", "c")]["role"] == "disabled"
        assert (await lans["c"].switch.stats())["trunks"]["to-a"]["carrier"] is False
        assert (await stp(lans["c"]))["topology_changes"] >= 1

        # restore it: the loop is blocked again, and traffic still flows
        await lans["a"].switch.port("c", True)
        await poll_until(lambda: converged(lans, 6, 1), "the loop blocked again after the restore",
                         timeout=CONVERGENCE + 10)
        assert await poll_until(lambda: pings(b, "10.9.0.3"), "a ping after the restore", timeout=CONVERGENCE)

        # a cut at the dialing end: the trunk says BYE, so the remote port goes too
        await lans["c"].switch.port("to-a", False)
        assert await poll_until(lambda: pings(b, "10.9.0.3"), "the ping after a cut at the dialing end",
                                timeout=CONVERGENCE)
        assert await poll_until(lambda: _gone(lans["a"], "c"), "a's port c gone", timeout=CONVERGENCE)


async def _gone(lan: Lan, port: str) -> bool:
    return port not in {p["name"] for p in await lan.switch.ports()}


async def test_a_trunk_comes_back_when_the_remote_switch_restarts() -> None:
    async with switches(("a", 4096, []), ("b", 32768, [("to-a", "a")])) as lans:
        await poll_until(lambda: converged(lans, 2, 0), "the trunk up", timeout=CONVERGENCE + 10)
        await lans["a"].restart_switch()
        await poll_until(lambda: converged(lans, 2, 0), "the trunk up again after a's restart",
                         timeout=CONVERGENCE + 10)
        a, b = lans["a"].nodes[0], lans["b"].nodes[0]
        assert await poll_until(lambda: pings(b, "10.9.0.1"), "a ping across after the restart", timeout=15)
        assert (await lans["b"].switch.stats())["trunks"]["to-a"]["counters"]["attaches"] >= 2


@pytest.mark.parametrize("bad", ["to-a", "to-a=nowhere", "to-a=ipc:///x,cost=3"])
def test_a_bad_trunk_option_is_a_clear_error(bad: str) -> None:
    import subprocess

    from vnet.lan import vnet_command

    r = subprocess.run([*vnet_command(), "switch", "--trunk", bad, "--bind", "ipc:///nonexistent/x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert "trunk" in r.stderr and "PORT=ENDPOINT" in r.stderr or "endpoint" in r.stderr or "option" in r.stderr


async def test_a_trunk_with_curve_needs_the_lans_key_pair(tmp_path) -> None:
    """Switches of one CURVE LAN share its key pair: a trunk authenticates with it and comes
    up; a switch with another LAN's pair is denied, counts it, and its trunk stays down."""
    from vnet.proto.auth import keygen
    from vnet.switch.server import SwitchConfig, SwitchServer

    keygen(str(tmp_path / "lan"), [])
    keygen(str(tmp_path / "other"), [])

    def config(name: str, keys: str, *trunks: str) -> SwitchConfig:
        return SwitchConfig(name=name, bind=f"ipc://{tmp_path}/{name}.data", control=None, trunks=list(trunks),
                            curve_secret=str(tmp_path / keys / "switch.key_secret"),
                            curve_allowed=str(tmp_path / keys / "allowed"), stp_priority=4096 if name == "a" else 32768,
                            stp_hello=HELLO, stp_max_age=MAX_AGE, stp_forward_delay=FWD)

    async with SwitchServer(config("a", "lan")) as a, \
            SwitchServer(config("b", "lan", f"to-a={a.data_endpoint}")) as b, \
            SwitchServer(config("x", "other", f"to-a={a.data_endpoint}")) as x:
        async def trunk_forwarding() -> bool:
            rows = {p["port"]: p for p in b.core.stp_show(0.0)["ports"]}
            return "to-a" in rows and rows["to-a"]["state"] == "forwarding"

        await poll_until(trunk_forwarding, "b's CURVE trunk forwarding", timeout=CONVERGENCE + 10)
        assert a.core.find_port("b") is not None
        [tx] = x.trunks.values()

        async def denied() -> bool:
            return tx.auth_failures > 0

        await poll_until(denied, "x's trunk denied", timeout=10)
        assert not tx.machine.carrier and a.core.find_port("x") is None


async def test_a_peer_posing_as_a_trunk_is_not_attached(tmp_path) -> None:
    """A DEALER that picks a trunk's pseudo peer id as its routing id reaches nothing: its
    frames count ``unknown_peer`` and never enter the trunk's port."""
    import zmq
    import zmq.asyncio

    from vnet.proto import wire
    from vnet.switch.server import SwitchConfig, SwitchServer
    from vnet.switch.trunk import trunk_peer

    async with SwitchServer(SwitchConfig(name="a", bind=f"ipc://{tmp_path}/a.data", control=None)) as a, \
            SwitchServer(SwitchConfig(name="b", bind=f"ipc://{tmp_path}/b.data", control=None,
                                      trunks=[f"to-a={a.data_endpoint}"])) as b:
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.ROUTING_ID, trunk_peer("to-a"))
            sock.connect(b.data_endpoint)
            frame = b"\xff" * 6 + bytes.fromhex("020000000077") + b"\x88\xb5" + bytes(46)
            await sock.send_multipart(wire.frames_msg([frame]))
            await poll_until(lambda: _async(b.core.totals.unknown_peer == 1), "the posing frame counted", timeout=10)
            assert b.core.port_by_name("to-a").counters.rx_packets == 0
        finally:
            sock.close(linger=0)
            ctx.term()


async def _async(value):
    return value
