"""Ethernet II framing: the header codec, MAC helpers, and the interface state the layers share.

A frame here is a whole Ethernet frame as ``bytes``: destination MAC, source MAC, ethertype,
payload; no FCS and no padding. Padding short frames to ETH_ZLEN is the driver's job on TX
(as ``skb_padto`` in a Linux driver's xmit); on RX the layers above trim it using their own
length fields.
"""

from __future__ import annotations

import struct

from .common import Counters, StackError

from vnet.proto.ether import (  # noqa: F401  (re-exported for the stack's layers)
    BROADCAST_MAC, ETH_ALEN, ETH_HLEN, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_ZLEN,
    PACKET_BROADCAST, PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST, ZERO_MAC, mac_str,
)

ETH_FMT = "!6s6sH"
ETH_HDR = struct.Struct(ETH_FMT)

def parse_mac(text: str | bytes) -> bytes:
    """"02:00:00:00:00:01" (or "-" separated, or 6 raw bytes) -> 6 bytes; StackError if not."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        mac = bytes(text)
        if len(mac) != ETH_ALEN:
            raise StackError(f"a MAC address is 6 bytes, got {len(mac)}")
        return mac
    parts = str(text).replace("-", ":").split(":")
    try:
        if len(parts) != ETH_ALEN or not all(len(p) in (1, 2) for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise StackError(
            f"bad MAC address {text!r}: write six hex bytes, e.g. 02:00:00:00:00:01"
        ) from None


def unicast_mac(mac: str | bytes) -> bytes:
    """A MAC an interface may own: parsed, not multicast/broadcast, not all zeros."""
    mac = parse_mac(mac)
    if mac[0] & 1 or mac == ZERO_MAC:
        raise StackError(
            f"{mac_str(mac)} cannot be an interface address: it is "
            f"{'all zeros' if mac == ZERO_MAC else 'a multicast/broadcast address'}; "
            "use a unicast one such as 02:00:00:00:00:01 (locally administered)"
        )
    return mac


def eth_header(dst: bytes, src: bytes, proto: int) -> bytes:
    return ETH_HDR.pack(dst, src, proto)


class Netdev:
    """The interface as the stack sees it (the net_device fields the layers read).

    ``up`` is "administratively up with carrier": ``HostStack.link_up``/``link_down``.
    """

    __slots__ = ("mac", "mtu", "up")

    def __init__(self, mac: bytes, mtu: int) -> None:
        self.mac = mac
        self.mtu = mtu
        self.up = False


class EtherCounters(Counters):
    """rx_runts: shorter than an Ethernet header. rx_otherhost_dropped: unicast to another
    MAC (promiscuous NIC; for IPv4 also the device's rx_otherhost_dropped).
    rx_multicast_dropped: multicast to a group we have not joined (only 01:00:5e:00:00:01,
    all-hosts, is joined).
    rx_bad_src: multicast/broadcast source MAC. rx_unknown_type: ethertype with no handler
    (IPv6, VLAN tags, 802.3 length frames...). rx_link_down: arrived while the link was down.
    rx_no_device: from a driver device the stack was not given (``HostStack.add_device``).
    """

    __slots__ = (
        "rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "rx_runts", "rx_otherhost_dropped",
        "rx_multicast_dropped", "rx_bad_src", "rx_unknown_type", "rx_link_down",
        "rx_no_device",
    )
