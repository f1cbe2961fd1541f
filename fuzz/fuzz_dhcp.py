"""Fuzz target: the DHCP codec ``decode_dhcp``.

Contract: bytes decode to a DhcpMessage or raise DhcpDecodeError whose reason names a
counter (malformed_<reason>); what decodes says what the bytes say and encodes back to
itself."""

from __future__ import annotations

from vnet.node.stack.dhcp import (
    DECODE_REASONS, DhcpCounters, DhcpDecodeError, DhcpMessage, decode_dhcp, encode_dhcp,
)

MAX_LEN = 1500


def _seeds() -> list[bytes]:
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.stack.test_stk_dhcp_codec import SEEDS as CODEC_SEEDS
    return list(CODEC_SEEDS)


SEEDS = _seeds()


def TestOneInput(data: bytes) -> None:
    try:
        m = decode_dhcp(data)
    except DhcpDecodeError as e:
        assert e.reason in DECODE_REASONS, e.reason
        assert f"malformed_{e.reason}" in DhcpCounters.__slots__, e.reason
        return
    assert isinstance(m, DhcpMessage)
    assert m.xid == int.from_bytes(data[4:8], "big") and m.chaddr == data[28:34]
    assert (m.ciaddr, m.yiaddr, m.siaddr, m.giaddr) == (data[12:16], data[16:20],
                                                        data[20:24], data[24:28])
    assert m.msg_type is not None
    assert decode_dhcp(encode_dhcp(m)) == m
