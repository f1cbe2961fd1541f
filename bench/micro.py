"""Per-frame CPU cost of each datapath stage, in one process with no sockets:
``python3 -m bench.micro``.

The process benchmark (bench/run.py) says how fast frames move; this says where the CPU
goes, stage by stage, so an optimisation can be judged without the noise of three processes
sharing two cores:

- ``tx``: the sending node: skb allocation, dev_queue_xmit, qdisc, ndo_start_xmit, TX ring,
  the TX DMA engine packing the batch for the wire (switch/wire.py), TX completion in NAPI;
- ``switch``: SwitchCore.handle on a FRAMES batch of one flow (parse, learn, look up, group
  by port), ``switch-mixed``: frames alternating between two output ports, and
  ``switch-vlan``: the one flow through 802.1Q ports (from an access port in VLAN 10 to a trunk
  that carries it tagged: the VLAN path, a tag pushed on every frame);
- ``flood``: SwitchCore.handle on broadcasts with 1,000 ports attached (``--ports``): a
  batch of one broadcast (one frame a message, as ARP requests come) and of 64, reported
  per broadcast and per delivered copy; the copies for one port stay one message (the
  batching per port), so the cost per copy is what a flood adds per port;
- ``rx``: the receiving node: the link's batch decode, RX DMA (filter, ring), IRQ, NAPI poll,
  eth_type_trans, netif_receive_skb, a counting handler.

The loop is node.loop.ManualLoop and the cable a stand-in Link that encodes (TX) or hands
over (RX) batches exactly as node/zmqlink.py does.
"""

from __future__ import annotations

import argparse
import json
import time

from bench.common import ETH_P_BENCH, mac, make_frame, records
from vnet.node.loop import ManualLoop
from vnet.node.netdevice import NET_XMIT_SUCCESS, DeviceNamespace, dev_add_pack, dev_open, dev_queue_xmit
from vnet.node.skbuff import skb_from_frame
from vnet.node.vnic import vnic_probe
from vnet.proto import wire


class _Link:
    """A Link whose send encodes the batch as zmqlink does, and whose rx the test drives."""

    def __init__(self) -> None:
        self.rx = None
        self.sent = 0

    def open(self, rx, carrier) -> None:
        self.rx = rx
        carrier(True)

    def send(self, frames) -> bool:
        wire.frames_msg(frames)
        self.sent += len(frames)
        return True

    def close(self) -> None:
        self.rx = None


def _node(loop: ManualLoop, my_mac: bytes, **kw):
    link = _Link()
    ns = DeviceNamespace()
    dev = vnic_probe(ns, loop, link, mac=my_mac, **kw)
    got = [0]

    def count(skb, dev) -> None:
        got[0] += 1

    dev_add_pack(ns, ETH_P_BENCH, count)
    dev_open(dev)
    loop.run_ready()
    return dev, link, got


def tx_cost(size: int, frames: int) -> float:
    loop = ManualLoop()
    dev, link, _ = _node(loop, mac(1))
    frame = make_frame(mac(2), mac(1), size)
    q = dev.qdisc
    fed = 0
    t = time.perf_counter()
    while fed < frames:
        room = q.limit - len(q.q)
        for _ in range(room):
            skb = skb_from_frame(frame)
            skb.dev = dev
            if dev_queue_xmit(skb) != NET_XMIT_SUCCESS:
                raise RuntimeError("qdisc drop in the micro benchmark")
        fed += room
        loop.run_ready()
    while q.q or dev.priv.hw.tx_pending:
        loop.run_ready()
    return (time.perf_counter() - t) / link.sent * 1e6


