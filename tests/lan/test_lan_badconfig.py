"""Bad configuration stops a daemon at once, exit status 2, with a sentence that says what to
fix; wrong use of the CLI prints usage. Nothing starts half-way (no traceback, no socket)."""

from __future__ import annotations

import subprocess
import sys

import pytest

NODE = ["node", "--name", "n1", "--address", "10.0.0.1/24", "--switch", "tcp://127.0.0.1:1"]
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
    (SWITCH + ["--bind", "udp://0.0.0.0:5540"], "must be a ZeroMQ endpoint"),
    (SWITCH + ["--mtu", "10"], "mtu must be an integer from 68"),
    (SWITCH + ["--fdb-max", "0"], "fdb_max must be an integer from 1"),
    (SWITCH + ["--heartbeat-interval", "3", "--heartbeat-timeout", "1"], "must be longer than heartbeat_interval"),
    (SWITCH + ["--bind", "tcp://203.0.113.1:5540"], "cannot bind the switch data endpoint"),
    (["lan", "demo", "--subnet", "10.0.0.0/33"], "not a valid netmask"),
    (["lan", "demo", "--nodes", "300"], "has room for 1 to 254 nodes"),
])
def test_bad_configuration_stops_with_what_to_fix(args, message):
    r = subprocess.run([sys.executable, "-m", "vnet.cli", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "vnet: error:" in r.stderr and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


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
