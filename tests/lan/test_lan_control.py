"""A node's control commands end to end, in process: a switch and two NodeDaemons on one
loop, on loopback and ipc sockets. Loose argument types are refused before they act; UDP port 0
reports the port it picked; bound ports are leases; the conflict log line says what happens."""

import asyncio
import logging
import struct

import pytest

import zmq.asyncio

from vnet.node.daemon import NodeConfig, NodeDaemon
from vnet.proto.control import AsyncControlClient, ControlError
from vnet.switch.server import SwitchConfig, SwitchServer
from tests.lan.helpers import eventually




@pytest.fixture
async def lan(tmp_path, monkeypatch):
    monkeypatch.setenv("VNET_RUNTIME_DIR", str(tmp_path))
    switch = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0", control=None))
    await switch.start()
    nodes = []
    for i in (1, 2):
        node = NodeDaemon(NodeConfig(name=f"n{i}", switch=switch.data_endpoint, addresses=(f"10.9.0.{i}/24",),
                                     mac=f"02:00:00:00:09:0{i}", control=f"ipc://{tmp_path}/n{i}.ctl"))
        await node.start()
        nodes.append(node)
    ctx = zmq.asyncio.Context()
    clients = [AsyncControlClient(ctx, n.control.endpoint) for n in nodes]
    for c in clients:
        await _until(lambda c=c: _ready(c), "an address ready")
    yield nodes, clients
    for c in clients:
        await c.close()
    ctx.term()
    for n in nodes:
        await n.close()
    await switch.close()


async def _ready(client) -> bool:
    h = await client.call("health")
    return h["carrier"] and any(a["state"] == "ok" for a in h["addresses"])


async def test_a_string_for_promisc_is_refused_and_changes_nothing(lan):
    (n1, _), (c1, _) = lan
    with pytest.raises(ControlError, match="promisc must be a bool"):
        await c1.call("link_set", promisc="no")
    assert "PROMISC" not in (await c1.call("link_show"))[0]["flags"]
    with pytest.raises(ControlError, match="port must be an integer"):
        await c1.call("udp_bind", port=1.5)
    assert not n1.stack.udp.ports  # nothing bound on port 1
    with pytest.raises(ControlError, match="unknown argument 'prommisc'; allowed: dev, state, mtu, address, promisc"):
        await c1.call("link_set", prommisc=True)
    # a bad MAC address is the client's mistake, not an internal error
    with pytest.raises(ControlError, match="bad MAC address"):
        await c1.call("link_set", address="zz")
    assert (await c1.call("stats"))["control"]["internal_errors"] == 0


async def test_udp_bind_port_0_reports_the_port_picked_delivers_to_it_and_unbinds(lan):
    _, (c1, c2) = lan
    bound = await c1.call("udp_bind", port=0)
    port = bound["port"]
    assert port != 0 and bound["lease"] > 0
    await c2.call("udp_send", dst="10.9.0.1", port=port, data=b"to the ephemeral port")
    got = await c1.call("udp_recv", port=port, timeout=5.0, wait=10)
    assert [d["data"] for d in got] == [b"to the ephemeral port"]
    assert (await c1.call("udp_unbind", port=port)) == {"port": port}
    with pytest.raises(ControlError, match="not bound"):
        await c1.call("udp_recv", port=port, timeout=0)


async def test_a_binding_nobody_reads_expires_and_a_read_one_stays(lan):
    (n1, _), (c1, _) = lan
    n1.udp_lease_timeout = 0.3
    read = (await c1.call("udp_bind", port=4001))["port"]
    left = (await c1.call("udp_bind", port=4002))["port"]
    # a reader that keeps polling holds its port; the other's lease runs out
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.5
    while loop.time() < deadline:
        await c1.call("udp_recv", port=read, timeout=0.1)
    assert left not in n1.stack.udp.ports and read in n1.stack.udp.ports
    stats = await c1.call("stats")
    assert stats["udp_lease_expired"] == 1
    # the port is free again
    assert (await c1.call("udp_bind", port=left))["port"] == left


async def test_long_polls_from_one_client_are_capped_and_counted(lan):
    (n1, _), (c1, _) = lan
    await c1.call("udp_bind", port=4100)
    polls = [asyncio.ensure_future(c1.call("udp_recv", port=4100, timeout=1e9, wait=30)) for _ in range(100)]
    await _until(lambda: sum(t.done() for t in polls) == 100 - n1.control.max_per_client, "busy answers")
    stats = await c1.call("stats")
    assert stats["control"]["control_busy"] == 100 - n1.control.max_per_client
    assert stats["control"]["in_flight"] == n1.control.max_per_client
    for t in polls:
        t.cancel()
    await c1.call("udp_unbind", port=4100)


def _arp(op: int, sha: bytes, spa: str, tha: bytes, tpa: str) -> bytes:
    ip = lambda s: bytes(int(x) for x in s.split("."))
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, ip(spa), tha, ip(tpa))
    return (b"\xff" * 6 + sha + b"\x08\x06" + body).ljust(60, b"\0")


async def test_a_conflict_on_an_address_in_use_is_logged_as_defended(lan, caplog):
    (n1, _), (c1, c2) = lan
    intruder = bytes.fromhex("020000000999")
    with caplog.at_level(logging.ERROR, logger="vnet.node.daemon"):
        await c2.call("inject", frames=[_arp(2, intruder, "10.9.0.1", b"\xff" * 6, "10.9.0.1")])
        await _until(lambda: any("10.9.0.1" in r.getMessage() for r in caplog.records), "the conflict log line")
    line = next(r.getMessage() for r in caplog.records if "10.9.0.1" in r.getMessage())
    assert "keeping it in use and defending it" in line and "not using it" not in line
    assert any(a["address"] == "10.9.0.1" and a["state"] == "ok" for a in (await c1.call("addr_show"))["addresses"])


async def test_a_conflict_found_by_dad_is_logged_as_not_using_it(lan, caplog):
    _, (_, c2) = lan
    with caplog.at_level(logging.ERROR, logger="vnet.node.daemon"):
        await c2.call("addr_add", cidr="10.9.0.1/24")
        await _until(lambda: any("not using it" in r.getMessage() for r in caplog.records), "the DAD log line")
    assert any(a["address"] == "10.9.0.1" and a["state"] == "conflict" for a in (await c2.call("addr_show"))["addresses"])


async def _start_listener(node, port: int):
    import sys
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vnet.cli", "udp", "listen", str(port), "--control", node.control.endpoint,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(proc.stderr.readline(), 30)
    assert line.decode().startswith("listening on udp port"), line
    return proc, int(line.split()[-1])


async def test_udp_listen_stopped_by_sigterm_unbinds_its_port(lan):
    (n1, _), _ = lan
    proc, port = await _start_listener(n1, 4200)
    assert port == 4200 and port in n1.stack.udp.ports
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert port not in n1.stack.udp.ports


async def test_udp_listen_killed_by_sigkill_loses_its_port_when_the_lease_runs_out(lan):
    (n1, _), _ = lan
    n1.udp_lease_timeout = 0.5
    proc, port = await _start_listener(n1, 0)  # port 0: the listener prints the port picked
    assert port != 0 and port in n1.stack.udp.ports
    proc.kill()
    await asyncio.wait_for(proc.wait(), 30)
    await _until(lambda: port not in n1.stack.udp.ports, "the lease to run out", timeout=10)
    assert n1.udp_lease_expired == 1


def _until(pred, what: str, timeout: float = 10.0):
    return eventually(pred, timeout=timeout, what=what)
