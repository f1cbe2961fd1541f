"""Captures started from the web page: a node's (``capture_start`` on its vnet0) or a switch
port's mirror (``mirror_start``), each a ``vnet.handles.CaptureHandle`` and one task that reads
its frames while it runs; the frames are served as a pcap file written by the one pcap writer
there is (vnet/cli/capture.py). The registry owns the tasks and stops every capture it
started when it closes.

A capture keeps at most ``MAX_FRAMES`` frames (it is started with that count, so the daemon
ends it there); its id on the page is the registry's own, not the daemon's.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from typing import Any

from vnet.cli.capture import pcap_writer, write_pcap_frame
from vnet.handles import CaptureHandle
from vnet.proto.control import ControlError


MAX_FRAMES = 10000
MAX_CAPTURES = 16  # running at once


class CaptureError(ValueError):
    """A capture request the page cannot have (unknown id, too many running)."""


class WebCapture:
    """One capture and its reader task."""

    def __init__(self, wid: int, handle: CaptureHandle, what: dict, filter: str) -> None:
        self.id = wid
        self.handle = handle
        self.what = what
        self.filter = filter
        self.error: str | None = None
        self.task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self.handle.stats is None and self.task is not None and not self.task.done()

    def view(self) -> dict:
        return {"id": self.id, **self.what, "filter": self.filter, "frames": len(self.handle.frames),
                "running": self.running, "stats": self.handle.stats, "error": self.error,
                "pcap": f"/api/capture/{self.id}.pcap"}

    async def read_loop(self) -> None:
        """Fetch frames until the capture is done (its count) or stopped."""
        try:
            while self.handle.stats is None:
                got = await self.handle.source.call(self.handle.read_cmd, wait=5.0, id=self.handle.id, timeout=0.5)
                self.handle.frames.extend(got["frames"])
                if got.get("done"):
                    return
        except (ControlError, TimeoutError, OSError) as exc:
            self.error = str(exc)

    def pcap(self) -> bytes:
        buf = io.BytesIO()
        writer = pcap_writer(buf)
        for f in list(self.handle.frames):
            write_pcap_frame(writer, f["ts"], f["frame"], f.get("len", len(f["frame"])))
        return buf.getvalue()


class Captures:
    """The captures of one web server, by id."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.captures: dict[int, WebCapture] = {}

    async def start(self, poller: Any, node: str | None = None, switch: str | None = None,
                    port: str | None = None, filter: str = "") -> WebCapture:
        """Start capturing on ``node``'s vnet0, or mirroring ``port`` of ``switch``."""
        if sum(c.running for c in self.captures.values()) >= MAX_CAPTURES:
            raise CaptureError(f"{MAX_CAPTURES} captures run already: stop one first")
        if not isinstance(filter, str):
            raise CaptureError("filter must be a string (pcap-filter(7), e.g. 'icmp')")
        if node:
            client = poller.node(node)
            started = await client.call("capture_start", filter=filter, count=MAX_FRAMES)
            handle = CaptureHandle(client, started["id"], label=node)
            what = {"node": node}
        elif switch and port:
            client = poller.switch(switch)
            started = await client.call("mirror_start", port=port, filter=filter, count=MAX_FRAMES)
            handle = CaptureHandle(client, started["id"], "mirror_read", "mirror_stop",
                                   label=f"switch {switch} port {port}")
            what = {"switch": switch, "port": port}
        else:
            raise CaptureError("say what to capture: {\"node\": NAME} or {\"switch\": NAME, \"port\": PORT}")
        cap = WebCapture(next(self._ids), handle, what, started.get("filter", filter))
        cap.task = asyncio.get_running_loop().create_task(cap.read_loop())
        self.captures[cap.id] = cap
        return cap

    def get(self, wid: int) -> WebCapture:
        try:
            return self.captures[wid]
        except KeyError:
            raise CaptureError(f"no capture {wid}") from None

    async def stop(self, wid: int) -> WebCapture:
        cap = self.get(wid)
        if cap.task is not None:
            cap.task.cancel()
            await asyncio.gather(cap.task, return_exceptions=True)
        if cap.handle.stats is None:
            try:
                await cap.handle.stop()
            except (ControlError, TimeoutError, OSError) as exc:
                cap.error = str(exc)
                cap.handle.stats = {}
        return cap

    async def aclose(self) -> None:
        for wid in list(self.captures):
            await self.stop(wid)
