"""The web view's HTTP API against a real embedded LAN (switch and node processes), through
aiohttp's test client: state, event stream, cable cuts, impairments, captures, the token and
the loopback Host rule."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tempfile

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vnet.lan import Lan, poll_until
from vnet.web.app import make_app
from vnet.web.poll import runtime_dir_target
from tests.web.helpers import Daemons

JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def lan():
    async with Lan(3) as lan:  # its own private runtime directory, removed on close
        yield lan


async def web_client(lan: Lan, token: str = "") -> TestClient:
    app = make_app(runtime_dir_target(lan.runtime_dir), token=token, interval=0.2)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


def port_row(state: dict, name: str) -> dict:
    return next(p for s in state["switches"] for p in s["ports"] if p["name"] == name)


async def test_state_shows_the_lan_and_rates_move(lan):
    client = await web_client(lan)
    try:
        resp = await client.get("/api/state")
        assert resp.status == 200
        state = await resp.json()
        assert [s["name"] for s in state["switches"]] == ["switch"]
        assert {n["name"]: n["ips"] for n in state["nodes"]} == {
            "node1": ["10.0.0.1/24"], "node2": ["10.0.0.2/24"], "node3": ["10.0.0.3/24"]}
        assert {n["name"]: n["macs"] for n in state["nodes"]} == {n.name: [n.mac] for n in lan.nodes}
        page = await client.get("/")
        assert page.status == 200 and "<svg" not in (await page.text())[:10] and "EventSource" in await page.text()

        async def rx_moving():
            await lan.nodes[0].ping(lan.nodes[1].ip)
            st = await (await client.get("/api/state")).json()
            return (port_row(st, "node1")["rates"]["rx_pps"] or 0) > 0 and st
        state = await poll_until(rx_moving, "node1's rx rate above 0 while it pings", timeout=15)
        assert port_row(state, "node1")["rates"]["rx_bps"] > 0
        assert state["switches"][0]["stp"]["is_root"]  # a lone switch is its own spanning tree root

        await lan.switch.call("vlan_set", port="node3", mode="access", vlan=10)

        async def vlan_shown():
            st = await (await client.get("/api/state")).json()
            n3 = next(n for n in st["nodes"] if n["name"] == "node3")
            return port_row(st, "node3")["vlan"] == "access 10" and n3["vlans"] == [10]
        await poll_until(vlan_shown, "node3's access VLAN 10 on its port and node")
        assert any(e["port"] == "node1" for e in state["switches"][0]["fdb"])

        async def neighbour_shown():
            st = await (await client.get("/api/state")).json()
            n1 = next(n for n in st["nodes"] if n["name"] == "node1")
            return any(e["ip"] == lan.nodes[1].ip and e["mac"] == lan.nodes[1].mac for e in n1["neigh"])
        await poll_until(neighbour_shown, "node2 in node1's neighbour table on the page")
    finally:
        await client.close()


async def test_event_stream_pushes_state_every_poll(lan):
    client = await web_client(lan)
    try:
        resp = await client.get("/api/events")
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = []
        async def two_events():
            while len(events) < 2:
                line = (await resp.content.readline()).decode()
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: "):]))
            return True
        await asyncio.wait_for(two_events(), 10)
        assert events[1]["t"] > events[0]["t"]
        assert {n["name"] for n in events[1]["nodes"]} == {"node1", "node2", "node3"}
        resp.close()
    finally:
        await client.close()


async def test_cable_cut_and_restore(lan):
    client = await web_client(lan)
    try:
        assert (await client.get("/api/port/switch/node2/down")).status == 405  # mutations are POST only
        assert (await client.post("/api/port/switch/node2/down", data="x")).status == 415  # and JSON
        resp = await client.post("/api/port/switch/node2/down", json={})
        assert resp.status == 200 and (await resp.json())["admin"] == "down"
        ports = {p["name"]: p for p in await lan.switch.ports()}
        assert ports["node2"]["admin"] == "down"
        state = await (await client.get("/api/state")).json()
        assert port_row(state, "node2")["admin"] == "down"
        assert not (await lan.nodes[0].ping(lan.nodes[1].ip, timeout=0.5)).ok
        ports = {p["name"]: p for p in await lan.switch.ports()}
        assert ports["node2"]["counters"]["port_down"] > 0
        resp = await client.post("/api/port/switch/node2/up", json={})
        assert (await resp.json())["admin"] == "up"
        await lan.nodes[1].wait_ready()
        assert (await lan.nodes[0].ping(lan.nodes[1].ip)).ok
        bad = await client.post("/api/port/nosuch/node2/down", json={})
        assert bad.status == 400 and "no switch 'nosuch'" in (await bad.json())["error"]
        bad = await client.post("/api/port/switch/node2/sideways", json={})
        assert bad.status == 404
    finally:
        await client.close()


async def test_impairments_set_show_and_clear(lan):
    client = await web_client(lan)
    try:
        resp = await client.post("/api/impair", json={"switch": "switch", "port": "node3", "dir": "out",
                                                      "loss": "10%", "delay": "20ms"})
        assert resp.status == 200, await resp.text()
        shown = await lan.switch.impair_show("node3")
        assert "10%" in shown["out"]["describe"] and "20ms" in shown["out"]["describe"].replace(" ", "")
        bad = await client.post("/api/impair", json={"switch": "switch", "port": "node3", "loss": "lots"})
        assert bad.status == 400 and "loss" in (await bad.json())["error"]
        bad = await client.post("/api/impair", json={"switch": "switch", "port": "node3", "speed": "1"})
        assert bad.status == 400 and "unknown settings speed" in (await bad.json())["error"]
        resp = await client.post("/api/impair", json={"switch": "switch", "port": "node3", "clear": True})
        assert resp.status == 200
        assert (await lan.switch.impair_show("node3"))["out"]["settings"] == \
            (await lan.switch.impair_show("node1"))["out"]["settings"]
    finally:
        await client.close()


async def test_captures_of_a_node_and_a_switch_port_download_as_pcap(lan):
    from scapy.all import ICMP, rdpcap

    client = await web_client(lan)
    try:
        node_cap = await (await client.post("/api/capture/start", json={"node": "node1", "filter": "icmp"})).json()
        port_cap = await (await client.post("/api/capture/start",
                                            json={"switch": "switch", "port": "node2", "filter": "icmp"})).json()
        assert node_cap["running"] and port_cap["pcap"] == f"/api/capture/{port_cap['id']}.pcap"
        assert (await lan.nodes[0].ping(lan.nodes[1].ip, count=2)).ok

        async def captured(cid: int, n: int):
            st = await (await client.get("/api/state")).json()
            return next(c for c in st["captures"] if c["id"] == cid)["frames"] >= n
        await poll_until(lambda: captured(node_cap["id"], 4), "4 ICMP frames captured on node1")
        await poll_until(lambda: captured(port_cap["id"], 4), "4 ICMP frames mirrored on port node2")
        stopped = await (await client.post(f"/api/capture/{node_cap['id']}/stop", json={})).json()
        assert stopped["running"] is False
        for cap in (node_cap, port_cap):
            resp = await client.get(cap["pcap"])
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/vnd.tcpdump.pcap"
            packets = rdpcap(io.BytesIO(await resp.read()))
            assert len(packets) >= 4 and all(ICMP in p for p in packets)
        assert (await client.get("/api/capture/99.pcap")).status == 404
        bad = await client.post("/api/capture/start", json={"filter": "icmp"})
        assert bad.status == 400 and "say what to capture" in (await bad.json())["error"]
        bad = await client.post("/api/capture/start", json={"node": "node1", "filter": "icmp and ("})
        assert bad.status == 400
    finally:
        await client.close()  # stops the port capture still running


async def test_token_is_checked_on_every_request(lan):
    client = await web_client(lan, token="s3cret")
    try:
        for path in ("/", "/api/state", "/api/events"):
            assert (await client.get(path)).status == 401
        assert (await client.post("/api/port/switch/node1/down", json={})).status == 401
        assert (await client.get("/api/state?token=wrong")).status == 401
        assert (await client.get("/api/state?token=s3cret")).status == 200
        assert (await client.get("/api/state", headers={"X-Vnet-Token": "s3cret"})).status == 200
        assert (await client.get("/", headers={"Authorization": "Bearer s3cret"})).status == 200
        assert {p["name"]: p["admin"] for p in await lan.switch.ports()}["node1"] == "up"
    finally:
        await client.close()


async def test_without_a_token_only_loopback_hosts_are_served(lan):
    client = await web_client(lan)
    try:
        resp = await client.get("/api/state", headers={"Host": "attacker.example:8080"})
        assert resp.status == 403 and "not loopback" in (await resp.json())["error"]
        assert (await client.get("/api/state", headers={"Host": "localhost:8080"})).status == 200
    finally:
        await client.close()


async def test_a_runtime_directory_with_several_switches():
    """A lab's runtime directory: two switches (s1.sock, s2.sock) and their nodes (NAME.ctl);
    every switch polled, every node found on its own switch."""
    rdir = tempfile.mkdtemp(prefix="vweb-")  # short: ipc paths are bounded (108 bytes)
    try:
        async with Daemons(rdir) as d:
            await d.switch("s1")
            await d.switch("s2")
            await d.node("a", "s1", "10.0.1.1/24")
            await d.node("b", "s2", "10.0.2.1/24")
            client = TestClient(TestServer(make_app(runtime_dir_target(rdir), interval=0.2), host="127.0.0.1"))
            await client.start_server()
            try:
                async def both_attached():
                    st = await (await client.get("/api/state")).json()
                    return all(s["ports"] for s in st["switches"]) and st
                state = await poll_until(both_attached, "a port on each switch")
                assert [s["name"] for s in state["switches"]] == ["s1", "s2"]
                assert {n["name"]: (n["ips"], n["ports"]) for n in state["nodes"]} == {
                    "a": (["10.0.1.1/24"], [{"switch": "s1", "port": "a"}]),
                    "b": (["10.0.2.1/24"], [{"switch": "s2", "port": "b"}])}
                assert state["trunks"] == []
                resp = await client.post("/api/port/s2/b/down", json={})
                assert resp.status == 200 and (await resp.json())["admin"] == "down"
            finally:
                await client.close()
    finally:
        shutil.rmtree(rdir, ignore_errors=True)


@pytest.mark.vnet_lab("labs/trunks.yml")
async def test_a_lab_shows_its_switches_trunks_and_the_blocked_one(vnet_lab):
    """A lab's runtime directory: every switch under its own name, the trunks between them
    (spanning tree blocks one of the two parallel ones), every node with its address."""
    app = make_app(runtime_dir_target(vnet_lab.runtime_dir), interval=0.2)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        async def complete():
            st = await (await client.get("/api/state")).json()
            trunks = [p for s in st["switches"] for p in s["ports"] if p["kind"] == "trunk"]
            states = sorted((p.get("stp") or {}).get("state") or "" for p in trunks)
            return len(trunks) == 4 and states.count("discarding") == 1 and st
        state = await poll_until(complete, "both trunks on both switches, one of them discarding", timeout=20)
        assert sorted(s["name"] for s in state["switches"]) == sorted(sw.name for sw in vnet_lab.lab.switches)
        nodes = {n["name"]: n["ips"] for n in state["nodes"]}
        assert set(nodes) == {n.name for n in vnet_lab.lab.nodes} and all(nodes.values()), nodes
        vlans = {n["name"]: n["vlans"] for n in state["nodes"]}
        assert vlans == {"a1": [10], "a2": [10], "b1": [20], "b2": [20]}, vlans
    finally:
        await client.close()
