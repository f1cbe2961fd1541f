"""``vnet capture``: frames as a node's vnet0 sees them, like tcpdump; and the capture loop
``vnet switch mirror`` shares."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from vnet.proto.control import ControlClient
from vnet.cli.common import CliError, node_endpoint


def frame_summary(frame: bytes) -> str:
    """One line about a frame, like tcpdump's (scapy's dissection; not on any hot path)."""
    from scapy.all import Ether

    try:
        return Ether(frame).summary()
    except Exception as exc:  # a frame scapy cannot dissect is still a frame
        return f"{len(frame)} bytes, undissectable ({exc.__class__.__name__})"


def run_capture(args: argparse.Namespace, connect: Callable[[], ControlClient], what: str, start: str, read: str,
                stop: str, **start_args: Any) -> int:
    """The capture loop ``vnet capture`` and ``vnet switch mirror`` share: start a capture on
    the daemon ``connect()`` reaches (``start`` command), fetch frames with ``read`` until -c
    N, Ctrl-C or SIGTERM, then ``stop``; write a pcap with -w, else a line per frame (JSON
    with --json)."""
    import signal
    import time

    if args.count is not None and args.count < 1:
        raise CliError(f"{what}: -c needs a count of at least 1")
    writer = None
    if args.write:
        from scapy.utils import PcapWriter

        try:
            writer = PcapWriter(args.write, linktype=1, sync=True)  # DLT_EN10MB
        except OSError as exc:
            raise CliError(f"{what}: cannot write {args.write}: {exc}") from None
    stopping = False

    def on_sigterm(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_sigterm)
    got = 0
    with connect() as client:
        started = client.call(start, filter=" ".join(args.filter), count=args.count, **start_args)
        cid = started["id"]
        if not args.json:
            print(f"{what}{', filter ' + started['filter'] if started['filter'] else ''}"
                  f"{', writing ' + args.write if args.write else ''}", file=sys.stderr, flush=True)
        try:
            while not stopping:
                batch = client.call(read, wait=args.timeout + 2.0, id=cid, timeout=0.5)
                for c in batch["frames"]:
                    got += 1
                    if writer is not None:
                        from scapy.all import Ether

                        pkt = Ether(c["frame"])
                        pkt.time = c["ts"]
                        writer.write(pkt)
                    elif args.json:
                        print(json.dumps({"ts": c["ts"], "dir": c["dir"], "len": len(c["frame"]),
                                          "frame": c["frame"].hex()}), flush=True)
                    else:
                        stamp = time.strftime("%H:%M:%S", time.localtime(c["ts"])) + f"{c['ts'] % 1:.6f}"[1:]
                        print(f"{stamp} {c['dir']:<3} {frame_summary(c['frame'])}", flush=True)
                if batch["done"]:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            final = client.call(stop, id=cid)
            if writer is not None:
                writer.close()
    if not args.json:
        print(f"{got} packets captured\n{final['matched']} packets received by filter\n"
              f"{final['dropped']} packets dropped by the capture buffer", file=sys.stderr)
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    """``vnet capture [-i vnet0] [-w FILE] [-c N] [FILTER]``: frames as vnet0 sees them, both
    directions; a pcap file with -w, else a line per frame. Stops at -c N or Ctrl-C/SIGTERM."""
    if args.iface != "vnet0":
        raise CliError(f"capture: no device {args.iface!r} (vnet nodes have vnet0)")
    return run_capture(args, lambda: ControlClient(node_endpoint(args), timeout=args.timeout), f"capture on {args.iface}",
                       "capture_start", "capture_read", "capture_stop")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``capture`` command and its arguments."""
    cap = sub.add_parser("capture", parents=[common], help="capture frames on vnet0, like tcpdump")
    cap.add_argument("-i", dest="iface", default="vnet0", help="device (vnet0)")
    cap.add_argument("-w", dest="write", metavar="FILE", help="write a pcap file instead of printing")
    cap.add_argument("-c", dest="count", type=int, default=None, help="stop after COUNT frames")
    cap.add_argument("filter", nargs="*", metavar="FILTER",
                     help="e.g. 'icmp', 'host 10.0.0.2 and udp port 53', 'ether proto 0x88b5', 'not arp'")
    cap.set_defaults(func=cmd_capture)
