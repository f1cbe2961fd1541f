"""Link impairments per port and direction, like VDE's wirefilter and Linux netem (sans-I/O).

An ``Impairment`` sits on one direction of one switch port: "in" (frames from the node into
the switch) or "out" (frames the switch sends to the node). ``apply(frames, now)`` decides
each frame's fate and returns ``[(deliver_at, frame), ...]``: frames to deliver at once carry
``deliver_at == now``, delayed ones a later time; dropped frames are absent and counted.
There is no clock and no I/O here: ``now`` is a parameter and the randomness comes from the
impairment's own ``random.Random(seed)``, so a seed and the same input give the same output.
The switch server holds the delayed frames in a ``DelayLine`` (a heap keyed by delivery
time) and releases them from its datapath; frames it cannot deliver because the port went
away are reported back with ``flushed(n)``.

Per frame, in netem's order:

1. loss: independent (``loss``) or bursty (``loss_burst``: the Gilbert-Elliott model of
   netem's ``loss gemodel p r 1-h 1-k``: in the good state move to bad with probability p
   and lose with 1-k; in the bad state move to good with r and lose with 1-h);
2. duplication: with probability ``duplicate`` one extra copy follows the frame;
3. corruption: with probability ``corrupt`` one random bit of the frame (not of a copy) is
   flipped, never in the Ethernet header (nor an 802.1Q tag), so the frame still reaches
   its destination and the damage shows up above;
4. queue: a frame that would be held (rate or delay) when ``queue`` frames are already held
   is tail-dropped;
5. rate: the frame occupies the link for ``len * 8 / rate`` seconds after the previous one
   (frame bytes only: no preamble, FCS or gap), and arrives when its last bit does;
6. delay: ``delay`` plus a uniform jitter in [-jitter, +jitter] (never below zero); jitter
   reorders frames, as netem's does. With ``reorder``, that share of frames skips the delay
   and overtakes the delayed ones (netem's ``reorder``; it needs a delay to have an effect).

Settings change only what a ``set()`` names; ``clear()`` resets them all (counters stay, as
an interface's do). Values here are in base units: probabilities as fractions (0.1), times in
seconds, rates in bit/s; ``parse_params`` turns what people type ("10%", "20ms", "10mbit")
into these, with an error naming the setting and the expected form.

Counters (``COUNTERS``): ``frames`` offered; drops ``impair_loss``, ``impair_queue`` and
``impair_flushed`` (held for a port that went away); ``impair_duplicate`` (extra copies made),
``impair_corrupt``, ``impair_reorder`` (frames that skipped the delay), ``impair_delayed``
(frames held for later). Every frame offered is delivered, dropped under one of those names,
or still held: ``frames + impair_duplicate = delivered + impair_loss + impair_queue +
impair_flushed + held``.
"""

from __future__ import annotations

import heapq
import random
import re
from typing import Any, Hashable, Iterable, Sequence

from vnet.switch.core import clip

DIRECTIONS = ("in", "out")
DEFAULT_QUEUE = 1000  # frames held at most per port and direction (netem's default limit)

COUNTERS = (
    "frames",
    "impair_loss",
    "impair_queue",
    "impair_flushed",
    "impair_duplicate",
    "impair_corrupt",
    "impair_reorder",
    "impair_delayed",
)

# name -> default, in base units; the order is the order settings are shown in
DEFAULTS: dict[str, Any] = {
    "loss": 0.0,
    "loss_burst": None,  # (p, r, 1-h, 1-k) as fractions, or None
    "delay": 0.0,
    "jitter": 0.0,
    "rate": 0.0,  # bit/s; 0 = unlimited
    "queue": DEFAULT_QUEUE,
    "duplicate": 0.0,
    "corrupt": 0.0,
    "reorder": 0.0,
}
PARAMS = tuple(DEFAULTS)


