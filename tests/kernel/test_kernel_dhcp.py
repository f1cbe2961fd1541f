"""DHCP across the two stacks: a stock client (busybox udhcpc) in a kernel node's namespace
leased by vnet's DHCP server, and vnet's DHCP client leased by dnsmasq in a kernel node."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil

import pytest

from vnet.lan import Lan

from .conftest import MISSING

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


async def test_udhcpc_gets_a_lease_from_vnets_dhcp_server():
    if shutil.which("busybox") is None:
        pytest.skip("needs busybox (udhcpc) as the oracle")
    async with Lan(1, "10.32.0.0/24", stack="kernel") as lan:
        server = await lan.add_node("srv", stack="vnet", extra_args=["--dhcp-server", "10.32.0.100-10.32.0.110"])
        kernel = lan.nodes[0]
        r = await kernel.run(["busybox", "udhcpc", "-i", "vnet0", "-n", "-q", "-f", "-t", "5", "-T", "1",
                              "-s", "/bin/true"], timeout=30)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 0, out
        assert "lease of 10.32.0.100 obtained" in out, out
        leases = (await server.call("dhcp_show"))["server"]
        assert [lease["ip"] for lease in leases] == ["10.32.0.100"]


async def test_vnets_dhcp_client_gets_a_lease_from_dnsmasq(tmp_path):
    if shutil.which("dnsmasq") is None:
        pytest.skip("needs dnsmasq as the oracle")
    async with Lan(1, "10.33.0.0/24", stack="kernel") as lan:
        kernel = lan.nodes[0]
        dnsmasq = await kernel.popen(
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=vnet0", "--bind-interfaces",
             "--dhcp-range=10.33.0.150,10.33.0.160,255.255.255.0,2m", f"--dhcp-leasefile={tmp_path}/leases",
             f"--pid-file={tmp_path}/pid", "--log-dhcp"],
            stderr=asyncio.subprocess.PIPE)

        async def dnsmasq_ready() -> None:
            while b"DHCP, IP range" not in await dnsmasq.stderr.readline():
                pass

        await asyncio.wait_for(dnsmasq_ready(), 15)
        client = await lan.add_node("cli", stack="vnet", dhcp=True)  # waits until it holds its address
        assert ipaddress.IPv4Address("10.33.0.150") <= ipaddress.IPv4Address(client.ip) <= \
            ipaddress.IPv4Address("10.33.0.160")
        state = (await client.call("dhcp_show"))["client"]
        assert state["server"] == kernel.ip
        assert (await client.ping(kernel.ip, count=2)).ok
