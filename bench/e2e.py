"""The end-to-end harness: a vnet NIC on a ZmqLink, built from the library pieces the node
daemon uses (vnic_probe, dev_open, dev_queue_xmit, dev_add_pack), without the host stack.

One process per node (``python -m bench.worker node JSON``):

- ``mode: "tx"`` keeps the qdisc fed from inside the node's event loop: it hands frames
  (clones of one template skb, as pktgen's ``clone_skb``) to ``dev_queue_xmit`` while the
  qdisc has room, yields to the loop (where the TX DMA engine,
  TX completion and the qdisc's own softirq run) and starts again, for ``duration`` seconds.
  A NET_XMIT_DROP is counted (the qdisc counts it too); the feeder never offers more than the
  qdisc's free space, so in practice it never sees one. When the time is up it waits until
  the qdisc, the TX ring and TX completion are empty and reports.
- ``mode: "rx"`` counts the frames delivered to a ``dev_add_pack`` handler for the
  benchmark's ethertype, and stops when told how many were sent and they all arrived, or
  when nothing more arrived for ``idle`` seconds.

Both report their node counters (rtnl_link_stats64, ethtool -S, the qdisc's stats, the
link's), so the orchestrator can close the account: sent = delivered + counted drops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time

import zmq
import zmq.asyncio

from bench.common import ETH_P_BENCH, READY, RESULT, emit, make_frame, stdin_lines
from vnet.node.ethtool import ethtool_get_stats
from vnet.node.netdevice import (
    NET_XMIT_SUCCESS, DeviceNamespace, dev_add_pack, dev_get_stats, dev_open, dev_queue_xmit,
    qdisc_get_stats,
)
from vnet.node.skbuff import skb_clone, skb_from_frame, skb_mac_header
from vnet.node.vnic import vnic_probe, vnic_remove
from vnet.node.zmqlink import ZmqLink


def node_main(args: dict) -> None:
    asyncio.run(_node(args))


async def _node(args: dict) -> None:
    loop = asyncio.get_running_loop()
    ctx = zmq.asyncio.Context()
    name = args["name"]
    my_mac = bytes.fromhex(args["mac"])
    link = ZmqLink(ctx, args["endpoint"], lambda: (name, [my_mac], 1500))
    if args.get("no_flow_control"):
        link.flow_control = False  # the NIC then overruns its ring (rx_missed) instead of pausing
    ns = DeviceNamespace()
    dev = vnic_probe(ns, loop, link, mac=my_mac, node_name=name,
                     tx_ring_size=args.get("tx_ring", 256), rx_ring_size=args.get("rx_ring", 256),
                     **({"rx_usecs": args["rx_usecs"], "rx_frames": args["rx_frames"]}
                        if "rx_usecs" in args else {}))
    state = {"n": 0, "waiter": None}
    clock = time.monotonic
    mode = args["mode"]

    def count(skb, dev) -> None:
        state["n"] += 1

    def echo(skb, dev) -> None:
        frame = bytes(skb_mac_header(skb))
        out = skb_from_frame(frame[6:12] + frame[0:6] + frame[12:])
        out.dev = dev
        dev_queue_xmit(out)

    def pong(skb, dev) -> None:
        fut = state["waiter"]
        if fut is not None and not fut.done():
            fut.set_result(loop.time())

    dev_add_pack(ns, ETH_P_BENCH, {"echo": echo, "ping": pong}.get(mode, count))
    dev_open(dev)
    deadline = loop.time() + 15
    while not dev.carrier:
        if loop.time() > deadline:
            raise SystemExit(f"{name}: no carrier from the switch within 15 s")
        await asyncio.sleep(0.01)
    reader = stdin_lines()
    emit(READY, {"pid": os.getpid()})
    if mode == "tx":
        result = await _transmit(loop, dev, reader, args)
    elif mode == "ping":
        result = await _ping(loop, dev, reader, args, state)
    elif mode == "echo":
        await _next_command(reader, "stop")
        result = {}
    else:
        result = await _receive(loop, state, reader, args, clock)
    result.update(_counters(dev, link))
    emit(RESULT, result)
    vnic_remove(dev)  # ifdown: the link says BYE
    link.close()
    ctx.term()


async def _next_command(reader, word: str) -> str:
    while True:
        for line in reader.poll():
            if line.startswith(word):
                return line
        if reader.eof:
            raise SystemExit(f"stdin closed while waiting for {word!r}")
        await asyncio.sleep(0.01)


async def _transmit(loop, dev, reader, args: dict) -> dict:
    frame = make_frame(bytes.fromhex(args["dst"]), bytes.fromhex(args["mac"]), args["size"])
    q = dev.qdisc
    hw = dev.priv.hw
    await _next_command(reader, "go")
    fed = not_queued = 0
    yields = 0
    clock = time.monotonic
    t0 = clock()
    end = t0 + args["duration"]
    xmit = dev_queue_xmit
    # As pktgen's clone_skb: every frame is a clone of one template skb (its own sk_buff
    # header over shared bytes, which nothing on the TX path writes), so the generator's
    # cost is not a buffer allocation and copy per frame.
    template = skb_from_frame(frame)
    template.dev = dev
    clone = skb_clone
    while True:
        room = q.limit - len(q.q)
        if room > 0:
            for _ in range(room):
                skb = clone(template)
                if xmit(skb) != NET_XMIT_SUCCESS:
                    not_queued += 1
            fed += room
            if clock() >= end:
                break
        await asyncio.sleep(0)  # let the TX engine, completions and the qdisc's softirq run
        yields += 1
    t1 = clock()
    # Drain: the qdisc empties into the ring, the ring onto the link, completions are cleaned.
    deadline = t1 + 30
    while q.q or hw.tx_pending or hw.tx_done:
        if clock() > deadline:
            break
        await asyncio.sleep(0.001)
    t2 = clock()
    return {"fed": fed, "not_queued": not_queued, "t0": t0, "t1": t1, "t_drained": t2,
            "yields": yields}


async def _ping(loop, dev, reader, args: dict, state: dict) -> dict:
    """Round trips of one frame to an echoing node: the driver path's RTT, without a stack."""
    frame = make_frame(bytes.fromhex(args["dst"]), bytes.fromhex(args["mac"]), args["size"])
    await _next_command(reader, "go")
    rtts = []
    for i in range(args["warmup"] + args["count"]):
        fut = state["waiter"] = loop.create_future()
        skb = skb_from_frame(frame)
        skb.dev = dev
        sent = loop.time()
        dev_queue_xmit(skb)
        when = await asyncio.wait_for(fut, 5.0)
        if i >= args["warmup"]:
            rtts.append((when - sent) * 1e6)
    return {"rtts_us": rtts}


