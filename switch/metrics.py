"""The switch's Prometheus metrics: a custom collector reading the core's, the FDB's and the
port tools' live counters at scrape time (served by proto/httpserve.py's ``/metrics``).

Names, all ``vnet_switch_``:

- per port (label ``port``, the port's name): ``port_rx_packets_total``, ``port_rx_bytes_total``,
  ``port_tx_packets_total``, ``port_tx_bytes_total``, ``port_flooded_total``, and every drop
  reason of ``PORT_COUNTERS`` (core.py) in one family ``port_drops_total{port,reason}``, so
  a reason added there appears here by itself; ``port_admin_up``, ``port_fdb_entries``,
  ``port_mtu_bytes``, ``port_mirrors``; ``port_stp_state{port,state}`` (the Linux bridge's
  BR_STATE_* number) for ports that have a spanning tree state;
- the totals: ``rx_packets_total`` ... ``flooded_total``, ``drops_total{reason}``, and each
  switch-wide event of ``SWITCH_COUNTERS`` as ``<name>_total`` (``forwarded_total``,
  ``attached_total``, ``timeouts_total``, ...); ``ports`` (attached now);
- the FDB (switch/fdb.py): ``fdb_entries`` (by ``vlan``), ``fdb_max_entries``,
  ``fdb_ageing_seconds``, ``fdb_learned_total``, ``fdb_moves_total``, ``fdb_evictions_total``,
  ``fdb_aged_total``, ``fdb_flushed_total``;
- impairments (switch/impair.py, per port name and direction ``dir``): ``impair_frames_total``,
  ``impair_total{port,dir,action}`` (action: loss, queue, flushed, duplicate, corrupt,
  reorder, delayed), ``impair_held_frames``; ``mirror_errors_total``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .core import PORT_COUNTERS, PORT_DROPS, PORT_TRAFFIC, SWITCH_COUNTERS, SwitchCore
from .pipeline import PortTools

TRAFFIC = PORT_TRAFFIC  # the rest of PORT_COUNTERS are drops
TRAFFIC_HELP = {
    "rx_packets": "Frames accepted from the port.",
    "rx_bytes": "Bytes of the frames accepted from the port.",
    "tx_packets": "Frames sent to the port.",
    "tx_bytes": "Bytes of the frames sent to the port.",
    "flooded": "Frames from the port that were flooded.",
    "bpdu_rx": "Spanning tree BPDUs received on the port (consumed by the switch).",
    "bpdu_tx": "Spanning tree BPDUs sent on the port.",
}
DROP_REASONS = PORT_DROPS
EVENTS = SWITCH_COUNTERS[len(PORT_COUNTERS):]
FDB_COUNTERS = ("learned", "moves", "evictions", "aged", "flushed")
# Linux's bridge port states (include/uapi/linux/if_bridge.h BR_STATE_*)
BR_STATES = {"disabled": 0, "listening": 1, "learning": 2, "forwarding": 3, "blocking": 4,
             "discarding": 4}  # RSTP's discarding is the bridge's blocking
PREFIX = "vnet_switch_"


def stp_state(value: Any) -> tuple[str, int] | None:
    """A port's spanning tree state as (name, BR_STATE number), from a name, an enum or a
    number; None for a port without one (or one this does not know)."""
    if value is None:
        return None
    name = getattr(value, "name", value)
    if isinstance(name, str):
        key = name.lower()
        return (key, BR_STATES[key]) if key in BR_STATES else None
    if isinstance(value, int):
        names = {n: k for k, n in BR_STATES.items()}
        return (names[value], value) if value in names else None
    return None


class SwitchCollector:
    """The switch's counters read at each scrape; ``now()`` is the server's clock (for the
    FDB's live entries and the frames an impairment holds)."""

    def __init__(self, core: SwitchCore, tools: PortTools | None, now: Callable[[], float]) -> None:
        self.core = core
        self.tools = tools
        self.now = now

    def describe(self) -> list[Metric]:
        return []  # labels follow the ports attached: nothing to check up front

    def collect(self) -> Iterator[Metric]:
        now = self.now()
        yield from self._ports()
        yield from self._totals()
        yield from self._fdb(now)
        if self.tools is not None:
            yield from self._tools(now)

    def _ports(self) -> Iterator[Metric]:
        ports = self.core.port_list
        traffic = {c: CounterMetricFamily(f"{PREFIX}port_{c}", TRAFFIC_HELP[c], labels=["port"]) for c in TRAFFIC}
        drops = CounterMetricFamily(f"{PREFIX}port_drops", "Frames dropped at the port, by reason (malformed: "
                                    "messages).", labels=["port", "reason"])
        admin = GaugeMetricFamily(f"{PREFIX}port_admin_up", "1 if the port is administratively up.", labels=["port"])
        fdb = GaugeMetricFamily(f"{PREFIX}port_fdb_entries", "FDB entries pointing at the port.", labels=["port"])
        mtu = GaugeMetricFamily(f"{PREFIX}port_mtu_bytes", "The MTU the port's node declared.", labels=["port"])
        stp = GaugeMetricFamily(f"{PREFIX}port_stp_state", "Spanning tree port state (BR_STATE_*: 0 disabled, "
                                "1 listening, 2 learning, 3 forwarding, 4 blocking).", labels=["port", "state"])
        vlan = GaugeMetricFamily(f"{PREFIX}port_vlan", "1 for each VLAN the port is a member of (`bridge vlan "
                                 "show`); tagged: whether its frames leave the port tagged.",
                                 labels=["port", "vlan", "tagged"])
        has_stp = False
        for p in ports:
            c = p.counters
            for name, fam in traffic.items():
                fam.add_metric([p.name], getattr(c, name))
            for reason in DROP_REASONS:
                drops.add_metric([p.name, reason], getattr(c, reason))
            admin.add_metric([p.name], 1 if p.admin_up else 0)
            fdb.add_metric([p.name], self.core.fdb.port_count(p))
            mtu.add_metric([p.name], p.mtu)
            if p.vlan is not None:
                for vid in p.vlan.members():
                    vlan.add_metric([p.name, str(vid), "true" if p.vlan.egress_tagged(vid) else "false"], 1)
            state = stp_state(p.stp_state) if p.bridge else None  # spanning tree runs on bridge ports only
            if state is not None:
                has_stp = True
                stp.add_metric([p.name, state[0]], state[1])
        yield from traffic.values()
        yield from (drops, admin, fdb, mtu, vlan)
        if has_stp:
            yield stp

    def _totals(self) -> Iterator[Metric]:
        t = self.core.totals
        for name in TRAFFIC:
            fam = CounterMetricFamily(f"{PREFIX}{name}", f"Switch total of {name}, all ports ever attached.")
            fam.add_metric([], getattr(t, name))
            yield fam
        drops = CounterMetricFamily(f"{PREFIX}drops", "Frames dropped, all ports ever attached, by reason.",
                                    labels=["reason"])
        for reason in DROP_REASONS:
            drops.add_metric([reason], getattr(t, reason))
        yield drops
        for name in EVENTS:
            fam = CounterMetricFamily(f"{PREFIX}{name}", f"Switch counter {name} (see switch/core.py).")
            fam.add_metric([], getattr(t, name))
            yield fam
        ports = GaugeMetricFamily(f"{PREFIX}ports", "Ports attached now.")
        ports.add_metric([], len(self.core.port_list))
        yield ports

    def _fdb(self, now: float) -> Iterator[Metric]:
        fdb = self.core.fdb
        by_vlan = Counter(e.vlan for e in fdb.entries(now))
        entries = GaugeMetricFamily(f"{PREFIX}fdb_entries", "Live FDB entries, by VLAN (0: untagged).",
                                    labels=["vlan"])
        for vlan, n in sorted(by_vlan.items()):
            entries.add_metric([str(vlan)], n)
        yield entries
        counters = fdb.counters()
        for name, value, text in (("fdb_max_entries", counters["max_entries"], "The FDB's bound."),
                                  ("fdb_ageing_seconds", counters["ageing_time"], "The FDB's ageing time (0: never).")):
            fam = GaugeMetricFamily(f"{PREFIX}{name}", text)
            fam.add_metric([], value)
            yield fam
        for name in FDB_COUNTERS:
            fam = CounterMetricFamily(f"{PREFIX}fdb_{name}", f"FDB entries {name} (switch/fdb.py).")
            fam.add_metric([], counters[name])
            yield fam

    def _tools(self, now: float) -> Iterator[Metric]:
        tools = self.tools
        frames = CounterMetricFamily(f"{PREFIX}impair_frames", "Frames offered to a port's impairment.",
                                     labels=["port", "dir"])
        actions = CounterMetricFamily(f"{PREFIX}impair", "What a port's impairment did to frames, by action.",
                                      labels=["port", "dir", "action"])
        held = GaugeMetricFamily(f"{PREFIX}impair_held_frames", "Frames an impairment holds (delay, rate).",
                                 labels=["port", "dir"])
        for port, imps in tools.impairs.items():
            for direction, imp in imps.items():
                for name, value in imp.counters.items():
                    if name == "frames":
                        frames.add_metric([port, direction], value)
                    else:
                        actions.add_metric([port, direction, name.removeprefix("impair_")], value)
                held.add_metric([port, direction], imp.held(now))
        yield from (frames, actions, held)
        mirrors = GaugeMetricFamily(f"{PREFIX}port_mirrors", "Mirror sessions on the port.", labels=["port"])
        for port, n in sorted(Counter(m.port for m in tools.mirrors.values()).items()):
            mirrors.add_metric([port], n)
        yield mirrors
        errors = CounterMetricFamily(f"{PREFIX}mirror_errors", "Exceptions a mirror raised, survived.")
        errors.add_metric([], tools.mirror_errors)
        yield errors
