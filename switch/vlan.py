"""802.1Q port VLANs: the bridge's per-port VLAN filtering (the kernel's ``br_vlan`` with
``vlan_filtering`` on, driven by ``bridge vlan``), with Open vSwitch's and VDE's port modes.

Sans-I/O: a port's configuration is a frozen ``PortVlan``; ``parse_spec`` reads the
``--vlan PORT=SPEC`` form; ``ingress`` is ``br_allowed_ingress`` (which VLAN a frame joins, or
which counter its drop goes to) and ``egress_tagged``/``retag`` are ``br_handle_vlan`` (pop or
push the tag a port sends). The switch core keeps the configurations by port name;
``switch/forward.py``'s VLAN path applies them.

Modes, as OVS's ``vlan_mode`` (and VDE's ``port/setvlan``/``vlan/addport``):

- access ``vlan`` V (1..4094): untagged frames join V; tagged frames are dropped
  (``vlan_tagged``), except priority-tagged ones (VID 0), which count as untagged as in the
  kernel and OVS. Frames leave untagged.
- trunk ``allowed`` VIDs, optional ``native`` N: a tagged frame joins its VID if allowed, else
  it is dropped (``vlan_disallowed``); an untagged (or priority-tagged) frame joins N, or is
  dropped (``vlan_untagged``) without one. The native VLAN is a member whether or not it is
  listed (OVS's native-untagged/native-tagged). Frames leave tagged, except those of N, which
  leave untagged unless ``native_tagged`` (OVS's native-tagged mode).
- no configuration (None): VLAN-transparent, as the switch always was: an untagged frame is
  VLAN 0, a tagged one its VID, the port carries every VLAN and sends a frame tagged with its
  VLAN (VLAN 0 untagged, or with the priority tag it came with). This is OVS's port with
  neither ``tag`` nor ``trunks``.

A tag pushed keeps the priority and DEI bits (PCP, DEI) of the tag the frame came with.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable

VLAN_MIN = 1
VLAN_MAX = 4094  # 0 means "no VLAN" (priority tag), 4095 is reserved
MODES = ("access", "trunk")
TAG = struct.Struct("!HH")  # TPID, TCI
ETH_P_8021Q = 0x8100
VID_MASK = 0x0FFF

# the counters of the drops ``ingress`` decides (in switch/core.py's PORT_COUNTERS)
VLAN_TAGGED = "vlan_tagged"  # a tagged frame on an access port
VLAN_DISALLOWED = "vlan_disallowed"  # a VID the trunk does not carry
VLAN_UNTAGGED = "vlan_untagged"  # an untagged frame on a trunk without a native VLAN
VLAN_DROPS = (VLAN_TAGGED, VLAN_DISALLOWED, VLAN_UNTAGGED)


def _check_vid(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not VLAN_MIN <= value <= VLAN_MAX:
        raise ValueError(f"{what} must be a VLAN id from {VLAN_MIN} to {VLAN_MAX}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PortVlan:
    """One port's VLAN configuration (``bridge vlan`` for a bridge port). Checked on
    construction: ValueError with a sentence naming the field. ``allowed`` is kept sorted and
    includes the native VLAN."""

    mode: str
    vlan: int | None = None  # access
    allowed: tuple[int, ...] = ()  # trunk
    native: int | None = None  # trunk
    native_tagged: bool = False  # trunk
    _members: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode == "access":
            _check_vid("an access port's vlan", self.vlan)
            if self.allowed or self.native is not None or self.native_tagged:
                raise ValueError("an access port has one vlan: allowed, native and native_tagged are for trunks")
        elif self.mode == "trunk":
            if self.vlan is not None:
                raise ValueError("a trunk has allowed VLANs (and a native one), not a vlan: "
                                 "use access mode for a single untagged VLAN")
            if isinstance(self.allowed, (str, bytes)) or not isinstance(self.allowed, Iterable):
                raise ValueError(f"a trunk's allowed VLANs must be a list of VLAN ids, got {self.allowed!r}")
            vids = {_check_vid("a trunk's allowed VLAN", v) for v in self.allowed}
            if self.native is not None:
                vids.add(_check_vid("a trunk's native VLAN", self.native))
            if not vids:
                raise ValueError("a trunk needs at least one allowed VLAN (or a native one)")
            if not isinstance(self.native_tagged, bool):
                raise ValueError(f"native_tagged must be true or false, got {self.native_tagged!r}")
            if self.native_tagged and self.native is None:
                raise ValueError("native_tagged needs a native VLAN (native=N)")
            object.__setattr__(self, "allowed", tuple(sorted(vids)))
        else:
            raise ValueError(f'a port\'s VLAN mode must be "access" or "trunk", got {self.mode!r}')
        # what ingress and egress look up per frame, computed once
        object.__setattr__(self, "_members", frozenset(self.allowed) if self.mode == "trunk" else frozenset({self.vlan}))

    @property
    def pvid(self) -> int | None:
        """The VLAN untagged frames join (the kernel's PVID): the access VLAN, the native one,
        or None (a trunk without a native VLAN drops them)."""
        return self.vlan if self.mode == "access" else self.native

    def members(self) -> tuple[int, ...]:
        """The VLANs the port is a member of, ascending."""
        return (self.vlan,) if self.mode == "access" else self.allowed

    def carries(self, vlan: int) -> bool:
        """Whether the port is a member of ``vlan`` (frames of it may leave through it)."""
        return vlan in self._members  # type: ignore[attr-defined]

    def ingress(self, vid: int | None) -> int | str:
        """The VLAN a frame joins, from its tag's VID (None: untagged), or the name of the
        counter its drop goes to."""
        if vid is None or vid == 0:  # untagged or priority-tagged
            pvid = self.pvid
            return VLAN_UNTAGGED if pvid is None else pvid
        if self.mode == "access":
            return VLAN_TAGGED
        return vid if vid in self._members else VLAN_DISALLOWED  # type: ignore[attr-defined]

    def egress_tagged(self, vlan: int) -> bool:
        """Whether a frame of ``vlan`` leaves this port tagged."""
        if self.mode == "access":
            return False
        return vlan != self.native or self.native_tagged

    def view(self, port: str) -> dict:
        """The row ``vlan_show`` answers for this port."""
        row: dict = {"port": port, "mode": self.mode}
        if self.mode == "access":
            row["vlan"] = self.vlan
        else:
            row["allowed"] = list(self.allowed)
            row["native"] = self.native
            row["native_tagged"] = self.native_tagged
        return row

    def describe(self) -> str:
        """One line, the ``--vlan`` spec's words: ``access 10``, ``trunk 10,20 native 10``."""
        if self.mode == "access":
            return f"access {self.vlan}"
        text = f"trunk {format_vids(self.allowed)}"
        if self.native is not None:
            text += f" native {self.native}"
        if self.native_tagged:
            text += " native-tagged"
        return text


def ingress(cfg: PortVlan | None, vid: int | None) -> int | str:
    """``cfg.ingress(vid)``, and for a VLAN-transparent port (``cfg`` None) the VID itself
    (0 when untagged)."""
    if cfg is None:
        return 0 if vid is None else vid
    return cfg.ingress(vid)


def egress_tagged(cfg: PortVlan | None, vlan: int, came_tagged: bool) -> bool:
    """Whether a frame of ``vlan`` leaves a port with ``cfg`` tagged; a transparent port tags
    every VLAN but 0, and keeps a priority tag a frame came with."""
    if cfg is None:
        return vlan != 0 or came_tagged
    return cfg.egress_tagged(vlan)


def retag(frame: bytes | memoryview, tci: int | None, vlan: int, tagged: bool) -> bytes:
    """``frame`` as it leaves: its tag (``tci``, None if it had none) popped, and, when
    ``tagged``, a tag for ``vlan`` pushed with the old tag's priority and DEI bits."""
    if tci is None:
        if not tagged:
            return bytes(frame)
        return bytes(frame[:12]) + TAG.pack(ETH_P_8021Q, vlan) + bytes(frame[12:])
    if not tagged:
        return bytes(frame[:12]) + bytes(frame[16:])
    return bytes(frame[:12]) + TAG.pack(ETH_P_8021Q, (tci & ~VID_MASK) | vlan) + bytes(frame[16:])


def format_vids(vids: Iterable[int]) -> str:
    """VLAN ids as a spec writes them, runs as ranges: ``10,20-22``."""
    out: list[str] = []
    run: list[int] = []
    for v in sorted(vids):
        if run and v == run[-1] + 1:
            run.append(v)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [v]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def parse_vids(text: str) -> list[int]:
    """``10,20,30-40`` -> the VLAN ids (ValueError saying what is wrong)."""
    vids: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"empty VLAN id in {text!r}")
        lo, sep, hi = item.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError(f"{item!r} is not a VLAN id or range (such as 10 or 30-40)") from None
        if not VLAN_MIN <= a <= b <= VLAN_MAX:
            raise ValueError(f"VLAN ids run from {VLAN_MIN} to {VLAN_MAX} (low-high in order), got {item!r}")
        vids.extend(range(a, b + 1))
    return vids


