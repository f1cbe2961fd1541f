"""``vnet top``: the LAN's traffic live in the terminal, per node and per switch port.

Once a second it asks the switch for its ``ports`` and each node for its ``stats`` over the
control endpoints, and shows packets and bits a second each way and the drops (the rates are
vnet/top.py's, from two rounds of counters). The nodes are the switch's ports (a port
``NODE:vnetK`` is NODE's second NIC) and the control sockets in the runtime directory, each
reached as ``vnet --node NAME`` reaches it. ``q`` or Ctrl-C quits; ``--once`` prints one
frame (two rounds ``--interval`` apart) and exits, for scripts.
"""

from __future__ import annotations

import argparse
import glob
import os
import select
import sys
import termios
import time
import tty
from typing import Any

from vnet.cli.common import CliError, curve_client, switch_endpoint
from vnet.proto.control import ControlClient, ControlError, node_control_endpoint, runtime_dir
from vnet.top import Counts, Frame, Sample, TopModel, format_bps, format_pps

POLL_TIMEOUT = 0.5  # seconds a daemon has to answer a round (a stopped one shows as down)


class Poller:
    """The control clients of one ``vnet top``: the switch's and one per node found, kept
    open between rounds; ``close()`` closes them all."""

    def __init__(self, switch: str, curve: Any, timeout: float) -> None:
        self.switch_endpoint = switch
        self.curve = curve
        self.switch = ControlClient(switch, timeout=timeout, curve=curve)
        self.timeout = timeout
        self.nodes: dict[str, ControlClient] = {}

    def close(self) -> None:
        self.switch.close()
        for client in self.nodes.values():
            client.close()
        self.nodes.clear()

    def sample(self) -> Sample:
        ports: dict[str, Counts] = {}
        names: set[str] = set(_runtime_nodes())
        switch_error = None
        try:
            for p in self.switch.call("ports"):
                ports[p["name"]] = Counts.from_port_counters(p.get("counters", {}))
                names.add(p["name"].split(":", 1)[0])  # NODE:vnetK is NODE's NIC vnetK
        except (ControlError, TimeoutError) as exc:
            switch_error = str(exc)
            self.switch.close()  # a late answer must not pass for the next round's: a new socket
            self.switch = ControlClient(self.switch_endpoint, timeout=self.timeout, curve=self.curve)
        nodes: dict[str, Counts] = {}
        down: dict[str, str] = {}
        for name in sorted(names):
            client = self.nodes.get(name)
            if client is None:
                client = self.nodes[name] = ControlClient(node_control_endpoint(name), timeout=self.timeout)
            try:
                stats = client.call("stats")
            except (ControlError, TimeoutError) as exc:
                down[name] = str(exc) or "no answer"
                client.close()  # a request that timed out leaves the socket waiting: start afresh
                del self.nodes[name]
                continue
            nodes[name] = Counts.from_node_stats(stats.get("stats64", {}))
        return Sample(time.monotonic(), nodes, ports, down, switch_error)


def _runtime_nodes() -> list[str]:
    """The nodes whose control sockets are in the runtime directory."""
    return [os.path.basename(p)[:-4] for p in glob.glob(os.path.join(runtime_dir(), "*.ctl"))]


def render(frame: Frame, interval: float) -> Any:
    """The screen for ``frame``: a table of nodes and one of switch ports."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def table(title: str, first: str, rows) -> Table:
        t = Table(title=title, title_justify="left", expand=False)
        t.add_column(first, no_wrap=True)
        for col in ("rx pps", "tx pps", "rx bit/s", "tx bit/s", "drops", "drops/s"):
            t.add_column(col, justify="right", no_wrap=True)
        for r in rows:
            if r.down is not None:
                t.add_row(r.name, "down", "", "", "", "", "", style="red")
                continue
            k = r.rates
            t.add_row(r.name, format_pps(k.rx_pps), format_pps(k.tx_pps), format_bps(k.rx_bps),
                      format_bps(k.tx_bps), str(r.counts.drops), format_pps(k.drops_ps),
                      style="yellow" if k.drops_ps else None)
        return t

    over = f"over {frame.interval:.2f} s" if frame.interval else "first sample"
    head = Text(f"vnet top: {len(frame.nodes)} nodes, {len(frame.ports)} switch ports ({over}; every "
                f"{interval:g} s, q quits)", style="bold")
    parts: list[Any] = [head, table("nodes", "node", frame.nodes)]
    if frame.switch_error:
        parts.append(Text(f"switch: {frame.switch_error}", style="red"))
    else:
        parts.append(table("switch ports", "port", frame.ports))
    return Group(*parts)


class _Keys:
    """The terminal in cbreak mode while ``vnet top`` runs (a key arrives without Enter,
    Ctrl-C still interrupts), restored on exit; no terminal, no keys."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        self.saved = None

    def __enter__(self) -> "_Keys":
        if self.fd is not None:
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def wait_quit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True if ``q`` was pressed (or the input ended)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.fd is None:
                time.sleep(left)
                return False
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 64)
                if not data or b"q" in data.lower():
                    return True
        return False


def cmd_top(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        raise CliError(f"top: --interval must be a positive number of seconds, got {args.interval:g}")
    from rich.console import Console
    from rich.live import Live

    console = Console()
    model = TopModel()
    poller = Poller(switch_endpoint(args), curve_client(args), min(POLL_TIMEOUT, args.timeout))
    try:
        if args.once:
            model.update(poller.sample())
            time.sleep(args.interval)  # the second round, for the rates
            console.print(render(model.update(poller.sample()), args.interval))
            return 0
        with _Keys() as keys, Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                started = time.monotonic()
                live.update(render(model.update(poller.sample()), args.interval), refresh=True)
                if keys.wait_quit(max(0.0, args.interval - (time.monotonic() - started))):
                    return 0
    except KeyboardInterrupt:
        return 0
    finally:
        poller.close()


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``top`` command."""
    tp = sub.add_parser("top", parents=[common], help="the LAN's traffic live: per node and switch port rates and drops",
                        description="Per node and per switch port: packets and bits a second each way and the "
                                    "drops, refreshed every second. q or Ctrl-C quits.")
    tp.add_argument("--switch-control", dest="switch_control", default=None,
                    help="the switch's control endpoint (default $VNET_SWITCH_CONTROL, else the runtime directory's)")
    tp.add_argument("--interval", type=float, default=1.0, help="seconds between rounds (default 1)")
    tp.add_argument("--once", action="store_true", help="print one frame (two rounds --interval apart) and exit")
    tp.set_defaults(func=cmd_top)