async def _receive(loop, state: dict, reader, args: dict, clock) -> dict:
    expected = None
    expected_at = 0.0
    idle = args.get("idle", 1.0)
    deadline = clock() + args.get("timeout", 300)
    last_n = 0
    last_change = clock()
    first = 0.0
    last = 0.0
    samples = []
    # Sampling the count every millisecond costs nothing per frame; ``last`` is the time of
    # the sample that first saw the final count (at most ~1 ms late).
    while True:
        await asyncio.sleep(0.001)
        now = clock()
        n = state["n"]
        if n != last_n:
            if not last_n:
                first = now
            last_n = n
            last = last_change = now
            samples.append((now, n))
        for line in reader.poll():
            if line.startswith("expect"):
                expected = int(line.split()[1])
                expected_at = now
        if expected is not None and (n >= expected or now - max(last_change, expected_at) > idle):
            break
        if now > deadline:
            break
    return {"delivered": state["n"], "first": first, "last": last, "samples": samples}


def _counters(dev, link: ZmqLink) -> dict:
    return {
        "stats64": dataclasses.asdict(dev_get_stats(dev)),
        "ethtool": ethtool_get_stats(dev),
        "qdisc": dataclasses.asdict(qdisc_get_stats(dev)),
        "link": {"tx_batches": link.tx_batches, "tx_again": link.tx_again,
                 "rx_batches": link.rx_batches, "rx_malformed": link.rx_malformed,
                 "carrier_losses": link.carrier_losses},
    }


if __name__ == "__main__":
    import json

    node_main(json.loads(sys.argv[1]))
