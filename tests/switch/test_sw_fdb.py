"""The forwarding database, driven by a fake clock."""

import os

import pytest

from vnet.switch.fdb import Fdb, FdbEntry, Learn

A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")
C = bytes.fromhex("020000000003")


def test_learn_and_lookup():
    fdb = Fdb(ageing_time=10)
    assert fdb.lookup(A, 0, 0.0) is None
    assert fdb.learn(A, 0, "p1", 0.0) is Learn.LEARNED
    assert fdb.lookup(A, 0, 1.0) == "p1"
    assert fdb.learn(A, 0, "p1", 2.0) is Learn.REFRESHED
    assert fdb.learned == 1 and len(fdb) == 1


def test_vlan_is_part_of_the_key():
    fdb = Fdb()
    fdb.learn(A, 0, "p1", 0.0)
    fdb.learn(A, 10, "p2", 0.0)
    assert fdb.lookup(A, 0, 0.0) == "p1"
    assert fdb.lookup(A, 10, 0.0) == "p2"
    assert fdb.lookup(A, 20, 0.0) is None
    assert fdb.moves == 0 and len(fdb) == 2


def test_ageing_hides_then_expire_removes():
    fdb = Fdb(ageing_time=10)
    fdb.learn(A, 0, "p1", 0.0)
    fdb.learn(B, 0, "p1", 5.0)
    assert fdb.lookup(A, 0, 9.9) == "p1"
    assert fdb.lookup(A, 0, 10.0) is None  # aged, though not yet removed
    assert [e.mac for e in fdb.entries(10.0)] == [B]
    dead = fdb.expire(10.0)
    assert [e.mac for e in dead] == [A] and isinstance(dead[0], FdbEntry)
    assert fdb.aged == 1 and len(fdb) == 1
    assert fdb.lookup(B, 0, 14.0) == "p1"
    assert [e.mac for e in fdb.expire(15.0)] == [B]
    assert len(fdb) == 0


def test_refresh_keeps_entry_alive():
    fdb = Fdb(ageing_time=10)
    fdb.learn(A, 0, "p1", 0.0)
    fdb.learn(B, 0, "p1", 1.0)
    fdb.learn(A, 0, "p1", 8.0)  # A is now younger than B
    assert [e.mac for e in fdb.expire(11.0)] == [B]
    assert fdb.lookup(A, 0, 17.0) == "p1"


def test_ageing_zero_never_ages():
    fdb = Fdb(ageing_time=0)
    fdb.learn(A, 0, "p1", 0.0)
    assert fdb.lookup(A, 0, 1e9) == "p1"
    assert fdb.expire(1e9) == []
    fdb.set_ageing_time(5)
    assert fdb.lookup(A, 0, 1e9) is None
    assert len(fdb.expire(1e9)) == 1


def test_set_ageing_time_validates():
    fdb = Fdb()
    for bad in (-1, "10", None, float("nan"), True):
        with pytest.raises(ValueError, match="ageing time"):
            fdb.set_ageing_time(bad)
    with pytest.raises(ValueError, match="max_entries"):
        Fdb(max_entries=0)


def test_move_is_counted():
    fdb = Fdb(ageing_time=10)
    fdb.learn(A, 0, "p1", 0.0)
    assert fdb.learn(A, 0, "p2", 1.0) is Learn.MOVED
    assert fdb.lookup(A, 0, 1.0) == "p2"
    assert fdb.moves == 1 and len(fdb) == 1
    assert fdb.port_count("p1") == 0 and fdb.port_count("p2") == 1


def test_relearn_after_expiry_is_not_a_move():
    fdb = Fdb(ageing_time=10)
    fdb.learn(A, 0, "p1", 0.0)
    assert fdb.learn(A, 0, "p2", 20.0) is Learn.LEARNED
    assert fdb.moves == 0 and fdb.aged == 1


def test_flush_by_port_and_all():
    fdb = Fdb()
    fdb.learn(A, 0, "p1", 0.0)
    fdb.learn(B, 0, "p1", 0.0)
    fdb.learn(C, 0, "p2", 0.0)
    assert fdb.flush("p1") == 2
    assert fdb.lookup(A, 0, 0.0) is None and fdb.lookup(C, 0, 0.0) == "p2"
    assert fdb.flush("nope") == 0
    assert fdb.flush() == 1
    assert len(fdb) == 0 and fdb.flushed == 3


def test_full_table_evicts_oldest_of_the_biggest_port():
    fdb = Fdb(ageing_time=0, max_entries=4)
    fdb.learn(A, 0, "p1", 0.0)
    fdb.learn(B, 0, "p2", 1.0)
    fdb.learn(C, 0, "p2", 2.0)
    fdb.learn(bytes(5) + b"\x04", 0, "p2", 3.0)
    fdb.learn(bytes(5) + b"\x05", 0, "p3", 4.0)  # full: p2 has the most, B is its oldest
    assert fdb.evictions == 1 and len(fdb) == 4
    assert fdb.lookup(B, 0, 5.0) is None
    assert fdb.lookup(A, 0, 5.0) == "p1"
    assert fdb.lookup(C, 0, 5.0) == "p2"


