"""The switch's impairments and cable cuts act on the kernel's own TCP: an iperf3 transfer
completes under 1 % loss; a cut cable stalls it (NO-CARRIER in the namespace) and it resumes
when the cable is back."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest

from vnet.lan import Lan, poll_until

from .conftest import MISSING
from .test_kernel_lan import read_until

pytestmark = [pytest.mark.skipif(MISSING is not None, reason=MISSING or ""),
              pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3 as the oracle")]


@pytest.fixture
async def pair():
    async with Lan(2, "10.34.0.0/24", stack="kernel") as lan:
        yield lan


async def start_iperf(client, server, seconds: int):
    srv = await server.popen(["iperf3", "-s", "-1", "--forceflush", "-B", server.ip], stdout=asyncio.subprocess.PIPE)
    await read_until(srv.stdout, b"Server listening")
    cli = await client.popen(["iperf3", "-c", server.ip, "-t", str(seconds), "-i", "0.5", "-J"],
                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return srv, cli


async def finish(cli, seconds: int) -> dict:
    out, err = await asyncio.wait_for(cli.communicate(), seconds + 60)
    assert cli.returncode == 0, out[-2000:] + err
    return json.loads(out)


async def test_iperf3_completes_under_one_percent_loss(pair):
    k1, k2 = pair.nodes
    await pair.switch.impair(k1.name, "in", loss="1%", seed=7)
    srv, cli = await start_iperf(k1, k2, 3)
    result = await finish(cli, 3)
    assert result["end"]["sum_received"]["bytes"] > 50_000
    counters = (await pair.switch.impair_show(k1.name))["in"]["counters"]
    assert counters["impair_loss"] > 0  # frames were really lost, and TCP recovered


async def rx_frames(node) -> int:
    return (await node.stats())["tap"]["tap_write_frames"]


async def test_cable_cut_stalls_iperf3_and_it_resumes(pair):
    k1, k2 = pair.nodes
    srv, cli = await start_iperf(k1, k2, 10)
    start = await rx_frames(k2)
    await poll_until(lambda: _grew(k2, start + 200), "the transfer is running", timeout=15)
    await pair.switch.port(k1.name, up=False)
    await k1.wait_for(lambda n: _no_carrier(n), "carrier lost after the cable cut", timeout=10)
    flags = subprocess.run(["ip", "-n", k1.netns, "-o", "link", "show", "vnet0"], capture_output=True,
                           text=True, check=True).stdout
    assert "NO-CARRIER" in flags  # the kernel sees the cut too (TUNSETCARRIER)
    stalled = await rx_frames(k2)
    await asyncio.sleep(1.0)  # a measurement window: nothing may arrive while the cable is cut
    assert await rx_frames(k2) - stalled <= 2  # at most frames already in flight at the cut
    await pair.switch.port(k1.name, up=True)
    resumed_from = await rx_frames(k2)
    await poll_until(lambda: _grew(k2, resumed_from + 200), "the transfer resumed", timeout=20)
    result = await finish(cli, 10)
    intervals = [i["sum"]["bytes"] for i in result["intervals"]]
    assert 0 in intervals, intervals  # the stall shows in iperf3's own intervals
    assert intervals[-1] > 0, intervals  # and it ran again before the end


async def _grew(node, target: int) -> bool:
    return await rx_frames(node) >= target


async def _no_carrier(node) -> bool:
    return not (await node.health())["carrier"]
