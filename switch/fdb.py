"""The forwarding database: (vlan, mac) -> port, learned from source addresses, with ageing.

Sans-I/O with an injected clock, like the bridge's ``br_fdb_update``/``br_fdb_cleanup`` pair:
every method that needs the time takes ``now`` (seconds, any monotonic origin), so tests drive
it with a fake clock and never sleep. ``now`` must not go backwards between calls.

Ports are opaque hashable values (the switch core uses its port objects; tests use strings).

Bounded size. When the table is full and a new address arrives, the entry least recently seen
on the port that holds the most entries is evicted (Open vSwitch's ``mac_learning_evict``
policy), and ``evictions`` counts it. A port that floods random source addresses therefore
only recycles its own entries and cannot push the other ports' addresses out; ties go to the
learning port. The alternative (refuse to learn when full) would let the flooder freeze the
table and make every new legitimate host flood forever.

Per-port limit (port security). ``learn(..., limit=n)`` refuses, changing nothing, an address
that would give the port more than ``n`` entries: a new one, a move from another port, or one
whose entry on another port has aged out; a refresh (or the relearning of the port's own aged
entry) never grows the port and always passes. Entries count across VLANs and until they are
removed (ageing by ``expire``, a flush), not merely until they stop answering ``lookup``. The
check is made where the entry is looked up anyway, so a limit costs the refresh path nothing.

Each port keeps its entries in least-recently-seen order (a refresh moves an entry to the
end), so eviction takes the first one and ``expire`` stops at the first live entry of each
port instead of scanning the whole table.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Hashable

DEFAULT_AGEING_TIME = 300.0  # seconds, as the Linux bridge's ageing_time
DEFAULT_MAX_ENTRIES = 8192


class Learn(enum.IntEnum):
    """What ``Fdb.learn`` did."""

    REFRESHED = 0  # known on the same port: its timer restarted
    LEARNED = 1  # a new entry (possibly after evicting another when full)
    MOVED = 2  # known on another port: now on this one (counted in ``moves``)
    REFUSED = 3  # the port already holds ``limit`` entries (port security): nothing changed


class FdbEntry:
    """One learned address. ``updated`` is when it was last seen as a source."""

    __slots__ = ("mac", "vlan", "port", "created", "updated")

    def __init__(self, mac: bytes, vlan: int, port: Hashable, now: float) -> None:
        self.mac = mac
        self.vlan = vlan
        self.port = port
        self.created = now
        self.updated = now

    def age(self, now: float) -> float:
        return now - self.updated

    def __repr__(self) -> str:
        return f"FdbEntry({self.mac.hex(':')}, vlan={self.vlan}, port={self.port!r}, updated={self.updated:g})"


class Fdb:
    """A learning table keyed by ``(vlan, mac)``; see the module docstring for the policies."""

    def __init__(self, ageing_time: float = DEFAULT_AGEING_TIME, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries < 1:
            raise ValueError(f"max_entries must be an integer >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self.ageing_time = 0.0
        self.set_ageing_time(ageing_time)
        self._table: dict[tuple[int, bytes], FdbEntry] = {}
        # port -> its entries, least recently seen first
        self._by_port: dict[Hashable, OrderedDict[tuple[int, bytes], FdbEntry]] = {}
        self.learned = 0
        self.moves = 0
        self.evictions = 0
        self.aged = 0
        self.flushed = 0

    def set_ageing_time(self, seconds: float) -> None:
        """Set how long an address lives without being seen; 0 means never age."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ValueError(f"ageing time must be a number of seconds >= 0 (0 = never age), got {seconds!r}")
        self.ageing_time = float(seconds)

    def __len__(self) -> int:
        return len(self._table)

    def learn(self, mac: bytes, vlan: int, port: Hashable, now: float, limit: int = 0) -> Learn:
        """Record that ``mac`` was seen as a source on ``port``; with ``limit`` (0 = none),
        REFUSED when that would give the port more than ``limit`` entries."""
        key = (vlan, mac)
        entry = self._table.get(key)
        if entry is not None and entry.port == port:
            ageing = self.ageing_time
            if not ageing or now - entry.updated < ageing:
                entry.updated = now
                self._by_port[port].move_to_end(key)
                return Learn.REFRESHED
            self._remove(entry)  # dead already: relearned below, the port's size unchanged
            self.aged += 1
        else:
            if limit:
                mine = self._by_port.get(port)
                if mine is not None and len(mine) >= limit:
                    return Learn.REFUSED
            if entry is not None:
                ageing = self.ageing_time
                if ageing and now - entry.updated >= ageing:
                    self._remove(entry)  # dead already; relearning it is not a move
                    self.aged += 1
                else:
                    self._by_port[entry.port].pop(key)
                    self._drop_port_if_empty(entry.port)
                    entry.port = port
                    entry.updated = now
                    self._port_entries(port)[key] = entry
                    self.moves += 1
                    return Learn.MOVED
        if len(self._table) >= self.max_entries:
            self._evict_for(port)
        entry = FdbEntry(mac, vlan, port, now)
        self._table[key] = entry
        self._port_entries(port)[key] = entry
        self.learned += 1
        return Learn.LEARNED

    def lookup(self, mac: bytes, vlan: int, now: float) -> Hashable | None:
        """The port ``mac`` was last seen on in ``vlan``, or None (unknown or aged out)."""
        entry = self._table.get((vlan, mac))
        if entry is None:
            return None
        ageing = self.ageing_time
        if ageing and now - entry.updated >= ageing:
            return None  # removed (and counted) by the next expire()
        return entry.port

    def expire(self, now: float) -> list[FdbEntry]:
        """Remove and return the entries not seen for ``ageing_time`` seconds."""
        ageing = self.ageing_time
        if not ageing:
            return []
        dead: list[FdbEntry] = []
        for entries in self._by_port.values():
            for entry in entries.values():
                if now - entry.updated < ageing:
                    break  # the rest of this port's entries are younger
                dead.append(entry)
        for entry in dead:
            self._remove(entry)
        self.aged += len(dead)
        return dead

    def flush(self, port: Hashable | None = None) -> int:
        """Remove every entry (``port`` None) or those of one port; return how many."""
        if port is None:
            n = len(self._table)
            self._table.clear()
            self._by_port.clear()
        else:
            entries = self._by_port.pop(port, None)
            if not entries:
                return 0
            n = len(entries)
            table = self._table
            for key in entries:
                del table[key]
        self.flushed += n
        return n

    def entries(self, now: float) -> list[FdbEntry]:
        """The live entries (not yet aged out at ``now``), ordered by vlan then mac."""
        ageing = self.ageing_time
        live = [e for e in self._table.values() if not ageing or now - e.updated < ageing]
        live.sort(key=lambda e: (e.vlan, e.mac))
        return live

    def port_count(self, port: Hashable) -> int:
        """How many entries point at ``port``."""
        entries = self._by_port.get(port)
        return len(entries) if entries else 0

    def counters(self) -> dict:
        return {
            "entries": len(self._table),
            "max_entries": self.max_entries,
            "ageing_time": self.ageing_time,
            "learned": self.learned,
            "moves": self.moves,
            "evictions": self.evictions,
            "aged": self.aged,
            "flushed": self.flushed,
        }

    def _port_entries(self, port: Hashable) -> OrderedDict:
        entries = self._by_port.get(port)
        if entries is None:
            entries = self._by_port[port] = OrderedDict()
        return entries

    def _drop_port_if_empty(self, port: Hashable) -> None:
        if not self._by_port[port]:
            del self._by_port[port]

    def _remove(self, entry: FdbEntry) -> None:
        key = (entry.vlan, entry.mac)
        del self._table[key]
        del self._by_port[entry.port][key]
        self._drop_port_if_empty(entry.port)

    def _evict_for(self, learner: Hashable) -> None:
        by_port = self._by_port
        victim = max(by_port, key=lambda p: len(by_port[p]))
        mine = by_port.get(learner)
        if mine is not None and len(mine) >= len(by_port[victim]):
            victim = learner  # in a tie, the learning port pays
        _, oldest = next(iter(by_port[victim].items()))
        self._remove(oldest)
        self.evictions += 1
