"""The peer: the same traffic through vde_switch (Debian's vde2), the classic C userspace
switch, between two ``vde_plug`` processes.

``vde_plug SOCKDIR`` attaches to the switch and relays between the switch and its
stdin/stdout, where frames travel as a 2-byte big-endian length followed by the frame (the
same record format as vnet's FRAMES payload). The sender worker writes records to one plug's
stdin as fast as the pipe takes them; the receiver worker reads the other plug's stdout and
counts whole records. vde_switch forwards one frame per datagram and counts no drops anyone
can read, so its loss is "sent - delivered".

``available()`` says whether vde2 is here; ``install()`` tries ``apt-get install -y vde2``
when running as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from bench.common import READY, RESULT, Sampler, emit, make_frame, mac, records, stdin_lines


def available() -> bool:
    return shutil.which("vde_switch") is not None and shutil.which("vde_plug") is not None


def install() -> str:
    """Make vde2 available if possible; return "" when it is, else why not (one line)."""
    if available():
        return ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "vde2 is not installed (install it with: apt-get install -y vde2)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-q", "vde2"], capture_output=True, env=env, timeout=600)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "-q", "vde2"], capture_output=True, env=env, timeout=600)
    if r.returncode != 0 or not available():
        tail = (r.stderr or r.stdout).decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        return f"vde2 could not be installed: apt-get install -y vde2 failed ({tail[0]})"
    return ""


def start_switch(sockdir: str) -> subprocess.Popen:
    """vde_switch on ``sockdir`` (its console on a pipe we never write to)."""
    proc = subprocess.Popen(["vde_switch", "-s", sockdir], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(os.path.join(sockdir, "ctl")):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"vde_switch did not start on {sockdir}")
        time.sleep(0.02)
    return proc


def vdesend(args: dict) -> None:
    plug = subprocess.Popen(["vde_plug", args["sock"]], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fd = plug.stdin.fileno()
    chunk = records(make_frame(mac(2), mac(1), args["size"]), args["batch"])
    per = args["batch"]
    reader = stdin_lines()
    time.sleep(0.2)  # the plug attaches to the switch
    emit(READY, {"plug_pid": plug.pid})
    while not any(line.startswith("go") for line in reader.poll()):
        time.sleep(0.01)
    write = os.write
    n = 0
    t0 = time.monotonic()
    end = t0 + args["duration"]
    while time.monotonic() < end:
        for _ in range(16):
            view = memoryview(chunk)
            while view:
                view = view[write(fd, view):]
        n += 16 * per
    t1 = time.monotonic()
    emit(RESULT, {"frames": n, "t0": t0, "t1": t1})
    while not any(line.startswith("stop") for line in reader.poll()):
        time.sleep(0.01)
    plug.terminate()
    plug.wait()


def vderecv(args: dict) -> None:
    plug = subprocess.Popen(["vde_plug", args["sock"]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    # One frame from the receiver's MAC so the switch learns it (vnet learns it from HELLO).
    hello = make_frame(b"\xff" * 6, mac(2), 60)
    plug.stdin.write(records(hello, 1))
    plug.stdin.flush()
    fd = plug.stdout.fileno()
    os.set_blocking(fd, False)
    rec = args["size"] + 2
    reader = stdin_lines()
    time.sleep(0.2)
    emit(READY, {"plug_pid": plug.pid})
    import select

    got = 0
    first = last = 0.0
    sampler = Sampler()
    expected = None
    expected_at = 0.0
    idle = args.get("idle", 0.5)
    deadline = time.monotonic() + args.get("timeout", 120)
    while True:
        r, _, _ = select.select([fd, reader.fd], [], [], 0.05)
        now = time.monotonic()
        if fd in r:
            while True:
                try:
                    chunk = os.read(fd, 1 << 20)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                if not first:
                    first = now
                got += len(chunk)
                last = time.monotonic()
                sampler.add(last, got // rec)
        if reader.fd in r:
            for line in reader.poll():
                if line.startswith("expect"):
                    expected = int(line.split()[1])
                    expected_at = now
        if expected is not None and (got // rec >= expected or now - max(last, expected_at) > idle):
            break
        if now > deadline:
            break
    emit(RESULT, {"frames": got // rec, "first": first, "last": last, "samples": sampler.samples})
    plug.terminate()
    plug.wait()
