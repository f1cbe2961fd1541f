"""PingStats and the ping(8) formatting helpers, and a ping session as the CLI would run it."""

from __future__ import annotations

from vnet.node.stack import parse_ip as ip  # wire-form addresses
from vnet.node.stack import (
    EchoReply, NeighFailed, PingStats, format_echo_reply, format_rtt, format_unreachable,
)
from vnet.node.stack.testing import make_lan


def test_summary_like_ping():
    s = PingStats()
    for rtt in (0.000321, 0.000373, 0.000512):
        s.on_transmit()
        s.on_reply(rtt)
    assert s.summary_lines(2.0034) == [
        "3 packets transmitted, 3 received, 0% packet loss, time 2003ms",
        "rtt min/avg/max/mdev = 0.321/0.402/0.512/0.080 ms",
    ]
    assert s.format("10.0.0.2", 2.0034).splitlines()[0] == "--- 10.0.0.2 ping statistics ---"
    assert s.rtt_us() == (321, 402, 512, 80)


def test_loss_errors_duplicates():
    s = PingStats()
    for _ in range(3):
        s.on_transmit()
    s.on_reply(0.0015)
    assert s.loss_percent == 100 * 2 / 3
    assert s.summary_lines(2.0) == [
        "3 packets transmitted, 1 received, 66.6667% packet loss, time 2000ms",
        "rtt min/avg/max/mdev = 1.500/1.500/1.500/0.000 ms",
    ]
    s.on_reply(0.0025, duplicate=True)
    s.on_error()
    assert s.summary_lines(2.0)[0] == ("3 packets transmitted, 1 received, +1 duplicates, "
                                       "+1 errors, 66.6667% packet loss, time 2000ms")
    e = PingStats()
    for _ in range(5):
        e.on_transmit()
        e.on_error()
    assert e.summary_lines(4.0954) == [
        "5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4095ms"]
    assert PingStats().summary_lines(0) == ["0 packets transmitted, 0 received"]


def test_reply_line_formats():
    ev = EchoReply(ip("10.0.0.2"), 1, 1, 64, 64, b"")
    assert format_echo_reply(ev, 0.000321) == \
        "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.321 ms"
    assert format_echo_reply(ev) == "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64"
    assert [format_rtt(t) for t in (0.000321, 0.0012345, 0.0123456, 0.1234)] == [
        "0.321", "1.23", "12.3", "123"]
    assert format_unreachable("10.0.0.1", 4) == \
        "From 10.0.0.1 icmp_seq=4 Destination Host Unreachable"


def test_ping_session_with_unreachable_host():
    """What `vnet ping` does: send once a second, match replies, report ARP failures."""
    hub = make_lan(2)
    stats, sent, lines = PingStats(), {}, []
    t0 = hub.now
    for seq in range(1, 6):
        target = "10.0.0.2" if seq <= 2 else "10.0.0.9"
        hub.call("a", "send_echo", target, 0x99, seq, 56)
        stats.on_transmit()
        sent[seq] = hub.now
        for ev in hub.events("a"):
            if isinstance(ev, EchoReply) and ev.ident == 0x99:
                stats.on_reply(hub.now + 0.0004 - sent[ev.seq])
                lines.append(format_echo_reply(ev, hub.now + 0.0004 - sent[ev.seq]))
        hub.advance(1.0)
        for ev in hub.events("a"):
            if isinstance(ev, NeighFailed):
                for _ in range(ev.dropped):
                    stats.on_error()
                    lines.append(format_unreachable("10.0.0.1", 0))
    assert lines[:2] == ["64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.400 ms",
                         "64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.400 ms"]
    assert (stats.received, stats.errors) == (2, 3)  # seqs 3, 4, 5 failed at t0+5
    assert stats.summary_lines(hub.now - t0 - 1)[0] == \
        "5 packets transmitted, 2 received, +3 errors, 60% packet loss, time 4000ms"