def test_flooding_port_cannot_evict_other_ports():
    fdb = Fdb(ageing_time=300, max_entries=64)
    victims = [bytes([2, 0, 0, 0, p, i]) for p in range(3) for i in range(10)]
    for i, mac in enumerate(victims):
        fdb.learn(mac, 0, f"p{i // 10}", 0.0)
    now = 1.0
    for _ in range(5000):  # an attacker on port "evil" with random source MACs
        mac = bytes([os.urandom(1)[0] & 0xFE]) + os.urandom(5)
        fdb.learn(mac, 0, "evil", now)
        now += 0.001
    assert len(fdb) == 64
    for i, mac in enumerate(victims):
        assert fdb.lookup(mac, 0, now) == f"p{i // 10}"
    assert fdb.port_count("evil") == 64 - 30
    assert fdb.evictions >= 5000 - 34


def test_entries_and_counters():
    fdb = Fdb(ageing_time=10, max_entries=100)
    fdb.learn(B, 5, "p2", 1.0)
    fdb.learn(A, 0, "p1", 2.0)
    es = fdb.entries(3.0)
    assert [(e.vlan, e.mac, e.port) for e in es] == [(0, A, "p1"), (5, B, "p2")]
    assert es[0].age(3.0) == 1.0
    c = fdb.counters()
    assert c == {"entries": 2, "max_entries": 100, "ageing_time": 10.0, "learned": 2, "moves": 0,
                 "evictions": 0, "aged": 0, "flushed": 0}


def test_learn_limit_refuses_new_addresses_and_moves_but_not_refreshes():
    fdb = Fdb(ageing_time=10)
    assert fdb.learn(A, 0, "p1", 0.0, limit=2) is Learn.LEARNED
    assert fdb.learn(A, 5, "p1", 0.0, limit=2) is Learn.LEARNED  # the VLANs count together
    before = fdb.counters()
    assert fdb.learn(B, 0, "p1", 1.0, limit=2) is Learn.REFUSED
    assert fdb.counters() == before and fdb.lookup(B, 0, 1.0) is None  # nothing changed
    assert fdb.learn(A, 0, "p1", 2.0, limit=2) is Learn.REFRESHED  # never refused
    assert fdb.learn(A, 0, "p1", 2.0, limit=1) is Learn.REFRESHED  # even over a lowered limit
    fdb.learn(C, 0, "p2", 3.0)
    assert fdb.learn(C, 0, "p1", 4.0, limit=2) is Learn.REFUSED  # a move would grow p1
    assert fdb.lookup(C, 0, 4.0) == "p2" and fdb.moves == 0
    assert fdb.learn(C, 0, "p1", 4.0, limit=3) is Learn.MOVED
    assert fdb.port_count("p1") == 3 and fdb.port_count("p2") == 0
    assert fdb.learn(B, 0, "p1", 5.0, limit=0) is Learn.LEARNED  # 0: no limit


def test_learn_limit_with_aged_entries():
    fdb = Fdb(ageing_time=10)
    fdb.learn(A, 0, "p1", 0.0)
    fdb.learn(B, 0, "p2", 0.0)
    # p1's own dead entry is relearned in place: the port does not grow
    assert fdb.learn(A, 0, "p1", 20.0, limit=1) is Learn.LEARNED
    assert fdb.port_count("p1") == 1 and fdb.aged == 1
    # another port's dead entry would grow p1: refused and left for expire()
    assert fdb.learn(B, 0, "p1", 20.0, limit=1) is Learn.REFUSED
    assert fdb.port_count("p2") == 1 and fdb.aged == 1
    assert fdb.learn(B, 0, "p1", 20.0, limit=2) is Learn.LEARNED
    assert fdb.port_count("p2") == 0 and fdb.moves == 0 and fdb.aged == 2


def test_learn_limit_in_a_full_table_still_evicts_from_the_biggest_port():
    fdb = Fdb(ageing_time=0, max_entries=3)
    fdb.learn(A, 0, "p1", 0.0)
    fdb.learn(B, 0, "p1", 1.0)
    fdb.learn(C, 0, "p2", 2.0)
    assert fdb.learn(bytes(5) + b"\x04", 0, "p2", 3.0, limit=2) is Learn.LEARNED
    assert fdb.evictions == 1 and fdb.lookup(A, 0, 3.0) is None
    assert fdb.learn(bytes(5) + b"\x05", 0, "p2", 4.0, limit=2) is Learn.REFUSED
    assert fdb.evictions == 1 and len(fdb) == 3
