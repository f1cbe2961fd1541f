"""The kernel's stack as vnet0's upper edge: a ``TapDevice`` (node/tap.py) wired onto a
model ``NetDevice``, what the bridge is to a port.

```
 kernel stack (vnet0, a TAP)        read() /dev/net/tun              write() /dev/net/tun
                                         |                                 ^
 TapEdge._readable ---------> skb -> dev_queue_xmit          TapEdge._rx_handler (rx_handler)
                                  qdisc -> TX ring -> link   RX ring -> NAPI -> netif_receive_skb
```

- Frames the kernel sends become skbs handed to ``dev_queue_xmit`` (whose drops the core
  counts); one longer than the model's MTU + header (+4 tagged) is ``tap_tx_oversize``, one
  shorter than a header ``tap_tx_runts``.
- Frames the model receives reach it as the device's rx_handler
  (``netdev_rx_handler_register``; captures, as taps, still see them first) and are written
  to the TAP.
- The model device runs all-multicast (the kernel's multicast list is not visible from here;
  the kernel filters what it did not join), and its carrier is mirrored onto the TAP
  (TUNSETCARRIER), so a cut cable is NO-CARRIER for the kernel too.

Counter equations (docs/driver.md, for a node at rest): kernel tx_packets ==
tap_read_frames == model tx_packets + tx_dropped + qdisc drops + tap_tx_oversize +
tap_tx_runts; model rx_packets == tap_handed_up == tap_write_frames + tap_write_errors +
tap_short_writes; tap_write_frames == kernel rx_packets.
"""

from __future__ import annotations

import logging
from typing import Any

from .netdevice import (
    NETDEV_CHANGE, NETDEV_DOWN, NETDEV_UP, NetDevice, NetdevError, dev_queue_xmit,
    dev_set_allmulti, netdev_rx_handler_register, netdev_rx_handler_unregister,
    netif_carrier_ok, register_netdevice_notifier, unregister_netdevice_notifier,
)
from .skbuff import ETH_HLEN, skb_from_frame, skb_mac_header
from .tap import TapDevice

log = logging.getLogger(__name__)


class TapEdge:
    """The kernel stack, through a TapDevice, as the upper layer of a model NetDevice (what
    the bridge is to a port: the device's rx_handler, and the source of what it transmits)."""

    def __init__(self, tap: TapDevice, dev: NetDevice, loop: Any) -> None:
        self.tap = tap
        self.dev = dev
        self.loop = loop  # an asyncio loop: add_reader on the TAP fd
        self.handed_up = 0  # frames the model's netif_receive_skb gave the rx_handler
        self._started = False

    def start(self) -> None:
        dev = self.dev
        netdev_rx_handler_register(dev, self._rx_handler)
        dev_set_allmulti(dev, 1)
        register_netdevice_notifier(dev.ns, self._netdev_event)
        self.tap.set_carrier(bool(dev.running and netif_carrier_ok(dev)))
        self.loop.add_reader(self.tap.fd, self._readable)
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.tap.fd >= 0:
            self.loop.remove_reader(self.tap.fd)
        unregister_netdevice_notifier(self.dev.ns, self._netdev_event)
        netdev_rx_handler_unregister(self.dev)
        try:
            dev_set_allmulti(self.dev, -1)
        except NetdevError:
            pass

    def counters(self) -> dict[str, int]:
        return {**self.tap.counters(), "tap_handed_up": self.handed_up}

    def _netdev_event(self, event: int, dev: NetDevice) -> None:
        if dev is self.dev and event in (NETDEV_UP, NETDEV_DOWN, NETDEV_CHANGE):
            self.tap.set_carrier(bool(dev.running and netif_carrier_ok(dev)))

    def _readable(self) -> None:
        """The kernel transmitted: every frame waiting goes to dev_queue_xmit (whose drops the
        core counts: down, no carrier, qdisc full)."""
        dev = self.dev
        st = self.tap.stats
        limit = dev.mtu + ETH_HLEN
        frames = self.tap.read_batch()
        if self.tap.eof and self._started:
            log.error("%s: the TAP's other side is gone: no more frames from it", self.tap.name)
            self.loop.remove_reader(self.tap.fd)
        for frame in frames:
            n = len(frame)
            if n > limit and (n > limit + 4 or frame[12:14] not in (b"\x81\x00", b"\x88\xa8")):
                st.tap_tx_oversize += 1
                continue
            if n < ETH_HLEN:
                st.tap_tx_runts += 1
                continue
            skb = skb_from_frame(frame)
            skb.dev = dev
            dev_queue_xmit(skb)

    def _rx_handler(self, skb, dev) -> None:
        self.handed_up += 1
        self.tap.write(skb_mac_header(skb))
