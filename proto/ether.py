"""Ethernet constants (if_ether.h, if_packet.h) and MAC formatting, for every layer."""

from __future__ import annotations

# if_ether.h
ETH_ALEN = 6
ETH_HLEN = 14
ETH_ZLEN = 60  # minimum frame on real Ethernet (without FCS); this model does not pad
ETH_DATA_LEN = 1500
ETH_FRAME_LEN = 1514
ETH_MIN_MTU = 68
VLAN_HLEN = 4
VLAN_ETH_HLEN = ETH_HLEN + VLAN_HLEN

ETH_P_802_3_MIN = 0x0600  # below this the type field is an 802.3 length
ETH_P_802_3 = 0x0001  # Novell raw 802.3 (payload starts with 0xFFFF)
ETH_P_ALL = 0x0003  # every protocol: the tap (packet capture) type
ETH_P_802_2 = 0x0004  # 802.2 LLC
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD
ETH_P_8021AD = 0x88A8

# if_packet.h: skb->pkt_type
PACKET_HOST = 0  # to us
PACKET_BROADCAST = 1  # to all
PACKET_MULTICAST = 2  # to a group
PACKET_OTHERHOST = 3  # to someone else (seen only in promiscuous mode)
PACKET_OUTGOING = 4  # sent by us (what ETH_P_ALL taps see on transmit)
PACKET_LOOPBACK = 5

BROADCAST_MAC = b"\xff" * ETH_ALEN
ZERO_MAC = bytes(ETH_ALEN)


def mac_str(mac: bytes) -> str:
    """b"\\x02\\0\\0\\0\\0\\x01" -> "02:00:00:00:00:01" (the kernel's %pM)."""
    return bytes(mac).hex(":")
