"""net_device: defaults, namespace, notifiers, addresses, MTU, flags, counters, operstate."""

from __future__ import annotations

import errno
import random

import pytest

from vnet.node.link import wire_pair
from vnet.node.netdevice import (
    ARPHRD_ETHER, IFF_ALLMULTI, IFF_BROADCAST, IFF_LOWER_UP, IFF_MULTICAST, IFF_PROMISC,
    IFF_RUNNING, IFF_UP, NET_ADDR_PERM, NET_ADDR_RANDOM, NET_ADDR_SET, NETDEV_CHANGE,
    NETDEV_CHANGEADDR, NETDEV_CHANGEMTU, NETDEV_DOWN, NETDEV_GOING_DOWN, NETDEV_REGISTER,
    NETDEV_UNREGISTER, NETDEV_UP, DeviceNamespace, NetdevError, alloc_etherdev,
    dev_change_flags, dev_close, dev_get_flags, dev_get_stats, dev_mc_add, dev_mc_del,
    dev_open, dev_set_allmulti, dev_set_mac_address, dev_set_mtu, dev_set_promiscuity,
    eth_addr_from_name, eth_hw_addr_random, eth_hw_addr_set, netif_carrier_ok,
    register_netdev, register_netdevice_notifier, unregister_netdev,
    unregister_netdevice_notifier,
)
from vnet.node.vnic import vnic_probe, vnic_remove


def test_alloc_etherdev_defaults(loop):
    dev = alloc_etherdev()
    assert (dev.mtu, dev.min_mtu, dev.tx_queue_len) == (1500, 68, 1000)
    assert dev.max_mtu == 1500  # ether_setup; the vnet driver raises it
    assert dev.broadcast == b"\xff" * 6
    assert (dev.type, dev.addr_len, dev.hard_header_len) == (ARPHRD_ETHER, 6, 14)
    assert dev.flags == IFF_BROADCAST | IFF_MULTICAST
    assert dev.watchdog_timeo == 5.0
    assert dev.promiscuity == 0 and dev.allmulti == 0


def test_vnic_probe_defaults(loop):
    ns = DeviceNamespace()
    dev = vnic_probe(ns, loop, wire_pair(loop)[0], node_name="n1")
    assert dev.name == "vnet0" and dev.ifindex == 1
    assert dev.max_mtu == 9000 and dev.mtu == 1500
    assert dev.dev_addr == eth_addr_from_name("n1") == dev.perm_addr
    assert not dev.flags & IFF_UP and dev.operstate == "DOWN"
    assert not netif_carrier_ok(dev)


def test_namespace_names_and_ifindexes(loop):
    ns = DeviceNamespace("node1")
    devs = [vnic_probe(ns, loop, wire_pair(loop)[0]) for _ in range(3)]
    assert [d.name for d in devs] == ["vnet0", "vnet1", "vnet2"]
    assert [d.ifindex for d in devs] == [1, 2, 3]
    assert ns.get("vnet1") is devs[1] and ns.get("nope") is None
    assert ns.get_by_index(3) is devs[2]
    unregister_netdev(devs[0])
    assert ns.devices() == devs[1:]
    again = vnic_probe(ns, loop, wire_pair(loop)[0])
    assert again.name == "vnet0" and again.ifindex == 4  # lowest free name, fresh ifindex
    other = DeviceNamespace("node2")
    assert vnic_probe(other, loop, wire_pair(loop)[0]).name == "vnet0"  # no global state


def test_register_errors(loop):
    ns = DeviceNamespace()
    dev = alloc_etherdev(name="eth0")
    dev.loop = loop
    register_netdev(ns, dev)
    dup = alloc_etherdev(name="eth0")
    dup.loop = loop
    with pytest.raises(NetdevError) as e:
        register_netdev(ns, dup)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(NetdevError) as e:
        ns.register_netdev(dev)
    assert e.value.errno == errno.EINVAL
    bad = alloc_etherdev(name="x" * 16)
    bad.loop = loop
    with pytest.raises(NetdevError):
        register_netdev(ns, bad)


