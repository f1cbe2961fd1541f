"""Who may open a control socket, and whose it is: the switch's default control is an ipc
socket only its user can open; a second node of the same name does not take the first one's
socket; a server unlinks only the socket file it bound."""

import os
import shutil
import socket
import stat
import subprocess
import tempfile

import pytest
import zmq.asyncio

from vnet.node.daemon import NodeConfig, NodeDaemon, serve
from vnet.proto.control import AsyncControlClient, ControlServer, EndpointInUse
from vnet.proto.policy import Policy
from vnet.switch.server import SwitchConfig, SwitchServer

NOBODY_CONNECT = r"""
import socket, sys
kind, where = sys.argv[1], sys.argv[2]
if kind == "ipc":
    s = socket.socket(socket.AF_UNIX)
    target = where
else:
    s = socket.socket(socket.AF_INET)
    host, port = where.rsplit(":", 1)
    target = (host, int(port))
try:
    s.connect(target)
except OSError as exc:
    print(type(exc).__name__, exc)
    sys.exit(1)
print("connected")
"""


@pytest.fixture
def shared_tmp(monkeypatch):
    """A runtime dir under a directory every user may enter, so only its own mode protects it."""
    top = tempfile.mkdtemp(prefix="vnet-ctltest-", dir="/tmp")
    os.chmod(top, 0o755)
    monkeypatch.setenv("VNET_RUNTIME_DIR", os.path.join(top, "run"))
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser")
async def test_another_user_cannot_reach_the_switch_default_control(shared_tmp):
    server = SwitchServer(SwitchConfig(bind="tcp://127.0.0.1:0"))
    await server.start()
    try:
        endpoint = server.control_endpoint
        kind, where = endpoint.split("://", 1)
        assert kind == "ipc", f"the default control endpoint is {endpoint}"
        assert stat.S_IMODE(os.stat(where).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(where)).st_mode) == 0o700
        proc = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", NOBODY_CONNECT, kind, where],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1 and "PermissionError" in proc.stdout, proc.stdout + proc.stderr
        ctx = zmq.asyncio.Context()
        client = AsyncControlClient(ctx, endpoint)
        try:
            assert (await client.call("ping"))["ok"] is True  # its own user drives it
        finally:
            await client.close()
            ctx.term()
    finally:
        await server.close()


async def test_a_second_node_of_the_same_name_refuses_and_leaves_the_socket(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VNET_RUNTIME_DIR", str(tmp_path))
    config = NodeConfig(name="node1", switch="tcp://127.0.0.1:9")  # no switch: not needed here
    first = NodeDaemon(config)
    await first.start()
    path = first.control.endpoint[len("ipc://"):]
    try:
        assert await serve(config, ready_line=False) == 2
        err = capsys.readouterr().err
        assert f"node1 is already running (its control socket {path} answers)" in err
        ctx = zmq.asyncio.Context()
        client = AsyncControlClient(ctx, first.control.endpoint)
        try:
            assert (await client.call("health"))["name"] == "node1"  # still the first one's
        finally:
            await client.close()
            ctx.term()
    finally:
        await first.close()
    assert not os.path.exists(path)  # its own, removed on exit


def _stale_socket(path: str) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # the file stays, nobody listens: a crashed daemon's


async def test_a_stale_socket_is_taken_over_and_only_the_own_socket_is_unlinked(tmp_path):
    ctx = zmq.asyncio.Context()
    path = str(tmp_path / "x.ctl")
    _stale_socket(path)
    handlers, policy = {"ping": lambda: "pong"}, {"ping": Policy()}
    a = ControlServer(ctx, f"ipc://{path}", handlers, policy=policy)
    with pytest.raises(EndpointInUse, match="answers"):
        ControlServer(ctx, f"ipc://{path}", handlers, policy=policy)
    # a's file is replaced by another server's (its owner removed it by hand, say): a must
    # not delete the newcomer's socket when it exits
    os.unlink(path)
    b = ControlServer(ctx, f"ipc://{path}", handlers, policy=policy)
    b.start()
    await a.close()
    assert os.path.exists(path)
    client = AsyncControlClient(ctx, f"ipc://{path}")
    try:
        assert await client.call("ping") == "pong"
    finally:
        await client.close()
    await b.close()
    assert not os.path.exists(path)
    ctx.term()


@pytest.mark.vnet_lan(nodes=2)
async def test_the_embedded_lan_listens_on_tcp_only_for_metrics_on_loopback(vnet_lan):
    """Every daemon of an embedded LAN runs on this host: the switch's data and control
    endpoints are ipc sockets only the LAN's user can open, and the one TCP port a daemon
    listens on is its Prometheus endpoint, on loopback."""
    for endpoint in (vnet_lan.switch.data, vnet_lan.switch.control):
        assert endpoint.startswith("ipc://"), endpoint
        mode = os.stat(endpoint[len("ipc://"):]).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, (endpoint, oct(mode))
    assert (await vnet_lan.nodes[0].ping(vnet_lan.nodes[1].ip)).ok
    if shutil.which("ss") is None:
        pytest.skip("needs iproute2's ss to list listening sockets")
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    pids = vnet_lan.pids()
    assert len(pids) == 3
    metrics = {h.name: h.metrics_url for h in vnet_lan.nodes} | {"switch": vnet_lan.switch.metrics_url}
    for name, pid in pids.items():
        ports = [line.split()[3] for line in listening.splitlines() if f"pid={pid}," in line]
        host_port = metrics[name].removeprefix("http://").removesuffix("/metrics")
        assert ports == [host_port] and host_port.startswith("127.0.0.1:"), \
            f"{name} (pid {pid}) listens on TCP {ports}, its metrics are {metrics[name]}:\n{listening}"
