"""``vnet capture``: frames as a node's vnet0 sees them, like tcpdump; ``vnet capture -r``,
a pcap file filtered offline, like ``tcpdump -r``; and the capture loop ``vnet switch mirror``
shares. Filters are pcap-filter(7), compiled by libpcap (``vnet.proto.capture``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from vnet.proto.bpf import DLT_EN10MB
from vnet.proto.capture import (CAPTURE_BUFFER_MAX, DEFAULT_BUFFER, DEFAULT_SNAPLEN, CaptureLimitError, FilterError,
                                check_limits, compile_filter, filter_engine)
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

    _check_limits(args, what)
    writer = _open_writer(args, what)
    stopping = False

    def on_sigterm(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_sigterm)
    got = 0
    with connect() as client:
        started = client.call(start, filter=" ".join(args.filter), count=args.count, buffer=args.buffer,
                              snaplen=args.snaplen, **start_args)
        cid = started["id"]
        if not args.json:
            print(f"{what}{', filter ' + started['filter'] if started['filter'] else ''}"
                  f"{', writing ' + args.write if args.write else ''}", file=sys.stderr, flush=True)
            _say_engine(started.get("engine", ""))
        try:
            while not stopping:
                batch = client.call(read, wait=args.timeout + 2.0, id=cid, timeout=0.5)
                for c in batch["frames"]:
                    got += 1
                    _emit(args, writer, c["ts"], c["frame"], c.get("len", len(c["frame"])), c["dir"])
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


def _check_limits(args: argparse.Namespace, what: str) -> None:
    try:
        check_limits(args.buffer, args.count, args.snaplen)
    except CaptureLimitError as exc:
        raise CliError(f"{what}: {exc}") from None


def _say_engine(engine: str) -> None:
    """Say so when the filter is not libpcap's (it is not installed where it was compiled)."""
    if engine and not engine.startswith("libpcap"):
        print(f"filters are compiled by {engine}: install libpcap (Debian: libpcap0.8) for every "
              "tcpdump expression", file=sys.stderr, flush=True)


def _open_writer(args: argparse.Namespace, what: str):
    if not args.write:
        return None
    try:
        target = sys.stdout.buffer if args.write == "-" else args.write  # -w -: stdout, as tcpdump
        return pcap_writer(target, args.snaplen)
    except OSError as exc:
        raise CliError(f"{what}: cannot write {args.write}: {exc}") from None


def pcap_writer(target: Any, snaplen: int = DEFAULT_SNAPLEN):
    """A pcap writer (Ethernet link type) on a path or a binary file object, its header written:
    a file with no frames is still a pcap file. The one pcap writer of vnet (``vnet capture -w``,
    ``vnet switch mirror -w``, the web view's downloads)."""
    from scapy.utils import RawPcapWriter

    writer = RawPcapWriter(target, linktype=DLT_EN10MB, snaplen=snaplen, sync=True)
    writer._write_header(None)
    return writer


def write_pcap_frame(writer: Any, ts: float, frame: bytes, wirelen: int) -> None:
    """One captured frame (wall-clock ``ts``, its length on the wire) into ``pcap_writer``'s file."""
    sec = int(ts)
    writer.write_packet(frame, sec=sec, usec=min(int(round((ts - sec) * 1e6)), 999999), caplen=len(frame),
                        wirelen=wirelen)


def _emit(args: argparse.Namespace, writer, ts: float, frame: bytes, wirelen: int, direction: str | None) -> None:
    """One frame out: into the pcap with -w, else a JSON object (--json) or a tcpdump-like line."""
    import time

    if writer is not None:
        write_pcap_frame(writer, ts, frame, wirelen)
    elif args.json:
        row = {"ts": ts, "len": wirelen, "frame": frame.hex()}
        if direction is not None:
            row["dir"] = direction
        print(json.dumps(row), flush=True)
    else:
        stamp = time.strftime("%H:%M:%S", time.localtime(ts)) + f"{ts % 1:.6f}"[1:]
        where = f" {direction:<3}" if direction is not None else ""
        print(f"{stamp}{where} {frame_summary(frame)}", flush=True)


