"""The view model of ``vnet top`` (sans-I/O): counters in, rates out.

``vnet top`` (vnet/cli/top.py) polls the switch's ``ports`` and each node's ``stats`` once a
second and hands each round to ``TopModel.update`` as a ``Sample`` (the counters and the time
they were read at, from any clock); the model answers a ``Frame``: per node and per switch
port, packets and bits a second in each direction and the drops, from the difference to the
previous sample over the time between them. Nothing here reads a clock or a socket, so the
tests drive it with samples and times of their own.

A counter that went down (a restarted daemon, a port that re-attached) counts from zero, as
Prometheus' ``rate()`` takes a reset. A row seen for the first time has no rates yet (None).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from vnet.switch.core import PORT_TRAFFIC as SWITCH_PORT_TRAFFIC

# a switch port's counters that are traffic; every other integer counter is a drop reason
# (switch/core.py's PORT_COUNTERS), so a reason added there is counted here by itself
PORT_TRAFFIC = frozenset(SWITCH_PORT_TRAFFIC)
# the drops in a node's stats64 (rtnl_link_stats64), as /proc/net/dev's drop columns count them
NODE_DROPS = ("rx_dropped", "rx_missed_errors", "tx_dropped")


@dataclass(frozen=True)
class Counts:
    """One row's counters at one moment: packets and bytes each way, and drops."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    drops: int = 0

    @classmethod
    def from_node_stats(cls, stats64: Mapping[str, int]) -> "Counts":
        """From a node's ``stats`` answer's ``stats64``."""
        return cls(stats64.get("rx_packets", 0), stats64.get("rx_bytes", 0), stats64.get("tx_packets", 0),
                   stats64.get("tx_bytes", 0), sum(stats64.get(k, 0) for k in NODE_DROPS))

    @classmethod
    def from_port_counters(cls, counters: Mapping[str, int]) -> "Counts":
        """From a switch port's ``counters`` (the ``ports`` answer)."""
        drops = sum(v for k, v in counters.items() if k not in PORT_TRAFFIC and isinstance(v, int))
        return cls(counters.get("rx_packets", 0), counters.get("rx_bytes", 0), counters.get("tx_packets", 0),
                   counters.get("tx_bytes", 0), drops)


@dataclass(frozen=True)
class Sample:
    """One polling round: the time (seconds, any monotonic clock), the nodes' and the switch
    ports' counters by name, and the nodes that did not answer (name -> why)."""

    time: float
    nodes: Mapping[str, Counts] = field(default_factory=dict)
    ports: Mapping[str, Counts] = field(default_factory=dict)
    down: Mapping[str, str] = field(default_factory=dict)
    switch_error: str | None = None


@dataclass(frozen=True)
class Rates:
    """Per second over the last interval (None: no earlier sample of this row)."""

    rx_pps: float | None
    tx_pps: float | None
    rx_bps: float | None
    tx_bps: float | None
    drops_ps: float | None


@dataclass(frozen=True)
class Row:
    name: str
    counts: Counts
    rates: Rates
    down: str | None = None  # why the row has no counters this round


@dataclass(frozen=True)
class Frame:
    """What one screen shows: the interval and the rows, nodes then switch ports, by name."""

    time: float
    interval: float | None
    nodes: list[Row]
    ports: list[Row]
    switch_error: str | None = None

    def node(self, name: str) -> Row:
        return next(r for r in self.nodes if r.name == name)

    def port(self, name: str) -> Row:
        return next(r for r in self.ports if r.name == name)


NO_RATES = Rates(None, None, None, None, None)


def _delta(new: int, old: int) -> int:
    return new - old if new >= old else new  # a reset counts from zero


def rates(old: Counts | None, new: Counts, dt: float | None) -> Rates:
    """The rates between two readings ``dt`` seconds apart (NO_RATES without an old one)."""
    if old is None or not dt or dt <= 0:
        return NO_RATES
    return Rates(
        rx_pps=_delta(new.rx_packets, old.rx_packets) / dt,
        tx_pps=_delta(new.tx_packets, old.tx_packets) / dt,
        rx_bps=_delta(new.rx_bytes, old.rx_bytes) * 8 / dt,
        tx_bps=_delta(new.tx_bytes, old.tx_bytes) * 8 / dt,
        drops_ps=_delta(new.drops, old.drops) / dt,
    )


class TopModel:
    """The previous sample, and the frame each new one makes against it."""

    def __init__(self) -> None:
        self.previous: Sample | None = None

    def update(self, sample: Sample) -> Frame:
        prev = self.previous
        dt = sample.time - prev.time if prev is not None else None
        if dt is not None and dt <= 0:
            raise ValueError(f"samples out of order: {sample.time} after {prev.time}")
        nodes = [Row(name, counts, rates(prev.nodes.get(name) if prev else None, counts, dt))
                 for name, counts in sorted(sample.nodes.items())]
        nodes += [Row(name, Counts(), NO_RATES, down=why) for name, why in sorted(sample.down.items())
                  if name not in sample.nodes]
        nodes.sort(key=lambda r: r.name)
        ports = [Row(name, counts, rates(prev.ports.get(name) if prev else None, counts, dt))
                 for name, counts in sorted(sample.ports.items())]
        self.previous = sample
        return Frame(sample.time, dt, nodes, ports, sample.switch_error)


def format_pps(value: float | None) -> str:
    """Packets a second, short: ``-`` unknown, ``0``, ``12.5``, ``3.2k``, ``1.1M``."""
    return _si(value, "")


def format_bps(value: float | None) -> str:
    """Bits a second as ``ip -s`` users read them: ``0``, ``640 bit/s``, ``1.2 kbit/s``, ``9.4 Mbit/s``."""
    return _si(value, "bit/s", sep=" ")


def _si(value: float | None, unit: str, sep: str = "") -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f}{sep}{prefix}{unit}"
    text = f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return f"{text}{sep}{unit}" if unit else text
