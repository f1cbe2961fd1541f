"""``vnet capture -r``: a pcap file filtered offline, frame by frame as ``tcpdump -r`` does."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys

import pytest

from tests.capture.corpus import EXPRESSIONS, frames
from vnet.cli import main
from vnet.proto.capture import compile_filter
from vnet.proto.bpf import libpcap

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None or libpcap() is None,
                                   reason="tcpdump and libpcap are the reference (apt-get install tcpdump)")


def _pcap(tmp_path, frames_: list[bytes]) -> str:
    from scapy.utils import RawPcapWriter

    path = str(tmp_path / "in.pcap")
    with RawPcapWriter(path, linktype=1, snaplen=262144) as w:
        w._write_header(None)
        for i, f in enumerate(frames_):
            w.write_packet(f, sec=1_700_000_000 + i, usec=i, caplen=len(f), wirelen=len(f))
    return path


def _read(data: bytes) -> list[bytes]:
    from scapy.utils import RawPcapReader

    out = []
    with RawPcapReader(io.BytesIO(data)) as r:
        while True:
            try:
                out.append(r._read_packet(size=262144)[0])
            except EOFError:
                return out


def _tcpdump(path: str, expr: str) -> list[bytes]:
    args = ["tcpdump", "-r", path, "-w", "-"] + ([expr] if expr else [])
    done = subprocess.run(args, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return _read(done.stdout)


@needs_tcpdump
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_vnet_capture_r_agrees_with_tcpdump_frame_by_frame(tmp_path, capsysbinary, expr):
    corpus = frames()
    path = _pcap(tmp_path, corpus)
    want = _tcpdump(path, expr)
    out = tmp_path / "out.pcap"
    assert main(["capture", "-r", path, "-w", str(out), *expr.split()]) == 0
    got = _read(out.read_bytes())
    assert got == want, expr
    # and frame by frame, in-process: the same verdict for each
    match = compile_filter(expr)
    assert [f for f in corpus if match(f)] == want


@needs_tcpdump
def test_the_corpus_exercises_every_expression_both_ways(tmp_path):
    """Each expression of the set accepts some frames and refuses others (but "" and "not arp"
    aside, which accept nearly all), so agreement above is not agreement on nothing."""
    corpus = frames()
    for expr in EXPRESSIONS:
        n = sum(1 for f in corpus if compile_filter(expr)(f))
        assert 0 < n <= len(corpus), expr
        if expr:
            assert n < len(corpus), expr


@needs_tcpdump
def test_greater_and_len_look_at_the_length_on_the_wire_of_a_cut_frame(tmp_path):
    from scapy.utils import RawPcapWriter

    full = frames()[9]  # a 254-byte TCP segment
    path = str(tmp_path / "cut.pcap")
    with RawPcapWriter(path, linktype=1, snaplen=64) as w:
        w._write_header(None)
        w.write_packet(full[:64], sec=1, usec=0, caplen=64, wirelen=len(full))
    for expr in ("greater 200", "less 100"):
        want = _tcpdump(path, expr)
        out = tmp_path / "out.pcap"
        assert main(["capture", "-r", path, "-w", str(out), expr]) == 0
        assert _read(out.read_bytes()) == want
    assert len(_tcpdump(path, "greater 200")) == 1


def test_capture_r_prints_a_line_per_frame_and_stops_at_count(tmp_path, capsys):
    path = _pcap(tmp_path, frames())
    assert main(["capture", "-r", path, "-c", "2", "icmp"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2 and all("ICMP" in line for line in lines)
    assert "2 matched" in err


def test_capture_r_refuses_what_it_cannot_read(tmp_path, capsys):
    assert main(["capture", "-r", str(tmp_path / "missing.pcap")]) != 0
    assert "cannot read" in capsys.readouterr().err
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a pcap file at all")
    assert main(["capture", "-r", str(junk)]) != 0
    assert "not a pcap file" in capsys.readouterr().err
    path = _pcap(tmp_path, frames())
    assert main(["capture", "-r", path, "udp and ("]) != 0
    assert "syntax error" in capsys.readouterr().err
    import struct

    raw_ip = tmp_path / "raw.pcap"  # DLT_RAW (101): IP packets, no Ethernet header
    raw_ip.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
                       + struct.pack("<IIII", 1, 0, 20, 20) + b"\x45" + bytes(19))
    assert main(["capture", "-r", str(raw_ip)]) != 0
    assert "link type 101" in capsys.readouterr().err


def test_capture_r_needs_no_node(tmp_path):
    """The command line alone, with no LAN running anywhere."""
    path = _pcap(tmp_path, frames())
    done = subprocess.run([sys.executable, "-m", "vnet.cli", "--node", "nowhere", "capture", "-r", path, "-c", "1",
                           "arp"], capture_output=True, text=True, timeout=60, env={"VNET_RUNTIME_DIR": str(tmp_path),
                                                                                   "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "ARP" in done.stdout


def test_without_libpcap_the_fallback_runs_and_vnet_capture_says_so(tmp_path, capsys, monkeypatch):
    import vnet.proto.capture as capture

    monkeypatch.setattr(capture, "libpcap", lambda: None)
    path = _pcap(tmp_path, frames())
    assert main(["capture", "-r", path, "vlan and udp"]) == 0
    out, err = capsys.readouterr()
    assert "libpcap" in err and "subset" in err
    assert len(out.splitlines()) == 2  # UDP in one tag: VLAN 5, VLAN 9 over IPv6 (QinQ needs "vlan and vlan")
    assert main(["capture", "-r", path, "portrange 1-2"]) != 0
    assert "needs libpcap" in capsys.readouterr().err


def test_libpcap_missing_is_logged_once(monkeypatch, caplog):
    import ctypes

    from vnet.proto import bpf

    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    bpf.libpcap.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="vnet.proto.bpf"):
            assert bpf.libpcap() is None and bpf.libpcap() is None
        assert len([r for r in caplog.records if "libpcap not found" in r.getMessage()]) == 1
    finally:
        bpf.libpcap.cache_clear()
