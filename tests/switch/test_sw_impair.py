"""The sans-I/O impairments (switch/impair.py) with a fake clock: loss, bursts, delay, jitter,
rate and queue, duplication, corruption, reordering, settings and parsing."""

from __future__ import annotations

import pytest

from vnet.switch.impair import (
    COUNTERS,
    DelayLine,
    Impairment,
    format_settings,
    parse_params,
    parse_percent,
    parse_rate,
    parse_time,
)


def frames(n: int, size: int = 60) -> list[bytes]:
    """Distinct frames: a fixed header, then the index in the payload."""
    hdr = bytes.fromhex("020000000002" "020000000001" "88b5")
    return [hdr + i.to_bytes(4, "big") + bytes(size - 18) for i in range(n)]


def index(frame: bytes) -> int:
    return int.from_bytes(frame[14:18], "big")


def conserved(imp: Impairment, delivered: int, held: int = 0) -> bool:
    c = imp.counters
    return (c["frames"] + c["impair_duplicate"]
            == delivered + c["impair_loss"] + c["impair_queue"] + c["impair_flushed"] + held)


def test_no_setting_passes_every_frame_at_once_unchanged():
    imp = Impairment(seed=1)
    batch = frames(10)
    assert not imp.active and imp.describe() == "none"
    assert imp.apply(batch, 5.0) == [(5.0, f) for f in batch]
    assert imp.counters == {**dict.fromkeys(COUNTERS, 0), "frames": 10}


def test_random_loss_over_10000_frames_is_near_the_setting_and_counted_exactly():
    imp = Impairment(seed=42, loss=0.10)
    out = imp.apply(frames(10_000), 0.0)
    lost = imp.counters["impair_loss"]
    assert len(out) + lost == 10_000  # sent = delivered + impair_loss, exactly
    assert 900 <= lost <= 1100  # 10% within 1 point (the standard deviation is 0.3 points)
    assert all(at == 0.0 for at, _ in out)
    assert [index(f) for _, f in out] == sorted(index(f) for _, f in out)  # loss never reorders


def test_a_seed_makes_the_decisions_reproducible():
    params = dict(loss=0.2, duplicate=0.1, corrupt=0.1, delay=0.01, jitter=0.005)
    a = Impairment(seed=7, **params).apply(frames(2000), 1.0)
    b = Impairment(seed=7, **params).apply(frames(2000), 1.0)
    c = Impairment(seed=8, **params).apply(frames(2000), 1.0)
    assert a == b
    assert a != c
    imp = Impairment(seed=7, **params)
    imp.apply(frames(100), 0.0)
    imp.set(seed=7)  # re-seeding restarts the sequence
    assert imp.apply(frames(2000), 1.0) == a


def burst_lengths(lost: list[bool]) -> list[int]:
    runs, n = [], 0
    for x in lost:
        if x:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs + ([n] if n else [])


def test_gilbert_elliott_loses_in_bursts():
    # netem's "loss gemodel 1% 30%": bad state entered with p = 1%, left with r = 30%, loses
    # everything while bad (1-h = 100%) and nothing while good (1-k = 0%)
    imp = Impairment(seed=3, loss_burst=(0.01, 0.30, 1.0, 0.0))
    n = 100_000
    kept = {index(f) for _, f in imp.apply(frames(n), 0.0)}
    lost = [i not in kept for i in range(n)]
    assert sum(lost) == imp.counters["impair_loss"] == n - len(kept)
    stationary = 0.01 / (0.01 + 0.30)  # 3.2% lost on average
    assert abs(sum(lost) / n - stationary) < 0.006
    runs = burst_lengths(lost)
    mean_burst = sum(runs) / len(runs)
    assert abs(mean_burst - 1 / 0.30) < 0.4  # geometric bursts of mean 1/r = 3.3 frames

    # independent loss at the same rate makes bursts of about one frame
    plain = Impairment(seed=3, loss=stationary)
    kept = {index(f) for _, f in plain.apply(frames(n), 0.0)}
    runs = burst_lengths([i not in kept for i in range(n)])
    assert sum(runs) / len(runs) < 1.1


def test_gilbert_elliott_defaults_follow_netem():
    imp = Impairment(loss_burst=(0.05,))
    assert imp.loss_burst == (0.05, 0.95, 1.0, 0.0)  # r = 1 - p, 1-h = 100%, 1-k = 0%
    assert parse_params({"loss_burst": "1%,30%"}) == {"loss_burst": (0.01, 0.30)}


def test_delay_holds_every_frame_for_the_delay():
    imp = Impairment(delay=0.05)
    out = imp.apply(frames(5), 10.0)
    assert [at for at, _ in out] == [10.05] * 5
    assert imp.counters["impair_delayed"] == 5
    assert imp.held(10.04) == 5 and imp.held(10.05) == 0


