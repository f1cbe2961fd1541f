"""The DHCP server's lease file (``vnet node --lease-file``): the I/O shell around the
stack's pure lease store (vnet.node.stack.dhcp.leases), as dhcpd's dhcpd.leases is.

On disk: JSON, {client id hex: {"ip": "a.b.c.d", "expires": <Unix time>, "hostname": str or
null}}. Inside the stack, expiry times are on the event loop's monotonic clock; the caller
passes both clocks (``now``, ``wall``) and this module converts, so a lease file survives a
reboot of the host and the tests drive time by hand.

What can go wrong, and what happens then (never a crash at start-up, never silent):

- the file is missing: no leases, nothing logged (the first start);
- the file cannot be read as a map (not JSON, truncated, not a map at the top, unreadable):
  it is moved aside to ``<path>.bad-<UTC time>`` before the server starts, so the next save
  cannot destroy the leases it held, and an error names where the copy is;
- entries are bad (see ``restore_leases``): each is skipped and counted in the server's
  ``leases_skipped``, and one warning line lists them.

Saving writes a temporary file in the same directory, fsyncs it and renames it over the old
one, so a crash leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time

log = logging.getLogger(__name__)

SKIPPED_SHOWN = 10  # reasons listed in the warning line; the count covers the rest


def _shift(leases: dict, delta: float) -> dict:
    """``leases`` with every numeric, finite ``expires`` moved by ``delta``; anything else
    passes through untouched for the lease store to judge."""
    out = {}
    for key, entry in leases.items():
        if isinstance(entry, dict):
            exp = entry.get("expires")
            if isinstance(exp, (int, float)) and not isinstance(exp, bool) \
                    and math.isfinite(exp):
                entry = {**entry, "expires": exp + delta}
        out[key] = entry
    return out


def move_aside(path: str, wall: float) -> str:
    """Rename ``path`` to ``<path>.bad-<UTC time of wall>`` (never over an older copy) and
    return the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))
    base = f"{path}.bad-{stamp}"
    dest, n = base, 0
    while os.path.lexists(dest):
        n += 1
        dest = f"{base}.{n}"
    os.rename(path, dest)
    return dest


def read_lease_file(path: str, now: float, wall: float) -> dict | None:
    """The saved leases with their expiry on the ``now`` clock, or None: no file, or one
    that could not be read as a map (moved aside, see the module docstring)."""
    try:
        with open(path, "rb") as fh:
            leases = json.loads(fh.read().decode("utf-8"))
        if not isinstance(leases, dict):
            raise ValueError(f"the top level is a JSON {type(leases).__name__}, not a map "
                             "of client id -> lease")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        why = str(exc) or type(exc).__name__
        try:
            if not os.path.isfile(path):
                raise OSError("not a regular file")
            copy = move_aside(path, wall)
        except OSError as mv:
            log.error("dhcp: cannot read the lease file %s (%s) nor move it aside (%s); "
                      "starting without leases, and the next save will overwrite it",
                      path, why, mv)
            return None
        log.error("dhcp: cannot read the lease file %s (%s); starting without leases, the "
                  "file is kept as %s", path, why, copy)
        return None
    return _shift(leases, now - wall)


def restore_lease_file(server, path: str, now: float, wall: float) -> list[str]:
    """Restore ``server``'s (a running DhcpServer) leases from ``path``; log one warning
    line for the entries skipped, and return them."""
    leases = read_lease_file(path, now, wall)
    if leases is None:
        return []
    skipped = server.restore(leases)
    if skipped:
        shown = "; ".join(skipped[:SKIPPED_SHOWN])
        more = f"; and {len(skipped) - SKIPPED_SHOWN} more" if len(skipped) > SKIPPED_SHOWN \
            else ""
        log.warning("dhcp: lease file %s: skipped %d of %d entries: %s%s", path,
                    len(skipped), len(leases), shown, more)
    return skipped


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: a temporary file in the same directory, fsynced, then
    renamed over it. OSError if that cannot be done (the old file is left as it was)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_lease_file(path: str, leases: dict, now: float, wall: float) -> None:
    """Write ``leases`` (``dhcp_server_leases()``, expiry on the ``now`` clock) to ``path``
    with wall-clock expiry, atomically. OSError if it cannot be written."""
    write_atomic(path, json.dumps(_shift(leases, wall - now), indent=1, sort_keys=True))
