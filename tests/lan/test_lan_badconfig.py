"""Bad configuration stops a daemon at once, exit status 2, with a sentence that says what to
fix; wrong use of the CLI prints usage. Nothing starts half-way (no traceback, no socket)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

NODE = ["node", "--name", "n1", "--address", "10.0.0.1/24", "--switch", "tcp://127.0.0.1:1"]
LONG_DIR = "/tmp/" + "d" * 100  # with a socket name, over sun_path's 107 bytes
SWITCH = ["switch", "--bind", "tcp://127.0.0.1:0", "--switch-control", "tcp://127.0.0.1:0"]


@pytest.mark.parametrize("args, message", [
    (NODE + ["--address", "10.0.0.300/24"], "expected A.B.C.D/PREFIX"),
    (NODE + ["--address", "10.0.0.0/24"], "not a usable host address"),
    (NODE + ["--mac", "zz"], "write six hex bytes"),
    (NODE + ["--mac", "01:00:00:00:00:01"], "must be unicast"),
    (NODE + ["--switch", "http://switch"], "expected tcp://HOST:PORT"),
    (NODE + ["--rx-ring", "100000"], "rx ring size 100000: must be between 1 and 4096"),
    (NODE + ["--tx-ring", "0"], "tx ring size 0: must be between 1 and 4096"),
    (NODE + ["--mtu", "20"], "mtu 20: must be between 68 and 9000"),
    (NODE + ["--heartbeat-timeout", "0.5"], "heartbeat"),
    (NODE + ["--dhcp-server", "10.0.1.5-10.0.1.9"], "not inside the server's subnet 10.0.0.0/24"),
    (NODE + ["--dhcp-server", "10.0.0.0-10.0.0.9"], "the network address of 10.0.0.0/24"),
    (NODE + ["--dhcp-server", "10.0.0.250-10.0.0.255"], "the broadcast address of 10.0.0.0/24"),
    (NODE + ["--dhcp-server", "10.0.0.1-10.0.0.1"], "only the server's own address 10.0.0.1"),
    (NODE + ["--dhcp-server", "10.0.0.9-10.0.0.5"], "give the lower address first"),
    (NODE + ["--dhcp-server", "10.0.0.9"], "expected FIRST-LAST"),
    (NODE + ["--name", "bad/name"], "use letters, digits"),
    (NODE + ["--address", "224.0.0.5/24"], "a multicast address cannot be an interface address"),
    (NODE + ["--address", "127.0.0.2/8"], "a loopback address cannot be an interface address"),
    (NODE + ["--address", "240.0.0.1/8"], "a reserved (240.0.0.0/4) address cannot be"),
    (NODE + ["--address", "10.0.0.1/255.255.255.0"], "give the prefix as a length, e.g. 10.0.0.1/24"),
    (NODE + ["--address", "10.0.0.2/24", "--address", "10.0.0.2/16"], "10.0.0.2 is already given (10.0.0.2/24)"),
    (NODE + ["--control", "ipc://" + LONG_DIR + "/n1.ctl"], "over the 107 a Unix socket holds"),
    (NODE + ["--switch", "ipc://" + LONG_DIR + "/switch"], "a shorter VNET_RUNTIME_DIR"),
    (SWITCH + ["--bind", "udp://0.0.0.0:5540"], "must be a ZeroMQ endpoint"),
    (SWITCH + ["--mtu", "10"], "mtu must be an integer from 68"),
    (SWITCH + ["--fdb-max", "0"], "fdb_max must be an integer from 1"),
    (SWITCH + ["--heartbeat-interval", "3", "--heartbeat-timeout", "1"], "must be longer than heartbeat_interval"),
    (SWITCH + ["--bind", "tcp://203.0.113.1:5540"], "cannot bind the switch data endpoint"),
    (["lan", "demo", "--subnet", "10.0.0.0/33"], "not a valid netmask"),
    (["lan", "demo", "--nodes", "300", "--subnet", "10.0.0.0/24"], "has room for 1 to 254 nodes"),
])
def test_bad_configuration_stops_with_what_to_fix(args, message):
    r = subprocess.run([sys.executable, "-m", "vnet.cli", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "vnet: error:" in r.stderr and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_lan_up_in_a_runtime_directory_too_long_for_its_sockets_says_so(tmp_path):
    """Node control sockets live in the runtime directory: one whose path leaves no room for
    them stops ``vnet lan up`` before anything starts, naming the limit and the fix."""
    runtime = tmp_path / ("d" * 100)
    env = dict(os.environ, VNET_RUNTIME_DIR=str(runtime))
    r = subprocess.run([sys.executable, "-m", "vnet.cli", "lan", "up", "--nodes", "2"], capture_output=True,
                       text=True, timeout=30, env=env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "vnet: error:" in r.stderr and "a shorter VNET_RUNTIME_DIR" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "vnet LAN up" not in r.stdout


@pytest.mark.parametrize("args, message", [
    ([], "usage: vnet"),
    (["frobnicate"], "invalid choice"),
    (["node", "--mtu", "big"], "invalid int value"),
    (["switch", "port", "node1", "sideways"], "invalid choice"),
    (["keygen"], "the following arguments are required: DIR"),
])
def test_wrong_cli_use_prints_usage_and_fails(args, message):
    r = subprocess.run([sys.executable, "-m", "vnet.cli", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage:" in r.stderr and message in r.stderr, r.stderr
