"""Running ``vnet web`` as a real process for the tests: start it, read the URL it prints."""

from __future__ import annotations

import asyncio
import re

from vnet.lan import vnet_command

URL = re.compile(r"open (http://\S+)")


class WebProcess:
    """A ``vnet web`` process this test owns; ``url`` is what it printed, ``lines`` its stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.url = ""

    @classmethod
    async def start(cls, *args: str, timeout: float = 20.0) -> "WebProcess":
        proc = await asyncio.create_subprocess_exec(*vnet_command(), "web", *args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        web = cls(proc)
        try:
            await asyncio.wait_for(web._read_url(), timeout)
        except BaseException:
            await web.stop()
            raise
        return web

    async def _read_url(self) -> None:
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                err = (await self.proc.stderr.read()).decode()
                raise AssertionError(f"vnet web exited before printing its URL: {self.lines} {err}")
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            m = URL.search(line)
            if m:
                self.url = m.group(1)
                return

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode


async def run_web(*args: str, timeout: float = 20.0) -> tuple[int, str, str]:
    """``vnet web ARGS`` to completion (for the ones that fail at once): code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(*vnet_command(), "web", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


class Daemons:
    """Switch and node daemons started by hand in one runtime directory, named as a lab's runner
    names them (NAME.sock and NAME.data per switch, NAME.ctl per node); stopped on exit."""

    def __init__(self, runtime_dir: str) -> None:
        self.dir = runtime_dir
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, *args: str, timeout: float = 30.0) -> dict:
        import json

        from vnet.proto.control import READY_PREFIX

        proc = await asyncio.create_subprocess_exec(*vnet_command(), *args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL,
                                                    stdin=asyncio.subprocess.DEVNULL)
        self.procs.append(proc)
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
        assert line.startswith(READY_PREFIX), f"{args} did not start: {line!r}"
        return json.loads(line[len(READY_PREFIX):])

    async def switch(self, name: str) -> dict:
        return await self.start("switch", "--name", name, "--bind", f"ipc://{self.dir}/{name}.data",
                                "--switch-control", f"ipc://{self.dir}/{name}.sock")

    async def node(self, name: str, switch: str, cidr: str) -> dict:
        return await self.start("node", "--name", name, "--switch", f"ipc://{self.dir}/{switch}.data",
                                "--address", cidr, "--control", f"ipc://{self.dir}/{name}.ctl")

    async def __aenter__(self) -> "Daemons":
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
