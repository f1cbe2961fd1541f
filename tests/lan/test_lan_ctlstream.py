"""The persistent control channel (``vnet call --stream``, vnet/ctlstream.py): the codec by
hand, then the real relay process between a pipe and a running node.

The Docker LAN keeps one such relay per container; here it runs as a local process, so the
channel's behaviour is checked without Docker: requests multiplexed and answered out of
order, a long poll not holding up others, bad input refused, and the relay ending at end of
input.
"""

from __future__ import annotations

import asyncio
import sys

import msgpack
import pytest

from vnet.ctlstream import StreamCodec, StreamError, StreamReply, StreamRequest
from vnet.proto.control import decode_reply


def test_codec_round_trip_split_anywhere():
    reqs = [StreamRequest(i, "ping", {"dst": "10.0.0.2", "n": i}, 1.5) for i in range(5)]
    data = b"".join(StreamCodec.request(r) for r in reqs)
    for cut in (1, 7, len(data) // 2, len(data) - 1):
        codec = StreamCodec()
        got = [StreamCodec.as_request(m) for m in codec.feed(data[:cut]) + codec.feed(data[cut:])]
        assert got == reqs
    rep = StreamReply(3, reply=b"\x81\xa2ok\xc3")
    assert StreamCodec.as_reply(StreamCodec().feed(StreamCodec.reply(rep))[0]) == rep
    late = StreamReply(4, timeout="no answer within 1 s")
    assert StreamCodec.as_reply(StreamCodec().feed(StreamCodec.reply(late))[0]) == late


@pytest.mark.parametrize("msg", [
    {"cmd": "ping"},                                   # no id
    {"id": 1},                                         # no cmd
    {"id": 1, "cmd": "x", "args": [1, 2]},             # args not a map
    {"id": 1, "cmd": "x", "wait": -1},                 # negative wait
    {"id": 1, "cmd": "x", "wait": 1e9},                # unbounded wait
    [1, 2, 3],
])
def test_codec_refuses_malformed_requests(msg):
    with pytest.raises(StreamError):
        StreamCodec.as_request(msg)


async def _relay(node):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vnet.cli", "call", "--stream", "--control", node._client.endpoint,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _replies(stdout, n: int, timeout: float = 30.0) -> list[StreamReply]:
    codec, out = StreamCodec(), []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            data = await stdout.read(65536)
            assert data, "the relay closed its output early"
            out += [StreamCodec.as_reply(m) for m in codec.feed(data)]
    return out


@pytest.mark.vnet_lan(nodes=2)
async def test_relay_multiplexes_and_a_long_poll_does_not_block(vnet_lan):
    a, b = vnet_lan.nodes
    await b.udp_bind(9100)
    proc = await _relay(b)
    try:
        # 1: a long poll (nothing arrives for 3 s); 2..21: quick reads behind it
        proc.stdin.write(StreamCodec.request(StreamRequest(1, "udp_recv", {"port": 9100, "timeout": 3.0}, 10.0)))
        for i in range(2, 22):
            proc.stdin.write(StreamCodec.request(StreamRequest(i, "link_show", {}, 5.0)))
        proc.stdin.write(StreamCodec.request(StreamRequest(99, "no_such_command", {}, 5.0)))
        await proc.stdin.drain()
        quick = await _replies(proc.stdout, 21, timeout=2.9)  # all before the long poll ends
        assert sorted(r.id for r in quick) == [*range(2, 22), 99]
        for r in quick:
            if r.id == 99:
                with pytest.raises(Exception, match="unknown command"):
                    decode_reply(r.reply)
            else:
                assert decode_reply(r.reply)  # a real link_show answer
        (slow,) = await _replies(proc.stdout, 1, timeout=10)
        assert slow.id == 1 and decode_reply(slow.reply) == []
        proc.stdin.close()  # end of input: the relay ends by itself
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.vnet_lan(nodes=1)
async def test_relay_refuses_garbage_and_says_why(vnet_lan):
    proc = await _relay(vnet_lan.nodes[0])
    out, err = await asyncio.wait_for(proc.communicate(msgpack.packb({"id": "x"}) + b"\xc1\xc1"), 30)
    assert proc.returncode == 2
    assert b"a request is a map" in err or b"not a msgpack stream" in err
