"""The vnet NIC "silicon": RX DMA + address filter + interrupt coalescing + IRQ line, and a
TX DMA engine, in front of a Link (node/link.py) that plays the PHY and the cable.

The driver (vnic.py) programs it the way a driver programs a real NIC: it posts TX
descriptors and rings a doorbell, reads completed descriptors back, masks and unmasks the
interrupt, and writes the receive filter and coalescing registers. The hardware never calls
into the networking core; it only raises its IRQ (calls the handler the driver requested)
and reports link changes to the driver's PHY callback.

RX: the link hands over a batch of frames. For each one the MAC checks the length (shorter
than 14 bytes or longer than ``max_frame`` = mtu + 18: ``rx_runts``/``rx_giants``), then the
address filter (own MAC, broadcast, the multicast list, or everything in promiscuous /
all-multicast mode; others are counted in ``rx_filtered``), then DMAs the frame into a free RX
descriptor: the one copy of the frame (skbuff.skb_from_frame). No free descriptor: the frame
is missed (``rx_missed``). After the batch at most one IRQ is raised, subject to coalescing:

- immediately when ``rx_frames == 1``, or when both limits are 0;
- when ``rx_frames`` frames have arrived since the last IRQ (0 = no frame limit);
- when ``rx_usecs`` have passed since the first of them (a timer; 0 = no time limit);
- when the ring is full (a real NIC's "descriptor minimum threshold" interrupt), so a
  frame limit larger than the ring cannot wedge reception.

Each batch that arrives with the IRQ unmasked but does not raise it counts in
``irqs_coalesced``. While the IRQ is masked (NAPI is polling) frames only fill the ring.

Flow control (802.3x PAUSE). A link that can hold frames back (``link.flow_control`` True:
the ZeroMQ link, whose far end is the switch port's output queue) is never overrun: when
the ring fills in the middle of a batch, the NIC stops there, counts ``rx_pauses`` and
tells the link how many frames it took; the link keeps the rest and reads nothing more
until the NIC lifts the pause. The driver gives descriptors back with ``rx_refill()`` at the
end of each poll; once half the ring is free (the XON threshold; real NICs have the same
high/low water marks) the NIC calls ``link.rx_resume()``. Frames then wait upstream, where
the switch's per-port queue holds them and drops (counted) only when it is full. Links
without flow control (the in-memory test cable) overrun the ring as before: the frames that
find it full are missed (``rx_missed``).

TX: ``tx_doorbell`` schedules the DMA engine (a call_soon), which takes *every* posted
descriptor and sends them with one ``link.send(batch)``: doorbells rung in the same loop
iteration share one batch, which is where TX batching comes from. If the link refuses
(backpressure), the descriptors stay posted while the ring fills and the driver stops its
queue; the engine tries again when the link says it can take more (``link.notify_writable``,
the ZeroMQ link's writable event) or, for links that cannot say, every TX_RETRY_DELAY.
After a successful send the descriptors are done (``tx_done``, with their byte count in
``tx_done_bytes``, the descriptors' write-back) and the IRQ is raised (TX completions are
not coalesced); the driver cleans them in its NAPI poll. Frames go to the link as copies of
the skb data (a bytearray slice is cheaper than a memoryview of a slice).

Ring resize keeps every descriptor: a ring shrunk below its occupancy simply counts as full
until it drains (the model's equivalent of moving in-flight descriptors to the new ring).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional, Sequence

from .link import Link
from .skbuff import ETH_DATA_LEN, ETH_HLEN, VLAN_ETH_HLEN, SkBuff, skb_from_frame

TX_RETRY_DELAY = 0.001  # seconds between send attempts while the link pushes back
TX_WRITABLE_TIMEOUT = 0.05  # retry anyway if a link's writable event has not come by then

_BROADCAST = b"\xff" * 6


class VnicHw:
    """One vnet NIC: rings, filter, coalescing, IRQ, DMA engines (see the module docstring).

    Registers the driver writes: ``set_mac``, ``set_rx_filter``, ``set_max_frame``,
    ``set_coalesce``, ``resize``, ``irq_enable``/``irq_disable``, ``tx_post`` +
    ``tx_doorbell``. Descriptor memory the driver reads: ``rx_ring`` (received skbs, oldest
    first) and ``tx_done`` (sent skbs awaiting cleaning). Hardware counters (MIB):
    ``rx_batches``, ``rx_dma``, ``rx_runts``, ``rx_giants``, ``rx_filtered``, ``rx_missed``,
    ``irqs_raised``, ``irqs_coalesced``, ``tx_doorbells``, ``tx_batches``, ``tx_sent``,
    ``tx_backpressure``, ``rx_pauses``.
    """

    __slots__ = (
        "loop", "link", "enabled", "carrier", "carrier_cb",
        "rx_ring", "rx_ring_size", "tx_pending", "tx_done", "tx_done_bytes", "tx_ring_size",
        "flow_control", "rx_paused", "rx_pauses",
        "mac", "mc_filter", "promisc", "allmulti", "max_frame",
        "irq_masked", "irq_handler", "irq_arg",
        "rx_usecs", "rx_frames", "coal_count", "coal_first", "coal_timer",
        "tx_dma_handle", "tx_retry_handle",
        "rx_batches", "rx_dma", "rx_runts", "rx_giants", "rx_filtered", "rx_missed",
        "irqs_raised", "irqs_coalesced", "tx_doorbells", "tx_batches", "tx_sent",
        "tx_backpressure",
    )

    def __init__(self, loop: Any, link: Link, *, rx_ring_size: int = 256,
                 tx_ring_size: int = 256, rx_usecs: int = 0, rx_frames: int = 1) -> None:
        self.loop = loop
        self.link = link
        self.enabled = False
        self.carrier = False
        self.carrier_cb: Optional[Callable[[bool], None]] = None
        self.rx_ring: deque[SkBuff] = deque()
        self.rx_ring_size = rx_ring_size
        self.tx_pending: deque[SkBuff] = deque()  # posted, not yet on the wire
        self.tx_done: deque[SkBuff] = deque()  # on the wire, not yet cleaned by the driver
        self.tx_done_bytes = 0  # their frame bytes (the descriptors' write-back)
        self.flow_control = bool(getattr(link, "flow_control", False))
        self.rx_paused = False  # PAUSE asserted: the link holds frames back
        self.rx_pauses = 0
        self.tx_ring_size = tx_ring_size
        self.mac = bytes(6)
        self.mc_filter: frozenset[bytes] = frozenset()
        self.promisc = False
        self.allmulti = False
        self.max_frame = ETH_DATA_LEN + VLAN_ETH_HLEN
        self.irq_masked = True
        self.irq_handler: Optional[Callable[[int, Any], None]] = None
        self.irq_arg: Any = None
        self.rx_usecs = rx_usecs
        self.rx_frames = rx_frames
        self.coal_count = 0  # frames since the last IRQ
        self.coal_first = 0.0  # arrival time of the first of them
        self.coal_timer: Any = None
        self.tx_dma_handle: Any = None
        self.tx_retry_handle: Any = None
        self.rx_batches = 0
        self.rx_dma = 0
        self.rx_runts = 0
        self.rx_giants = 0
        self.rx_filtered = 0
        self.rx_missed = 0
        self.irqs_raised = 0
        self.irqs_coalesced = 0
        self.tx_doorbells = 0
        self.tx_batches = 0
        self.tx_sent = 0
        self.tx_backpressure = 0

    # --- bring-up ---------------------------------------------------------------------

    def request_irq(self, handler: Callable[[int, Any], None], arg: Any) -> None:
        """Connect the IRQ line to ``handler(irq, arg)`` (request_irq)."""
        self.irq_handler = handler
        self.irq_arg = arg

    def free_irq(self) -> None:
        self.irq_handler = None
        self.irq_arg = None

    def start(self, carrier_cb: Callable[[bool], None]) -> None:
        """Enable the DMA engines and open the link; link changes go to ``carrier_cb``."""
        self.carrier_cb = carrier_cb
        self.enabled = True
        self.link.open(self._link_rx, self._link_carrier)

    def stop(self) -> None:
        """Quiesce: mask the IRQ, stop timers, try one last send of the posted TX
        descriptors, close the link. Descriptors stay for the driver to account for."""
        self.irq_disable()
        for handle in (self.tx_dma_handle, self.tx_retry_handle):
            if handle is not None:
                handle.cancel()
        self.tx_dma_handle = self.tx_retry_handle = None
        if self.tx_pending:
            self._tx_send(retry=False)
        self.enabled = False
        self.rx_paused = False
        self.link.close()
        self.carrier = False
        self.carrier_cb = None

    def _link_carrier(self, up: bool) -> None:
        if not self.enabled:
            return
        self.carrier = up
        if self.carrier_cb is not None:
            self.carrier_cb(up)

    # --- registers --------------------------------------------------------------------

    def set_mac(self, mac: bytes) -> None:
        self.mac = bytes(mac)

    def set_rx_filter(self, mc: frozenset[bytes], promisc: bool, allmulti: bool) -> None:
        self.mc_filter = mc
        self.promisc = promisc
        self.allmulti = allmulti

    def set_max_frame(self, max_frame: int) -> None:
        self.max_frame = max_frame

    def set_coalesce(self, rx_usecs: int, rx_frames: int) -> None:
        self.rx_usecs = rx_usecs
        self.rx_frames = rx_frames
        if self.coal_timer is not None:
            self.coal_timer.cancel()
            self.coal_timer = None
        if self.enabled and not self.irq_masked and self.rx_ring:
            self._rx_coalesce_check(self.loop.time())

    def resize(self, rx_ring_size: int, tx_ring_size: int) -> None:
        """New ring sizes; descriptors in use are kept (see the module docstring)."""
        self.rx_ring_size = rx_ring_size
        self.tx_ring_size = tx_ring_size

    # --- interrupt --------------------------------------------------------------------

    def irq_disable(self) -> None:
        """Mask the IRQ. Pending coalescing state is dropped: the poll will see the ring."""
        self.irq_masked = True
        self.coal_count = 0
        if self.coal_timer is not None:
            self.coal_timer.cancel()
            self.coal_timer = None

    def irq_enable(self) -> None:
        """Unmask the IRQ; if work is already waiting, raise it (as a level-triggered line
        would), RX subject to coalescing."""
        self.irq_masked = False
        if not self.enabled:
            return
        if self.tx_done:
            self._raise_irq()
        elif self.rx_ring:
            now = self.loop.time()
            self.coal_count = len(self.rx_ring)
            self.coal_first = now
            self._rx_coalesce_check(now)

    def _raise_irq(self) -> None:
        self.coal_count = 0
        if self.coal_timer is not None:
            self.coal_timer.cancel()
            self.coal_timer = None
        handler = self.irq_handler
        if handler is not None:
            self.irqs_raised += 1
            handler(0, self.irq_arg)

    def _rx_coalesce_check(self, now: float) -> None:
        frames = self.rx_frames
        usecs = self.rx_usecs
        if (frames == 1 or (frames == 0 and usecs == 0)
                or (frames and self.coal_count >= frames)
                or len(self.rx_ring) >= self.rx_ring_size
                or (usecs and now - self.coal_first >= usecs * 1e-6)):
            self._raise_irq()
            return
        self.irqs_coalesced += 1
        if usecs and self.coal_timer is None:
            delay = self.coal_first + usecs * 1e-6 - now
            self.coal_timer = self.loop.call_later(delay, self._coal_expire)

    def _coal_expire(self) -> None:
        self.coal_timer = None
        if self.enabled and not self.irq_masked and self.rx_ring:
            self._raise_irq()

    # --- RX ---------------------------------------------------------------------------

    def _link_rx(self, batch: Sequence[Any], start: int = 0) -> Optional[int]:
        """A batch from the cable (from index ``start``): length check, address filter, DMA,
        then at most one IRQ.

        Returns None when every frame was dealt with (DMA'd, filtered, or missed), or, with
        flow control, the index of the first frame the full ring could not take: the link
        keeps that one and the rest until ``rx_resume``.
        """
        if not self.enabled:
            return None
        self.rx_batches += 1
        ring = self.rx_ring
        append = ring.append
        space = self.rx_ring_size - len(ring)
        max_frame = self.max_frame
        mac = self.mac
        promisc = self.promisc
        all_mc = promisc or self.allmulti
        mc = self.mc_filter
        alloc = skb_from_frame
        stopped_at = None
        accepted = 0
        end = len(batch)
        i = start
        while i < end:
            frame = batch[i]
            i += 1
            n = len(frame)
            if n < ETH_HLEN:
                self.rx_runts += 1
                continue
            if n > max_frame:
                self.rx_giants += 1
                continue
            if frame[0] & 1:
                if not all_mc and frame[:6] != _BROADCAST and bytes(frame[:6]) not in mc:
                    self.rx_filtered += 1
                    continue
            elif not promisc and frame[:6] != mac:
                self.rx_filtered += 1
                continue
            if space <= 0:
                if self.flow_control:
                    # PAUSE: this frame and the rest stay in the link until rx_resume
                    stopped_at = i - 1
                    self.rx_paused = True
                    self.rx_pauses += 1
                    break
                self.rx_missed += 1
                continue
            append(alloc(frame))
            space -= 1
            accepted += 1
        if accepted:
            self.rx_dma += accepted
            if not self.irq_masked:
                now = self.loop.time()
                if not self.coal_count:
                    self.coal_first = now
                self.coal_count += accepted
                self._rx_coalesce_check(now)
        return stopped_at

    def rx_refill(self) -> None:
        """The driver has given RX descriptors back (end of its poll): lift a PAUSE once half
        the ring is free (the XON threshold)."""
        if self.rx_paused and self.enabled and (
                self.rx_ring_size - len(self.rx_ring)) * 2 >= self.rx_ring_size:
            self.rx_paused = False
            self.link.rx_resume()

    # --- TX ---------------------------------------------------------------------------

    def tx_free(self) -> int:
        """Free TX descriptors (negative never; zero while over-occupied after a shrink)."""
        return max(0, self.tx_ring_size - len(self.tx_pending) - len(self.tx_done))

    def tx_post(self, skb: SkBuff) -> bool:
        """Post one frame on the TX ring; False when the ring is full."""
        if len(self.tx_pending) + len(self.tx_done) >= self.tx_ring_size:
            return False
        self.tx_pending.append(skb)
        return True

    def tx_doorbell(self) -> None:
        """Tell the DMA engine there are new descriptors (the tail-pointer write)."""
        self.tx_doorbells += 1
        if (self.tx_dma_handle is None and self.tx_retry_handle is None and self.enabled):
            self.tx_dma_handle = self.loop.call_soon(self._tx_dma)

    def tx_kick(self) -> None:
        """Reset the TX engine's backoff and try to send now (the driver's timeout reset)."""
        if self.tx_retry_handle is not None:
            self.tx_retry_handle.cancel()
            self.tx_retry_handle = None
        if self.enabled and self.tx_pending:
            self._tx_send(retry=True)

    def _tx_dma(self) -> None:
        self.tx_dma_handle = None
        if self.enabled and self.tx_pending:
            self._tx_send(retry=True)

    def _tx_retry(self) -> None:
        self.tx_retry_handle = None
        if self.enabled and self.tx_pending:
            self._tx_send(retry=True)

    def _tx_send(self, retry: bool) -> bool:
        pending = self.tx_pending
        batch = [skb.buf[skb.data:skb.tail] for skb in pending]
        if not self.link.send(batch):
            self.tx_backpressure += 1
            if retry and self.tx_retry_handle is None:
                notify = getattr(self.link, "notify_writable", None)
                if notify is not None:
                    # the link calls back as soon as it can take more; the timer is the
                    # watchdog's safety net, not the normal path
                    notify(self._tx_writable)
                    self.tx_retry_handle = self.loop.call_later(TX_WRITABLE_TIMEOUT, self._tx_retry)
                else:
                    self.tx_retry_handle = self.loop.call_later(TX_RETRY_DELAY, self._tx_retry)
            return False
        self.tx_batches += 1
        self.tx_sent += len(batch)
        nbytes = 0
        for frame in batch:
            nbytes += len(frame)
        self.tx_done_bytes += nbytes
        self.tx_done.extend(pending)
        pending.clear()
        if self.enabled and not self.irq_masked:
            self._raise_irq()
        return True

    def _tx_writable(self) -> None:
        """The link can take frames again (its writable event)."""
        if self.tx_retry_handle is not None:
            self.tx_retry_handle.cancel()
            self.tx_retry_handle = None
        if self.enabled and self.tx_pending:
            self._tx_send(retry=True)
