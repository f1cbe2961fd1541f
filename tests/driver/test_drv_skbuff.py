"""sk_buff: offsets, the put/push/pull family, eth_type_trans."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vnet.node.netdevice import alloc_etherdev
from vnet.node.skbuff import (
    ETH_HLEN, ETH_P_802_2, ETH_P_802_3, ETH_P_ARP, ETH_P_IP, NET_SKB_PAD, PACKET_BROADCAST,
    PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST, SkbOverPanic, SkbUnderPanic, alloc_skb,
    dev_alloc_skb, eth_type_trans, skb_clone, skb_copy, skb_data, skb_from_frame,
    skb_headroom, skb_mac_header, skb_network_header, skb_pull, skb_push, skb_put,
    skb_put_data, skb_put_zero, skb_reserve, skb_tailroom, skb_trim,
)

MAC = b"\x02\x00\x00\x00\x00\x01"


def invariants(skb) -> None:
    assert skb.head == 0 <= skb.data <= skb.tail <= skb.end == len(skb.buf)
    assert skb.len == skb.tail - skb.data
    assert skb_headroom(skb) == skb.data
    assert skb_tailroom(skb) == skb.end - skb.tail


def test_alloc_reserve_put_push_pull_roundtrip():
    skb = alloc_skb(128)
    assert (skb.data, skb.tail, skb.end, skb.len) == (0, 0, 128, 0)
    skb_reserve(skb, 32)
    assert skb_headroom(skb) == 32 and skb_tailroom(skb) == 96
    skb_put_data(skb, b"payload")
    hdr = skb_push(skb, 4)
    hdr[:] = b"HDR:"
    assert bytes(skb) == b"HDR:payload"
    assert skb.len == 11
    rest = skb_pull(skb, 4)
    assert bytes(rest) == b"payload" and bytes(skb) == b"payload"
    invariants(skb)


def test_put_returns_writable_view_of_new_region():
    skb = alloc_skb(16)
    view = skb_put(skb, 3)
    view[:] = b"abc"
    assert bytes(skb) == b"abc"
    assert bytes(skb_put_zero(skb, 2)) == b"\0\0"
    assert skb.len == 5


def test_skb_put_past_tailroom_is_a_named_error_saying_asked_and_free():
    skb = alloc_skb(10)
    skb_put(skb, 8)
    with pytest.raises(SkbOverPanic, match=r"asked for 5 bytes, tailroom is 2"):
        skb_put(skb, 5)
    assert skb.len == 8 and skb.tail == 8  # unchanged
    with pytest.raises(SkbOverPanic):
        skb_put_data(skb, b"xyz")
    with pytest.raises(SkbOverPanic):
        skb_reserve(alloc_skb(4), 5)


def test_skb_push_past_headroom_raises_under_panic():
    skb = alloc_skb(10)
    skb_reserve(skb, 2)
    with pytest.raises(SkbUnderPanic, match="asked for 3 bytes, headroom is 2"):
        skb_push(skb, 3)
    assert skb.data == 2


def test_skb_pull_past_len_returns_none_and_changes_nothing():
    skb = alloc_skb(10)
    skb_put_data(skb, b"12345")
    assert skb_pull(skb, 6) is None
    assert bytes(skb) == b"12345"
    assert bytes(skb_pull(skb, 5)) == b""
    assert skb.len == 0


def test_reserve_on_nonempty_skb_is_refused():
    skb = alloc_skb(10)
    skb_put(skb, 1)
    with pytest.raises(ValueError, match="reserve before skb_put"):
        skb_reserve(skb, 2)


def test_dev_alloc_skb_has_net_skb_pad_headroom():
    skb = dev_alloc_skb(100)
    assert skb_headroom(skb) == NET_SKB_PAD
    assert skb_tailroom(skb) == 100


def test_skb_from_frame_is_one_copy_with_headroom():
    frame = bytearray(b"x" * 60)
    skb = skb_from_frame(frame)
    frame[0] = 0  # the skb holds its own copy
    assert bytes(skb) == b"x" * 60
    assert skb_headroom(skb) == NET_SKB_PAD
    invariants(skb)


def test_clone_shares_bytes_but_not_offsets_and_copy_is_private():
    skb = alloc_skb(20)
    skb_put_data(skb, b"abcdef")
    c = skb_clone(skb)
    skb_pull(c, 2)
    assert bytes(c) == b"cdef" and bytes(skb) == b"abcdef"
    assert c.buf is skb.buf
    d = skb_copy(skb)
    d.buf[0] = ord("Z")
    assert bytes(skb) == b"abcdef"


def test_skb_trim():
    skb = alloc_skb(10)
    skb_put_data(skb, b"abcdef")
    skb_trim(skb, 3)
    assert bytes(skb) == b"abc"
    skb_trim(skb, 10)
    assert bytes(skb) == b"abc"


def _frame(dst: bytes, proto: bytes, payload: bytes = b"\x45" * 46) -> bytes:
    return dst + b"\x02\x00\x00\x00\x00\x02" + proto + payload


@pytest.mark.parametrize("dst,pkt_type", [
    (MAC, PACKET_HOST),
    (b"\xff" * 6, PACKET_BROADCAST),
    (b"\x01\x00\x5e\x00\x00\x01", PACKET_MULTICAST),
    (b"\x33\x33\x00\x00\x00\x01", PACKET_MULTICAST),
    (b"\x02\x00\x00\x00\x00\x07", PACKET_OTHERHOST),
])
def test_eth_type_trans_classifies_destination(dst, pkt_type):
    dev = alloc_etherdev()
    dev.dev_addr = MAC
    frame = _frame(dst, b"\x08\x00")
    skb = skb_from_frame(frame)
    proto = eth_type_trans(skb, dev)
    assert proto == skb.protocol == ETH_P_IP
    assert skb.pkt_type == pkt_type
    assert skb.dev is dev
    assert skb.len == len(frame) - ETH_HLEN
    assert bytes(skb_mac_header(skb)) == frame  # the whole frame
    assert bytes(skb_network_header(skb)) == bytes(skb_data(skb)) == frame[ETH_HLEN:]


def test_eth_type_trans_8023_length_field():
    dev = alloc_etherdev()
    dev.dev_addr = MAC
    assert eth_type_trans(skb_from_frame(_frame(MAC, b"\x00\x2e", b"\xaa\xaa\x03" + bytes(43))),
                          dev) == ETH_P_802_2
    assert eth_type_trans(skb_from_frame(_frame(MAC, b"\x00\x2e", b"\xff\xff" + bytes(44))),
                          dev) == ETH_P_802_3
    assert eth_type_trans(skb_from_frame(_frame(MAC, b"\x08\x06")), dev) == ETH_P_ARP


def test_eth_type_trans_refuses_runts():
    with pytest.raises(ValueError, match="shorter than ETH_HLEN"):
        eth_type_trans(skb_from_frame(b"\x00" * 13), alloc_etherdev())


# --- property: any sequence of operations keeps the invariants and the bytes -----------

_ops = st.lists(st.one_of(
    st.tuples(st.just("reserve"), st.integers(-8, 64)),
    st.tuples(st.just("put"), st.integers(0, 64)),
    st.tuples(st.just("push"), st.integers(0, 64)),
    st.tuples(st.just("pull"), st.integers(0, 64)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 160), ops=_ops)
def test_property_offsets_stay_ordered_and_bytes_match_a_model(size, ops):
    skb = alloc_skb(size)
    model = b""  # what bytes(skb) must be
    counter = 0
    for op, n in ops:
        before = (skb.data, skb.tail, skb.len)
        try:
            if op == "reserve":
                skb_reserve(skb, n)
            elif op == "put":
                fill = bytes((counter + i) & 0xFF for i in range(n))
                counter += n
                skb_put_data(skb, fill)
                model += fill
            elif op == "push":
                fill = bytes((counter + i) & 0xFF for i in range(n))
                counter += n
                skb_push(skb, n)[:] = fill
                model = fill + model
            else:
                if skb_pull(skb, n) is None:
                    assert n > len(model)
                    assert (skb.data, skb.tail, skb.len) == before
                else:
                    model = model[n:]
        except (SkbOverPanic, SkbUnderPanic, ValueError):
            assert (skb.data, skb.tail, skb.len) == before  # a refused op changes nothing
        invariants(skb)
        assert bytes(skb) == model
