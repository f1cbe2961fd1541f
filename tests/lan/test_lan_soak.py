"""Exact accounting: every frame that enters the LAN is delivered or counted at a named drop.

Eight nodes send a mix of broadcast, known unicast and unknown unicast frames (plus the ARP and
ICMP their stacks send) while the switch is restarted cleanly in the middle. Afterwards, with
the LAN quiet, the counters of every hop must add up exactly:

  node TX      driver tx_packets  == link tx_frames + link tx_no_carrier           (per node)
  node -> sw   sum link tx_frames  == sum over both switches of accepted + ingress drops
  switch       sum forwarded       == sum over both switches of tx_packets + egress drops
  sw -> node   sum sw tx_packets   == sum link rx_frames + rx_not_attached
  node RX      link rx_frames      == rx_packets + length errors + missed + filtered  (per node)

"accepted" is rx_packets (which includes same_port); the ingress drops are runt, oversize,
bad_src, port_down, port_security and unknown_peer (frames that reached a switch that no
longer had the node attached: the closing one's drain); the egress drops are hwm, unroutable
and port_down. Frames offered while carrier was down are counted by the node (tx_dropped,
tx_carrier_errors) before they reach the link, so they do not enter these sums.
"""

from __future__ import annotations

import asyncio
import random

from tests.lan.helpers import frame, poll_until, pytest

NODES = 8
PHASE_BATCHES = 25  # per node and phase
BATCH = 24  # frames per inject
UNKNOWN_MAC = "02:00:5e:00:99:99"  # nobody has it: flooded as unknown unicast

INGRESS_DROPS = ("runt", "oversize", "bad_src", "port_down", "port_security", "unknown_peer")
EGRESS_DROPS = ("hwm", "unroutable")


async def _traffic(lan, node, rng: random.Random, batches: int) -> int:
    """Inject ``batches`` mixed batches from ``node``; returns the frames handed to it."""
    peers = [n for n in lan.nodes if n is not node]
    sent = 0
    for _ in range(batches):
        frames = []
        for _ in range(BATCH):
            r = rng.random()
            if r < 0.2:
                dst = "ff:ff:ff:ff:ff:ff"
            elif r < 0.3:
                dst = UNKNOWN_MAC
            else:
                dst = rng.choice(peers).mac
            frames.append(frame(dst, node.mac, size=rng.randrange(60, 600)))
        await node.inject(frames)
        sent += len(frames)
        await asyncio.sleep(0)  # let the other nodes' tasks interleave
    return sent


async def _snapshot(lan) -> tuple[dict, dict]:
    nodes = dict(zip((n.name for n in lan.nodes), await asyncio.gather(*(n.stats() for n in lan.nodes))))
    return nodes, await lan.switch.stats()


def _key(snap: tuple[dict, dict]) -> tuple:
    nodes, sw = snap
    return (sorted((name, sorted(s["link"].items()), sorted(s["stats64"].items())) for name, s in nodes.items()),
            sorted(sw["totals"].items()))


async def _quiet(lan) -> tuple[dict, dict]:
    """The counters once two snapshots in a row agree (nothing in flight)."""
    last = None

    async def settled():
        nonlocal last
        snap = await _snapshot(lan)
        same = last is not None and _key(snap) == _key(last)
        last = snap
        return snap if same else None

    return await poll_until(settled, "the LAN to go quiet", timeout=30, every=0.3)


@pytest.mark.vnet_lan(nodes=NODES, heartbeat_interval=0.2, heartbeat_timeout=1.0)
async def test_every_frame_is_delivered_or_counted_across_a_switch_restart(vnet_lan):
    lan = vnet_lan
    rng = random.Random(6)
    nodes = lan.nodes

    async def carrier(up: bool) -> bool:
        return all(h["carrier"] == up for h in await asyncio.gather(*(n.health() for n in nodes)))

    # phase 1: traffic; the switch is restarted while the second half of it runs
    first = [asyncio.create_task(_traffic(lan, n, random.Random(rng.random()), PHASE_BATCHES)) for n in nodes]

    async def flowing():
        return (await lan.switch.stats())["totals"]["rx_packets"] >= NODES * BATCH * 5

    await poll_until(flowing, "traffic to flow before the restart", timeout=15)
    old = await lan.restart_switch()
    sent = sum(await asyncio.gather(*first))
    await poll_until(lambda: carrier(True), "every node to re-attach to the new switch", timeout=15)
    # phase 2: traffic through the new switch
    sent += sum(await asyncio.gather(*(_traffic(lan, n, random.Random(rng.random()), PHASE_BATCHES) for n in nodes)))
    assert sent == 2 * NODES * PHASE_BATCHES * BATCH

    node_stats, new = await _quiet(lan)
    switches = [old["totals"], new["totals"]]

    def sw(name: str) -> int:
        return sum(t[name] for t in switches)

    def node(section: str, name: str) -> int:
        return sum(s[section][name] for s in node_stats.values())

    # node: what the tests handed over was sent or dropped at a named counter (the stacks'
    # ARP and ICMP come on top, hence >=)
    assert node("stats64", "tx_packets") + node("stats64", "tx_dropped") >= sent
    # node TX: everything the driver sent went to the switch or was lost with the cable
    for name, s in node_stats.items():
        assert s["stats64"]["tx_packets"] == s["link"]["tx_frames"] + s["link"]["tx_no_carrier"], name
    # node -> switch
    accepted = sw("rx_packets")
    assert node("link", "tx_frames") == accepted + sum(sw(d) for d in INGRESS_DROPS)
    # the switch: every copy it made was sent or dropped at egress
    assert sw("port_down") == 0 and sw("malformed") == 0
    assert sw("forwarded") == sw("tx_packets") + sum(sw(d) for d in EGRESS_DROPS)
    # switch -> node
    assert sw("tx_packets") == node("link", "rx_frames") + node("link", "rx_not_attached")
    # node RX
    for name, s in node_stats.items():
        st = s["stats64"]
        assert s["link"]["rx_frames"] == (st["rx_packets"] + st["rx_length_errors"] + st["rx_missed_errors"]
                                          + s["ethtool"]["rx_filtered"]), name

    # and the account is not empty: the traffic crossed, the restart happened mid-stream
    assert accepted > sent // 2
    assert sw("forwarded") > accepted  # broadcasts and unknown unicast fanned out
    assert old["totals"]["rx_packets"] > 0 and new["totals"]["rx_packets"] > 0
    assert old["totals"]["detached"] == NODES  # the old switch said BYE to all of them
    assert all(s["link"]["attaches"] == 2 for s in node_stats.values())
