"""``vnet lab``: a topology from a lab file (docs/lab.md): ``up`` until Ctrl-C, ``down`` from
another shell, ``demo`` (every node pings every other), ``compose`` (the same lab as containers)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from vnet.cli.common import CliError, run_until_stopped


def _load(path: str):
    from vnet.lab.load import LabError, load_lab

    try:
        lab = load_lab(path)
    except LabError as exc:
        raise CliError("lab: the lab file has errors:\n  " + "\n  ".join(exc.errors)) from None
    for warning in lab.warnings:
        print(f"vnet: warning: {warning}", file=sys.stderr)
    return lab


def lab_runtime_dir(name: str) -> str:
    """Where ``vnet lab up`` runs lab ``name``: ``<runtime dir>/lab-NAME``."""
    from vnet.proto.control import runtime_dir

    return os.path.join(runtime_dir(), f"lab-{name}")


def cmd_lab(args: argparse.Namespace) -> int:
    if args.lab_cmd == "down":
        return lab_down(args.lab)
    lab = _load(args.file)
    if args.lab_cmd == "compose":
        return lab_compose(lab, args.output)
    if args.lab_cmd == "up":
        return asyncio.run(lab_up(lab))
    if args.docker:
        return lab_demo_docker(lab, as_json=args.json, count=args.count)
    return asyncio.run(lab_demo(lab, as_json=args.json, count=args.count))


async def _describe(runner) -> None:
    """Every switch and node: endpoints, NICs with their addresses and MACs."""
    from vnet.proto.control import ControlError

    lab = runner.lab
    if runner.cleaned:  # what a killed earlier run of the lab left, now removed
        print(f"vnet: {runner.cleaned}", file=sys.stderr)
    print(f"vnet lab {lab.name} up (runtime directory {runner.runtime_dir})")
    for sw in lab.switches:
        h = runner.switch(sw.name)
        print(f"  switch {sw.name:<10} data {h.data}  control {h.control}"
              + (f"  metrics {h.metrics_url}" if h.metrics_url else ""))
    for node in lab.nodes:
        h = runner.node(node.name)
        try:
            links = {link.get("ifname", link.get("name")): link for link in await h.call("link_show")}
        except (ControlError, TimeoutError, ConnectionError):  # a description without MACs beats none
            links = {}
        have = await runner.addresses(node.name)
        extra = f" stack {node.stack}" + (f" (namespace {h.netns})" if h.netns else "")
        extra += " forwarding" if node.forwarding else ""
        extra += f" dhcp-server {node.dhcp_server}" if node.dhcp_server else ""
        process = runner.process_of(node.name)
        extra += f" in {process}" if process != node.name else f" metrics {h.metrics_url}" if h.metrics_url else ""
        print(f"  node   {node.name:<10} control {runner.endpoints.node_control(node.name)}{extra}")
        for k, nic in enumerate(node.nics):
            dev = f"vnet{k}"
            mac = links.get(dev, {}).get("address") or (h.mac if k == 0 else None) or "-"
            addr = nic.address if not nic.dhcp else f"dhcp ({', '.join(a for a in have if a not in node.static_ips()) or '-'})"
            vlan = f" vlan {nic.vlan}" if nic.vlan is not None else ""
            gw = f" gateway {nic.gateway}" if nic.gateway else ""
            print(f"         {dev:<6} {addr:<20} {mac:<17} on {nic.switch}{vlan}{gw}")
    for name, nodes in runner.packs.items():
        url = runner.node(nodes[0]).metrics_url
        print(f"  process {name:<8} {len(nodes)} nodes ({nodes[0]} .. {nodes[-1]})" + (f"  metrics {url}" if url else ""))
    print(f"Drive it: VNET_RUNTIME_DIR={runner.runtime_dir} vnet --node NODE ping IP;  "
          f"vnet switch --switch-control {runner.switch(lab.switches[0].name).control} fdb")


async def lab_up(lab) -> int:
    """``vnet lab up``: run the lab until SIGINT/SIGTERM (or ``vnet lab down``), or until one
    of its daemons dies (exit 1)."""
    from vnet.lab.run import LabRunner

    logging.basicConfig(level=logging.WARNING, format="vnet lab: %(message)s", stream=sys.stderr)
    runner = LabRunner(lab, runtime_dir=lab_runtime_dir(lab.name))
    return await run_until_stopped(runner, "lab", lambda: _describe(runner),
                                   f"Ctrl-C, SIGTERM or `vnet lab down {lab.name}` stops the lab.")


def lab_down(which: str | None, grace: float = 30.0) -> int:
    """``vnet lab down [NAME|FILE]``: SIGTERM the ``vnet lab up`` that runs the lab, wait for it
    to finish its teardown; clean up after one that was killed."""
    from vnet.handles import LanError
    from vnet.pidfile import LanPidfile, proc_starttime
    from vnet.proto.control import runtime_dir

    if which is None:
        base = runtime_dir()
        running = sorted(d[len("lab-"):] for d in os.listdir(base)
                         if d.startswith("lab-") and os.path.exists(os.path.join(base, d, "lan.pid")))
        if len(running) != 1:
            raise CliError("lab down: no lab is running here" if not running else
                           f"lab down: several labs run ({', '.join(running)}); name one: vnet lab down NAME")
        name = running[0]
    elif os.path.isfile(which) or which.endswith((".yml", ".yaml")):
        name = _load(which).name
    else:
        name = which
    pidfile = LanPidfile(lab_runtime_dir(name))
    try:
        with open(pidfile.path) as fh:
            doc = json.load(fh)
        owner, start = int(doc["pid"]), doc.get("starttime")
    except FileNotFoundError:
        raise CliError(f"lab down: no lab {name!r} is running (no {pidfile.path}; `vnet lab up` writes it)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        owner, start = 0, None
        print(f"vnet: {pidfile.path} is unreadable ({exc}); cleaning up", file=sys.stderr)
    if start is not None and proc_starttime(owner) == start:
        os.kill(owner, signal.SIGTERM)

        async def gone() -> bool:
            return proc_starttime(owner) != start

        from vnet.handles import poll_until

        try:
            asyncio.run(poll_until(gone, f"vnet lab up (pid {owner}) to stop lab {name}", timeout=grace, every=0.1))
        except TimeoutError as exc:
            raise CliError(f"lab down: {exc}; it still runs (kill -9 {owner}, then vnet lab down {name})") from None
        print(f"stopped lab {name} (vnet lab up, pid {owner})")
        return 0
    try:
        cleaned = asyncio.run(pidfile.clean_leftovers())
    except LanError as exc:
        raise CliError(f"lab down: {exc}") from None
    print(f"lab {name} was not running; {cleaned or 'nothing was left to clean up'}")
    return 0


async def lab_demo(lab, as_json: bool = False, count: int = 3, runner=None) -> int:
    """``vnet lab demo``: bring the lab up, every node pings every other node's addresses,
    tear it down; 0 only if every pair answered. ``runner``: the lab's runner (default the
    embedded ``LabRunner``; ``DockerLabRunner`` for ``--docker``)."""
    from vnet.handles import LanError
    from vnet.lab.demo import matrix, ping_all
    from vnet.lab.run import LabRunner

    runner = LabRunner(lab) if runner is None else runner
    try:
        try:
            await runner.start()
        except LanError as exc:
            print(f"vnet: error: {exc}", file=sys.stderr)
            return 2
        records = await ping_all(runner, count=count)
    finally:
        await runner.close()
    ok = all(r["ok"] for r in records)
    if as_json:
        print(json.dumps(records, indent=2))
        return 0 if ok else 1
    print(matrix(records))
    print(f"\n{sum(r['ok'] for r in records)}/{len(records)} pairs answered: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def lab_demo_docker(lab, as_json: bool = False, count: int = 3) -> int:
    """``vnet lab demo --docker``: the demo with a container per switch and node
    (vnet/lab/docker.py). SIGTERM stops it as Ctrl-C does: the project is torn down first."""
    from vnet.handles import LanError
    from vnet.lab.docker import DockerLabRunner

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await lab_demo(lab, as_json=as_json, count=count, runner=DockerLabRunner(lab))
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        return asyncio.run(main())
    except LanError as exc:  # the runner could not even be made (no Compose installed)
        print(f"vnet: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("vnet: lab demo interrupted; its containers are removed", file=sys.stderr)
        return 130


def lab_compose(lab, output: str | None) -> int:
    from vnet.lab.compose import compose_text

    text = compose_text(lab)
    if output in (None, "-"):
        sys.stdout.write(text)
        return 0
    try:
        with open(output, "w") as fh:
            fh.write(text)
    except OSError as exc:
        raise CliError(f"lab compose: cannot write {output}: {exc.strerror or exc}") from None
    print(f"wrote {output}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``lab`` command and its ``up``, ``down``, ``demo`` and ``compose`` subcommands."""
    from vnet.cli.common import Parser

    lab = sub.add_parser("lab", parents=[common], help="a topology from a lab file: up, down, demo, compose")
    lsub = lab.add_subparsers(dest="lab_cmd", metavar="up|down|demo|compose", required=True, parser_class=Parser)
    up = lsub.add_parser("up", parents=[common], help="run the lab until Ctrl-C (or vnet lab down)")
    up.add_argument("file", metavar="FILE", help="the lab file (YAML; docs/lab.md)")
    down = lsub.add_parser("down", parents=[common], help="stop a lab that `vnet lab up` runs in another shell")
    down.add_argument("lab", nargs="?", metavar="NAME|FILE", help="the lab (default: the only one running)")
    demo = lsub.add_parser("demo", parents=[common], help="bring the lab up, every node pings every other, tear down")
    demo.add_argument("file", metavar="FILE")
    demo.add_argument("--count", type=int, default=3, help="echoes per pair (default 3; one answer is enough)")
    demo.add_argument("--docker", action="store_true",
                      help="a container per switch and node (`vnet lab compose`'s file under docker compose, "
                           "the image vnet:latest or $VNET_IMAGE), torn down afterwards")
    comp = lsub.add_parser("compose", parents=[common], help="write the lab as a docker-compose file")
    comp.add_argument("file", metavar="FILE")
    comp.add_argument("-o", "--output", default=None, metavar="OUT", help="where to write it (default: stdout)")
    lab.set_defaults(func=cmd_lab)
