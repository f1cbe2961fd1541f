"""Interface statistics: ``struct rtnl_link_stats64`` and the core's own drop counters.

``RtnlLinkStats64`` has the uapi field names and order (include/uapi/linux/if_link.h), so
``ip -s link``-style output and the rest of the project can use the kernel's vocabulary.
``dev_get_stats`` (netdevice.py) builds a fresh one per call: the driver fills it from its
own counters (ndo_get_stats64) and the core adds ``NetdevCoreStats``, the drops the core
itself makes, as the kernel's dev_get_stats adds ``dev->core_stats``.

Which drop lands where (the same table is in docs/driver.md):

- ring full at RX DMA ........................ rx_missed_errors (not rx_dropped; /proc/net/dev
                                               folds the two into its "drop" column)
- runt (< 14 bytes) or over mtu + 18 on RX ... rx_length_errors, rx_errors
- no protocol handler and no tap ............. rx_dropped (core), as __netif_receive_skb_core
- IPv4 for another host (PACKET_OTHERHOST) ... rx_otherhost_dropped (core), as ip_rcv
- frames left in the RX ring at ifdown ....... rx_dropped (driver)
- device down at dev_queue_xmit .............. tx_dropped (core)
- no carrier at dev_queue_xmit ............... tx_dropped + tx_carrier_errors (+ tx_errors)
- qdisc full ................................. the qdisc's drops (tc -s qdisc), as in Linux
- frames the qdisc held at ifdown/carrier loss  the qdisc's drops (counted once; not tx_dropped)
- frames the TX ring could not send at ifdown  tx_dropped (driver)
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class RtnlLinkStats64:
    """``struct rtnl_link_stats64``: 64-bit interface counters, kernel names and order."""

    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    multicast: int = 0
    collisions: int = 0
    rx_length_errors: int = 0
    rx_over_errors: int = 0
    rx_crc_errors: int = 0
    rx_frame_errors: int = 0
    rx_fifo_errors: int = 0
    rx_missed_errors: int = 0
    tx_aborted_errors: int = 0
    tx_carrier_errors: int = 0
    tx_fifo_errors: int = 0
    tx_heartbeat_errors: int = 0
    tx_window_errors: int = 0
    rx_compressed: int = 0
    tx_compressed: int = 0
    rx_nohandler: int = 0
    rx_otherhost_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as an ordered dict (e.g. for a msgpack reply)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class NetdevCoreStats:
    """Drops the core counts itself (``struct net_device_core_stats``).

    ``tx_carrier_errors`` is an addition: in Linux a carrier loss swaps in the noop qdisc,
    which drops without counting; here those drops are counted (see dev_queue_xmit).
    """

    __slots__ = ("rx_dropped", "tx_dropped", "rx_nohandler", "rx_otherhost_dropped",
                 "tx_carrier_errors")

    def __init__(self) -> None:
        self.rx_dropped = 0
        self.tx_dropped = 0
        self.rx_nohandler = 0
        self.rx_otherhost_dropped = 0
        self.tx_carrier_errors = 0

    def fold_into(self, stats: RtnlLinkStats64) -> None:
        """Add these counters to a driver-filled snapshot, as dev_get_stats does."""
        stats.rx_dropped += self.rx_dropped
        stats.tx_dropped += self.tx_dropped
        stats.rx_nohandler += self.rx_nohandler
        stats.rx_otherhost_dropped += self.rx_otherhost_dropped
        stats.tx_carrier_errors += self.tx_carrier_errors
        stats.tx_errors += self.tx_carrier_errors
