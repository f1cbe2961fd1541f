"""A zero-latency Ethernet hub that wires HostStacks together, for tests (no I/O, fake time).

Below a host stack the NIC filters by destination MAC, so the hub delivers a frame only to
the stacks whose MAC it is addressed to, or to all the others for broadcast/multicast. Every
frame a stack returns (from ``receive``, ``tick`` or an API call passed to ``send``) is
delivered in turn, breadth first, at the same instant. ``run(until)`` advances the clock
from deadline to deadline, ticking the stacks that are due.

``drop(src_name, frame) -> bool`` filters frames (loss, partitions); ``unplugged`` names
stacks that neither send nor receive; ``trace`` records (time, src_name, frame).
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable


class _Wire:
    """What Hub and Net share: the fake clock, stack API calls whose frames go on the wire,
    and running the stacks' timers. A subclass has ``stacks`` and ``send(src, frames)``."""

    now: float
    stacks: dict
    send: Callable[[str, Iterable[bytes]], None]  # each wire delivers in its own way

    def call(self, src: str, method: str, *args, **kwargs):
        """``stacks[src].method(*args, now, **kwargs)`` with the wire's clock; frames it
        returns go on the wire. Returns what the method returned."""
        out = getattr(self.stacks[src], method)(*args, self.now, **kwargs)
        if isinstance(out, list):
            self.send(src, out)
        return out

    def run(self, until: float) -> None:
        """Advance the clock to ``until``, running every timer due on the way."""
        while True:
            due = [d for d in (s.next_deadline() for s in self.stacks.values()) if d is not None]
            if not due or min(due) > until:
                break
            self.now = max(self.now, min(due))
            for name, stack in self.stacks.items():
                d = stack.next_deadline()
                if d is not None and d <= self.now:
                    self.send(name, stack.tick(self.now))
        self.now = max(self.now, until)

    def advance(self, dt: float) -> None:
        self.run(self.now + dt)

    def events(self, name: str) -> list:
        return self.stacks[name].next_events()


class Hub(_Wire):
    def __init__(self, now: float = 0.0, max_frames: int = 100_000) -> None:
        self.now = now
        self.stacks: dict[str, object] = {}
        self.trace: list[tuple[float, str, bytes]] = []
        self.drop: Callable[[str, bytes], bool] | None = None
        self.unplugged: set[str] = set()
        self.max_frames = max_frames  # per delivery: catches frame storms in a test

    def attach(self, name: str, stack):
        self.stacks[name] = stack
        return stack

    def send(self, src: str, frames: Iterable[bytes]) -> None:
        """Put ``frames`` (returned by stack ``src``) on the wire and deliver everything that
        follows from them."""
        queue = deque((src, f) for f in frames)
        count = 0
        while queue:
            name, frame = queue.popleft()
            count += 1
            if count > self.max_frames:
                raise RuntimeError(f"more than {self.max_frames} frames at t={self.now}")
            self.trace.append((self.now, name, frame))
            if name in self.unplugged or (self.drop is not None and self.drop(name, frame)):
                continue
            dst = frame[:6]
            flood = dst[0] & 1
            for other, stack in self.stacks.items():
                if other == name or other in self.unplugged:
                    continue
                if flood or stack.mac == dst:
                    queue.extend((other, f) for f in stack.receive(frame, self.now))

    def frames_from(self, name: str, since: float = float("-inf")) -> list[bytes]:
        return [f for t, n, f in self.trace if n == name and t >= since]


def mac_of(i: int) -> bytes:
    """The MAC ``make_lan`` gives host number ``i``: 02:00:00:00:00:0i."""
    return bytes((2, 0, 0, 0, 0, i))


def make_lan(n: int = 3, *, settle: bool = True, **stack_kwargs) -> Hub:
    """Hosts "a", "b", "c"... (number i = 1, 2, 3...) with MAC ``mac_of(i)`` and address
    10.0.0.i/24 on one hub, links up. With ``settle`` the clock runs until DAD and the
    announcements are over (3 s) and the events so far are drained."""
    from .host import HostStack

    hub = Hub()
    for i in range(1, n + 1):
        name = "abcdefghijklmnopqrstuvwxyz"[i - 1]
        hub.attach(name, HostStack(mac_of(i), **stack_kwargs))
        hub.call(name, "link_up")
        hub.call(name, "add_address", f"10.0.0.{i}/24")
    if settle:
        hub.run(hub.now + 3.0)
        for name in hub.stacks:
            hub.events(name)
    return hub


class Net(_Wire):
    """Several Ethernet segments (zero-latency hubs) and stacks with devices on them, for
    routing tests: ``plug(segment, name, stack, dev)`` puts device ``dev`` of stack
    ``name`` on ``segment``. A frame a stack returns goes out of the device it names
    (``frame.dev``, else the stack's primary device) onto that device's segment, and is
    delivered to the other devices there whose MAC it is for (or all, for broadcast), in
    turn, breadth first, at the same instant. Same ``call``/``run``/``events`` as Hub;
    ``trace`` records (time, name, dev, frame)."""

    def __init__(self, now: float = 0.0, max_frames: int = 100_000) -> None:
        self.now = now
        self.stacks: dict[str, object] = {}
        self.segments: dict[str, list[tuple[str, str]]] = {}
        self._seg_of: dict[tuple[str, str], str] = {}
        self.trace: list[tuple[float, str, str, bytes]] = []
        self.drop: Callable[[str, str, bytes], bool] | None = None
        self.max_frames = max_frames

    def plug(self, segment: str, name: str, stack, dev: str | None = None):
        dev = dev or stack.dev.name
        self.stacks[name] = stack
        self.segments.setdefault(segment, []).append((name, dev))
        self._seg_of[(name, dev)] = segment
        return stack

    def send(self, src: str, frames: Iterable[bytes]) -> None:
        queue = deque((src, f) for f in frames)
        count = 0
        while queue:
            name, frame = queue.popleft()
            count += 1
            if count > self.max_frames:
                raise RuntimeError(f"more than {self.max_frames} frames at t={self.now}")
            stack = self.stacks[name]
            dev = getattr(frame, "dev", stack.dev.name)
            self.trace.append((self.now, name, dev, frame))
            seg = self._seg_of.get((name, dev))
            if seg is None or (self.drop is not None and self.drop(name, dev, frame)):
                continue
            dst = frame[:6]
            flood = dst[0] & 1
            for other, odev in self.segments[seg]:
                if (other, odev) == (name, dev):
                    continue
                ostack = self.stacks[other]
                if flood or ostack.devs[odev].dev.mac == dst:
                    queue.extend((other, f) for f in ostack.receive(bytes(frame), self.now,
                                                                    dev=odev))

    def frames_on(self, segment: str, since: float = float("-inf")) -> list[bytes]:
        """Frames sent onto ``segment`` (by any device plugged there)."""
        return [f for t, n, d, f in self.trace
                if t >= since and self._seg_of.get((n, d)) == segment]
