"""sk_buff: the packet buffer every layer of the driver model passes around.

Models ``struct sk_buff`` (include/linux/skbuff.h) for a linear buffer: one ``bytearray``
holds the bytes and four integer offsets describe it, exactly as in the kernel::

    head            data              tail              end
     | headroom      | packet bytes     | tailroom         |
     0              data               tail             len(buf)

``head`` is always 0 (the start of the bytearray), so ``skb_headroom == data`` and
``len == tail - data`` (no paged fragments, ``data_len`` is always 0). The helpers move the
offsets and never copy: ``skb_put``/``skb_push`` return a ``memoryview`` of the region they
open, for the caller to fill. The only copy on the hot path is the RX "DMA" into a fresh
buffer (``skb_from_frame``), which the kernel makes too.

Errors split by blame, as in the kernel: ``skb_put`` past the tailroom and ``skb_push`` past
the headroom are programming errors (the kernel BUG()s in skb_over_panic/skb_under_panic), so
they raise ``SkbOverPanic``/``SkbUnderPanic`` and leave the skb untouched; ``skb_pull`` past
``len`` is the normal "truncated packet" check and returns None.
"""

from __future__ import annotations

from typing import Any, Optional, Union

BytesLike = Union[bytes, bytearray, memoryview]

from vnet.proto.ether import (  # noqa: F401  (the kernel's names, re-exported for the driver)
    ETH_ALEN, ETH_DATA_LEN, ETH_FRAME_LEN, ETH_HLEN, ETH_MIN_MTU, ETH_P_802_2, ETH_P_802_3,
    ETH_P_802_3_MIN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ALL, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_ZLEN,
    PACKET_BROADCAST, PACKET_HOST, PACKET_LOOPBACK, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING,
    VLAN_ETH_HLEN, VLAN_HLEN,
)

# Headroom netdev_alloc_skb() reserves, so the stack can push headers without a copy
# (NET_SKB_PAD = max(32, L1_CACHE_BYTES) = 64 on x86-64).
NET_SKB_PAD = 64

_ETH_BROADCAST = b"\xff" * ETH_ALEN
_UNSET = -1  # the kernel marks an unset header offset with (u16)~0U


class SkbOverPanic(Exception):
    """skb_put (or skb_reserve) past the end of the buffer: the kernel's skb_over_panic BUG."""


class SkbUnderPanic(Exception):
    """skb_push (or a negative skb_reserve) before the head: the kernel's skb_under_panic BUG."""


class SkBuff:
    """``struct sk_buff`` over one linear bytearray (see the module docstring).

    Fields kept from the kernel: ``buf`` (the allocation), ``data``/``tail``/``end`` offsets
    (``head`` is 0), ``len``, ``protocol`` (host-order ethertype, set by eth_type_trans or by
    the sender), ``pkt_type`` (PACKET_*), ``dev``, ``mac_header`` and ``network_header``
    (offsets, -1 when unset) and ``cb``, a scratch slot a layer may use while it owns the skb
    (the kernel's ``skb->cb[48]``).
    """

    __slots__ = ("buf", "data", "tail", "end", "len", "protocol", "pkt_type", "dev",
                 "mac_header", "network_header", "cb")

    head = 0  # the start of ``buf``; a class constant, never moves

    def __init__(self, buf: bytearray, data: int = 0, tail: Optional[int] = None) -> None:
        self.buf = buf
        self.data = data
        self.tail = data if tail is None else tail
        self.end = len(buf)
        self.len = self.tail - data
        self.protocol = 0
        self.pkt_type = PACKET_HOST
        self.dev: Any = None
        self.mac_header = _UNSET
        self.network_header = _UNSET
        self.cb: Any = None

    def __repr__(self) -> str:
        dev = getattr(self.dev, "name", None)
        return (f"<SkBuff len={self.len} data={self.data} tail={self.tail} end={self.end} "
                f"protocol={self.protocol:#06x} pkt_type={self.pkt_type} dev={dev}>")

    def __bytes__(self) -> bytes:
        """The packet bytes from data to tail (a copy: for tests and debugging)."""
        return bytes(self.buf[self.data:self.tail])


# --- allocation -------------------------------------------------------------------------

def alloc_skb(size: int) -> SkBuff:
    """A new empty skb with ``size`` bytes of buffer, all of it tailroom (alloc_skb).

    Unlike the kernel, the size is not rounded up to a cache line, so the tailroom is exactly
    what was asked for.
    """
    if size < 0:
        raise ValueError(f"alloc_skb: size must be >= 0, got {size}")
    return SkBuff(bytearray(size))


def netdev_alloc_skb(dev: Any, length: int) -> SkBuff:
    """An skb for ``length`` bytes of received frame, with NET_SKB_PAD of headroom."""
    skb = alloc_skb(NET_SKB_PAD + length)
    skb.data = skb.tail = NET_SKB_PAD
    skb.dev = dev
    return skb


