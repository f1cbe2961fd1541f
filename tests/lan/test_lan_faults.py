"""The LAN survives faults: a switch crash under traffic, a node cut off (frozen), a slow
consumer. Real switch and node processes over real ZeroMQ sockets; every wait polls for its
condition with a deadline, and what the faults cost is checked by exact counts."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.lan.helpers import fdb_macs, frame, poll_until, port_counters, stats64

HB_INTERVAL = 0.2
HB_TIMEOUT = 1.0
MARGIN = 2.0  # what "within the heartbeat timeout" may take beyond it on a loaded machine


# -- helpers -------------------------------------------------------------------------------


async def books(node) -> dict:
    """The node's TX-side counters: stats64, the link's, the stack's and the qdisc's."""
    s = await node.stats()
    qdisc = (await node.link())["qdisc_stats"]
    return {
        "stats64": s["stats64"],
        "link": s["link"],
        "stack_tx": s["stack"]["ether"]["tx_frames"],
        "arp": s["stack"]["arp"],
        "qdisc": qdisc,
    }


def delta(after: dict, before: dict, key: str) -> int:
    return after[key] - before[key]


async def carrier_is(node, up: bool) -> bool:
    return (await node.health())["carrier"] == up


async def all_carrier(nodes, up: bool) -> bool:
    return all([await carrier_is(n, up) for n in nodes])


def ip_bytes(ip: str) -> bytes:
    return bytes(int(x) for x in ip.split("."))


def is_garp_from(raw: bytes, node) -> bool:
    """A gratuitous ARP announcing ``node``: ARP with sender IP == target IP == node.ip and
    sender MAC node.mac (offsets: Ethernet 14, then htype ptype hlen plen op sha spa tha tpa)."""
    if len(raw) < 42 or raw[12:14] != b"\x08\x06":
        return False
    sha, spa, tpa = raw[22:28], raw[28:32], raw[38:42]
    return sha == bytes.fromhex(node.mac.replace(":", "")) and spa == tpa == ip_bytes(node.ip)


async def quiet_stacks(nodes) -> None:
    """Wait until every node has sent both gratuitous ARPs of its start-up announcement, so
    that no stack sends anything unless asked (exact counts need a quiet LAN)."""

    async def announced() -> bool:
        for n in nodes:
            if (await n.stats())["stack"]["arp"]["announcements_sent"] < 2:
                return False
        return True

    await poll_until(announced, "every node's start-up announcements (2 gratuitous ARPs) sent", timeout=10)


class Injector:
    """A background task that injects ``batch`` through ``node`` in a loop until stopped,
    counting every frame it offered to vnet0 (whatever became of it)."""

    def __init__(self, node, batch: list[bytes]) -> None:
        self.node = node
        self.batch = batch
        self.offered = 0
        self.calls = 0
        self._stop = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            got = await self.node.inject(self.batch)
            self.offered += got["sent"]
            self.calls += 1
            await asyncio.sleep(0.002)  # pacing, so the daemons keep a share of the 2 CPUs

    async def offered_at_least(self, n: int) -> bool:
        if self.task.done():
            self.task.result()  # raise what stopped it
        return self.offered >= n

    async def stop(self) -> int:
        self._stop.set()
        await self.task
        return self.offered


# -- 1. the switch crashes under traffic ---------------------------------------------------


@pytest.mark.vnet_lan(nodes=3, heartbeat_interval=HB_INTERVAL, heartbeat_timeout=HB_TIMEOUT)
async def test_switch_crash_under_traffic_is_counted_and_every_node_reattaches_by_itself(vnet_lan):
    lan = vnet_lan
    a, b, c = lan.nodes
    nodes = lan.nodes
    await quiet_stacks(nodes)
    links_before = {n.name: (await n.stats())["link"] for n in nodes}
    a_before = await books(a)
    captures = {n.name: await n.capture("arp") for n in nodes}

    sender = Injector(a, [frame(b.mac, a.mac, payload=i.to_bytes(4, "big")) for i in range(8)])
    try:
        await poll_until(lambda: sender.offered_at_least(200), "a sends while the switch is up")
        await lan.kill_switch()  # SIGKILL: no BYE, the nodes learn it from the silence
        await poll_until(lambda: all_carrier(nodes, False), "every node drops carrier",
                         timeout=HB_TIMEOUT + MARGIN)

        async def refused_without_carrier() -> bool:
            b_ = await books(a)
            return delta(b_["stats64"], a_before["stats64"], "tx_carrier_errors") >= 100

        await poll_until(refused_without_carrier, "a counts frames offered without carrier")
    finally:
        offered = await sender.stop()

    # The node's books: every frame offered to vnet0 (injected, or the stack's own) was sent
    # (tx_packets: handed to the link, including those in flight when the cable went, which
    # the link counts as tx_no_carrier) or dropped and counted: refused for lack of carrier
    # (tx_carrier_errors) or by the qdisc (full, or purged at carrier loss). Frames still in
    # the qdisc or the TX ring are on their way to one of those: poll until they got there.
    async def balanced():
        now = await books(a)
        stack = now["stack_tx"] - a_before["stack_tx"]
        accounted = (delta(now["stats64"], a_before["stats64"], "tx_packets")
                     + delta(now["stats64"], a_before["stats64"], "tx_carrier_errors")
                     + delta(now["qdisc"], a_before["qdisc"], "drops"))
        return now if offered + stack == accounted and now["qdisc"]["qlen"] == 0 else None

    try:
        a_after = await poll_until(balanced, "a's TX books to balance", timeout=5)
    except TimeoutError:
        now = await books(a)
        pytest.fail(f"a's TX books do not balance: offered {offered} + stack "
                    f"{now['stack_tx'] - a_before['stack_tx']}, stats64 {now['stats64']}, "
                    f"qdisc {now['qdisc']}, link {now['link']} (before: {a_before})")
    s_before, s_after = a_before["stats64"], a_after["stats64"]
    carrier_errors = delta(s_after, s_before, "tx_carrier_errors")
    assert carrier_errors > 0
    assert delta(s_after, s_before, "tx_packets") > 0
    # tx_dropped holds the carrier refusals, nothing else: frames purged from the qdisc at
    # carrier loss are the qdisc's drops alone (counted once, as dev_deactivate does)
    assert delta(s_after, s_before, "tx_dropped") == carrier_errors
    # the frames the TX ring had in flight when carrier went are among those sent, and lost
    lost_in_flight = a_after["link"]["tx_no_carrier"] - links_before[a.name]["tx_no_carrier"]
    assert 0 <= lost_in_flight <= delta(s_after, s_before, "tx_packets")

    # The switch comes back on the same endpoints; nobody restarts a node.
    await lan.start_switch()
    await poll_until(lambda: all_carrier(nodes, True), "every node re-attaches by itself", timeout=10)
    for n in nodes:
        link = (await n.stats())["link"]
        before = links_before[n.name]
        assert link["attaches"] - before["attaches"] == 1, f"{n.name}: {before} -> {link}"
        assert link["carrier_losses"] - before["carrier_losses"] == 1, f"{n.name}: {before} -> {link}"
    assert {p["name"] for p in await lan.switch.ports()} == {n.name for n in nodes}

    # Each node announced itself when carrier came back: a gratuitous ARP goes out of every
    # node, and the switch floods it (no test traffic has run since the restart). The node
    # that attached last sent its announcement when every other port was there: they all
    # received it.
    for n in nodes:
        cap = captures[n.name]

        async def announced(n=n, cap=cap):
            await cap.read(0.2)
            return any(f["dir"] == "out" and is_garp_from(f["frame"], n) for f in cap.frames)

        await poll_until(announced, f"{n.name} sends a gratuitous ARP after re-attaching", timeout=5, every=0)

    async def flooded_from_every_port():
        ports = await port_counters(lan)
        return all(ports[n.name]["flooded"] >= 1 for n in nodes)

    await poll_until(flooded_from_every_port, "the new switch floods every node's announcement", timeout=5)
    last = min(await lan.switch.ports(), key=lambda p: p["attached_for"])["name"]
    last_node = lan.node(last)
    for n in nodes:
        if n is last_node:
            continue
        cap = captures[n.name]

        async def heard(cap=cap):
            await cap.read(0.2)
            return any(f["dir"] == "in" and is_garp_from(f["frame"], last_node) for f in cap.frames)

        await poll_until(heard, f"{n.name} receives {last}'s gratuitous ARP", timeout=5, every=0)
    for cap in captures.values():
        await cap.stop()

    for x, y in itertools.permutations(nodes, 2):
        res = await x.ping(y.ip, count=2)
        assert res.ok, f"{x.name} -> {y.name} after the switch restart: {res.replies}"


# -- 2. a node is cut off (frozen) ----------------------------------------------------------


@pytest.mark.vnet_lan(nodes=3, heartbeat_interval=HB_INTERVAL, heartbeat_timeout=HB_TIMEOUT)
async def test_frozen_node_is_timed_out_flushed_and_reattaches_when_it_thaws(vnet_lan):
    lan = vnet_lan
    a, b, c = lan.nodes
    assert (await a.ping(c.ip)).ok and (await b.ping(c.ip)).ok
    assert (await fdb_macs(lan))[c.mac] == c.name
    totals_before = (await lan.switch.stats())["totals"]
    c_link_before = (await c.stats())["link"]

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await lan.pause_node(c.name)  # SIGSTOP: no frames, no heartbeats, nothing read
    try:
        async def gone():
            ports = {p["name"] for p in await lan.switch.ports()}
            return c.name not in ports and c.mac not in await fdb_macs(lan)

        await poll_until(gone, "the switch removes the frozen node's port and flushes its MAC",
                         timeout=HB_TIMEOUT + MARGIN, every=0.05)
        elapsed = loop.time() - t0
        # Removed for silence, not before: the last heartbeat came at most an interval (and a
        # keepalive tick) before the pause.
        assert elapsed >= HB_TIMEOUT - HB_INTERVAL - 0.15, f"removed after only {elapsed:.2f} s"
        totals = (await lan.switch.stats())["totals"]
        assert totals["timeouts"] - totals_before["timeouts"] == 1
        assert totals["detached"] - totals_before["detached"] == 1
        assert totals["byes"] == totals_before["byes"]
        assert {p["name"] for p in await lan.switch.ports()} == {a.name, b.name}
        # the others carry on meanwhile
        assert (await a.ping(b.ip)).ok
    finally:
        await lan.resume_node(c.name)

    # It thaws, finds itself forgotten (BYE, NOT_ATTACHED or its own timeout of the switch)
    # and says HELLO again by itself.
    async def back():
        ports = {p["name"] for p in await lan.switch.ports()}
        return c.name in ports and await carrier_is(c, True)

    await poll_until(back, "the thawed node re-attaches", timeout=10)
    c_link = (await c.stats())["link"]
    assert c_link["attaches"] - c_link_before["attaches"] == 1
    totals = (await lan.switch.stats())["totals"]
    assert totals["attached"] - totals_before["attached"] == 1
    assert totals["timeouts"] - totals_before["timeouts"] == 1
    for x, y in ((a, c), (c, a), (b, c), (c, b)):
        res = await x.ping(y.ip, count=2)
        assert res.ok, f"{x.name} -> {y.name} after the thaw: {res.replies}"
    assert (await fdb_macs(lan))[c.mac] == c.name


# -- 3. a slow consumer costs its own drops, not the others' traffic -----------------------

FILL_TIMEOUT = 40.0  # the frozen node must not time out while its queue fills


@pytest.mark.vnet_lan(nodes=3, heartbeat_interval=0.5, heartbeat_timeout=FILL_TIMEOUT)
async def test_slow_consumer_drops_only_its_own_frames(vnet_lan):
    lan = vnet_lan
    a, b, c = lan.nodes
    await quiet_stacks(lan.nodes)
    macs = await fdb_macs(lan)
    assert (macs[a.mac], macs[b.mac], macs[c.mac]) == (a.name, b.name, c.name)  # learned at HELLO
    sw_before = await lan.switch.stats()
    ports_before, totals_before = sw_before["per_port"], sw_before["totals"]
    a_before = await stats64(a)
    b_before = await stats64(b)
    c_before = await stats64(c)

    per_call_c, per_call_b = 16, 1
    batch = ([frame(c.mac, a.mac, payload=b"to-c", size=1000)] * per_call_c
             + [frame(b.mac, a.mac, payload=b"to-b", size=200)] * per_call_b)
    to_c = to_b = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await lan.pause_node(c.name)
    try:
        # Fill c's output queue (port_hwm messages, after the kernel's socket buffers): one
        # FRAMES message per inject, while b gets a frame in each of them too.
        calls = 0
        extra = None
        while extra is None or extra > 0:
            await a.inject(batch)
            to_c += per_call_c
            to_b += per_call_b
            calls += 1
            if extra is not None:
                extra -= 1
            elif calls % 50 == 0 and (await lan.switch.stats())["per_port"][c.name]["hwm"] > 0:
                extra = 100  # go on a while with c's queue full
            assert loop.time() - t0 < FILL_TIMEOUT - 10, \
                f"c's queue did not overflow after {calls} messages ({to_c} frames)"

        async def all_in():
            p = (await port_counters(lan))[a.name]
            return p["rx_packets"] - ports_before[a.name]["rx_packets"] == to_c + to_b

        await poll_until(all_in, "the switch receives every frame a sent", timeout=10)
        # b is not held up by c: it gets every one of its frames while c is still frozen
        async def b_has_all():
            return (await stats64(b))["rx_packets"] - b_before["rx_packets"] == to_b

        await poll_until(b_has_all, f"b receives all {to_b} frames meant for it", timeout=10)
        sw = await lan.switch.stats()
        paused_for = loop.time() - t0
    finally:
        await lan.resume_node(c.name)

    ports, totals = sw["per_port"], sw["totals"]

    def d(name: str, key: str) -> int:
        return ports[name][key] - ports_before[name][key]

    assert totals["timeouts"] == totals_before["timeouts"], f"c timed out (frozen {paused_for:.1f} s)"
    assert (await stats64(a))["tx_packets"] - a_before["tx_packets"] == to_c + to_b
    assert d(a.name, "rx_packets") == to_c + to_b and d(a.name, "flooded") == 0
    # every frame was known unicast: one copy each
    assert totals["forwarded"] - totals_before["forwarded"] == to_c + to_b
    # c's port: each copy made for it was sent or dropped, and counted
    sent_c, hwm_c, unroutable_c = d(c.name, "tx_packets"), d(c.name, "hwm"), d(c.name, "unroutable")
    assert hwm_c > 0, f"no hwm drops for c: {ports[c.name]}"
    assert sent_c + hwm_c + unroutable_c + d(c.name, "port_down") == to_c, \
        f"c: forwarded {to_c} != tx {sent_c} + hwm {hwm_c} + unroutable {unroutable_c}"
    assert totals["hwm"] - totals_before["hwm"] == hwm_c
    # b's port: all sent, none dropped
    assert d(b.name, "tx_packets") == to_b
    assert (d(b.name, "hwm"), d(b.name, "unroutable")) == (0, 0)
    b_now = await stats64(b)
    assert b_now["rx_packets"] - b_before["rx_packets"] == to_b
    assert b_now["rx_missed_errors"] == b_before["rx_missed_errors"]

    # Thawed, c takes in every frame the switch queued for it (none lost after the queue)
    async def c_has_queued():
        return (await stats64(c))["rx_packets"] - c_before["rx_packets"] == sent_c

    await poll_until(c_has_queued, f"c receives the {sent_c} frames the switch accepted for it", timeout=20)
    assert (await carrier_is(c, True))
    for x, y in ((c, a), (a, c), (b, c)):
        res = await x.ping(y.ip, count=2)
        assert res.ok, f"{x.name} -> {y.name} after the thaw: {res.replies}"