def test_notifier_chain_sees_the_life_of_a_device(loop):
    ns = DeviceNamespace()
    far, near = wire_pair(loop)
    dev = vnic_probe(ns, loop, near, node_name="n")
    events = []
    register_netdevice_notifier(ns, lambda ev, d: events.append((ev, d.name)))
    assert events == [(NETDEV_REGISTER, "vnet0")]  # replayed for existing devices
    events.clear()

    far.open(lambda batch: None, lambda up: None)
    dev_open(dev)
    loop.run_ready()  # the PHY reports the link
    assert events == [(NETDEV_UP, "vnet0"), (NETDEV_CHANGE, "vnet0")]
    assert dev.operstate == "UP"
    events.clear()

    dev_set_mtu(dev, 9000)
    dev_set_mtu(dev, 9000)  # no change, no event
    dev_set_mac_address(dev, b"\x02\x11\x22\x33\x44\x55")
    far.unplug()
    loop.run_ready()
    assert events == [(NETDEV_CHANGEMTU, "vnet0"), (NETDEV_CHANGEADDR, "vnet0"),
                      (NETDEV_CHANGE, "vnet0")]
    assert dev.operstate == "DOWN"
    events.clear()

    vnic_remove(dev)
    assert events == [(NETDEV_GOING_DOWN, "vnet0"), (NETDEV_DOWN, "vnet0"),
                      (NETDEV_UNREGISTER, "vnet0")]
    assert ns.devices() == []


def test_notifier_registration_replays_up_and_unregistration_replays_down(loop):
    ns = DeviceNamespace()
    dev = vnic_probe(ns, loop, wire_pair(loop)[0])
    dev_open(dev)
    events = []

    def cb(ev, d):
        events.append(ev)

    register_netdevice_notifier(ns, cb)
    assert events == [NETDEV_REGISTER, NETDEV_UP]
    events.clear()
    unregister_netdevice_notifier(ns, cb)
    assert events == [NETDEV_DOWN, NETDEV_UNREGISTER]
    with pytest.raises(NetdevError):
        unregister_netdevice_notifier(ns, cb)


def test_mac_helpers():
    a = eth_addr_from_name("node-a")
    assert a == eth_addr_from_name("node-a") != eth_addr_from_name("node-b")
    assert len(a) == 6 and a[0] & 0x02 and not a[0] & 0x01
    dev = alloc_etherdev()
    eth_hw_addr_random(dev, random.Random(7))
    first = dev.dev_addr
    assert dev.addr_assign_type == NET_ADDR_RANDOM
    assert first[0] & 0x02 and not first[0] & 0x01
    eth_hw_addr_random(dev, random.Random(7))
    assert dev.dev_addr == first  # rng injected: deterministic
    eth_hw_addr_random(dev)
    assert dev.dev_addr[0] & 0x02 and not dev.dev_addr[0] & 0x01
    with pytest.raises(NetdevError):
        eth_hw_addr_set(dev, b"\x02\x00")


def test_vnic_probe_mac_choice(loop):
    ns = DeviceNamespace()
    mac = b"\x02\xaa\xbb\xcc\xdd\xee"
    assert vnic_probe(ns, loop, wire_pair(loop)[0], mac=mac, node_name="x").dev_addr == mac
    d = vnic_probe(ns, loop, wire_pair(loop)[0])
    assert d.addr_assign_type == NET_ADDR_RANDOM
    for bad in (b"\x01\x00\x5e\x00\x00\x01", bytes(6)):
        with pytest.raises(NetdevError) as e:
            vnic_probe(ns, loop, wire_pair(loop)[0], mac=bad)
        assert e.value.errno == errno.EADDRNOTAVAIL


@pytest.mark.parametrize("addr,err", [
    (b"\x01\x00\x5e\x00\x00\x01", errno.EADDRNOTAVAIL),
    (b"\xff\xff\xff\xff\xff\xff", errno.EADDRNOTAVAIL),
    (bytes(6), errno.EADDRNOTAVAIL),
    (b"\x02\x00\x00", errno.EINVAL),
])
def test_set_mac_address_validation(loop, addr, err):
    dev = vnic_probe(DeviceNamespace(), loop, wire_pair(loop)[0], node_name="n")
    before = dev.dev_addr
    with pytest.raises(NetdevError) as e:
        dev_set_mac_address(dev, addr)
    assert e.value.errno == err and isinstance(e.value, OSError)
    assert dev.dev_addr == before and dev.addr_assign_type == NET_ADDR_PERM


