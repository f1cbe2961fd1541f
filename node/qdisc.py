"""The TX queueing discipline: a pfifo bounded by the device's txqueuelen.

Models the default root qdisc of a single-queue device (pfifo_fast with one band, i.e.
``pfifo`` with ``limit = txqueuelen``, net/sched/sch_fifo.c) together with the requeue slot of
sch_generic.c: a frame the driver refuses with NETDEV_TX_BUSY goes back to the *head* of the
queue, ahead of everything queued after it, so order is kept.

This module is only the queue and its counters (what ``tc -s qdisc`` shows). The loop that
dequeues into the driver (qdisc_run, __netif_schedule, dev_hard_start_xmit) lives in
netdevice.py with the rest of the core TX path.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True, slots=True)
class QdiscStats:
    """A snapshot of a qdisc's counters, named as ``tc -s qdisc`` prints them."""

    kind: str
    limit: int
    qlen: int
    backlog: int  # bytes queued
    packets: int  # handed to the driver
    bytes: int
    drops: int
    requeues: int
    overlimits: int


class PfifoQdisc:
    """A FIFO of skbs with a packet limit (``struct Qdisc`` running ``pfifo``).

    ``enqueue`` refuses (returns False, counts a drop) when ``qlen >= limit``; ``requeue``
    puts a frame back at the head without checking the limit, as dev_requeue_skb does.
    ``active`` is False while the device is down or has no carrier (the kernel swaps in the
    noop qdisc then); ``running`` is the __QDISC_STATE_RUNNING bit, ``scheduled`` the
    __QDISC_STATE_SCHED bit (a net_tx_action run is pending).
    """

    __slots__ = ("q", "limit", "backlog", "packets", "bytes", "drops", "requeues",
                 "overlimits", "active", "running", "scheduled")

    kind = "pfifo"

    def __init__(self, limit: int) -> None:
        self.q: deque[Any] = deque()
        self.limit = limit
        self.backlog = 0
        self.packets = 0
        self.bytes = 0
        self.drops = 0
        self.requeues = 0
        self.overlimits = 0
        self.active = False
        self.running = False
        self.scheduled: Optional[Any] = None  # the loop handle of a pending run

    @property
    def qlen(self) -> int:
        return len(self.q)

    def enqueue(self, skb: Any) -> bool:
        """Queue at the tail; False (and a counted drop) when the queue is at its limit."""
        if len(self.q) >= self.limit:
            self.drops += 1  # pfifo_enqueue -> qdisc_drop: drops only, not overlimits
            return False
        self.q.append(skb)
        self.backlog += skb.len
        return True

    def dequeue(self) -> Any:
        """The head of the queue, or None."""
        if not self.q:
            return None
        skb = self.q.popleft()
        self.backlog -= skb.len
        return skb

    def requeue(self, skb: Any) -> None:
        """Put a frame the driver refused back at the head (dev_requeue_skb)."""
        self.q.appendleft(skb)
        self.backlog += skb.len
        self.requeues += 1

    def sent(self, skb: Any) -> None:
        """Count a frame the driver accepted (the qdisc's bstats)."""
        self.packets += 1
        self.bytes += skb.len

    def purge(self) -> int:
        """Drop everything queued (qdisc_reset at deactivation); return how many, counted."""
        n = len(self.q)
        self.q.clear()
        self.backlog = 0
        self.drops += n
        return n

    def stats(self) -> QdiscStats:
        return QdiscStats(self.kind, self.limit, len(self.q), self.backlog, self.packets,
                          self.bytes, self.drops, self.requeues, self.overlimits)