def test_jitter_spreads_delays_within_bounds_and_reorders():
    imp = Impairment(seed=1, delay=0.020, jitter=0.005)
    out = imp.apply(frames(1000), 0.0)
    delays = [at for at, _ in out]
    assert all(0.015 <= d <= 0.025 for d in delays)
    assert max(delays) - min(delays) > 0.008  # actually spread
    by_time = [index(f) for _, f in sorted(out, key=lambda x: x[0])]
    assert by_time != sorted(by_time)  # netem's jitter reorders; so does this


def test_reorder_lets_a_share_of_frames_skip_the_delay():
    imp = Impairment(seed=5, delay=0.1, reorder=0.25, queue=10_000)
    out = imp.apply(frames(4000), 0.0)
    skipped = [f for at, f in out if at == 0.0]
    assert len(skipped) == imp.counters["impair_reorder"]
    assert 900 <= len(skipped) <= 1100
    assert len(out) == 4000  # none lost (the queue holds them all)
    # delivered in time order, the skipping frames overtake earlier delayed ones
    order = [index(f) for _, f in sorted(out, key=lambda x: x[0])]
    assert order != sorted(order)
    # reorder without a delay does nothing (as in netem)
    imp = Impairment(seed=5, reorder=0.5)
    assert imp.apply(frames(10), 0.0) == [(0.0, f) for f in frames(10)]
    assert imp.counters["impair_reorder"] == 0


def test_rate_limit_spaces_frames_and_tail_drops_when_the_queue_is_full():
    imp = Impairment(rate=1e6, queue=100)  # 1 Mbit/s: a 1250-byte frame takes 10 ms
    out = imp.apply(frames(1000, size=1250), 0.0)
    assert len(out) == 100
    assert imp.counters["impair_queue"] == 900
    assert conserved(imp, delivered=100)
    times = [at for at, _ in out]
    assert times == pytest.approx([0.01 * (i + 1) for i in range(100)])
    # half the queue has drained after 0.5 s (and a bit): exactly that much room again
    assert imp.held(0.505) == 50
    assert len(imp.apply(frames(60, size=1250), 0.505)) == 50
    assert imp.counters["impair_queue"] == 910


def test_rate_limit_bounds_throughput_of_a_sender_twice_as_fast():
    rate = 2e6  # bit/s
    imp = Impairment(rate=rate, queue=50)
    frame = frames(1, size=500)[0]  # 4000 bits: 2 ms at 2 Mbit/s
    deliveries = []
    now = 0.0
    for step in range(10_000):  # 10 s of fake time, one frame a millisecond (4 Mbit/s offered)
        now = step * 0.001
        deliveries += [at for at, _ in imp.apply([frame], now)]
    horizon = 10.0
    got_bits = sum(1 for at in deliveries if at <= horizon) * 4000
    assert got_bits <= rate * horizon + 4000  # never more than the rate (plus one frame)
    assert got_bits >= 0.95 * rate * horizon  # and the link stays busy
    assert imp.counters["impair_queue"] >= 4900  # about half the offered frames
    assert conserved(imp, delivered=len(deliveries))


def test_delay_queue_limit_tail_drops():
    imp = Impairment(delay=1.0, queue=10)
    assert len(imp.apply(frames(15), 0.0)) == 10
    assert imp.counters["impair_queue"] == 5
    assert len(imp.apply(frames(15), 1.0)) == 10  # the first ten fell due at 1.0


def test_duplication_adds_adjacent_copies_and_counts_them():
    imp = Impairment(seed=2, duplicate=0.10)
    batch = frames(5000)
    out = [f for _, f in imp.apply(batch, 0.0)]
    dups = imp.counters["impair_duplicate"]
    assert len(out) == 5000 + dups
    assert 400 <= dups <= 600
    pairs = sum(1 for x, y in zip(out, out[1:]) if x == y)
    assert pairs == dups
    assert sorted(set(out), key=index) == batch


def test_corruption_flips_one_bit_past_the_ethernet_header():
    imp = Impairment(seed=9, corrupt=1.0)
    batch = frames(200)
    out = [f for _, f in imp.apply(batch, 0.0)]
    assert imp.counters["impair_corrupt"] == 200
    for before, after in zip(batch, out):
        assert after[:14] == before[:14]
        diff = int.from_bytes(before, "big") ^ int.from_bytes(after, "big")
        assert bin(diff).count("1") == 1
    tagged = bytes.fromhex("020000000002020000000001" "8100" "0005" "88b5") + b"x"
    assert imp.apply([tagged], 0.0)[0][1][:18] == tagged[:18]  # nor in the 802.1Q tag
    imp.apply([bytes(14)], 0.0)  # nothing past the header: left alone, not counted
    assert imp.counters["impair_corrupt"] == 201
    some = Impairment(seed=9, corrupt=0.001)
    out = some.apply(frames(10_000), 0.0)
    changed = sum(1 for a, (_, b) in zip(frames(10_000), out) if a != b)
    assert changed == some.counters["impair_corrupt"] and 2 <= changed <= 25


