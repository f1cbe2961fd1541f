"""The control protocol's argument policies (proto/policy.py) and the control server's limits:
checked arguments, internal errors, in-flight caps, the request size limit. The server runs on
an ipc socket in a temporary directory."""

import asyncio
import logging
import math

import msgpack
import pytest
import zmq
import zmq.asyncio

from vnet.node.commands import CONTROL_COMMANDS
from vnet.proto.control import MAX_REQUEST_BYTES, AsyncControlClient, ControlError, ControlServer, pack_request
from vnet.proto.policy import MAX_POLL_TIMEOUT, NODE_POLICY, SWITCH_POLICY, Arg, Policy, PolicyError
from vnet.switch.server import SwitchServer


# -- the policies, sans-I/O ---------------------------------------------------------------------


@pytest.mark.parametrize("cmd, args, match", [
    ("link_set", {"promisc": "no"}, "promisc must be a bool"),
    ("link_set", {"promisc": 1}, "promisc must be a bool"),
    ("link_set", {"mtu": 1500.5}, "mtu must be an integer"),
    ("link_set", {"mtu": True}, "mtu must be an integer"),
    ("link_set", {"state": "sideways"}, "state must be one of up, down"),
    ("udp_bind", {"port": 1.5}, "port must be an integer"),
    ("udp_bind", {"port": 70000}, "at most 65535"),
    ("udp_recv", {"port": 5, "timeout": math.nan}, "timeout must be a number"),
    ("udp_recv", {"port": 5, "timeout": "1"}, "timeout must be a number"),
    ("udp_recv", {}, "port is required"),
    ("inject", {"frames": ["text"]}, r"frames\[0\] must be binary data"),
    ("link_set", {"promisk": True}, "unknown argument 'promisk'; allowed: dev, state, mtu, address, promisc"),
])
def test_node_policy_refuses_loose_types_and_unknown_arguments(cmd, args, match):
    with pytest.raises(PolicyError, match=match):
        NODE_POLICY[cmd].check(cmd, args)


@pytest.mark.parametrize("args, match", [
    ({"port": "node1", "up": "false"}, "up must be a bool"),
    ({"port": "node1", "up": 0}, "up must be a bool"),
    ({"port": "node1"}, "up is required"),
])
def test_switch_port_set_refuses_a_string_for_up(args, match):
    with pytest.raises(PolicyError, match=match):
        SWITCH_POLICY["port_set"].check("port_set", args)


def test_long_poll_timeouts_are_clamped_and_defaults_filled():
    for cmd, table in (("udp_recv", NODE_POLICY), ("ping", NODE_POLICY), ("capture_read", NODE_POLICY),
                       ("mirror_read", SWITCH_POLICY)):
        base = {"udp_recv": {"port": 9}, "ping": {"dst": "10.0.0.1"}, "capture_read": {"id": 1},
                "mirror_read": {"id": 1}}[cmd]
        for huge in (1e9, math.inf):
            assert table[cmd].check(cmd, {**base, "timeout": huge})["timeout"] == MAX_POLL_TIMEOUT
    assert NODE_POLICY["udp_recv"].check("udp_recv", {"port": 9}) == {"port": 9, "timeout": 1.0, "max": 64}
    assert NODE_POLICY["link_set"].check("link_set", {"promisc": False})["promisc"] is False


def test_every_command_of_node_and_switch_has_a_policy():
    assert set(CONTROL_COMMANDS) == set(NODE_POLICY)
    server = SwitchServer.__new__(SwitchServer)  # the handler table only: no sockets
    assert set(SwitchServer._handlers(server)) == set(SWITCH_POLICY)


# -- the server ---------------------------------------------------------------------------------