def test_set_mac_address_live_moves_the_hw_filter(bench, drv):
    b = bench().up()
    new = b"\x02\x12\x34\x56\x78\x9a"
    dev_set_mac_address(b.dev, new)
    assert b.dev.dev_addr == new and b.dev.addr_assign_type == NET_ADDR_SET
    b.inject([drv.make_frame(new, drv.OTHER, 1), drv.make_frame(b.mac, drv.OTHER, 2)])
    b.loop.advance(0.001)
    assert [drv.seq_of(f) for _, f in b.delivered] == [1]
    assert b.hw.rx_filtered == 1


def test_mtu_bounds_and_frame_limits_follow(bench, drv):
    b = bench().up()
    for bad in (67, 9001, -1):
        with pytest.raises(NetdevError) as e:
            dev_set_mtu(b.dev, bad)
        assert e.value.errno == errno.EINVAL
    assert b.dev.mtu == 1500
    dev_set_mtu(b.dev, 68)
    assert b.dev.mtu == 68
    b.inject([b.frame(1, size=68 + 18), b.frame(2, size=68 + 19)])
    b.loop.advance(0.001)
    assert [drv.seq_of(f) for _, f in b.delivered] == [1]
    assert dev_get_stats(b.dev).rx_length_errors == 1
    with pytest.raises(NetdevError) as e:
        b.send(b.frame(3, size=68 + 15))
    assert e.value.errno == errno.EMSGSIZE


def test_promiscuity_is_a_counter(bench):
    b = bench().up()
    dev = b.dev
    dev_set_promiscuity(dev, 1)  # sniffer 1
    dev_set_promiscuity(dev, 1)  # sniffer 2
    dev_set_promiscuity(dev, -1)  # sniffer 1 stops
    assert dev.promiscuity == 1 and dev.flags & IFF_PROMISC and b.hw.promisc
    dev_set_promiscuity(dev, -1)
    assert dev.promiscuity == 0 and not dev.flags & IFF_PROMISC and not b.hw.promisc
    with pytest.raises(NetdevError, match="below zero"):
        dev_set_promiscuity(dev, -1)
    assert dev.promiscuity == 0


def test_promisc_flag_reporting_as_linux(bench):
    b = bench().up()
    dev = b.dev
    dev_set_promiscuity(dev, 1)  # a packet socket's reference: not shown in ip link flags
    assert not dev_get_flags(dev) & IFF_PROMISC
    dev_change_flags(dev, dev_get_flags(dev) | IFF_PROMISC)  # ip link set promisc on
    dev_change_flags(dev, dev_get_flags(dev) | IFF_PROMISC)  # idempotent
    assert dev_get_flags(dev) & IFF_PROMISC and dev.promiscuity == 2
    dev_change_flags(dev, dev_get_flags(dev) & ~IFF_PROMISC)
    assert dev.promiscuity == 1 and dev.flags & IFF_PROMISC


def test_allmulti_is_a_counter(bench):
    b = bench().up()
    dev_set_allmulti(b.dev, 1)
    dev_set_allmulti(b.dev, 1)
    dev_set_allmulti(b.dev, -1)
    assert b.dev.flags & IFF_ALLMULTI and b.hw.allmulti
    dev_set_allmulti(b.dev, -1)
    assert not b.dev.flags & IFF_ALLMULTI and not b.hw.allmulti
    with pytest.raises(NetdevError):
        dev_set_allmulti(b.dev, -1)


def test_mc_list_is_refcounted_and_validated(bench):
    b = bench().up()
    group = b"\x01\x00\x5e\x01\x02\x03"
    dev_mc_add(b.dev, group)
    dev_mc_add(b.dev, group)
    dev_mc_del(b.dev, group)
    assert group in b.hw.mc_filter
    dev_mc_del(b.dev, group)
    assert group not in b.hw.mc_filter
    with pytest.raises(NetdevError) as e:
        dev_mc_del(b.dev, group)
    assert e.value.errno == errno.ENOENT
    with pytest.raises(NetdevError) as e:
        dev_mc_add(b.dev, b"\x02\x00\x00\x00\x00\x01")
    assert e.value.errno == errno.EINVAL


