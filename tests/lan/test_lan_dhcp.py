"""DHCP on the LAN itself: a server node hands out addresses that survive restarts and are
never given twice."""

from __future__ import annotations

import itertools
import os
import time

import pytest

from vnet.lan import poll_until

POOL = "10.0.0.100-10.0.0.120"


@pytest.mark.vnet_lan(nodes=1)
async def test_dhcp_clients_get_distinct_addresses_that_survive_restarts(vnet_lan, tmp_path):
    lease_file = tmp_path / "leases.json"
    server_args = ["--dhcp-server", POOL, "--lease-file", str(lease_file)]
    await vnet_lan.add_node("dhcp", extra_args=server_args)
    clients = [await vnet_lan.add_node(f"c{i}", dhcp=True) for i in range(3)]
    ips = [c.ip for c in clients]
    assert len(set(ips)) == 3 and all(ip.startswith("10.0.0.1") for ip in ips), ips
    for a, b in itertools.permutations(clients, 2):
        assert (await a.ping(b.ip)).ok
    state = await clients[0].call("dhcp_show")
    assert state["client"]["state"] == "bound" and state["client"]["address"] == ips[0]
    out = _vnet(vnet_lan, "--node", "dhcp", "dhcp")
    assert "server: 3 lease(s)" in out and all(ip in out for ip in ips)
    assert f"client: bound address {ips[0]}" in _vnet(vnet_lan, "--node", "c0", "dhcp")
    await poll_until(lambda: _lease_file_holds(lease_file, ips), "the server saves its leases")

    # a client that restarts asks for its address again and gets it
    await vnet_lan.stop_node("c1")
    again = await vnet_lan.add_node("c1", dhcp=True)
    assert again.ip == ips[1]

    # the server restarts from its lease file: old clients keep theirs, a newcomer gets a new one
    await vnet_lan.stop_node("dhcp")
    await vnet_lan.add_node("dhcp", extra_args=server_args)
    newcomer = await vnet_lan.add_node("c9", dhcp=True)
    assert newcomer.ip not in ips
    await vnet_lan.stop_node("c2")
    back = await vnet_lan.add_node("c2", dhcp=True)
    assert back.ip == ips[2]
    leases = (await vnet_lan.node("dhcp").call("dhcp_show"))["server"]
    bound = [lease["ip"] for lease in leases if lease["state"] == "bound"]
    assert len(bound) == len(set(bound)) == 4


@pytest.mark.vnet_lan(nodes=1)
async def test_a_damaged_lease_file_never_stops_the_server(vnet_lan, tmp_path):
    lease_file = tmp_path / "leases.json"
    server_args = ["--dhcp-server", POOL, "--lease-file", str(lease_file)]
    later = time.time() + 3600
    lease_file.write_text("""{
      "006f6c64": {"ip": "10.0.0.105", "expires": %r, "hostname": "old"},
      "zz": {"ip": "10.0.0.120", "expires": 1e12},
      "0062": {"ip": "junk", "expires": 1e12},
      "0063": {"ip": "10.0.0.106", "expires": 1e400},
      "0064": ["10.0.0.107"],
      "0065": {"ip": "10.0.5.1", "expires": 1e12},
      "0066": {"ip": "10.0.0.105", "expires": 1}
    }""" % later)
    server = await vnet_lan.add_node("dhcp", extra_args=server_args)
    leases = (await server.call("dhcp_show"))["server"]
    assert [(lease["ip"], lease["state"], lease["hostname"]) for lease in leases] == [
        ("10.0.0.105", "bound", "old")]
    log = os.path.join(vnet_lan.runtime_dir, "dhcp.log")
    await poll_until(lambda: _log_has(log, "skipped 6 of 7 entries"), "the skipped entries logged")
    assert (await server.call("stats"))["stack"]["dhcp"]["leases_skipped"] == 6
    client = await vnet_lan.add_node("c0", dhcp=True)
    assert client.ip != "10.0.0.105"  # the restored lease is still somebody's

    # a file that is not JSON at all: kept aside, and the server starts without leases
    await vnet_lan.stop_node("dhcp")
    lease_file.write_text('{"006f6c64": {"ip": "10.0.0.1')  # cut off mid-write
    await vnet_lan.add_node("dhcp", extra_args=server_args)
    [copy] = tmp_path.glob("leases.json.bad-*")
    assert copy.read_text() == '{"006f6c64": {"ip": "10.0.0.1'
    await poll_until(lambda: _log_has(log, f"the file is kept as {copy}"), "where the copy is logged")


async def _log_has(path, text: str) -> bool:
    try:
        with open(path, errors="replace") as fh:
            return text in fh.read()
    except OSError:
        return False


def _vnet(lan, *args: str) -> str:
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vnet.cli", *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, VNET_RUNTIME_DIR=lan.runtime_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


async def _lease_file_holds(path, ips) -> bool:
    import json

    try:
        leases = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return sorted(lease["ip"] for lease in leases.values()) == sorted(ips)


@pytest.mark.vnet_lan(nodes=1)
async def test_lease_router_becomes_the_clients_default_route(vnet_lan):
    """The server offers its --gateway as option 3; the client's default route is that router
    (proto dhcp), as dhclient-script installs it."""
    gateway = vnet_lan[0].ip
    await vnet_lan.add_node("dhcp", extra_args=["--dhcp-server", POOL, "--gateway", gateway])
    client = await vnet_lan.add_node("c0", dhcp=True)
    routes = await poll_until(
        lambda: _default_routes(client), "the client installs the lease's router as its default route")
    assert routes == [{"via": gateway, "proto": "dhcp"}]
    got = await client.call("route_get", dst="192.0.2.1")
    assert got["via"] == gateway


async def _default_routes(node) -> list[dict]:
    return [{"via": r["via"], "proto": r["proto"]} for r in await node.call("route_show") if r["dst"] == "default"]
