"""A persistent control channel over a byte stream: ``vnet call --stream``.

A node in a container keeps its control socket inside the container. Instead of one
``docker exec`` per request (a process start each time), the Docker LAN keeps one
``vnet call --stream`` running per container and multiplexes every request over its stdin
and stdout:

    host  --{"id": 7, "cmd": "ping", "args": {...}, "wait": 5.0}-->  relay --DEALER--> node
    host  <--{"id": 7, "reply": <the control reply, raw msgpack>}--  relay <---------- node
    host  <--{"id": 7, "timeout": "no answer ... within 5 s"}-----  (no answer in time)

Messages are msgpack maps back to back (msgpack frames itself). Requests run concurrently,
so a long poll does not hold up the others; replies come back in any order, matched by id.
The relay ends at end of input, cancelling and awaiting what is still in flight.

``StreamCodec`` is the sans-I/O half both ends share; ``relay`` is the container's side.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack

from vnet.proto.control import AsyncControlClient

# A request's own deadline beyond its ``wait``: time for the relay's answer to come back.
MAX_WAIT = 3600.0


class StreamError(Exception):
    """A malformed message on the channel (a bug or a stranger on the pipe)."""


@dataclass(frozen=True, slots=True)
class StreamRequest:
    id: int
    cmd: str
    args: dict
    wait: float


@dataclass(frozen=True, slots=True)
class StreamReply:
    id: int
    reply: bytes | None = None  # the control server's reply, as it sent it
    timeout: str | None = None  # or why there is none


class StreamCodec:
    """Encodes and decodes the channel's messages; ``feed`` bytes, get whole messages."""

    def __init__(self, max_buffer: int = 64 * 1024 * 1024) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max_buffer)

    @staticmethod
    def request(req: StreamRequest) -> bytes:
        return msgpack.packb({"id": req.id, "cmd": req.cmd, "args": req.args, "wait": req.wait},
                             use_bin_type=True)

    @staticmethod
    def reply(rep: StreamReply) -> bytes:
        body: dict[str, Any] = {"id": rep.id}
        if rep.reply is not None:
            body["reply"] = rep.reply
        else:
            body["timeout"] = rep.timeout or "no answer"
        return msgpack.packb(body, use_bin_type=True)

    def feed(self, data: bytes) -> list[dict]:
        try:
            self._unpacker.feed(data)
            return [m for m in self._unpacker]
        except (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError,
                msgpack.exceptions.StackError, msgpack.exceptions.BufferFull, ValueError) as exc:
            raise StreamError(f"not a msgpack stream: {exc}") from None

    @staticmethod
    def as_request(msg: Any) -> StreamRequest:
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), int) or not isinstance(msg.get("cmd"), str):
            raise StreamError('a request is a map {"id": INT, "cmd": NAME, "args": {...}, "wait": SECONDS}')
        args = msg.get("args") or {}
        wait = msg.get("wait", 5.0)
        if not isinstance(args, dict) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT:
            raise StreamError(f"request {msg['id']}: args must be a map and wait 0..{MAX_WAIT:g} s")
        return StreamRequest(msg["id"], msg["cmd"], args, float(wait))

    @staticmethod
    def as_reply(msg: Any) -> StreamReply:
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), int):
            raise StreamError('a reply is a map {"id": INT, "reply": BYTES} or {"id": INT, "timeout": TEXT}')
        if isinstance(msg.get("reply"), bytes):
            return StreamReply(msg["id"], reply=msg["reply"])
        return StreamReply(msg["id"], timeout=str(msg.get("timeout", "no answer")))


async def relay(client: AsyncControlClient, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> int:
    """Serve the channel on ``stdin``/``stdout`` (the process's by default) until end of input.

    Each request is answered from its own task, owned by a TaskGroup: at end of input the
    requests still in flight are cancelled (the group awaits them), and the client is closed.
    """
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    codec = StreamCodec()

    def send(rep: StreamReply) -> None:
        stdout.write(StreamCodec.reply(rep))
        stdout.flush()

    async def answer(req: StreamRequest) -> None:
        try:
            raw = await client.call_raw(req.cmd, wait=req.wait, **req.args)
        except TimeoutError as exc:
            send(StreamReply(req.id, timeout=str(exc)))
        else:
            send(StreamReply(req.id, reply=raw))

    inflight: set[asyncio.Task] = set()
    status = 0
    try:
        async with asyncio.TaskGroup() as tasks:
            while data := await reader.read(65536):
                for msg in codec.feed(data):
                    task = tasks.create_task(answer(StreamCodec.as_request(msg)))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
            for task in inflight:  # end of input: nobody is left to read the answers
                task.cancel()
    except* StreamError as group:
        print(f"vnet call --stream: {group.exceptions[0]}", file=sys.stderr, flush=True)
        status = 2
    except* (BrokenPipeError, ConnectionResetError):
        pass  # the other end went away: nobody is left to answer
    finally:
        transport.close()
        await client.close()
    return status
