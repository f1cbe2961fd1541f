"""pytest plugin (entry point ``pytest11: vnet``): embedded vnet LANs as fixtures.

``vnet_lan`` gives a test a running LAN of three nodes (``lan.nodes[i]`` are NodeHandles,
``lan.switch`` the switch); mark a test with ``@pytest.mark.vnet_lan(nodes=5,
ageing_time=2.0)`` to shape it. ``vnet_lan_factory`` makes as many LANs as a test wants,
``lan = await vnet_lan_factory(nodes=4)``. Every LAN is torn down after the test, whatever
its outcome. The fixtures are async (pytest-asyncio), so tests are ``async def``.

    async def test_ping(vnet_lan):
        a, b = vnet_lan.nodes[:2]
        assert (await a.ping(b.ip, count=3)).ok
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from vnet.lan import Lan


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "vnet_lan(nodes=3, subnet='10.0.0.0/24', **options): shape the vnet_lan fixture's LAN "
        "(options are vnet.lan.Lan's keyword arguments)",
    )


@pytest_asyncio.fixture
async def vnet_lan_factory():
    """Call ``await vnet_lan_factory(nodes=N, **Lan options)`` to get a started LAN."""
    lans: list[Lan] = []

    async def make(nodes: int = 3, **options) -> Lan:
        lan = Lan(nodes, **options)
        lans.append(lan)
        await lan.start()
        return lan

    yield make
    for lan in reversed(lans):
        await lan.close()


@pytest_asyncio.fixture
async def vnet_lan(request: pytest.FixtureRequest, vnet_lan_factory) -> Lan:
    """A started embedded LAN (3 nodes unless the ``vnet_lan`` marker says otherwise)."""
    marker = request.node.get_closest_marker("vnet_lan")
    options = dict(marker.kwargs) if marker else {}
    return await vnet_lan_factory(**options)
