"""``vnet web`` on the command line: the listen address, the token rule, the LAN it finds."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request

import pytest

from vnet.lan import Lan, poll_until
from tests.web.helpers import Daemons, WebProcess, run_web


def get(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_non_loopback_listen_without_token_prints_a_generated_one():
    async with Lan(2) as lan:
        web = await WebProcess.start("--listen", "0.0.0.0:0", "--runtime-dir", lan.runtime_dir)
        try:
            said = "\n".join(web.lines)
            assert "generated token: " in said
            token = said.split("generated token: ")[1].split()[0]
            assert web.url.endswith(f"?token={token}")
            base = web.url.split("?")[0].replace("0.0.0.0", "127.0.0.1")
            assert await _get(base + "api/state") == 401
            assert await _get(base + f"api/state?token={token}") == 200
            assert await _get(base + "api/state", {"X-Vnet-Token": token}) == 200
        finally:
            assert await web.stop() == 0


async def test_given_token_and_default_switch_endpoint(monkeypatch):
    async with Lan(1) as lan:
        # the defaults `vnet lan up` uses: the switch socket and the node sockets in $VNET_RUNTIME_DIR
        monkeypatch.setenv("VNET_RUNTIME_DIR", lan.runtime_dir)
        web = await WebProcess.start("--listen", "127.0.0.1:0", "--token", "tok")
        try:
            base = web.url.split("?")[0]
            assert web.url.endswith("?token=tok") and "generated" not in "\n".join(web.lines)
            assert await _get(base) == 401
            assert await _get(base + "?token=tok") == 200
        finally:
            assert await web.stop() == 0


@pytest.mark.parametrize("listen, says", [
    ("nonsense", "give HOST:PORT"),
    ("127.0.0.1:99999", "port must be a number from 0 to 65535"),
    ("127.0.0.1:http", "port must be a number"),
    (":8080", "give HOST:PORT"),
    ("[zz::1]:80", "not an IPv6 address"),
])
async def test_bad_listen_is_a_clear_error(listen, says):
    code, out, err = await run_web("--listen", listen)
    assert code == 2 and f"vnet: error: web: --listen {listen!r}" in err and says in err, err


async def test_no_lan_docker_and_a_busy_port_are_clear_errors(tmp_path):
    code, _, err = await run_web("--runtime-dir", str(tmp_path))
    assert code == 2 and "no switch control socket (NAME.sock)" in err
    code, _, err = await run_web("--switch-control", f"ipc://{tmp_path}/none.sock")
    assert code == 2 and "no switch control socket" in err
    code, _, err = await run_web("--docker", "myproject", "--runtime-dir", str(tmp_path))
    assert code == 2 and "give it without --switch-control and --runtime-dir" in err
    async with Lan(1) as lan:
        web = await WebProcess.start("--listen", "127.0.0.1:0", "--runtime-dir", lan.runtime_dir)
        try:
            port = web.url.split(":")[2].split("/")[0]
            code, _, err = await run_web("--listen", f"127.0.0.1:{port}", "--runtime-dir", lan.runtime_dir)
            assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err
        finally:
            await web.stop()


async def _get(url: str, headers: dict | None = None) -> int:
    return await asyncio.to_thread(get, url, headers)


async def test_several_switch_control_endpoints():
    rdir = tempfile.mkdtemp(prefix="vweb-")  # short: ipc paths are bounded (108 bytes)
    try:
        async with Daemons(rdir) as d:
            await d.switch("s1")
            await d.switch("s2")
            await d.node("a", "s1", "10.0.1.1/24")
            await d.node("b", "s2", "10.0.2.1/24")
            web = await WebProcess.start("--listen", "127.0.0.1:0", "--runtime-dir", rdir,
                                         "--switch-control", f"ipc://{rdir}/s1.sock",
                                         "--switch-control", f"ipc://{rdir}/s2.sock")
            try:
                async def both():
                    raw = await asyncio.to_thread(_read, web.url + "api/state")
                    st = json.loads(raw)
                    return {n["name"] for n in st["nodes"]} == {"a", "b"} and st
                state = await poll_until(both, "nodes a and b on the page's state")
                assert [s["name"] for s in state["switches"]] == ["s1", "s2"]  # each switch's own --name
            finally:
                assert await web.stop() == 0
    finally:
        shutil.rmtree(rdir, ignore_errors=True)


def _read(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


async def test_a_curve_lan_with_the_switch_keys():
    async with Lan(2, curve=True) as lan:
        keys = lan.keys_dir
        web = await WebProcess.start("--listen", "127.0.0.1:0", "--runtime-dir", lan.runtime_dir,
                                     "--curve-secret", f"{keys}/switch.key_secret",
                                     "--curve-server-key", f"{keys}/switch.key")
        try:
            async def nodes_shown():
                st = json.loads(await asyncio.to_thread(_read, web.url + "api/state"))
                return {n["name"]: n["ips"] for n in st["nodes"]} == {"node1": ["10.0.0.1/24"],
                                                                      "node2": ["10.0.0.2/24"]}
            await poll_until(nodes_shown, "both nodes of the CURVE LAN on the page's state")
        finally:
            assert await web.stop() == 0


async def test_lab_by_name(monkeypatch):
    """``vnet web --lab NAME`` shows the lab ``vnet lab up`` runs under that name; a lab that
    is not running is a clear error."""
    from vnet.cli.lab import lab_runtime_dir
    from vnet.lab import load_lab
    from vnet.lab.run import LabRunner

    base = tempfile.mkdtemp(prefix="vweb-")  # short: ipc paths are bounded (108 bytes)
    monkeypatch.setenv("VNET_RUNTIME_DIR", base)
    try:
        code, _, err = await run_web("--lab", "nosuch")
        assert code == 2 and "no lab 'nosuch' is running here" in err, err
        lab = load_lab(os.path.join(os.path.dirname(__file__), "labs", "trunks.yml"))
        async with LabRunner(lab, runtime_dir=lab_runtime_dir(lab.name)):
            web = await WebProcess.start("--listen", "127.0.0.1:0", "--lab", lab.name)
            try:
                async def shown():
                    st = json.loads(await asyncio.to_thread(_read, web.url + "api/state"))
                    return sorted(s["name"] for s in st["switches"]) == ["sw1", "sw2"] and st
                await poll_until(shown, "the lab's two switches on the page's state")
            finally:
                assert await web.stop() == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)
