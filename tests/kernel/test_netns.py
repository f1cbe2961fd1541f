"""The LAN's namespaces: names, owner files, and the cleanup of a dead LAN's leftovers."""

from __future__ import annotations

import os
import subprocess

import pytest

from vnet.netns import LanNamespaces, OwnerRecord, lan_netns_name, process_start_time, remove_leftovers
from vnet.node.netns import NetnsError, netns_create, netns_exists, netns_remove

from .conftest import needs_kernel


def test_names():
    assert lan_netns_name("demo", "node1") == "vnet-demo-node1"
    with pytest.raises(ValueError, match="node name 'a/b'"):
        lan_netns_name("demo", "a/b")


@needs_kernel
def test_create_remove_and_a_live_owner_keeps_its_namespaces(tmp_path):
    lan = LanNamespaces(f"t{os.getpid()}", owner_dir=str(tmp_path))
    name = lan.create("n1")
    try:
        assert netns_exists(name)
        assert (tmp_path / f"{name}.json").exists()
        with pytest.raises(NetnsError, match="already exists"):
            LanNamespaces(lan.lan, owner_dir=str(tmp_path)).create("n1")
        assert remove_leftovers(str(tmp_path)) == []  # we are alive: not a leftover
        assert netns_exists(name)
    finally:
        lan.remove_all()
    assert not netns_exists(name) and not (tmp_path / f"{name}.json").exists()


@needs_kernel
def test_a_dead_owners_namespace_is_removed_with_what_runs_inside(tmp_path):
    owner = subprocess.Popen(["sleep", "600"])
    record_start = process_start_time(owner.pid)
    name = f"vnet-t{os.getpid()}-dead"
    netns_create(name)
    inside = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "600"])
    member = subprocess.Popen(["sleep", "600"])  # stands in for an orphaned node daemon
    try:
        (tmp_path / f"{name}.json").write_text(OwnerRecord(
            name, owner.pid, record_start, "t", [[member.pid, process_start_time(member.pid)]]).to_json())
        owner.kill()
        owner.wait(10)
        said = []
        assert remove_leftovers(str(tmp_path), say=said.append) == [name]
        assert said == [f"removed leftover namespace {name} from an earlier run"]
        assert not netns_exists(name)
        assert inside.wait(10) is not None and member.wait(10) is not None
        assert not list(tmp_path.iterdir())
    finally:
        for p in (owner, inside, member):
            if p.poll() is None:
                p.kill()
                p.wait()
        if netns_exists(name):
            netns_remove(name)


@needs_kernel
def test_a_namespace_without_an_owner_file_is_not_ours(tmp_path):
    name = f"vnet-t{os.getpid()}-foreign"
    netns_create(name)
    try:
        assert remove_leftovers(str(tmp_path)) == []
        assert netns_exists(name)
    finally:
        netns_remove(name)


@needs_kernel
def test_a_recycled_pid_is_not_the_owner(tmp_path):
    name = f"vnet-t{os.getpid()}-recycled"
    netns_create(name)
    try:  # our own pid, but a start time that is not ours: the owner is gone
        (tmp_path / f"{name}.json").write_text(OwnerRecord(name, os.getpid(), 1, "t").to_json())
        assert remove_leftovers(str(tmp_path)) == [name]
    finally:
        if netns_exists(name):
            netns_remove(name)
