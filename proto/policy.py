"""The control commands' argument policies: the kernel's ``nla_policy`` for the control
protocol (proto/control.py).

Every command a node or the switch serves declares its arguments here, by name: a type, whether
it is required, a default, and bounds (``low``/``high`` for numbers, ``choices``, ``max_len``
for strings, bytes and lists). The control server checks a request against its command's
policy before the handler runs (``Policy.check``), so a handler sees only arguments of the
declared types within their bounds, with the defaults filled in. The checks are strict where a
loose conversion would do the wrong thing: ``"no"`` is not a bool (it would be truthy), ``1.5``
is not an int, ``True`` is not an int, and an argument nobody declared is refused with the
list of the allowed ones. A long poll's ``timeout`` is clamped to ``MAX_POLL_TIMEOUT``
(``clamp=True``): a client that asks for a day, or for infinity, gets an answer (possibly
empty) after at most that long, and polls again. Sans-I/O: data in, checked data or a
``PolicyError`` out.

``NODE_POLICY`` and ``SWITCH_POLICY`` are the two servers' tables; the handler tables in
node/commands.py and switch/server.py must name exactly these commands (the control server
refuses a handler without a policy when it is built).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

MAX_POLL_TIMEOUT = 300.0  # seconds a long poll (udp_recv, ping, capture_read, ...) may wait
MAX_TEXT = 1024  # characters of a name or address an argument may carry
MAX_FILTER = 65536  # characters of a capture filter (libpcap compiles it off the event loop)
MAX_SNAPLEN = 262144  # tcpdump's maximum snapshot length
MAX_READ = 4096  # frames or datagrams one read may return
MAX_INJECT_FRAMES = 1024  # frames one inject request may carry
MAX_FRAME = 65535  # the wire's 16-bit frame length
MAX_UDP_PAYLOAD = 65507  # an IPv4 UDP datagram's largest payload


class PolicyError(ValueError):
    """A request whose arguments do not follow its command's policy; the message says which
    argument, what it must be, and what it was."""


_TYPE_NAMES = {bool: "a bool (true or false)", int: "an integer", float: "a number", str: "a string",
               bytes: "binary data", list: "a list"}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _typed(value: Any, types: tuple[type, ...]) -> tuple[bool, Any]:
    """(ok, value converted): strict, bool is not int, an int passes for a float."""
    for t in types:
        if t is bool:
            if isinstance(value, bool):
                return True, value
        elif t is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True, value
        elif t is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return True, float(value)
        elif t is bytes:
            if isinstance(value, (bytes, bytearray)):
                return True, bytes(value)
        elif t is list:
            if isinstance(value, (list, tuple)):
                return True, list(value)
        elif isinstance(value, t):
            return True, value
    return False, value


def _num(bound: float) -> str:
    """A bound as people write it: 65536, not 6.5536e+04."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument: ``type`` (bool, int, float, str, bytes, list, or a tuple of them),
    ``required``, a ``default`` (an optional argument with default None also takes an explicit
    nil), bounds ``low``/``high`` (numbers; with ``clamp`` a value over ``high`` becomes
    ``high``), ``choices``, ``max_len`` (str, bytes, list) and ``items`` (a list's item type)."""

    type: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    max_len: int | None = None
    items: type | tuple[type, ...] | None = None
    clamp: bool = False
    what: str = ""  # what the argument is, for the error message

    def check(self, cmd: str, name: str, value: Any) -> Any:
        try:
            return self._check(cmd, name, value)
        except PolicyError as exc:
            if self.what:
                raise PolicyError(f"{exc} ({name}: {self.what})") from None
            raise

    def _check(self, cmd: str, name: str, value: Any) -> Any:
        if value is None and not self.required and self.default is None:
            return None
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        ok, value = _typed(value, types)
        if not ok:
            what = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise PolicyError(f"{cmd}: {name} must be {what}, got {_shown(value)}")
        if isinstance(value, float) and math.isnan(value):
            raise PolicyError(f"{cmd}: {name} must be a number, got nan")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.high is not None and value > self.high:
                if not self.clamp:
                    raise PolicyError(f"{cmd}: {name} must be at most {_num(self.high)}, got {_shown(value)}")
                value = type(value)(self.high)
            if self.low is not None and value < self.low:
                raise PolicyError(f"{cmd}: {name} must be at least {_num(self.low)}, got {_shown(value)}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise PolicyError(f"{cmd}: {name} must be one of {allowed}; got {_shown(value)}")
        if self.max_len is not None and isinstance(value, (str, bytes, list)) and len(value) > self.max_len:
            raise PolicyError(f"{cmd}: {name} holds {len(value)} items or bytes, at most {self.max_len}")
        if self.items is not None and isinstance(value, list):
            item_types = self.items if isinstance(self.items, tuple) else (self.items,)
            for i, item in enumerate(value):
                ok, value[i] = _typed(item, item_types)
                if not ok:
                    what = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in item_types)
                    raise PolicyError(f"{cmd}: {name}[{i}] must be {what}, got {_shown(item)}")
        return value


@dataclass(frozen=True)
class Policy:
    """The arguments of one command, by name."""

    args: Mapping[str, Arg] = field(default_factory=dict)

    def check(self, cmd: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments the handler gets: ``given`` checked, defaults filled in."""
        unknown = [k for k in given if k not in self.args]
        if unknown:
            allowed = ", ".join(self.args) or "none"
            raise PolicyError(f"{cmd}: unknown argument {_shown(unknown[0])}; allowed: {allowed}")
        out = {}
        for name, arg in self.args.items():
            if name in given:
                out[name] = arg.check(cmd, name, given[name])
            elif arg.required:
                raise PolicyError(f"{cmd}: argument {name} is required ({', '.join(self.args)})")
            else:
                out[name] = arg.default
        return out


def _p(**args: Arg) -> Policy:
    return Policy(args)


DEV = Arg(str, default="vnet0", max_len=64)
PORT = Arg(int, required=True, low=1, high=65535)


def _timeout(default: float) -> Arg:
    return Arg(float, default=default, low=0.0, high=MAX_POLL_TIMEOUT, clamp=True)


# A capture's (and a mirror's) bounds, as proto/capture.py's check_limits states them.
_CAPTURE_COUNT = Arg(int, low=1, high=1 << 31, what="frames to capture, at least 1")
_CAPTURE_BUFFER = Arg(int, default=4096, low=1, high=65536, what="frames held for the reader, 1 to 65536 frames")
_CAPTURE_SNAPLEN = Arg(int, default=MAX_SNAPLEN, low=1, high=MAX_SNAPLEN,
                       what=f"bytes kept of each frame, 1 to {MAX_SNAPLEN} bytes")

NODE_POLICY: dict[str, Policy] = {
    "health": _p(),
    "link_show": _p(),
    "link_set": _p(dev=DEV, state=Arg(str, choices=("up", "down")), mtu=Arg(int, low=0, high=MAX_FRAME),
                   address=Arg(str, max_len=64), promisc=Arg(bool)),
    "addr_show": _p(dev=Arg(str, max_len=64)),
    "addr_add": _p(cidr=Arg(str, required=True, max_len=64), dev=DEV),
    "addr_del": _p(cidr=Arg(str, required=True, max_len=64), dev=DEV),
    "neigh_show": _p(),
    "neigh_flush": _p(),
    "stats": _p(dev=DEV),
    "ethtool": _p(op=Arg(str, required=True, choices=("drvinfo", "link", "stats", "get_ringparam", "set_ringparam",
                                                     "get_coalesce", "set_coalesce")),
                  dev=DEV, rx_pending=Arg(int, low=0, high=1 << 20), tx_pending=Arg(int, low=0, high=1 << 20),
                  rx_usecs=Arg(int, low=0, high=1 << 24), rx_frames=Arg(int, low=0, high=1 << 20)),
    "ping": _p(dst=Arg(str, required=True, max_len=64), seq=Arg(int, default=1, low=0, high=0xFFFF),
               size=Arg(int, default=56, low=0, high=MAX_UDP_PAYLOAD), timeout=_timeout(4.0),
               ident=Arg(int, low=0, high=0xFFFF)),
    "arping": _p(dst=Arg(str, required=True, max_len=64), timeout=_timeout(1.0)),
    "udp_bind": _p(port=Arg(int, required=True, low=0, high=65535)),
    "udp_unbind": _p(port=PORT),
    "udp_send": _p(dst=Arg(str, required=True, max_len=64), port=PORT,
                   data=Arg((bytes, str), required=True, max_len=MAX_UDP_PAYLOAD),
                   sport=Arg(int, default=0, low=0, high=65535)),
    "udp_recv": _p(port=PORT, timeout=_timeout(1.0), max=Arg(int, default=64, low=1, high=MAX_READ)),
    "inject": _p(frames=Arg(list, required=True, max_len=MAX_INJECT_FRAMES, items=bytes), dev=DEV),
    "dhcp_show": _p(),
    "capture_start": _p(filter=Arg(str, default="", max_len=MAX_FILTER), count=_CAPTURE_COUNT,
                        buffer=_CAPTURE_BUFFER, snaplen=_CAPTURE_SNAPLEN, dev=DEV),
    "capture_read": _p(id=Arg(int, required=True, low=0, high=1 << 62), timeout=_timeout(1.0),
                       max=Arg(int, default=1024, low=1, high=MAX_READ)),
    "capture_stop": _p(id=Arg(int, required=True, low=0, high=1 << 62)),
    "route_show": _p(),
    "route_add": _p(dst=Arg(str, required=True, max_len=64, what="a prefix (10.0.2.0/24), an address or default"),
                    via=Arg(str, max_len=64), dev=Arg(str, max_len=64), metric=Arg(int, default=0, low=0, high=0xFFFFFFFF)),
    "route_del": _p(dst=Arg(str, required=True, max_len=64), via=Arg(str, max_len=64), dev=Arg(str, max_len=64)),
    "route_get": _p(dst=Arg(str, required=True, max_len=64)),
    "forwarding_set": _p(on=Arg(bool)),
    "traceroute": _p(dst=Arg(str, required=True, max_len=64), max_hops=Arg(int, default=30, low=1, high=255),
                     timeout=Arg(float, default=1.0, low=0.0, high=60.0), probes=Arg(int, default=1, low=1, high=10),
                     port=Arg(int, default=33434, low=1, high=65535)),
    "link_add": _p(link=Arg(str, required=True, max_len=64), name=Arg(str, required=True, max_len=64),
                   vlan=Arg(int, required=True, low=1, high=4094, what="the 802.1Q VLAN id")),
    "link_del": _p(name=Arg(str, required=True, max_len=64)),
}

_IMPAIR_VALUE = Arg((str, int, float, list), max_len=64)  # parsed by the switch (switch/impair.py)

_VID = Arg(int, low=1, high=4094, what="an 802.1Q VLAN id")

SWITCH_POLICY: dict[str, Policy] = {
    "ping": _p(),
    "fdb": _p(port=Arg(str, max_len=MAX_TEXT), vlan=Arg(int, low=0, high=4095)),
    "ports": _p(),
    "stats": _p(),
    "flush": _p(port=Arg(str, max_len=MAX_TEXT)),
    "set_ageing": _p(seconds=Arg(float, required=True, low=0.0, high=1e9,
                                  what="the FDB's ageing time in seconds, 0 = never age")),
    "port_set": _p(port=Arg(str, required=True, max_len=MAX_TEXT), up=Arg(bool, required=True)),
    "port_security": _p(max_macs=Arg(int, low=0, high=1 << 24), violation=Arg(str, choices=("drop", "shutdown"))),
    "vlan_set": _p(port=Arg(str, required=True, max_len=MAX_TEXT), mode=Arg(str, required=True,
                                                                            choices=("access", "trunk")),
                   vlan=_VID, allowed=Arg(list, items=int, max_len=4094, what="a trunk's VLAN ids, 1 to 4094"),
                   native=_VID, native_tagged=Arg(bool, default=False)),
    "vlan_clear": _p(port=Arg(str, required=True, max_len=MAX_TEXT)),
    "vlan_show": _p(),
    "impair": _p(port=Arg(str, required=True, max_len=MAX_TEXT), dir=Arg(str, choices=("in", "out", "both")),
                 clear=Arg(bool, default=False),
                 **{name: _IMPAIR_VALUE for name in ("loss", "loss_burst", "delay", "jitter", "rate", "queue",
                                                     "duplicate", "corrupt", "reorder")},
                 seed=Arg((int, str), max_len=32)),
    "mirror_start": _p(port=Arg(str, required=True, max_len=MAX_TEXT), filter=Arg(str, default="", max_len=MAX_FILTER),
                       count=_CAPTURE_COUNT, buffer=_CAPTURE_BUFFER, snaplen=_CAPTURE_SNAPLEN),
    "mirror_read": _p(id=Arg(int, required=True, low=0, high=1 << 62), timeout=_timeout(1.0),
                      max=Arg(int, default=1024, low=1, high=MAX_READ)),
    "mirror_stop": _p(id=Arg(int, required=True, low=0, high=1 << 62)),
    "stp_show": _p(),
}
