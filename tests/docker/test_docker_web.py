"""``vnet web --docker PROJECT`` on running Docker LANs (a real ``vnet web`` process): the
compose project's switch and nodes found by their labels, every node shown with its IP, and
a cable cut, an impairment and a capture made through the page reach the containers' daemons.
Also a lab's compose project (two switches). Skipped only without a Docker engine."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.web.helpers import WebProcess, run_web
from vnet.lan import poll_until

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "labs"


def port_row(state: dict, switch: str, name: str) -> dict:
    sw = next(s for s in state["switches"] if s["name"] == switch)
    return next(p for p in sw["ports"] if p["name"] == name)


async def test_web_shows_and_drives_the_compose_lan(docker_lan):
    web = await WebProcess.start("--docker", docker_lan.project, "--listen", "127.0.0.1:0")
    base = web.url.split("?")[0]
    try:
        async with aiohttp.ClientSession(base) as http:
            async def state() -> dict:
                async with http.get("/api/state") as resp:
                    assert resp.status == 200
                    return await resp.json()

            assert f"Docker project {docker_lan.project}" in "\n".join(web.lines)
            want = {n.name: n.ip for n in docker_lan.nodes} | {"dhcp": "10.0.0.254"}

            async def all_shown() -> bool:
                nodes = {n["name"]: n for n in (await state())["nodes"]}
                return all(name in nodes and any(ip.split("/")[0] == want_ip for ip in nodes[name]["ips"])
                           for name, want_ip in want.items())
            await poll_until(all_shown, "every node shown with its IP", timeout=30, every=0.5)
            nodes = {n["name"]: n for n in (await state())["nodes"]}
            assert not any(nodes[name]["error"] for name in want), nodes

            # a cable cut: the switch's port goes down
            async with http.post("/api/port/switch/node2/down", json={}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["admin"] == "down"
            ports = {p["name"]: p for p in await docker_lan.switch.ports()}
            assert ports["node2"]["admin"] == "down"
            assert port_row(await state(), "switch", "node2")["admin"] == "down"
            async with http.post("/api/port/switch/node2/up", json={}) as resp:
                assert (await resp.json())["admin"] == "up"
            ports = {p["name"]: p for p in await docker_lan.switch.ports()}
            assert ports["node2"]["admin"] == "up"

            # an impairment on a port
            async with http.post("/api/impair", json={"switch": "switch", "port": "node1", "dir": "out",
                                                      "delay": "20ms"}) as resp:
                assert resp.status == 200, await resp.text()
            shown = await docker_lan.switch.impair_show("node1")
            assert "20ms" in shown["out"]["describe"].replace(" ", "")

            # a capture on a node, read through its container's control channel
            async with http.post("/api/capture/start", json={"node": "node1", "filter": "icmp"}) as resp:
                assert resp.status == 200, await resp.text()
                cap = await resp.json()
            node1, node2 = docker_lan.node("node1"), docker_lan.node("node2")
            await node2.wait_ready(30)
            assert (await node1.ping(node2.ip, count=2)).ok

            async def captured() -> bool:
                return next(c for c in (await state())["captures"] if c["id"] == cap["id"])["frames"] >= 4
            await poll_until(captured, "4 ICMP frames captured on node1", timeout=30, every=0.5)
            async with http.post(f"/api/capture/{cap['id']}/stop", json={}) as resp:
                assert resp.status == 200
            async with http.get(f"/api/capture/{cap['id']}.pcap") as resp:
                assert resp.status == 200 and len(await resp.read()) > 24
    finally:
        assert await web.stop() == 0


async def test_web_shows_a_labs_compose_project(vnet_docker_image, monkeypatch):
    import os

    from vnet.lab.docker import DockerLabRunner
    from vnet.lab.load import load_lab

    monkeypatch.setenv("VNET_IMAGE", os.environ.get("VNET_IMAGE") or vnet_docker_image)
    async with DockerLabRunner(load_lab(str(EXAMPLES / "redundant-trunk.yml"))) as lab:
        web = await WebProcess.start("--docker", lab.project, "--listen", "127.0.0.1:0")
        try:
            async with aiohttp.ClientSession(web.url.split("?")[0]) as http:
                async def shown() -> dict | None:
                    async with http.get("/api/state") as resp:
                        st = await resp.json()
                    nodes = {n["name"]: n["ips"] for n in st["nodes"]}
                    ok = ({s["name"] for s in st["switches"]} == {"sw1", "sw2"} and st["trunks"]
                          and nodes.get("n1") == ["10.0.0.1/24"] and nodes.get("n2") == ["10.0.0.2/24"])
                    return st if ok else None
                st = await poll_until(shown, "both switches, the trunks and both nodes shown", timeout=30, every=0.5)
                assert len(st["trunks"]) == 2
                async with http.post("/api/port/sw2/n2/down", json={}) as resp:
                    assert resp.status == 200, await resp.text()
                ports = {p["name"]: p for p in await lab.switch("sw2").ports()}
                assert ports["n2"]["admin"] == "down"
        finally:
            assert await web.stop() == 0


async def test_a_project_without_a_switch_is_a_clear_error(vnet_docker_image):
    code, _, err = await run_web("--docker", "vnet-no-such-project", "--listen", "127.0.0.1:0")
    assert code == 2 and "compose project 'vnet-no-such-project' has no running vnet switch container" in err, err