def dev_alloc_skb(length: int) -> SkBuff:
    """netdev_alloc_skb without a device (dev_alloc_skb)."""
    return netdev_alloc_skb(None, length)


def skb_from_frame(frame: BytesLike, headroom: int = NET_SKB_PAD) -> SkBuff:
    """netdev_alloc_skb + skb_put_data in one step: the single copy of a received frame.

    This is the RX "DMA": the frame's bytes land after ``headroom`` bytes of headroom in a
    fresh buffer and the skb covers them. It is on the per-frame path of both directions (the
    RX DMA, and whoever builds a frame to send), so it is written for speed: the buffer is
    grown from a ready-made headroom (one allocation, one copy) and the header fields are
    stored directly.
    """
    n = len(frame)
    buf = bytearray(_PAD if headroom == NET_SKB_PAD else bytes(headroom))
    buf += frame
    skb = _new_skb(SkBuff)
    skb.buf = buf
    skb.data = headroom
    skb.tail = skb.end = headroom + n
    skb.len = n
    skb.protocol = 0
    skb.pkt_type = PACKET_HOST
    skb.dev = None
    skb.mac_header = _UNSET
    skb.network_header = _UNSET
    skb.cb = None
    return skb


_PAD = bytes(NET_SKB_PAD)
_new_skb = SkBuff.__new__


def skb_clone(skb: SkBuff) -> SkBuff:
    """A second skb header over the same bytes (skb_clone): offsets are independent, the
    buffer is shared, so neither owner may write packet bytes the other can see."""
    c = SkBuff.__new__(SkBuff)
    c.buf = skb.buf
    c.data = skb.data
    c.tail = skb.tail
    c.end = skb.end
    c.len = skb.len
    c.protocol = skb.protocol
    c.pkt_type = skb.pkt_type
    c.dev = skb.dev
    c.mac_header = skb.mac_header
    c.network_header = skb.network_header
    c.cb = skb.cb
    return c


def skb_copy(skb: SkBuff) -> SkBuff:
    """A private copy of the whole buffer and header (skb_copy), safe to modify."""
    c = skb_clone(skb)
    c.buf = bytearray(skb.buf)
    return c


# --- offsets ----------------------------------------------------------------------------

def skb_headroom(skb: SkBuff) -> int:
    """Bytes free before data (skb_headroom)."""
    return skb.data


def skb_tailroom(skb: SkBuff) -> int:
    """Bytes free after tail (skb_tailroom)."""
    return skb.end - skb.tail


def skb_reserve(skb: SkBuff, length: int) -> None:
    """Move data and tail forward by ``length`` on an empty skb, making headroom (skb_reserve).

    A negative length gives headroom back, as in the kernel. Calling it on an skb that holds
    data is a mistake (the kernel warns): ValueError.
    """
    if skb.len:
        raise ValueError(f"skb_reserve: skb already holds {skb.len} bytes; reserve before skb_put")
    data = skb.data + length
    if data > skb.end:
        raise SkbOverPanic(f"skb_reserve: asked for {length} bytes, tailroom is {skb.end - skb.tail}")
    if data < 0:
        raise SkbUnderPanic(f"skb_reserve: asked for {length} bytes, headroom is {skb.data}")
    skb.data = skb.tail = data


def skb_put(skb: SkBuff, length: int) -> memoryview:
    """Extend the data at the tail by ``length`` bytes and return a view of them (skb_put).

    The new bytes are whatever the buffer held; fill the view. Past the tailroom this raises
    SkbOverPanic (the kernel's skb_over_panic) and leaves the skb as it was.
    """
    tail = skb.tail
    new_tail = tail + length
    if length < 0 or new_tail > skb.end:
        raise SkbOverPanic(f"skb_put: asked for {length} bytes, tailroom is {skb.end - tail} "
                           f"(len={skb.len}, end={skb.end}); allocate a bigger skb")
    skb.tail = new_tail
    skb.len += length
    return memoryview(skb.buf)[tail:new_tail]


def skb_put_zero(skb: SkBuff, length: int) -> memoryview:
    """skb_put, with the new bytes zeroed (skb_put_zero)."""
    view = skb_put(skb, length)
    view[:] = bytes(length)
    return view


def skb_put_data(skb: SkBuff, data: BytesLike) -> memoryview:
    """skb_put of len(data) bytes, filled with ``data`` (skb_put_data)."""
    length = len(data)
    tail = skb.tail
    new_tail = tail + length
    if new_tail > skb.end:
        raise SkbOverPanic(f"skb_put_data: asked for {length} bytes, tailroom is {skb.end - tail} "
                           f"(len={skb.len}, end={skb.end}); allocate a bigger skb")
    skb.buf[tail:new_tail] = data
    skb.tail = new_tail
    skb.len += length
    return memoryview(skb.buf)[tail:new_tail]


