"""A node's Prometheus metrics: a custom collector that reads the devices' live counters at
scrape time (served by proto/httpserve.py's ``/metrics``).

Interface counters take node_exporter's names and ``device`` label, with the meanings of the
kernel's ``/proc/net/dev`` (dev_seq_printf_stats), which its netdev collector reads:

- ``node_network_receive_drop_total`` is rx_dropped + rx_missed_errors, ``..._fifo_total``
  rx_fifo_errors, ``..._frame_total`` the length, over, CRC and frame errors;
- ``node_network_transmit_colls_total`` is collisions, ``..._carrier_total`` the carrier,
  aborted, window and heartbeat errors;
- ``node_network_up`` is 1 when operstate is "up"; ``node_network_carrier_changes_total`` is
  carrier_up_count + carrier_down_count (``/sys/class/net/DEV/carrier_changes``).

Every ``ethtool -S`` counter of a device is ``vnet_ethtool_<name>{device}``, as node_exporter's
ethtool collector exports the driver's statistics (untyped: a driver's statistics are not all
counters). The neighbour table's entries are ``vnet_neigh_entries{device,state}``.

The devices are whatever the node's device registry (``DeviceNamespace``) holds at the
scrape, so a NIC or a VLAN device added later appears by itself.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UntypedMetricFamily

from .ethtool import ethtool_get_stats
from .netdevice import DeviceNamespace, NetDevice, NetdevError, dev_get_stats, netif_carrier_ok
from .stats import RtnlLinkStats64

# node_exporter name (without _total) -> how /proc/net/dev computes it from rtnl_link_stats64
RECEIVE = {
    "bytes": lambda s: s.rx_bytes,
    "packets": lambda s: s.rx_packets,
    "errs": lambda s: s.rx_errors,
    "drop": lambda s: s.rx_dropped + s.rx_missed_errors,
    "fifo": lambda s: s.rx_fifo_errors,
    "frame": lambda s: s.rx_length_errors + s.rx_over_errors + s.rx_crc_errors + s.rx_frame_errors,
    "compressed": lambda s: s.rx_compressed,
    "multicast": lambda s: s.multicast,
    "nohandler": lambda s: s.rx_nohandler,
}
TRANSMIT = {
    "bytes": lambda s: s.tx_bytes,
    "packets": lambda s: s.tx_packets,
    "errs": lambda s: s.tx_errors,
    "drop": lambda s: s.tx_dropped,
    "fifo": lambda s: s.tx_fifo_errors,
    "colls": lambda s: s.collisions,
    "carrier": lambda s: (s.tx_carrier_errors + s.tx_aborted_errors + s.tx_window_errors
                          + s.tx_heartbeat_errors),
    "compressed": lambda s: s.tx_compressed,
}
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")

EthtoolStats = Callable[[NetDevice], dict[str, int]]
NeighRows = Callable[[], Iterable[dict]]


def ethtool_metric_name(stat: str) -> str:
    """``vnet_ethtool_<stat>`` with what a metric name cannot hold made ``_``."""
    return "vnet_ethtool_" + _NOT_NAME.sub("_", stat)


class NodeCollector:
    """The node's devices (their stats64, state, ethtool statistics) and its neighbour table,
    read at each scrape. ``ethtool_stats(dev)`` is the daemon's ``ethtool -S`` (a kernel-stack
    node adds its TAP edge's counters); ``neigh()`` gives the neighbour table's rows
    (``{"state", "dev"?}``; rows without ``dev`` are the first device's), or is None where
    the table is not the node's to read (the kernel's)."""

    def __init__(self, ns: DeviceNamespace, ethtool_stats: EthtoolStats = ethtool_get_stats,
                 neigh: NeighRows | None = None) -> None:
        self.ns = ns
        self.ethtool_stats = ethtool_stats
        self.neigh = neigh

    def describe(self) -> list[Metric]:
        return []  # the names depend on the devices and the driver: nothing to check up front

    def collect(self) -> Iterator[Metric]:
        devs = self.ns.devices()
        yield from self._interfaces(devs)
        yield from self._ethtool(devs)
        if self.neigh is not None:
            yield self._neigh(devs)

    def _interfaces(self, devs: list[NetDevice]) -> Iterator[Metric]:
        stats: list[tuple[NetDevice, RtnlLinkStats64]] = [(d, dev_get_stats(d)) for d in devs]
        for direction, table in (("receive", RECEIVE), ("transmit", TRANSMIT)):
            for name, get in table.items():
                fam = CounterMetricFamily(f"node_network_{direction}_{name}",
                                          f"Network device statistic {direction}_{name}.", labels=["device"])
                for dev, s in stats:
                    fam.add_metric([dev.name], get(s))
                yield fam
        up = GaugeMetricFamily("node_network_up", "Value is 1 if operstate is 'up', 0 otherwise.",
                               labels=["device"])
        carrier = GaugeMetricFamily("node_network_carrier", "Network device property: carrier.", labels=["device"])
        mtu = GaugeMetricFamily("node_network_mtu_bytes", "Network device property: mtu_bytes.", labels=["device"])
        qlen = GaugeMetricFamily("node_network_transmit_queue_length",
                                 "Network device property: transmit_queue_length.", labels=["device"])
        changes = CounterMetricFamily("node_network_carrier_changes", "Network device property: carrier_changes_total.",
                                      labels=["device"])
        ups = CounterMetricFamily("node_network_carrier_up_changes",
                                  "Network device property: carrier_up_changes_total.", labels=["device"])
        downs = CounterMetricFamily("node_network_carrier_down_changes",
                                    "Network device property: carrier_down_changes_total.", labels=["device"])
        info = GaugeMetricFamily("node_network_info", "Non-numeric data of the network device, value is always 1.",
                                 labels=["device", "address", "broadcast", "operstate", "ifindex"])
        for dev in devs:
            operstate = dev.operstate.lower()
            up.add_metric([dev.name], 1 if operstate == "up" else 0)
            carrier.add_metric([dev.name], 1 if netif_carrier_ok(dev) else 0)
            mtu.add_metric([dev.name], dev.mtu)
            qlen.add_metric([dev.name], dev.tx_queue_len)
            n_up, n_down = getattr(dev, "carrier_up_count", 0), getattr(dev, "carrier_down_count", 0)
            changes.add_metric([dev.name], n_up + n_down)
            ups.add_metric([dev.name], n_up)
            downs.add_metric([dev.name], n_down)
            info.add_metric([dev.name, _mac(dev.dev_addr), _mac(dev.broadcast), operstate, str(dev.ifindex)], 1)
        yield from (up, carrier, mtu, qlen, changes, ups, downs, info)

    def _ethtool(self, devs: list[NetDevice]) -> Iterator[Metric]:
        families: dict[str, UntypedMetricFamily] = {}
        for dev in devs:
            try:
                stats = self.ethtool_stats(dev)
            except NetdevError:  # a device without ethtool statistics (EOPNOTSUPP)
                continue
            for stat, value in stats.items():
                name = ethtool_metric_name(stat)
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = UntypedMetricFamily(
                        name, f"Network interface {stat} (ethtool -S).", labels=["device"])
                fam.add_metric([dev.name], value)
        yield from families.values()

    def _neigh(self, devs: list[NetDevice]) -> Metric:
        first = devs[0].name if devs else ""
        counts = Counter((row.get("dev") or first, str(row["state"]).lower()) for row in self.neigh())
        fam = GaugeMetricFamily("vnet_neigh_entries", "Entries in the neighbour (ARP) table, by device and state.",
                                labels=["device", "state"])
        for (dev, state), n in sorted(counts.items()):
            fam.add_metric([dev, state], n)
        return fam


def _mac(addr: bytes) -> str:
    return ":".join(f"{b:02x}" for b in bytes(addr))


class PackCollector:
    """Every node of a pack (node/pack.py) at one endpoint: each node's ``NodeCollector``
    families with a ``node`` label first, merged by name. A registry must not hold two
    families of one name (the exposition format allows one HELP/TYPE per name, and
    Prometheus refuses a second), so the pack's nodes share one family per name, with
    samples from them all. ``nodes()`` gives (name, collector) of the nodes at the scrape."""

    def __init__(self, nodes: Callable[[], Iterable[tuple[str, NodeCollector]]]) -> None:
        self.nodes = nodes

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for node, collector in self.nodes():
            for fam in collector.collect():
                out = merged.get(fam.name)
                if out is None:
                    out = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                elif out.type != fam.type:  # one name, two types: keep the first, say nothing twice
                    continue
                for s in fam.samples:
                    out.samples.append(s._replace(labels={"node": node, **s.labels}))
        yield from merged.values()
