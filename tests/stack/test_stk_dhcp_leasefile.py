"""The DHCP server's lease file: whatever is on disk, the server starts; bad entries are
skipped, counted and named in one log line; a file that cannot be read is kept aside, never
silently overwritten; saving is atomic. Both clocks are passed by hand."""

from __future__ import annotations

import json
import logging
import os

import pytest

from vnet.node import leasefile
from vnet.node.leasefile import read_lease_file, restore_lease_file, save_lease_file
from vnet.node.stack.dhcp import DhcpServer

WALL = 1_800_000_000.0  # the wall clock at start-up (2027-01-15T08:00:00Z)
NOW = 500.0  # the loop's monotonic clock at the same moment
STAMP = "20270115T080000Z"
GOOD = {"0061": {"ip": "10.2.0.110", "expires": WALL + 600, "hostname": "a"}}


def server() -> DhcpServer:
    return DhcpServer("10.2.0.1", 24, "10.2.0.100", "10.2.0.150")


def write(path, text: str | bytes) -> None:
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def test_no_file_is_a_first_start(tmp_path, caplog):
    s = server()
    assert restore_lease_file(s, str(tmp_path / "leases.json"), NOW, WALL) == []
    assert s.leases_to_dict() == {} and caplog.records == []
    assert os.listdir(tmp_path) == []


def test_saved_leases_come_back_on_the_other_clock(tmp_path):
    path = tmp_path / "leases.json"
    s = server()
    s.restore({"0061": {"ip": "10.2.0.110", "expires": NOW + 600, "hostname": "a"}})
    save_lease_file(str(path), s.leases_to_dict(), NOW, WALL)
    assert json.loads(path.read_text()) == GOOD  # wall-clock time on disk
    assert os.listdir(tmp_path) == ["leases.json"]  # no temporary file left behind
    # an hour later on both clocks, after a reboot (the monotonic clock restarted at 0)
    back = server()
    assert restore_lease_file(back, str(path), 10.0, WALL + 3600) == []
    assert back.leases_to_dict() == {
        "0061": {"ip": "10.2.0.110", "expires": 10.0 - 3000, "hostname": "a"}}


def test_bad_entries_are_skipped_counted_and_logged_in_one_line(tmp_path, caplog):
    path = tmp_path / "leases.json"
    write(path, """{
      "0061": {"ip": "10.2.0.110", "expires": %r, "hostname": "a"},
      "zz": {"ip": "10.2.0.120", "expires": 1e12},
      "0062": {"ip": "junk", "expires": 1e12},
      "0063": {"ip": "10.2.0.121", "expires": 1e400},
      "0064": "10.2.0.122",
      "0065": {"ip": "10.9.0.5", "expires": 1e12},
      "0066": {"ip": "10.2.0.110", "expires": 1}
    }""" % (WALL + 600))
    s = server()
    with caplog.at_level(logging.WARNING, logger=leasefile.__name__):
        skipped = restore_lease_file(s, str(path), NOW, WALL)
    assert len(skipped) == 6 and s.leases_skipped == 6
    assert s.leases_to_dict() == {
        "0061": {"ip": "10.2.0.110", "expires": NOW + 600, "hostname": "a"}}
    [record] = caplog.records
    line = record.getMessage()
    assert record.levelno == logging.WARNING and "skipped 6 of 7 entries" in line, line
    for why in ("zz: client id is not hex", "0062: ip 'junk' is not an IPv4 address",
                "0063: expires inf is not a finite number", "0064: entry '10.2.0.122' is not a map",
                "0065: 10.9.0.5 is not in the pool",
                "0066: 10.2.0.110 is also leased to 0061, which expires later"):
        assert why in line, (why, line)
    assert os.listdir(tmp_path) == ["leases.json"]  # the file itself was readable: kept


@pytest.mark.parametrize("content, why", [
    ("{not json", "Expecting property name"),
    ("", "Expecting value"),
    ('["0061"]', "the top level is a JSON list, not a map"),
    ("42", "the top level is a JSON int"),
    (b"\xff\xfe{}", "codec can't decode"),
    ("[" * 100_000, "maximum recursion depth"),
])
def test_an_unreadable_file_is_kept_aside_before_it_can_be_overwritten(tmp_path, caplog, content,
                                                                         why):
    path = tmp_path / "leases.json"
    write(path, content)
    original = path.read_bytes()
    s = server()
    with caplog.at_level(logging.ERROR, logger=leasefile.__name__):
        assert restore_lease_file(s, str(path), NOW, WALL) == []
    copy = tmp_path / f"leases.json.bad-{STAMP}"
    assert copy.read_bytes() == original and not path.exists()
    [record] = caplog.records
    assert str(copy) in record.getMessage() and why in record.getMessage(), record.getMessage()
    # the next save writes a fresh file and leaves the copy alone
    save_lease_file(str(path), s.leases_to_dict(), NOW, WALL)
    assert json.loads(path.read_text()) == {} and copy.read_bytes() == original


def test_a_second_bad_file_does_not_replace_the_first_copy(tmp_path):
    path = tmp_path / "leases.json"
    for text in ("first", "second", "third"):
        write(path, text)
        assert read_lease_file(str(path), NOW, WALL) is None
    assert {p: (tmp_path / p).read_text() for p in os.listdir(tmp_path)} == {
        f"leases.json.bad-{STAMP}": "first", f"leases.json.bad-{STAMP}.1": "second",
        f"leases.json.bad-{STAMP}.2": "third"}


def test_a_lease_file_path_that_is_a_directory_is_left_alone(tmp_path, caplog):
    path = tmp_path / "leases.json"
    path.mkdir()
    with caplog.at_level(logging.ERROR, logger=leasefile.__name__):
        assert read_lease_file(str(path), NOW, WALL) is None
    assert path.is_dir() and os.listdir(tmp_path) == ["leases.json"]
    assert "nor move it aside" in caplog.records[0].getMessage()


def test_a_failed_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "leases.json"
    save_lease_file(str(path), {"0061": {"ip": "10.2.0.110", "expires": NOW, "hostname": None}},
                    NOW, WALL)
    before = path.read_bytes()

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(leasefile.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_lease_file(str(path), {}, NOW, WALL)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["leases.json"]