def _one_vid(text: str) -> int:
    vids = parse_vids(text)
    if len(vids) != 1:
        raise ValueError(f"one VLAN id expected, got {text!r}")
    return vids[0]


SPEC_HELP = "access:VID or trunk:VID,VID-VID[:native=VID][:native-tagged]"


def parse_spec(spec: str) -> PortVlan:
    """The ``SPEC`` of ``--vlan PORT=SPEC``: ``access:10``, ``trunk:10,20-22``,
    ``trunk:10,20:native=10``, ``trunk:10,20:native=10:native-tagged``."""
    mode, _, rest = spec.strip().partition(":")
    fields = rest.split(":") if rest else []
    try:
        if mode == "access":
            if len(fields) != 1:
                raise ValueError("an access port takes one VLAN id")
            return PortVlan("access", vlan=_one_vid(fields[0]))
        if mode == "trunk":
            if not fields:
                raise ValueError("a trunk needs its allowed VLANs")
            allowed = parse_vids(fields[0])
            native = None
            native_tagged = False
            for opt in fields[1:]:
                if opt.startswith("native="):
                    native = _one_vid(opt[len("native="):])
                elif opt == "native-tagged":
                    native_tagged = True
                else:
                    raise ValueError(f"unknown trunk option {opt!r} (native=VID, native-tagged)")
            return PortVlan("trunk", allowed=tuple(allowed), native=native, native_tagged=native_tagged)
        raise ValueError(f'the mode is "access" or "trunk", got {mode!r}')
    except ValueError as exc:
        raise ValueError(f"bad VLAN spec {spec!r}: {exc}; the form is {SPEC_HELP}") from None


def parse_port_spec(text: str) -> tuple[str, PortVlan]:
    """``PORT=SPEC`` (the ``--vlan`` option) -> (port name, its configuration)."""
    port, sep, spec = text.partition("=")
    if not sep or not port:
        raise ValueError(f"bad --vlan {text!r}: the form is PORT={SPEC_HELP}")
    return port, parse_spec(spec)
