"""Kernel-stack nodes in containers: the compose file's node3 runs the kernel's stack on a TAP
vnet0, so the system's ping, tcpdump and curl in its container are on the vnet LAN, and a stock
container (compose/web.yml, no vnet inside it) joins the LAN through node3's namespace.
NodeHandle.run/popen run programs in a node's container. Skipped only without a Docker engine."""

from __future__ import annotations

import asyncio

import pytest

from vnet.handles import LanError
from vnet.lan import poll_until

pytestmark = pytest.mark.docker

# A second kernel-stack node, as a user would add one: the same four lines as node3's.
NODE4 = """\
services:
  node4:
    image: ${VNET_IMAGE:-vnet:latest}
    hostname: node4
    command: ["vnet", "node", "--stack", "kernel"]
    user: root
    cap_add: [NET_ADMIN]
    devices: [/dev/net/tun]
    networks: [lan]
    labels:
      com.vnet.project: vnet
    environment:
      VNET_ROLE: node
      VNET_SWITCH: tcp://switch:5540
      VNET_NODE: node4
      VNET_ADDRESS: 10.0.0.4/24
    depends_on:
      switch:
        condition: service_healthy
"""


@pytest.fixture
async def kernel_lan(docker_lan_factory, vnet_compose_tree, tmp_path):
    """The compose LAN with compose/web.yml and a second kernel node, node4."""
    node4 = tmp_path / "node4.yml"
    node4.write_text(NODE4)
    return await docker_lan_factory(overrides=(vnet_compose_tree / "compose" / "web.yml", node4))


async def _port_counters(lan, name: str) -> dict:
    return next(p["counters"] for p in await lan.switch.ports() if p["name"] == name)


async def test_kernel_nodes_reach_vnet_nodes_and_a_stock_web_server(kernel_lan):
    lan = kernel_lan
    node1, node3, node4 = lan.node("node1"), lan.node("node3"), lan.node("node4")
    assert (node1.stack, node3.stack, node4.stack) == ("vnet", "kernel", "kernel")
    assert "web" not in [n.name for n in lan.nodes]  # no vnet in it: not a node

    # the image's healthcheck (`vnet health`) passes on the kernel node, as Docker ran it
    health = await node3.run(["vnet", "health"], timeout=20)
    assert health.returncode == 0 and b"healthy: node node3" in health.stdout, health
    assert lan.container("node3").attrs["State"]["Health"]["Status"] == "healthy"

    # the system's ping from the kernel node to a vnet-stack node, and vnet's ping back
    res = await node3.run(["ping", "-n", "-c", "3", "-W", "3", node1.ip], timeout=30)
    assert res.returncode == 0 and b"3 received" in res.stdout, res.stdout.decode()
    back = await node1.ping(node3.ip, count=3)
    assert back.ok, back.replies
    # and as a user types it: `docker compose exec node3 ping ...`
    out = await lan.compose("exec", "-T", "node3", "ping", "-n", "-c", "2", "-W", "3", node1.ip, timeout=60)
    assert "2 received" in out, out

    # curl from node4's kernel to the stock web server in node3's namespace, across the LAN
    before3, before4 = await node3.ethtool("stats"), await node4.ethtool("stats")
    port3 = await _port_counters(lan, "node3")

    async def page():
        r = await node4.run(["curl", "-sS", "-m", "3", f"http://{node3.ip}:8080/"], timeout=20)
        return r if r.returncode == 0 else None

    got = await poll_until(page, "node4 fetches the page of web (in node3's namespace)", timeout=60, every=0.5)
    assert b"Directory listing" in got.stdout, got.stdout[:300]
    after3, after4 = await node3.ethtool("stats"), await node4.ethtool("stats")
    # the TCP exchange went through both TAPs, both model NICs and node3's switch port
    assert after3["tap_write_frames"] > before3["tap_write_frames"]  # the SYN and GET reached node3's kernel
    assert after3["tap_read_frames"] > before3["tap_read_frames"]  # its answers left through vnet
    assert after4["tap_read_frames"] > before4["tap_read_frames"]
    assert after4["tap_write_frames"] > before4["tap_write_frames"]
    assert (await _port_counters(lan, "node3"))["rx_packets"] > port3["rx_packets"]
    stats3 = await node3.stats()
    assert stats3["stack_kind"] == "kernel" and stats3["stats64"]["rx_packets"] > 0


async def test_tcpdump_on_vnet0_sees_the_lans_frames(kernel_lan):
    lan = kernel_lan
    node1, node3 = lan.node("node1"), lan.node("node3")
    dump = await node3.popen(["tcpdump", "-n", "-l", "-i", "vnet0", "-c", "4", "icmp"])
    assert dump in lan.programs
    await poll_until(lambda: _says(dump, b"listening on vnet0"), "tcpdump listening", timeout=20, every=0.2)
    assert (await node1.ping(node3.ip, count=2)).ok
    assert await asyncio.wait_for(dump.wait(), 20) == 0, dump.stderr.decode()
    lines = bytes(dump.stdout).decode().splitlines()
    assert sum(f"{node1.ip} > {node3.ip}: ICMP echo request" in ln for ln in lines) == 2, lines
    assert sum(f"{node3.ip} > {node1.ip}: ICMP echo reply" in ln for ln in lines) == 2, lines


async def _says(proc, text: bytes) -> bool:
    if proc.returncode is not None:
        raise AssertionError(f"{proc!r} ended: {bytes(proc.stderr).decode()}")
    return text in proc.stderr


async def test_run_and_popen_in_a_container(kernel_lan):
    lan = kernel_lan
    node1, node3 = lan.node("node1"), lan.node("node3")

    res = await node3.run(["cat"], input=b"frames\n", timeout=10)
    assert (res.returncode, res.stdout, res.stderr) == (0, b"frames\n", b"")
    res = await node3.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    assert (res.returncode, res.stdout, res.stderr) == (3, b"out\n", b"err\n")
    assert res.args == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert (await node3.run(["no-such-program"], timeout=10)).returncode == 127

    # a program past its timeout is killed, in the container, not left running there
    with pytest.raises(TimeoutError, match="still running after 1 s"):
        await node3.run(["sleep", "37"], timeout=1)

    async def sleep_gone():
        r = await node3.run(["sh", "-c", "cat /proc/[0-9]*/cmdline"], timeout=10)
        return b"sleep\x0037" not in r.stdout

    await poll_until(sleep_gone, "the timed-out sleep gone from node3's container", timeout=10, every=0.2)

    # popen: the LAN owns it; terminate stops it by its pid in the container
    proc = await node3.popen(["sleep", "300"])
    assert proc in lan.programs and proc.returncode is None
    await proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 15) == 128 + 15

    # a vnet-stack node has no kernel interface: a program would not be on the LAN
    with pytest.raises(LanError, match="vnet's own stack"):
        await node1.run(["ping", "-c", "1", node3.ip])
    with pytest.raises(LanError, match="vnet's own stack"):
        await node1.popen(["sleep", "1"])