def read_pcap(path: str):
    """An iterator of (ts, frame, wirelen) over the frames of an Ethernet pcap or pcapng file;
    CliError, at once, for a file that cannot be read or is not Ethernet."""
    from scapy.utils import RawPcapReader

    try:
        reader = RawPcapReader(path)
    except (OSError, EOFError) as exc:
        raise CliError(f"capture -r: cannot read {path}: {exc}") from None
    except Exception as exc:  # scapy's Scapy_Exception: not a pcap file
        raise CliError(f"capture -r: {path} is not a pcap file: {exc}") from None
    linktype = getattr(reader, "linktype", DLT_EN10MB)
    if linktype != DLT_EN10MB:
        reader.close()
        raise CliError(f"capture -r: {path} has link type {linktype}; vnet reads Ethernet (DLT_EN10MB, 1) only")

    def frames():
        with reader:
            while True:
                try:
                    frame, meta = reader._read_packet(size=DEFAULT_SNAPLEN)
                except EOFError:
                    return
                if hasattr(meta, "sec"):  # pcap
                    ts = meta.sec + meta.usec / (1e9 if getattr(reader, "nano", False) else 1e6)
                else:  # pcapng
                    if meta.linktype != DLT_EN10MB:
                        raise CliError(f"capture -r: {path} has an interface of link type {meta.linktype}; "
                                       "vnet reads Ethernet (DLT_EN10MB, 1) only")
                    ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
                yield ts, frame, meta.wirelen
    return frames()


def run_offline(args: argparse.Namespace) -> int:
    """``vnet capture -r IN.pcap [-w OUT.pcap] [-c N] [FILTER]``, as ``tcpdump -r``: the frames
    of IN the filter accepts (up to N), printed or written to OUT. No node is involved."""
    _check_limits(args, "capture -r")
    expr = " ".join(args.filter)
    try:
        match = compile_filter(expr)
    except FilterError as exc:
        raise CliError(str(exc)) from None
    frames = read_pcap(args.read)
    writer = _open_writer(args, "capture -r")
    if not args.json:
        print(f"reading from file {args.read}, link-type EN10MB (Ethernet){', filter ' + expr if expr else ''}"
              f"{', writing ' + args.write if args.write else ''}", file=sys.stderr, flush=True)
        _say_engine(filter_engine() if expr else "")
    seen = got = 0
    try:
        for ts, frame, wirelen in frames:
            if args.count is not None and got >= args.count:
                break
            seen += 1
            if not match(frame, wirelen):
                continue
            got += 1
            _emit(args, writer, ts, frame[:args.snaplen], wirelen, None)
    finally:
        if writer is not None:
            writer.close()
    if not args.json:
        print(f"{seen} packets read, {got} matched the filter", file=sys.stderr)
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    """``vnet capture [-i vnet0] [-w FILE] [-c N] [FILTER]``: frames as vnet0 sees them, both
    directions; a pcap file with -w, else a line per frame. Stops at -c N or Ctrl-C/SIGTERM.
    With ``-r FILE``, the frames of a pcap file instead (no node)."""
    if args.read:
        return run_offline(args)
    return run_capture(args, lambda: ControlClient(node_endpoint(args), timeout=args.timeout), f"capture on {args.iface}",
                       "capture_start", "capture_read", "capture_stop", dev=args.iface)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``capture`` command and its arguments."""
    cap = sub.add_parser("capture", parents=[common], help="capture frames on vnet0, like tcpdump")
    cap.add_argument("-i", dest="iface", default="vnet0", help="device (vnet0, or vnetK of a node with --nic)")
    cap.add_argument("-r", dest="read", metavar="FILE", help="read frames from a pcap file instead of a node")
    add_capture_options(cap)
    cap.set_defaults(func=cmd_capture)


def add_capture_options(parser: argparse.ArgumentParser) -> None:
    """-w, -c, -s, --buffer and the filter: what ``vnet capture`` and ``vnet switch mirror`` share."""
    parser.add_argument("-w", dest="write", metavar="FILE", help="write a pcap file instead of printing")
    parser.add_argument("-c", dest="count", type=int, default=None, help="stop after COUNT frames (at least 1)")
    parser.add_argument("-s", dest="snaplen", type=int, default=DEFAULT_SNAPLEN,
                        help=f"keep at most SNAPLEN bytes of each frame (1 to {DEFAULT_SNAPLEN}, the default)")
    parser.add_argument("--buffer", type=int, default=DEFAULT_BUFFER, metavar="FRAMES",
                        help=f"frames the capture holds for this reader (1 to {CAPTURE_BUFFER_MAX}; "
                             f"default {DEFAULT_BUFFER}); more are dropped and counted")
    parser.add_argument("filter", nargs="*", metavar="FILTER",
                        help="pcap-filter(7), as tcpdump: e.g. 'icmp', 'host 10.0.0.2 and udp port 53', "
                             "'vlan and udp', 'tcp[tcpflags] & tcp-syn != 0'")
