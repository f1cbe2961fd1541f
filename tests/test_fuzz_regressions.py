"""Inputs the coverage-guided fuzzing (fuzz/) found breaking a decoder's contract, kept as
regression tests: each must be refused with the decoder's named error."""

from __future__ import annotations

import pytest

from vnet.proto.capture import Capture, FilterError


@pytest.mark.parametrize("expr", [
    "port \u00b2",            # isdigit() is true, int() refuses it
    "src port \u0663",        # ARABIC-INDIC DIGIT THREE
    "port " + "1" * 5000,     # beyond int()'s 4300-digit limit
    "udp and dst port \u00b9\u00b2",
])
def test_port_that_is_not_an_ascii_number_is_a_filter_error(expr):
    with pytest.raises(FilterError, match="capture filter"):
        Capture(expr)


def test_port_in_octal_means_what_tcpdump_says():
    cap = Capture("port 065")  # pcap-filter(7) numbers: a leading 0 is octal, 065 is 53
    frame = (bytes(12) + b"\x08\x00" + bytes([0x45]) + bytes(8) + b"\x11" + bytes(10)
             + (1000).to_bytes(2, "big") + (53).to_bytes(2, "big") + bytes(4))
    cap.offer(0.0, "in", frame)
    assert cap.matched == 1