def test_flags_and_operstate_follow_admin_state_and_carrier(loop):
    ns = DeviceNamespace()
    far, near = wire_pair(loop)
    dev = vnic_probe(ns, loop, near)
    assert dev_get_flags(dev) == IFF_BROADCAST | IFF_MULTICAST and dev.operstate == "DOWN"
    dev_open(dev)
    loop.run_ready()  # far end not open: no carrier
    flags = dev_get_flags(dev)
    assert flags & IFF_UP and not flags & (IFF_RUNNING | IFF_LOWER_UP)
    assert dev.operstate == "DOWN" and not netif_carrier_ok(dev)
    far.open(lambda batch: None, lambda up: None)
    loop.run_ready()
    assert dev_get_flags(dev) & (IFF_UP | IFF_RUNNING | IFF_LOWER_UP) == (
        IFF_UP | IFF_RUNNING | IFF_LOWER_UP)
    assert dev.operstate == "UP" and netif_carrier_ok(dev)
    far.unplug()
    loop.run_ready()
    assert dev.operstate == "DOWN" and not dev_get_flags(dev) & IFF_RUNNING
    far.plug()
    loop.run_ready()
    assert dev.operstate == "UP"
    dev_close(dev)
    assert dev.operstate == "DOWN" and not dev_get_flags(dev) & (IFF_UP | IFF_RUNNING)
    dev_change_flags(dev, dev_get_flags(dev) | IFF_UP)  # ip link set up
    loop.run_ready()
    assert dev.operstate == "UP"


def test_operstate_unknown_for_a_driver_that_never_manages_carrier(loop):
    ns = DeviceNamespace()
    dev = alloc_etherdev(name="dummy%d")
    dev.loop = loop
    register_netdev(ns, dev)
    dev_open(dev)
    assert dev.operstate == "UNKNOWN"  # like `ip link` shows for dummy0
    assert dev_get_flags(dev) & IFF_RUNNING


def test_lowerlayerdown_for_a_stacked_device(loop):
    ns = DeviceNamespace()
    lower = vnic_probe(ns, loop, wire_pair(loop)[0])
    upper = alloc_etherdev(name="vlan%d")
    upper.loop = loop
    upper.iflink = lower.ifindex
    register_netdev(ns, upper)
    dev_open(upper)
    from vnet.node.netdevice import netif_carrier_off
    netif_carrier_off(upper)
    assert upper.operstate == "LOWERLAYERDOWN"


def test_dev_get_stats_is_a_fresh_snapshot(bench):
    b = bench().up()
    s = dev_get_stats(b.dev)
    s.rx_packets = 999
    assert dev_get_stats(b.dev).rx_packets == 0
    assert dev_get_stats(b.dev) is not dev_get_stats(b.dev)
    assert list(s.as_dict())[:4] == ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes"]


def test_open_needs_a_loop_and_a_driverless_device_drops_tx(loop, drv):
    from vnet.node.netdevice import NET_XMIT_DROP, dev_queue_xmit, netif_carrier_on
    from vnet.node.skbuff import alloc_skb, skb_put_data

    ns = DeviceNamespace()
    dev = alloc_etherdev(name="dummy%d")
    register_netdev(ns, dev)
    with pytest.raises(NetdevError, match="dev.loop"):
        dev_open(dev)
    dev.loop = loop
    dev_open(dev)
    netif_carrier_on(dev)
    skb = alloc_skb(60)
    skb_put_data(skb, drv.make_frame(drv.OTHER, dev.dev_addr, 1, size=60))
    skb.dev = dev
    assert dev_queue_xmit(skb) == NET_XMIT_DROP
    assert dev_get_stats(dev).tx_dropped == 1


def test_txqueuelen_alias_resizes_the_qdisc(loop):
    from vnet.node.netdevice import qdisc_get_stats

    dev = vnic_probe(DeviceNamespace(), loop, wire_pair(loop)[0])
    dev.txqueuelen = 50
    assert dev.tx_queue_len == 50 and qdisc_get_stats(dev).limit == 50
    with pytest.raises(NetdevError):
        dev.txqueuelen = -1


def test_the_driver_reaches_its_private_state_through_netdev_priv():
    # One accessor for the driver's state (netdev_priv), as every kernel driver: no
    # ``dev.priv`` in the driver, so the private area's layout is the core's business.
    import ast
    import inspect
    from vnet.node import vnic
    tree = ast.parse(inspect.getsource(vnic))
    direct = [node.lineno for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and node.attr == "priv"]
    assert direct == [], f"vnic.py reads dev.priv directly at lines {direct}"