class Toy:
    """Handlers for a control server under test."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.set_to = None

    def set(self, flag: bool) -> bool:
        self.set_to = flag
        return flag

    def refuse(self) -> None:
        raise ControlError("no, and here is why")

    def bug(self) -> None:
        raise ValueError("a handler's own bug")

    async def wait(self, timeout: float = 1.0) -> str:
        try:
            await asyncio.wait_for(self.release.wait(), timeout)
            return "released"
        except asyncio.TimeoutError:
            return "timeout"


TOY_POLICY = {
    "set": Policy({"flag": Arg(bool, required=True)}),
    "refuse": Policy(),
    "bug": Policy(),
    "wait": Policy({"timeout": Arg(float, default=1.0, low=0.0, high=300.0, clamp=True)}),
}


@pytest.fixture
async def toy(tmp_path):
    ctx = zmq.asyncio.Context()
    toy = Toy()
    handlers = {name: getattr(toy, name) for name in TOY_POLICY}
    server = ControlServer(ctx, f"ipc://{tmp_path}/toy.ctl", handlers, policy=TOY_POLICY,
                           max_in_flight=16, max_per_client=4)
    server.start()
    clients = []

    def client() -> AsyncControlClient:
        c = AsyncControlClient(ctx, server.endpoint, timeout=5.0)
        clients.append(c)
        return c

    yield toy, server, client
    toy.release.set()
    for c in clients:
        await c.close()
    await server.close()
    ctx.term()


def test_a_handler_without_a_policy_is_refused_when_the_server_is_built(tmp_path):
    ctx = zmq.asyncio.Context()
    try:
        with pytest.raises(ValueError, match="without a policy.*extra"):
            ControlServer(ctx, f"ipc://{tmp_path}/x.ctl", {"extra": lambda: 1}, policy={})
    finally:
        ctx.term()


async def test_the_handler_runs_only_with_checked_arguments(toy):
    state, server, client = toy
    c = client()
    with pytest.raises(ControlError, match="flag must be a bool"):
        await c.call("set", flag="no")
    assert state.set_to is None  # never called
    assert await c.call("set", flag=True) is True
    with pytest.raises(ControlError, match="unknown argument 'colour'; allowed: flag"):
        await c.call("set", flag=True, colour="red")
    assert server.counters()["bad_requests"] == 2


async def test_a_handler_bug_is_an_internal_error_logged_with_its_traceback(toy, caplog):
    _, server, client = toy
    c = client()
    with pytest.raises(ControlError, match="no, and here is why"):
        await c.call("refuse")
    with caplog.at_level(logging.ERROR, logger="vnet.proto.control"):
        for _ in range(15):
            with pytest.raises(ControlError, match=r"^internal error in bug: ValueError"):
                await c.call("bug")
    counters = server.counters()
    assert counters["internal_errors"] == 15 and counters["bad_requests"] == 1
    logged = [r for r in caplog.records if "a bug in its handler" in r.getMessage()]
    assert 1 <= len(logged) <= 10  # rate-limited (10 per 5 s)
    assert logged[0].exc_info and "a handler's own bug" in str(logged[0].exc_info[1])


async def _until(pred, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_in_flight_requests_are_capped_per_client_and_in_all(toy):
    state, server, client = toy
    first = client()
    polls = [asyncio.ensure_future(first.call("wait", timeout=1e9, wait=60)) for _ in range(10)]
    # four wait, the other six are answered at once
    await _until(lambda: sum(t.done() for t in polls) == 6, "six busy answers")
    busy = [t for t in polls if t.done()]
    assert all("control busy" in str(t.exception()) for t in busy)
    assert server.counters()["in_flight"] == 4 and server.counters()["control_busy"] == 6
    # other clients are still served, up to the server's cap of 16 in all
    others = [client() for _ in range(4)]
    more = [asyncio.ensure_future(o.call("wait", timeout=1e9, wait=60)) for o in others for _ in range(4)]
    await _until(lambda: server.counters()["control_busy"] == 10, "four more busy answers")
    await _until(lambda: sum(t.done() for t in more) == 4, "the busy answers to arrive")
    assert server.counters()["in_flight"] == 16
    assert all("control busy" in str(t.exception()) for t in more if t.done())
    assert await others[0].call("set", flag=True) is True  # answered at once: not a long poll
    state.release.set()
    results = await asyncio.gather(*[t for t in polls + more if not t.done()])
    assert results == ["released"] * 16
    assert server.counters()["in_flight"] == 0 and server.counters()["clients_in_flight"] == 0


async def test_a_request_over_the_size_limit_is_not_read_and_the_server_goes_on(toy, tmp_path):
    _, server, client = toy
    with pytest.raises(ControlError, match="over the limit"):
        pack_request("set", {"flag": b"x" * MAX_REQUEST_BYTES})
    ctx = zmq.asyncio.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.endpoint)
    try:
        before = server.requests
        big = msgpack.packb({"cmd": "set", "args": {"flag": b"x" * (100 << 20)}}, use_bin_type=True)
        await raw.send_multipart([b"", big])
        assert await raw.poll(500) == 0  # no answer: ZeroMQ dropped the connection unread
        assert server.requests == before
        assert await client().call("set", flag=False) is False
    finally:
        raw.close(linger=0)
        ctx.term()


def test_inject_batches_each_fit_in_one_request():
    from vnet.cli.inject import inject_batches

    frames = [bytes([i % 256]) * 1514 for i in range(3000)]  # 4.5 MB of frames
    batches = inject_batches(frames)
    assert [f for b in batches for f in b] == frames
    for b in batches:
        assert len(pack_request("inject", {"frames": b, "dev": "vnet0"})) <= MAX_REQUEST_BYTES
        NODE_POLICY["inject"].check("inject", {"frames": b})