class Impairment:
    """The impairments of one port direction, with its own generator and counters."""

    __slots__ = (*PARAMS, "seed", "stream", "rng", "counters", "_held", "_busy_until", "_ge_bad")

    def __init__(self, seed: int | None = None, stream: str = "", **params: Any) -> None:
        """``stream`` is mixed into the seed, so impairments given one seed (a port's two
        directions) still draw different numbers."""
        for name, value in DEFAULTS.items():
            setattr(self, name, value)
        self.seed = seed
        self.stream = stream
        self.rng = self._generator(seed)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._held: list[float] = []  # heap of the delivery times of frames not yet delivered
        self._busy_until = 0.0  # when the rate-limited link finishes its last frame
        self._ge_bad = False  # Gilbert-Elliott state
        if params:
            self.set(**params)

    # -- settings ------------------------------------------------------------------------

    def set(self, seed: int | None = None, **params: Any) -> None:
        """Change the named settings (base units, checked) and leave the others alone.

        ``loss`` and ``loss_burst`` are two forms of one setting (the loss model): setting
        one turns the other off. ``seed`` restarts the generator.
        """
        checked = {name: _check(name, value) for name, value in params.items()}
        if checked.get("loss") and checked.get("loss_burst"):
            raise ValueError("loss and loss_burst are two loss models: give one of them")
        for name, value in checked.items():
            setattr(self, name, value)
        if "loss" in checked:
            self.loss_burst = None
        if "loss_burst" in checked:
            self.loss = 0.0
            self._ge_bad = False
        if seed is not None:
            self.seed = seed
            self.rng = self._generator(seed)

    def _generator(self, seed: int | None) -> random.Random:
        if seed is None or not self.stream:
            return random.Random(seed)
        return random.Random(f"{seed}/{self.stream}")

    def clear(self) -> None:
        """Every setting back to its default (no impairment); counters and held frames stay."""
        for name, value in DEFAULTS.items():
            setattr(self, name, value)
        self._ge_bad = False

    @property
    def active(self) -> bool:
        """Whether any setting differs from "a plain cable" (queue alone changes nothing)."""
        return bool(self.loss or self.loss_burst or self.delay or self.jitter or self.rate
                    or self.duplicate or self.corrupt)

    def settings(self) -> dict[str, Any]:
        """The settings, in base units."""
        return {name: getattr(self, name) for name in PARAMS}

    def describe(self) -> str:
        """The active settings as one line, in the units people type (netem's order)."""
        if not self.active:
            return "none"
        words = []
        if self.loss:
            words.append(f"loss {_fmt_pct(self.loss)}")
        if self.loss_burst:
            words.append("loss-burst " + ",".join(_fmt_pct(x) for x in self.loss_burst))
        if self.delay or self.jitter:
            words.append(f"delay {_fmt_time(self.delay)}")
        if self.jitter:
            words.append(f"jitter {_fmt_time(self.jitter)}")
        if self.reorder:
            words.append(f"reorder {_fmt_pct(self.reorder)}")
        if self.rate:
            words.append(f"rate {_fmt_rate(self.rate)}")
        if self.rate or self.delay or self.jitter:
            words.append(f"queue {self.queue}")
        if self.duplicate:
            words.append(f"duplicate {_fmt_pct(self.duplicate)}")
        if self.corrupt:
            words.append(f"corrupt {_fmt_pct(self.corrupt)}")
        if self.seed is not None:
            words.append(f"seed {self.seed}")
        return " ".join(words)

    # -- the datapath --------------------------------------------------------------------

    def held(self, now: float) -> int:
        """Frames scheduled by ``apply`` and not yet due at ``now``."""
        held = self._held
        while held and held[0] <= now:
            heapq.heappop(held)
        return len(held)

    def apply(self, frames: Iterable[bytes | memoryview], now: float) -> list[tuple[float, bytes]]:
        """Each frame's fate: ``[(deliver_at, frame)]`` in the order decided, drops counted.

        Frames delivered at once come back as they were given (views stay views); corrupted
        ones are new ``bytes``. ``now`` must not go backwards between calls.
        """
        c = self.counters
        rng = self.rng.random
        out: list[tuple[float, bytes]] = []
        held = self._held
        while held and held[0] <= now:
            heapq.heappop(held)
        loss, burst = self.loss, self.loss_burst
        dup, corrupt, reorder = self.duplicate, self.corrupt, self.reorder
        rate, limit = self.rate, self.queue
        delay, jitter = self.delay, self.jitter
        delayed = bool(delay or jitter)
        n = 0
        for frame in frames:
            n += 1
            if burst is not None:
                if self._lost_burst(burst):
                    c["impair_loss"] += 1
                    continue
            elif loss and rng() < loss:
                c["impair_loss"] += 1
                continue
            copies = 2 if dup and rng() < dup else 1
            if copies == 2:
                c["impair_duplicate"] += 1
            for copy in range(copies):
                f = frame
                if copy == 0 and corrupt and rng() < corrupt:
                    flipped = _flip_bit(f, self.rng)
                    if flipped is not None:
                        f = flipped
                        c["impair_corrupt"] += 1
                skip_delay = False
                if delayed and reorder and rng() < reorder:
                    skip_delay = True
                    c["impair_reorder"] += 1
                at = now
                if rate:
                    if len(held) >= limit:
                        c["impair_queue"] += 1
                        continue
                    at = max(now, self._busy_until) + len(f) * 8 / rate
                    self._busy_until = at
                if delayed and not skip_delay:
                    d = delay + (rng() * 2 - 1) * jitter if jitter else delay
                    if d > 0:
                        if not rate and len(held) >= limit:
                            c["impair_queue"] += 1
                            continue
                        at += d
                if at > now:
                    heapq.heappush(held, at)
                    c["impair_delayed"] += 1
                out.append((at, f))
        c["frames"] += n
        return out

    def flushed(self, n: int) -> None:
        """``n`` frames this impairment held could not be delivered (their port went away)."""
        self.counters["impair_flushed"] += n

    def _lost_burst(self, ge: tuple[float, float, float, float]) -> bool:
        """One step of the Gilbert-Elliott chain (netem's loss_gilb_ell): move, then lose with
        the probability of the state the frame arrived in."""
        p, r, h1, k1 = ge
        rng = self.rng.random
        if self._ge_bad:
            if r and rng() < r:
                self._ge_bad = False
            return h1 >= 1.0 or (h1 > 0 and rng() < h1)
        if p and rng() < p:
            self._ge_bad = True
        return k1 >= 1.0 or (k1 > 0 and rng() < k1)


