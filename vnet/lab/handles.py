"""What a running lab hands out, as processes (vnet/lab/run.py) or as containers
(vnet/lab/docker.py): its nodes and switches by name, each lab node's addresses, and the
``async with`` that starts and closes it. A subclass has ``lab``, ``nodes``, ``switches``,
``start()`` and ``close()``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vnet.handles import NodeHandle, SwitchHandle
    from vnet.lab.schema import Lab


class LabHandles:
    lab: "Lab"
    nodes: "dict[str, NodeHandle]"
    switches: "dict[str, SwitchHandle]"

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def node(self, name: str) -> "NodeHandle":
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"lab {self.lab.name}: no node {name!r} ({', '.join(self.nodes)})") from None

    def switch(self, name: str) -> "SwitchHandle":
        try:
            return self.switches[name]
        except KeyError:
            raise KeyError(f"lab {self.lab.name}: no switch {name!r} ({', '.join(self.switches)})") from None

    async def addresses(self, name: str) -> list[str]:
        """``name``'s IPv4 addresses: the lab file's static ones, then any DHCP gave it."""
        static = self.lab.node(name).static_ips()
        if not any(nic.dhcp for nic in self.lab.node(name).nics):
            return static
        have = [a["address"] for a in await self.node(name).addresses()]
        return static + [a for a in have if a not in static]