def rx_cost(size: int, frames: int, batch: int) -> float:
    loop = ManualLoop()
    dev, link, got = _node(loop, mac(2), rx_ring_size=max(256, batch))
    payload = records(make_frame(mac(2), mac(1), size), batch)
    rounds = max(1, frames // batch)
    t = time.perf_counter()
    for _ in range(rounds):
        link.rx(wire.unpack_frames(payload))
        loop.run_ready()
    dt = time.perf_counter() - t
    if got[0] != rounds * batch:
        raise RuntimeError(f"rx micro benchmark delivered {got[0]} of {rounds * batch}")
    return dt / got[0] * 1e6


def switch_cost(size: int, frames: int, batch: int, mixed: bool = False, vlan: bool = False) -> float:
    """One flow (every frame alike), or ``mixed``: frames alternating between two ports;
    ``vlan``: a is an access port in VLAN 10, b a trunk sending VLAN 10 tagged."""
    from vnet.switch.core import SwitchCore
    from vnet.switch.vlan import parse_spec

    vlans = {"a": parse_spec("access:10"), "b": parse_spec("trunk:10:native=10:native-tagged"),
             "c": parse_spec("access:10")} if vlan else None
    core = SwitchCore(vlans=vlans)
    core.handle(b"a", wire.hello("a", [mac(1)], 1500), 0.0)
    core.handle(b"b", wire.hello("b", [mac(2)], 1500), 0.0)
    core.handle(b"c", wire.hello("c", [mac(3)], 1500), 0.0)
    if mixed:
        two = records(make_frame(mac(2), mac(1), size), 1) + records(make_frame(mac(3), mac(1), size), 1)
        msg = [wire.MSG_FRAMES, two * (batch // 2)]
    else:
        msg = [wire.MSG_FRAMES, records(make_frame(mac(2), mac(1), size), batch)]
    rounds = max(1, frames // batch)
    t = time.perf_counter()
    for i in range(rounds):
        core.handle(b"a", msg, 1.0)
    dt = time.perf_counter() - t
    if core.totals.tx_packets != rounds * batch:
        raise RuntimeError(f"switch micro benchmark forwarded {core.totals.tx_packets} of {rounds * batch}")
    return dt / (rounds * batch) * 1e6


def flood_cost(ports: int, frames: int, batch: int) -> dict:
    """Broadcasts from one port of ``ports``: us per broadcast frame and per delivered copy."""
    from vnet.switch.core import SwitchCore

    core = SwitchCore(max_ports=max(ports, 1), hello_rate=0)
    for i in range(ports):
        name = f"p{i}"
        core.handle(name.encode(), wire.hello(name, [mac(i + 1)], 1500), 0.0)
    if len(core.port_list) != ports:
        raise RuntimeError(f"flood micro benchmark: {len(core.port_list)} of {ports} ports attached")
    msg = [wire.MSG_FRAMES, records(make_frame(b"\xff" * 6, mac(1), 60), batch)]
    rounds = max(1, frames // batch)
    out_messages = 0
    t = time.perf_counter()
    for _ in range(rounds):
        out_messages = len(core.handle(b"p0", msg, 1.0))
    dt = time.perf_counter() - t
    if out_messages != ports - 1:  # one message per port, the batch's copies in it
        raise RuntimeError(f"flood micro benchmark: {out_messages} messages out for {ports - 1} ports")
    per_frame = dt / (rounds * batch) * 1e6
    return {"us_per_broadcast": per_frame, "us_per_copy": per_frame / (ports - 1),
            "copies_per_s": (rounds * batch * (ports - 1)) / dt}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python3 -m bench.micro", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--ports", type=int, default=1000, help="ports attached for the flood stage (default 1000)")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    out = {}
    for batch in (1, 64):
        out[f"flood_{ns.ports}p_x{batch}"] = min((flood_cost(ns.ports, max(batch, ns.frames // 200), batch)
                                                  for _ in range(3)), key=lambda r: r["us_per_broadcast"])
    for size in (60, 1514):
        out[f"tx_{size}"] = min(tx_cost(size, ns.frames) for _ in range(3))
        out[f"switch_{size}"] = min(switch_cost(size, ns.frames, 64) for _ in range(3))
        out[f"switch-mixed_{size}"] = min(switch_cost(size, ns.frames, 64, mixed=True) for _ in range(3))
        out[f"switch-vlan_{size}"] = min(switch_cost(size, ns.frames, 64, vlan=True) for _ in range(3))
        out[f"rx_{size}"] = min(rx_cost(size, ns.frames, 64) for _ in range(3))
    if ns.json:
        print(json.dumps(out))
        return
    print(f"{'stage':<12} {'60 B us/frame':>14} {'1514 B us/frame':>16}")
    for stage in ("tx", "switch", "switch-mixed", "switch-vlan", "rx"):
        print(f"{stage:<12} {out[f'{stage}_60']:>14.3f} {out[f'{stage}_1514']:>16.3f}")
    for batch in (1, 64):
        f = out[f"flood_{ns.ports}p_x{batch}"]
        print(f"flood to {ns.ports} ports, {batch:>2} broadcasts a message: {f['us_per_broadcast']:.1f} us a broadcast, "
              f"{f['us_per_copy'] * 1000:.0f} ns a copy ({f['copies_per_s'] / 1e6:.2f} M copies/s), 60 B")


if __name__ == "__main__":
    main()