def _flip_bit(frame: bytes | memoryview, rng: random.Random) -> bytes | None:
    """A copy of ``frame`` with one random bit flipped past the Ethernet header (and tag)."""
    hdr = 18 if len(frame) >= 18 and frame[12] == 0x81 and frame[13] == 0x00 else 14
    if len(frame) <= hdr:
        return None
    out = bytearray(frame)
    bit = rng.randrange((len(out) - hdr) * 8)
    out[hdr + bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# -- the delay line --------------------------------------------------------------------------


class DelayLine:
    """Frames waiting for their delivery time, for any number of destinations (``key``).

    A heap ordered by time, then by arrival, so frames due at the same moment keep their
    order. ``due(now)`` takes what has fallen due, grouped by key (one batch per port).
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable, bytes]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, key: Hashable, frame: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key, frame))

    def next_at(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> dict[Hashable, list[bytes]]:
        heap = self._heap
        out: dict[Hashable, list[bytes]] = {}
        while heap and heap[0][0] <= now:
            _, _, key, frame = heapq.heappop(heap)
            batch = out.get(key)
            if batch is None:
                out[key] = [frame]
            else:
                batch.append(frame)
        return out

    def clear(self) -> dict[Hashable, list[bytes]]:
        """Everything still held, grouped by key (the line is empty afterwards)."""
        return self.due(float("inf"))

    def keys(self) -> set[Hashable]:
        return {key for _, _, key, _ in self._heap}

    def remove(self, keys: set) -> dict[Hashable, list[bytes]]:
        """Take out every frame held for one of ``keys`` (a port that went away), grouped."""
        out: dict[Hashable, list[bytes]] = {}
        kept = []
        for item in sorted(self._heap):
            if item[2] in keys:
                out.setdefault(item[2], []).append(item[3])
            else:
                kept.append(item)
        self._heap = kept  # sorted: still a heap
        return out


# -- values: checking base units, parsing what people type -----------------------------------


def _shown(value: Any) -> str:
    """A requested value as an error shows it: its repr, clipped (a request may be huge)."""
    return clip(repr(value), 60)


def _check(name: str, value: Any) -> Any:
    if name not in DEFAULTS:
        raise ValueError(f"unknown impairment {_shown(name)}; known: {', '.join(PARAMS)}")
    if name == "loss_burst":
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 4:
            raise ValueError(f"loss_burst must be (p, r, 1-h, 1-k) fractions, got {_shown(value)}")
        probs = [_fraction(name, v) for v in value]
        p = probs[0]
        r = probs[1] if len(probs) > 1 else 1.0 - p  # netem's defaults
        h1 = probs[2] if len(probs) > 2 else 1.0
        k1 = probs[3] if len(probs) > 3 else 0.0
        return None if not (p or k1) else (p, r, h1, k1)
    if name == "queue":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 20:
            raise ValueError(f"queue must be a number of frames from 1 to {1 << 20}, got {_shown(value)}")
        return value
    if name in ("delay", "jitter", "rate"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            unit = "bit/s" if name == "rate" else "seconds"
            raise ValueError(f"{name} must be a number of {unit}, 0 or more, got {_shown(value)}")
        if name != "rate" and value > 3600:
            raise ValueError(f"{name} of {value:g} s: at most an hour")
        return float(value)
    return _fraction(name, value)


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability from 0 to 1, got {_shown(value)}")
    return float(value)


_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "usec": 1e-6, "µs": 1e-6}
_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def parse_percent(text: Any, what: str) -> float:
    """ "10%" or "0.5%" (or a number of percent) -> a fraction."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(_NUM + r"\s*%", str(text).strip())
        if m is None:
            raise ValueError(f"{what} {_shown(text)}: give a percentage with the % sign, e.g. 10% or 0.5%")
        value = float(m.group(1))
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{what} {_shown(text)}: a percentage from 0% to 100%")
    return value / 100.0


def parse_time(text: Any, what: str) -> float:
    """ "20ms", "500us", "1.5s" (or a number of seconds; a bare 0) -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower()
        m = re.fullmatch(_NUM + r"\s*([a-zµ]*)", s)
        if m is None or (m.group(2) not in _TIME_UNITS and not (m.group(2) == "" and float(m.group(1)) == 0)):
            raise ValueError(f"{what} {_shown(text)}: give a time with its unit: s, ms or us (e.g. 20ms, 500us, 1.5s)")
        value = float(m.group(1)) * _TIME_UNITS.get(m.group(2), 1.0)
    if not 0 <= value <= 3600:
        raise ValueError(f"{what} {_shown(text)}: a time from 0 to 1 hour")
    return value


def parse_rate(text: Any, what: str = "rate") -> float:
    """ "10mbit", "512kbit", "1gbit", "9600bit" (or a number of bit/s; 0 = unlimited) -> bit/s."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower()
        m = re.fullmatch(_NUM + r"\s*([a-z/]*)", s)
        if m is None or (m.group(2) not in _RATE_UNITS and not (m.group(2) == "" and float(m.group(1)) == 0)):
            hint = " (bps would be bytes per second; vnet takes bits)" if s.endswith("bps") else ""
            raise ValueError(f"{what} {_shown(text)}: give a rate with its unit: bit, kbit, mbit or gbit "
                             f"(e.g. 10mbit, 512kbit){hint}; 0 = unlimited")
        value = float(m.group(1)) * _RATE_UNITS.get(m.group(2), 1.0)
    if not 0 <= value < float("inf"):
        raise ValueError(f"{what} {_shown(text)}: a rate of 0 (unlimited) or more")
    return value


def parse_count(text: Any, what: str) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise ValueError(f"{what} {_shown(text)}: give a whole number of frames, e.g. 100") from None
    if not 1 <= value <= 1 << 20:
        raise ValueError(f"{what} {_shown(text)}: from 1 to {1 << 20} frames")
    return value


def parse_loss_burst(text: Any, what: str = "loss-burst") -> tuple[float, ...]:
    """ "P,R[,1-H[,1-K]]" percentages (netem's ``loss gemodel``), or a sequence of them."""
    items: Sequence[Any]
    if isinstance(text, (list, tuple)):
        items = text
    else:
        items = [t for t in str(text).split(",")]
    if not 1 <= len(items) <= 4:
        raise ValueError(f"{what} {_shown(text)}: give P[,R[,1-H[,1-K]]] as percentages, e.g. 1%,30% "
                         "(P: good->bad, R: bad->good, 1-H: loss when bad, 1-K: loss when good)")
    return tuple(parse_percent(t, f"{what} item") for t in items)


_PARSERS = {
    "loss": lambda v: parse_percent(v, "loss"),
    "loss_burst": lambda v: None if v in (None, "", "none", "off") else parse_loss_burst(v),
    "delay": lambda v: parse_time(v, "delay"),
    "jitter": lambda v: parse_time(v, "jitter"),
    "rate": parse_rate,
    "queue": lambda v: parse_count(v, "queue"),
    "duplicate": lambda v: parse_percent(v, "duplicate"),
    "corrupt": lambda v: parse_percent(v, "corrupt"),
    "reorder": lambda v: parse_percent(v, "reorder"),
}


def parse_params(raw: dict[str, Any]) -> dict[str, Any]:
    """User values -> base units (``Impairment.set`` keywords), ValueError naming the setting.

    Strings carry their unit ("10%", "20ms", "10mbit"); numbers are taken in the unit shown by
    ``vnet switch impair``: percent for probabilities, seconds for times, bit/s for rates,
    frames for the queue. ``seed`` is an integer; None values are ignored (not given).
    """
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            continue
        key = name.replace("-", "_")
        if key == "seed":
            try:
                out["seed"] = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"seed {_shown(value)}: give an integer") from None
            continue
        parser = _PARSERS.get(key)
        if parser is None:
            raise ValueError(f"unknown impairment {_shown(name)}; known: {', '.join(PARAMS)}, seed")
        out[key] = parser(value)
    return out


def _fmt_pct(x: float) -> str:
    return f"{x * 100:g}%"


def _fmt_time(s: float) -> str:
    if s == 0 or s >= 1:
        return f"{s:g}s"
    if s >= 1e-3:
        return f"{s * 1e3:g}ms"
    return f"{s * 1e6:g}us"


def _fmt_rate(bps: float) -> str:
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bps >= scale:
            return f"{bps / scale:g}{unit}"
    return f"{bps:g}bit"


def format_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Base-unit settings as people type them ("10%", "20ms", "10mbit"), for showing."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if name in ("loss", "duplicate", "corrupt", "reorder"):
            out[name] = _fmt_pct(value)
        elif name == "loss_burst":
            out[name] = None if value is None else ",".join(_fmt_pct(x) for x in value)
        elif name in ("delay", "jitter"):
            out[name] = _fmt_time(value)
        elif name == "rate":
            out[name] = _fmt_rate(value) if value else "unlimited"
        else:
            out[name] = value
    return out