def skb_push(skb: SkBuff, length: int) -> memoryview:
    """Extend the data at the front by ``length`` bytes and return a view of them (skb_push).

    Used to prepend a header. Past the headroom this raises SkbUnderPanic (skb_under_panic)
    and leaves the skb as it was.
    """
    data = skb.data - length
    if length < 0 or data < 0:
        raise SkbUnderPanic(f"skb_push: asked for {length} bytes, headroom is {skb.data}; "
                            f"reserve more headroom with skb_reserve")
    skb.data = data
    skb.len += length
    return memoryview(skb.buf)[data:data + length]


def skb_pull(skb: SkBuff, length: int) -> Optional[memoryview]:
    """Remove ``length`` bytes from the front (skb_pull).

    Returns a view of the remaining data, or None (and changes nothing) when the skb holds
    fewer than ``length`` bytes: that is how a layer detects a truncated packet.
    """
    if length < 0 or length > skb.len:
        return None
    skb.data += length
    skb.len -= length
    return memoryview(skb.buf)[skb.data:skb.tail]


def skb_trim(skb: SkBuff, length: int) -> None:
    """Cut the data to ``length`` bytes by moving the tail back (skb_trim); no-op if shorter."""
    if 0 <= length < skb.len:
        skb.tail = skb.data + length
        skb.len = length


# --- headers ----------------------------------------------------------------------------

def skb_reset_mac_header(skb: SkBuff) -> None:
    """The MAC header starts at data (skb_reset_mac_header)."""
    skb.mac_header = skb.data


def skb_reset_network_header(skb: SkBuff) -> None:
    """The network header starts at data (skb_reset_network_header)."""
    skb.network_header = skb.data


def skb_mac_header_was_set(skb: SkBuff) -> bool:
    return skb.mac_header != _UNSET


def skb_mac_header(skb: SkBuff) -> memoryview:
    """A view from the MAC header to the tail: the whole frame after eth_type_trans."""
    if skb.mac_header == _UNSET:
        raise ValueError("skb_mac_header: the MAC header offset is not set "
                         "(eth_type_trans or skb_reset_mac_header sets it)")
    return memoryview(skb.buf)[skb.mac_header:skb.tail]


def skb_network_header(skb: SkBuff) -> memoryview:
    """A view from the network header to the tail (the L3 packet)."""
    if skb.network_header == _UNSET:
        raise ValueError("skb_network_header: the network header offset is not set")
    return memoryview(skb.buf)[skb.network_header:skb.tail]


def skb_data(skb: SkBuff) -> memoryview:
    """A view of the packet bytes, data to tail."""
    return memoryview(skb.buf)[skb.data:skb.tail]


def eth_type_trans(skb: SkBuff, dev: Any) -> int:
    """Classify a received Ethernet frame and strip its header (eth_type_trans).

    Sets ``skb.dev``, the MAC and network header offsets, ``pkt_type`` (BROADCAST, MULTICAST,
    OTHERHOST when the destination is not ``dev.dev_addr``, else HOST), pulls ETH_HLEN bytes
    and sets and returns ``protocol``: the type field, or ETH_P_802_3/ETH_P_802_2 when the
    field is an 802.3 length, as the kernel does. A frame shorter than ETH_HLEN is the
    caller's mistake (drivers check lengths first): ValueError.
    """
    d = skb.data
    if skb.len < ETH_HLEN:
        raise ValueError(f"eth_type_trans: {skb.len}-byte frame is shorter than ETH_HLEN; "
                         f"drop runts before calling it")
    buf = skb.buf
    skb.dev = dev
    skb.mac_header = d
    if buf[d] & 1:
        skb.pkt_type = PACKET_BROADCAST if buf[d:d + 6] == dev.broadcast else PACKET_MULTICAST
    elif buf[d:d + 6] != dev.dev_addr:
        skb.pkt_type = PACKET_OTHERHOST
    else:
        skb.pkt_type = PACKET_HOST
    proto = (buf[d + 12] << 8) | buf[d + 13]
    d += ETH_HLEN
    skb.data = skb.network_header = d
    skb.len -= ETH_HLEN
    if proto < ETH_P_802_3_MIN:
        # An 802.3 length field: raw IPX frames start with 0xFFFF, everything else is LLC.
        if skb.len >= 2 and buf[d] == 0xFF and buf[d + 1] == 0xFF:
            proto = ETH_P_802_3
        else:
            proto = ETH_P_802_2
    skb.protocol = proto
    return proto


def eth_hdr_proto(frame: BytesLike) -> int:
    """The type field of a whole Ethernet frame (bytes 12-13)."""
    return (frame[12] << 8) | frame[13]
