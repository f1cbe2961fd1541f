"""One test body, two LANs: the embedded LAN (processes) and the Docker LAN (containers) give
the same node handles, so a user's test runs unchanged against either."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["embedded", pytest.param("docker", marks=pytest.mark.docker)])
def any_lan(request):
    return request.getfixturevalue("vnet_lan" if request.param == "embedded" else "docker_lan")


async def test_arp_ping_udp_and_learning(any_lan):
    # UDP is vnet's stack's here (the compose LAN's node3 runs the kernel's): a and c are
    # vnet-stack nodes, b whatever is left
    vnet_nodes = [n for n in any_lan.nodes if n.stack == "vnet"]
    a, c = vnet_nodes[:2]
    b = next(n for n in any_lan.nodes if n not in (a, c))
    res = await a.ping(b.ip, count=3)
    assert res.ok and len(res.rtts_ms) == 3
    assert {e["ip"]: e["mac"] for e in await a.neigh()}[b.ip] == b.mac
    await c.udp_bind(9999)
    await a.udp_send(c.ip, 9999, b"same body", sport=4000)
    got = await c.udp_recv(9999, timeout=5)
    assert [(d["src"], d["data"]) for d in got] == [(a.ip, b"same body")]
    fdb = {e["mac"]: e["port"] for e in await any_lan.switch.fdb()}
    assert fdb[a.mac] == a.name and fdb[c.mac] == c.name
    absent = await a.ping("10.0.0.250", count=1, timeout=10)
    assert absent.unreachable == 1
