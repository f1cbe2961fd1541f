"""What the embedded LAN does when one of its daemons dies: the restart policy, sans I/O.

The model is an init system's (systemd's ``Restart=on-failure`` with ``StartLimitBurst`` in
``StartLimitIntervalSec``): a daemon that dies without having been asked to is reported
(a ``Death``: who, its exit status or signal, the tail of its log) and restarted, at most
``restarts`` times in ``window`` seconds each; one death more than that, or a death a restart
cannot mend (a node the switch refused: exit status 3), and the LAN has failed. The Lan
(vnet/lan.py) owns the processes and the tasks that wait on them; this module only decides,
with the time passed in (``now``), so its tests drive a clock by hand.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass

# A node daemon's exit status when the switch refused it (REFUSE): restarting cannot help.
EXIT_REFUSED = 3


def describe_exit(returncode: int) -> str:
    """``-9`` -> "killed by signal 9 (SIGKILL)", ``1`` -> "exited with status 1"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-returncode} ({name})"
    return f"exited with status {returncode}"


@dataclass(frozen=True)
class Death:
    """One daemon of the LAN that died without the LAN asking it to, and what came of it."""

    name: str  # "switch" or the node's name
    pid: int
    returncode: int  # as subprocess has it: negative for a signal
    log_tail: str  # the last lines of its log file
    at: float  # the loop's clock
    restart: bool  # the policy's verdict: restarted, or the LAN has failed
    reason: str  # why not restarted ("" when restarted)
    nodes: tuple[str, ...] = ()  # a process of packed nodes: the nodes that died with it

    @property
    def status(self) -> str:
        return describe_exit(self.returncode)

    def report(self) -> str:
        """The sentence (and log tail) a user reads."""
        then = "restarting it" if self.restart else f"not restarting it: {self.reason}"
        tail = "".join(f"  | {line}\n" for line in self.log_tail.splitlines())
        hosted = ""
        if self.nodes:
            shown = ", ".join(self.nodes[:3]) + (f" ... {self.nodes[-1]}" if len(self.nodes) > 3 else "")
            hosted = f", hosting {len(self.nodes)} nodes ({shown}),"
        return (f"{self.name} (pid {self.pid}){hosted} {self.status}; {then}"
                + (f"; the end of its log:\n{tail.rstrip()}" if tail else " (its log is empty)"))


class RestartPolicy:
    """At most ``restarts`` restarts of one daemon within any ``window`` seconds.

    ``restarts=0`` never restarts: every death fails the LAN (a test sees the crash as it was).
    """

    def __init__(self, restarts: int = 3, window: float = 60.0) -> None:
        if restarts < 0 or window <= 0:
            raise ValueError(f"restart policy: need restarts >= 0 and window > 0, got {restarts} and {window:g} s")
        self.restarts = restarts
        self.window = window
        self._history: dict[str, deque[float]] = {}

    def decide(self, name: str, returncode: int, now: float, node: bool = True) -> tuple[bool, str]:
        """Whether to restart ``name``, which just died with ``returncode``; and if not, why.
        A restart granted counts against the budget."""
        if node and returncode == EXIT_REFUSED:
            return False, "the switch refused it (exit status 3); a restart would be refused again"
        history = self._history.setdefault(name, deque())
        while history and now - history[0] >= self.window:
            history.popleft()
        if len(history) >= self.restarts:
            if self.restarts == 0:
                return False, "this LAN does not restart its daemons (restarts=0)"
            return False, f"it was restarted {len(history)} times in the last {self.window:g} s already"
        history.append(now)
        return True, ""