def test_combined_loss_and_delay_apply_together():
    imp = Impairment(seed=11, loss=0.5, delay=0.05)
    out = imp.apply(frames(1000), 0.0)
    assert 400 <= imp.counters["impair_loss"] <= 600
    assert len(out) + imp.counters["impair_loss"] == 1000
    assert all(at == 0.05 for at, _ in out)


def test_set_changes_only_what_it_names_and_clear_resets():
    imp = Impairment()
    imp.set(loss=0.1, delay=0.05)
    imp.set(jitter=0.01)
    assert (imp.loss, imp.delay, imp.jitter) == (0.1, 0.05, 0.01)
    imp.set(loss_burst=(0.01, 0.3))  # the other loss model replaces the first
    assert imp.loss == 0.0 and imp.loss_burst == (0.01, 0.3, 1.0, 0.0) and imp.delay == 0.05
    with pytest.raises(ValueError, match="one of them"):
        imp.set(loss=0.1, loss_burst=(0.01,))
    imp.apply(frames(10), 0.0)
    imp.clear()
    assert not imp.active and imp.delay == 0.0 and imp.loss_burst is None
    assert imp.counters["frames"] == 10  # counters stay, as an interface's do
    for bad in (dict(loss=1.5), dict(delay=-1), dict(queue=0), dict(rate="fast"), dict(bogus=1)):
        with pytest.raises(ValueError):
            imp.set(**bad)


def test_flushed_frames_are_counted():
    imp = Impairment(delay=1.0)
    out = imp.apply(frames(3), 0.0)
    imp.flushed(len(out))
    assert imp.counters["impair_flushed"] == 3
    assert conserved(imp, delivered=0)


def test_delay_line_releases_due_frames_grouped_by_key_in_time_order():
    line = DelayLine()
    line.push(2.0, "b", b"b2")
    line.push(1.0, "a", b"a1")
    line.push(1.0, "b", b"b1")
    line.push(1.0, "a", b"a1'")  # same time: arrival order kept
    line.push(3.0, "a", b"a3")
    assert line.next_at() == 1.0 and len(line) == 5
    assert line.due(0.5) == {}
    assert line.due(2.0) == {"a": [b"a1", b"a1'"], "b": [b"b1", b"b2"]}
    assert line.next_at() == 3.0
    assert line.clear() == {"a": [b"a3"]} and line.next_at() is None


def test_parsing_units_and_errors():
    assert parse_percent("10%", "loss") == 0.10
    assert parse_percent("0.1%", "corrupt") == pytest.approx(0.001)
    assert parse_percent(25, "reorder") == 0.25  # numbers are percent
    assert parse_time("20ms", "delay") == pytest.approx(0.02)
    assert parse_time("500us", "delay") == pytest.approx(0.0005)
    assert parse_time("1.5s", "delay") == 1.5
    assert parse_time("0", "delay") == 0.0
    assert parse_rate("10mbit") == 10e6
    assert parse_rate("512kbit") == 512e3
    assert parse_rate("1Gbit") == 1e9
    for fn, text, needle in (
        (parse_percent, "10", "% sign"), (parse_percent, "150%", "0% to 100%"),
        (parse_time, "20", "unit"), (parse_time, "20 parsecs", "unit"),
        (parse_rate, "10mbps", "bytes per second"), (parse_rate, "fast", "bit, kbit, mbit or gbit"),
    ):
        with pytest.raises(ValueError, match=needle):
            fn(text, "x") if fn is not parse_rate else fn(text)
    assert parse_params({"loss": "10%", "delay": "20ms", "jitter": "5ms", "rate": "10mbit", "queue": "100",
                         "duplicate": "1%", "corrupt": "0.1%", "reorder": "25%", "seed": "7", "delay-x": None}) == {
        "loss": 0.1, "delay": 0.02, "jitter": 0.005, "rate": 10e6, "queue": 100, "duplicate": 0.01,
        "corrupt": pytest.approx(0.001), "reorder": 0.25, "seed": 7}
    with pytest.raises(ValueError, match="unknown impairment"):
        parse_params({"lag": "1s"})
    shown = format_settings(Impairment(loss=0.1, delay=0.02, rate=10e6).settings())
    assert shown["loss"] == "10%" and shown["delay"] == "20ms" and shown["rate"] == "10mbit"


def test_delay_line_removes_the_frames_of_given_keys():
    line = DelayLine()
    for i, key in enumerate("abab"):
        line.push(float(i), key, bytes([i]))
    assert line.keys() == {"a", "b"}
    assert line.remove({"b"}) == {"b": [b"\x01", b"\x03"]}
    assert line.next_at() == 0.0 and line.due(10.0) == {"a": [b"\x00", b"\x02"]}


def test_streams_of_one_seed_draw_differently():
    a = Impairment(seed=4, stream="in", loss=0.5).apply(frames(200), 0.0)
    b = Impairment(seed=4, stream="out", loss=0.5).apply(frames(200), 0.0)
    again = Impairment(seed=4, stream="in", loss=0.5).apply(frames(200), 0.0)
    assert a != b and a == again
