"""The page in a real headless browser (the system's chromium, driven by playwright): a 4-node
LAN, ``vnet web`` as a process; every node is drawn, rates move while traffic flows, and a cut
clicked on the page takes the switch port down (the switch's own ``ports`` is the oracle).
With VNET_SCREENSHOT=PATH it saves a screenshot there (docs/img/web.png is one); otherwise
into the test's temporary directory, so a test run leaves the tree as it was."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from vnet.lan import Lan, poll_until
from tests.web.helpers import WebProcess

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)
SCREENSHOT_ENV = "VNET_SCREENSHOT"

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None

pytestmark = [
    pytest.mark.skipif(async_playwright is None, reason="playwright is not installed (pip install playwright; "
                       "it is in the test extra)"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium)"),
]


async def pinging(lan: Lan, stop: asyncio.Event) -> None:
    """Background traffic: node1 pings node2, node3 pings node4, until stopped."""
    while not stop.is_set():
        await asyncio.gather(lan.nodes[0].ping(lan.nodes[1].ip, timeout=1.0),
                             lan.nodes[2].ping(lan.nodes[3].ip, timeout=1.0))
        await asyncio.sleep(0.02)  # pacing of the background traffic, not a readiness wait


async def cell(page, cls: str, port: str) -> str:
    loc = page.locator(f'td.{cls}[data-port="{port}"]')
    return (await loc.text_content(timeout=5000) or "").strip()


def nonzero(text: str) -> bool:
    return text not in ("", "-", "0") and not text.startswith("0 ")


async def test_page_draws_the_lan_shows_rates_and_cuts_a_cable(tmp_path):
    async with Lan(4) as lan:
        web = await WebProcess.start("--listen", "127.0.0.1:0", "--runtime-dir", lan.runtime_dir)
        stop = asyncio.Event()
        traffic = asyncio.get_running_loop().create_task(pinging(lan, stop))
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=["--no-sandbox", "--disable-gpu"])
                try:
                    page = await browser.new_page(viewport={"width": 1280, "height": 900})
                    await page.goto(web.url)
                    # every node drawn, with its name, IP and MAC
                    for n in lan.nodes:
                        box = page.locator(f'#topo-svg g.node[data-node="{n.name}"]')
                        await box.wait_for(timeout=10000)
                        text = await box.text_content()
                        assert n.name in text and n.ip in text and n.mac in text, text
                    # rates move while the pings run
                    for port in ("node1", "node3"):
                        async def moving(port=port):
                            return nonzero(await cell(page, "rx-pps", port)) and nonzero(await cell(page, "rx-bps", port))
                        await poll_until(moving, f"a non-zero rx rate for port {port} on the page", timeout=20,
                                         every=0.2)
                    await page.wait_for_selector("#fdb tbody tr", timeout=10000)
                    await page.wait_for_selector('#neigh tbody tr[data-node="node1"]', timeout=10000)

                    # an impairment set from the page's form, then cleared
                    form = page.locator("#impair")
                    await form.locator("input[name=port]").fill("node3")
                    await form.locator("select[name=dir]").select_option("out")
                    await form.locator("input[name=delay]").fill("1ms")
                    await form.locator("button[name=apply]").click()
                    await page.locator("#impair-result", has_text="delay").wait_for(timeout=10000)
                    assert "1ms" in (await lan.switch.impair_show("node3"))["out"]["describe"].replace(" ", "")
                    await page.locator("#impair-clear").click()
                    await page.locator("#impair-result", has_text="cleared").wait_for(timeout=10000)
                    assert "delay" not in (await lan.switch.impair_show("node3"))["out"]["describe"]

                    # a mirror of node2's port started from the page: frames counted, a pcap to download
                    await page.fill('#capture input[name=filter]', "icmp")
                    await page.locator('button.mirror[data-port="node2"]').click()
                    row = page.locator('#captures tbody tr[data-capture="1"]')
                    await row.wait_for(timeout=10000)

                    async def frames_counted():
                        return int((await row.locator("td.frames").text_content()) or 0) > 0
                    await poll_until(frames_counted, "frames counted in the page's capture row", every=0.2)
                    href = await row.locator("a.pcap").get_attribute("href")
                    assert href == "/api/capture/1.pcap"
                    pcap = await page.request.get(web.url.split("?")[0].rstrip("/") + href)
                    assert pcap.ok and (await pcap.body())[:4] == bytes.fromhex("d4c3b2a1")  # pcap magic

                    # a cut clicked on the page: the switch says admin down, and traffic to the port counts port_down
                    await page.locator('button.cut[data-port="node4"]').click()

                    async def admin_down():
                        return {p["name"]: p["admin"] for p in await lan.switch.ports()}["node4"] == "down"
                    await poll_until(admin_down, "switch port node4 admin down after the click")
                    await page.locator('td.admin[data-port="node4"]', has_text="down").wait_for(timeout=10000)
                    await page.locator('#topo-svg line.link.down[data-port="node4"]').wait_for(timeout=10000)

                    async def port_down_counted():
                        before = {p["name"]: p for p in await lan.switch.ports()}["node4"]["counters"]["port_down"]
                        await lan.nodes[1].ping(lan.nodes[3].ip, timeout=0.3)  # node1 and node3 ping already
                        after = {p["name"]: p for p in await lan.switch.ports()}["node4"]["counters"]["port_down"]
                        return after > before
                    await poll_until(port_down_counted, "port_down counted on node4 while traffic is sent to it")

                    async def drops_shown():
                        return nonzero(await cell(page, "drops", "node4"))
                    await poll_until(drops_shown, "node4's drops on the page", timeout=10, every=0.2)
                    shot = os.environ.get(SCREENSHOT_ENV) or str(tmp_path / "web.png")
                    os.makedirs(os.path.dirname(os.path.abspath(shot)), exist_ok=True)
                    await page.screenshot(path=shot, full_page=True)

                    # restored from the page too
                    await page.locator('button.restore[data-port="node4"]').click()

                    async def admin_up():
                        return {p["name"]: p["admin"] for p in await lan.switch.ports()}["node4"] == "up"
                    await poll_until(admin_up, "switch port node4 admin up after the restore click")
                finally:
                    await browser.close()
        finally:
            stop.set()
            await traffic
            assert await web.stop() == 0
