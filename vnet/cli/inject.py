"""``vnet inject``: send raw frames through a node's vnet0, from a scapy expression or a pcap file."""

from __future__ import annotations

import argparse
import os

from vnet.cli.common import CliError, emit_json, node_call


def build_frames(source: str, src_mac: str, src_ip: str | None) -> list[bytes]:
    """Frames from a pcap file path or a scapy expression, with the node's MAC/IP as defaults.

    Missing destination MACs become broadcast, so scapy never tries to resolve anything on
    the host's own network.
    """
    from scapy.all import IP, Ether, Packet, rdpcap  # scapy is slow to import: only here
    import scapy.all as scapy_all

    if os.path.isfile(source):
        try:
            return [bytes(p) for p in rdpcap(source)]
        except Exception as exc:
            raise CliError(f"inject: cannot read pcap {source!r}: {exc}") from None
    namespace = {k: getattr(scapy_all, k) for k in dir(scapy_all) if not k.startswith("_")}
    try:
        obj = eval(source, namespace)  # the user's own expression, in their own shell
    except Exception as exc:
        raise CliError(f"inject: {source!r} is neither a pcap file nor a scapy expression: "
                       f"{exc.__class__.__name__}: {exc}") from None
    packets = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    frames = []
    for pkt in packets:
        if isinstance(pkt, (bytes, bytearray)):
            frames.append(bytes(pkt))
            continue
        if not isinstance(pkt, Packet):
            raise CliError(f"inject: the expression gave a {type(pkt).__name__}, not a packet")
        if not isinstance(pkt, Ether):
            pkt = Ether() / pkt
        if pkt.dst is None or "dst" not in pkt.fields:
            pkt.dst = "ff:ff:ff:ff:ff:ff"
        if "src" not in pkt.fields:
            pkt.src = src_mac
        if src_ip and pkt.haslayer(IP) and "src" not in pkt[IP].fields:
            pkt[IP].src = src_ip
        frames.extend(bytes(p) for p in pkt)  # an expression with ranges yields several
    return frames


def inject_batches(frames: list[bytes]) -> list[list[bytes]]:
    """``frames`` cut into inject requests the node accepts: at most MAX_INJECT_FRAMES frames
    and half of MAX_REQUEST_BYTES of frame bytes each (the rest is room for msgpack)."""
    from vnet.proto.control import MAX_REQUEST_BYTES
    from vnet.proto.policy import MAX_INJECT_FRAMES

    batches: list[list[bytes]] = []
    size = 0
    for frame in frames:
        if not batches or len(batches[-1]) >= MAX_INJECT_FRAMES or size + len(frame) > MAX_REQUEST_BYTES // 2:
            batches.append([])
            size = 0
        batches[-1].append(frame)
        size += len(frame)
    return batches


def cmd_inject(args: argparse.Namespace) -> int:
    link = node_call(args, "link_show")[0]
    addrs = node_call(args, "addr_show")["addresses"]
    frames = build_frames(args.source, link["address"], addrs[0]["address"] if addrs else None)
    frames = frames * args.count
    sent = 0
    for batch in inject_batches(frames):  # one request is at most MAX_REQUEST_BYTES
        sent += node_call(args, "inject", frames=batch, dev=args.dev)["sent"]
    r = {"sent": sent}
    if args.json:
        emit_json(r)
    else:
        print(f"injected {r['sent']} frame(s) through {args.dev}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``inject`` command and its arguments."""
    inj = sub.add_parser("inject", parents=[common], help="send raw frames: a scapy expression or a pcap file")
    inj.add_argument("source", metavar="EXPR|FILE.pcap")
    inj.add_argument("-n", dest="count", type=int, default=1, help="send the frames this many times")
    inj.add_argument("--dev", default="vnet0")
    inj.set_defaults(func=cmd_inject)
