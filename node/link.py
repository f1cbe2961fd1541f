"""The cable under the NIC: how the hardware model moves Ethernet frames to the far end.

A NIC's MAC talks to a PHY, the PHY to a cable, and the cable to whatever sits at the other
end. The driver model does not care what that is, so the hardware model (hw.py) sees it only
through ``Link``: ``send`` a batch of frames, and be called back with batches that arrive and
with carrier changes. Two links exist:

- ``wire_pair``: two NICs back to back over an in-memory cable driven by the loop, for tests;
- ``vnet.node.zmqlink.ZmqLink``: a ZeroMQ DEALER to the learning switch, for the node daemon.

Frames cross a link as ``bytes`` or ``memoryview`` objects holding a whole Ethernet frame
(destination MAC first, no FCS). A batch is a list of them, in order.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, Union

Frame = Union[bytes, bytearray, memoryview]
RxCallback = Callable[[Sequence[Frame]], None]
CarrierCallback = Callable[[bool], None]


class Link(Protocol):
    """The PHY and cable as the NIC hardware model sees them."""

    def open(self, rx: RxCallback, carrier: CarrierCallback) -> None:
        """Start: call ``rx(batch)`` for each arriving batch and ``carrier(up)`` on changes."""

    def send(self, frames: Sequence[Frame]) -> bool:
        """Put a batch on the wire. False means the link cannot take it now (backpressure,
        like a PHY holding off with pause frames): the caller keeps the frames and retries."""

    def close(self) -> None:
        """Stop; no callback runs after this returns."""


class WireEnd:
    """One end of an in-memory back-to-back cable (see ``wire_pair``).

    Delivery is asynchronous: a batch sent now arrives at the peer from a loop callback after
    ``latency`` seconds, as it would from real hardware. ``stall()`` makes ``send`` refuse
    batches until ``unstall()``; ``unplug()``/``plug()`` cut and restore the cable (carrier).
    Counters: ``batches_sent``, ``frames_sent``, ``frames_lost`` (sent while the cable was cut).
    """

    def __init__(self, loop, latency: float = 0.0) -> None:
        self._loop = loop
        self._latency = latency
        self.peer: WireEnd | None = None
        self._rx: RxCallback | None = None
        self._carrier: CarrierCallback | None = None
        self.plugged = True
        self.stalled = False
        self.batches_sent = 0
        self.frames_sent = 0
        self.frames_lost = 0

    @property
    def is_open(self) -> bool:
        return self._rx is not None

    def _link_up(self) -> bool:
        peer = self.peer
        return self.plugged and peer is not None and peer.is_open and self.is_open

    def open(self, rx: RxCallback, carrier: CarrierCallback) -> None:
        self._rx = rx
        self._carrier = carrier
        self._announce()

    def close(self) -> None:
        self._rx = None
        self._carrier = None
        if self.peer is not None:
            self.peer._announce()

    def send(self, frames: Sequence[Frame]) -> bool:
        if self.stalled:
            return False
        batch = [bytes(f) for f in frames]
        self.batches_sent += 1
        self.frames_sent += len(batch)
        if not self._link_up():
            self.frames_lost += len(batch)
            return True
        if self._latency:
            self._loop.call_later(self._latency, self.peer._deliver, batch)
        else:
            self._loop.call_soon(self.peer._deliver, batch)
        return True

    def stall(self) -> None:
        self.stalled = True

    def unstall(self) -> None:
        self.stalled = False

    def unplug(self) -> None:
        self._set_plugged(False)

    def plug(self) -> None:
        self._set_plugged(True)

    def _set_plugged(self, plugged: bool) -> None:
        self.plugged = plugged
        if self.peer is not None:
            self.peer.plugged = plugged
        self._announce()

    def _deliver(self, batch: list[bytes]) -> None:
        if self._rx is not None and self.plugged:
            self._rx(batch)
        elif self.peer is not None:
            self.peer.frames_lost += len(batch)

    def _announce(self) -> None:
        # Carrier is a property of the cable: both ends see the same state.
        for end in (self, self.peer):
            if end is not None and end._carrier is not None:
                end._loop.call_soon(end._notify_carrier)

    def _notify_carrier(self) -> None:
        if self._carrier is not None:
            self._carrier(self._link_up())


def wire_pair(loop, latency: float = 0.0) -> tuple[WireEnd, WireEnd]:
    """Two link ends joined by an in-memory cable driven by ``loop``."""
    a, b = WireEnd(loop, latency), WireEnd(loop, latency)
    a.peer, b.peer = b, a
    return a, b
