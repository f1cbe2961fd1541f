"""ethtool: the driver's self-description and tuning knobs (net/ethtool/, struct ethtool_ops).

The core functions here are what the ``ethtool`` command reaches through the kernel:

============================  ==============  ==============================================
function                      ethtool         returns / takes
============================  ==============  ==============================================
ethtool_get_drvinfo(dev)      ``-i``          EthtoolDrvinfo(driver, version, fw_version,
                                              bus_info, n_stats)
ethtool_get_link(dev)         (Link detected) bool: running and carrier
ethtool_get_ringparam(dev)    ``-g``          EthtoolRingparam(rx_max_pending, tx_max_pending,
                                              rx_pending, tx_pending)
ethtool_set_ringparam(dev,    ``-G rx N       None; NetdevError(EINVAL) for sizes out of range
  rx_pending=, tx_pending=)   tx N``
ethtool_get_coalesce(dev)     ``-c``          EthtoolCoalesce(rx_usecs, rx_frames)
ethtool_set_coalesce(dev,     ``-C rx-usecs   None; NetdevError(EINVAL) when out of range
  rx_usecs=, rx_frames=)      rx-frames``
ethtool_get_stats(dev)        ``-S``          dict[str, int], in the driver's order
============================  ==============  ==============================================

Each dispatches through ``dev.ethtool_ops`` (an ``EthtoolOps`` table); a missing op is
NetdevError(EOPNOTSUPP). As in the kernel, the core checks ring sizes against the maximum the
driver reports and fills parameters the caller left out with the current values; the
driver checks the rest.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .netdevice import NetDevice, NetdevError, netif_carrier_ok, netif_running


@dataclass(frozen=True, slots=True)
class EthtoolDrvinfo:
    """``struct ethtool_drvinfo`` (the fields that mean something here)."""

    driver: str
    version: str
    fw_version: str
    bus_info: str
    n_stats: int


@dataclass(frozen=True, slots=True)
class EthtoolRingparam:
    """``struct ethtool_ringparam``: descriptor counts, current and maximum."""

    rx_max_pending: int
    tx_max_pending: int
    rx_pending: int
    tx_pending: int


@dataclass(frozen=True, slots=True)
class EthtoolCoalesce:
    """``struct ethtool_coalesce``, RX part (rx_coalesce_usecs, rx_max_coalesced_frames),
    under the names the ethtool command uses."""

    rx_usecs: int
    rx_frames: int


@dataclass(frozen=True)
class EthtoolOps:
    """``struct ethtool_ops``: one table per driver."""

    get_drvinfo: Optional[Callable[[NetDevice], EthtoolDrvinfo]] = None
    get_link: Optional[Callable[[NetDevice], bool]] = None
    get_ringparam: Optional[Callable[[NetDevice], EthtoolRingparam]] = None
    set_ringparam: Optional[Callable[[NetDevice, int, int], None]] = None
    get_coalesce: Optional[Callable[[NetDevice], EthtoolCoalesce]] = None
    set_coalesce: Optional[Callable[[NetDevice, int, int], None]] = None
    get_strings: Optional[Callable[[NetDevice], list[str]]] = None
    get_ethtool_stats: Optional[Callable[[NetDevice], list[int]]] = None


def ethtool_op_get_link(dev: NetDevice) -> bool:
    """The generic get_link: the carrier bit."""
    return netif_carrier_ok(dev)


def _op(dev: NetDevice, name: str) -> Callable[..., Any]:
    fn = getattr(dev.ethtool_ops, name, None) if dev.ethtool_ops is not None else None
    if fn is None:
        raise NetdevError(errno.EOPNOTSUPP, f"{dev.name}: the driver has no ethtool {name}")
    return fn


def _check_count(name: str, value: Any, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NetdevError(errno.EINVAL, f"{name} must be a non-negative integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise NetdevError(errno.EINVAL, f"{name} {value} exceeds the maximum {maximum}")
    return value


def ethtool_get_drvinfo(dev: NetDevice) -> EthtoolDrvinfo:
    return _op(dev, "get_drvinfo")(dev)


def ethtool_get_link(dev: NetDevice) -> bool:
    """Link detected: the device is up and the driver reports a link (__ethtool_get_link)."""
    return netif_running(dev) and bool(_op(dev, "get_link")(dev))


def ethtool_get_ringparam(dev: NetDevice) -> EthtoolRingparam:
    return _op(dev, "get_ringparam")(dev)


def ethtool_set_ringparam(dev: NetDevice, *, rx_pending: Optional[int] = None,
                          tx_pending: Optional[int] = None) -> None:
    """Resize the rings (ethtool -G); omitted sizes keep their current value."""
    setter = _op(dev, "set_ringparam")
    cur = ethtool_get_ringparam(dev)
    rx = cur.rx_pending if rx_pending is None else _check_count("rx", rx_pending,
                                                                  cur.rx_max_pending)
    tx = cur.tx_pending if tx_pending is None else _check_count("tx", tx_pending,
                                                                  cur.tx_max_pending)
    setter(dev, rx, tx)


def ethtool_get_coalesce(dev: NetDevice) -> EthtoolCoalesce:
    return _op(dev, "get_coalesce")(dev)


def ethtool_set_coalesce(dev: NetDevice, *, rx_usecs: Optional[int] = None,
                         rx_frames: Optional[int] = None) -> None:
    """Set interrupt coalescing (ethtool -C); omitted values keep their current value."""
    setter = _op(dev, "set_coalesce")
    cur = ethtool_get_coalesce(dev)
    usecs = cur.rx_usecs if rx_usecs is None else _check_count("rx-usecs", rx_usecs)
    frames = cur.rx_frames if rx_frames is None else _check_count("rx-frames", rx_frames)
    setter(dev, usecs, frames)


def ethtool_get_strings(dev: NetDevice) -> list[str]:
    return list(_op(dev, "get_strings")(dev))


def ethtool_get_stats(dev: NetDevice) -> dict[str, int]:
    """The driver's statistics as ``ethtool -S`` prints them: names in the driver's order."""
    names = _op(dev, "get_strings")(dev)
    values = _op(dev, "get_ethtool_stats")(dev)
    if len(names) != len(values):
        raise RuntimeError(f"{dev.name}: driver gave {len(names)} stat names but "
                           f"{len(values)} values")
    return dict(zip(names, values))
