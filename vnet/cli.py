"""The ``vnet`` command: iproute2/ethtool/ping-like tools for a node, switch queries, the
daemons, and the embedded LAN.

Every tool is a client of a control endpoint (vnet/control.py). A node is chosen with
``--node NAME`` or $VNET_NODE (its socket is in the runtime directory), or with
``--control ENDPOINT``; when exactly one node runs on this host (inside a node's container,
say) it is the default. ``--json`` prints the machine-readable result instead of the
human one. Exit codes: 0 success, 1 the thing asked for did not happen (ping with no
reply, a failed demo pair), 2 usage or request errors.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import logging
import os
import socket
import sys
from typing import Any, Callable, Sequence

from vnet.proto.wire import DEFAULT_CONTROL_PORT, DEFAULT_DATA_PORT
from vnet.proto.control import AsyncControlClient, ControlClient, ControlError, node_control_endpoint, runtime_dir


class CliError(Exception):
    """A user-facing error: printed as ``vnet: error: ...``, exit code 2."""


# -- output helpers ---------------------------------------------------------------------------


def _emit_json(obj: Any) -> None:
    print(json.dumps(_jsonable(obj), indent=2, sort_keys=False))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        try:
            return obj.decode()
        except UnicodeDecodeError:
            return obj.hex()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# -- endpoints --------------------------------------------------------------------------------


def node_endpoint(args: argparse.Namespace) -> str:
    if getattr(args, "control", None):
        return args.control
    name = getattr(args, "node", None) or os.environ.get("VNET_NODE")
    if name:
        return node_control_endpoint(name)
    rdir = runtime_dir()
    sockets = sorted(glob.glob(os.path.join(rdir, "*.ctl")))
    if len(sockets) == 1:
        return "ipc://" + sockets[0]
    if not sockets:
        raise CliError(
            f"no node runs on this host (no control socket in {rdir}); start one with "
            "`vnet node` or `vnet lan up`, or name one with --node NAME / --control ENDPOINT"
        )
    names = ", ".join(os.path.basename(s)[:-4] for s in sockets)
    raise CliError(f"several nodes run here ({names}): choose one with --node NAME or $VNET_NODE")


def switch_endpoint(args: argparse.Namespace) -> str:
    return (
        getattr(args, "switch_control", None)
        or os.environ.get("VNET_SWITCH_CONTROL")
        or f"tcp://127.0.0.1:{DEFAULT_CONTROL_PORT}"
    )


def curve_client(args: argparse.Namespace) -> Any:
    """The CURVE keys for talking to a switch with CURVE on (--curve-secret and
    --curve-server-key, or $VNET_CURVE_SECRET and $VNET_CURVE_SERVER_KEY), or None."""
    from vnet.proto.auth import CurveClient

    secret = getattr(args, "curve_secret", None) or os.environ.get("VNET_CURVE_SECRET")
    server = getattr(args, "curve_server_key", None) or os.environ.get("VNET_CURVE_SERVER_KEY")
    if not secret and not server:
        return None
    if not secret or not server:
        raise CliError("CURVE needs both --curve-secret (your .key_secret) and --curve-server-key "
                       "(the switch's .key), or $VNET_CURVE_SECRET and $VNET_CURVE_SERVER_KEY")
    try:
        return CurveClient.from_files(secret, server)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def switch_client(args: argparse.Namespace, timeout: float) -> ControlClient:
    """A client of the switch's control endpoint, with CURVE when keys are given."""
    return ControlClient(switch_endpoint(args), timeout=timeout, curve=curve_client(args))


def node_call(args: argparse.Namespace, cmd: str, wait: float | None = None, **params: Any) -> Any:
    with ControlClient(node_endpoint(args), timeout=args.timeout) as client:
        return client.call(cmd, wait=wait, **params)


# -- vnet ip ----------------------------------------------------------------------------------


def _link_lines(link: dict, stats: bool) -> list[str]:
    flags = ",".join(link["flags"])
    state = link["operstate"].upper()
    lines = [
        f"{link['ifindex']}: {link['name']}: <{flags}> mtu {link['mtu']} qdisc {link['qdisc']} "
        f"state {state} mode DEFAULT qlen {link['txqueuelen']}",
        f"    link/ether {link['address']} brd {link['broadcast']}"
        + (f" promiscuity {link['promiscuity']}" if link["promiscuity"] else ""),
    ]
    if stats:
        s = link["stats64"]
        lines += [
            "    RX:  bytes packets errors dropped  missed   mcast",
            f"    {s['rx_bytes']:>10} {s['rx_packets']:>7} {s['rx_errors']:>6} {s['rx_dropped']:>7} "
            f"{s['rx_missed_errors']:>7} {s['multicast']:>7}",
            "    TX:  bytes packets errors dropped carrier collsns",
            f"    {s['tx_bytes']:>10} {s['tx_packets']:>7} {s['tx_errors']:>6} {s['tx_dropped']:>7} "
            f"{s['tx_carrier_errors']:>7} {s['collisions']:>7}",
        ]
    return lines


def cmd_ip(args: argparse.Namespace) -> int:
    obj, action = args.object, args.action
    if obj in ("link", "l"):
        if action in (None, "show", "list"):
            links = node_call(args, "link_show")
            if args.json:
                _emit_json(links)
            else:
                for link in links:
                    print("\n".join(_link_lines(link, args.stats)))
            return 0
        if action == "set":
            return _ip_link_set(args)
        raise CliError(f"ip link {action}: use show or set")
    if obj in ("addr", "address", "a"):
        if action in (None, "show", "list"):
            info = node_call(args, "addr_show")
            links = node_call(args, "link_show")
            if args.json:
                _emit_json(info)
            else:
                for link in links:
                    print("\n".join(_link_lines(link, args.stats)))
                    for a in info["addresses"]:
                        extra = "" if a["state"] == "ok" else f" {a['state']}"
                        print(f"    inet {a['address']}/{a['prefixlen']} brd {a.get('broadcast', '')} scope global{extra} {link['name']}")
                for c in info["conflicts"]:
                    print(f"    address conflict: {c['address']} is in use by {c['mac']}")
            return 0
        if action in ("add", "del", "delete"):
            cidr = _one_arg(args.rest, f"ip addr {action} A.B.C.D/PREFIX [dev vnet0]")
            cmd = "addr_add" if action == "add" else "addr_del"
            info = node_call(args, cmd, cidr=cidr, dev=args.dev)
            if args.json:
                _emit_json(info)
            return 0
        raise CliError(f"ip addr {action}: use show, add or del")
    if obj in ("neigh", "neighbour", "neighbor", "n"):
        if action in (None, "show", "list"):
            entries = node_call(args, "neigh_show")
            if args.json:
                _emit_json(entries)
            else:
                for e in entries:
                    ll = f" lladdr {e['mac']}" if e.get("mac") else ""
                    print(f"{e['ip']} dev vnet0{ll} {e['state']}")
            return 0
        if action == "flush":
            n = node_call(args, "neigh_flush")
            if args.json:
                _emit_json({"flushed": n})
            else:
                print(f"*** Round 1, deleting {n} entries ***\n*** Flush is complete after 1 round ***")
            return 0
        raise CliError(f"ip neigh {action}: use show or flush")
    raise CliError(f"ip {obj}: use link, addr or neigh")


def _one_arg(rest: list[str], usage: str) -> str:
    rest = [r for r in rest if r]
    if len(rest) >= 2 and rest[-2] == "dev":
        rest = rest[:-2]
    if len(rest) != 1:
        raise CliError(f"usage: vnet {usage}")
    return rest[0]


def _ip_link_set(args: argparse.Namespace) -> int:
    words = list(args.rest)
    if words and words[0] == "dev":
        words.pop(0)
    if not words:
        raise CliError("usage: vnet ip link set vnet0 up|down|mtu N|address MAC|promisc on|off")
    dev, words = words[0], words[1:]
    change: dict[str, Any] = {}
    while words:
        w = words.pop(0)
        if w in ("up", "down"):
            change["state"] = w
        elif w in ("mtu", "address", "promisc"):
            if not words:
                raise CliError(f"ip link set: {w} needs a value")
            value = words.pop(0)
            if w == "mtu":
                try:
                    change["mtu"] = int(value)
                except ValueError:
                    raise CliError(f"ip link set: mtu {value!r} is not a number") from None
            elif w == "address":
                change["address"] = value
            else:
                if value not in ("on", "off"):
                    raise CliError("ip link set: promisc takes on or off")
                change["promisc"] = value == "on"
        else:
            raise CliError(f"ip link set: unknown word {w!r} (up, down, mtu N, address MAC, promisc on|off)")
    if not change:
        raise CliError("ip link set: nothing to change")
    link = node_call(args, "link_set", dev=dev, **change)
    if args.json:
        _emit_json(link)
    return 0


# -- vnet ethtool -----------------------------------------------------------------------------

_RING_KEYS = {"rx": "rx_pending", "tx": "tx_pending"}
_COALESCE_KEYS = {"rx-usecs": "rx_usecs", "rx-frames": "rx_frames"}


def _pairs(words: list[str], allowed: dict[str, str], what: str) -> dict[str, int]:
    if len(words) % 2:
        raise CliError(f"ethtool {what}: give NAME VALUE pairs ({', '.join(allowed)})")
    out = {}
    for name, value in zip(words[::2], words[1::2]):
        if name not in allowed:
            raise CliError(f"ethtool {what}: unknown parameter {name!r} ({', '.join(allowed)})")
        try:
            out[allowed[name]] = int(value)
        except ValueError:
            raise CliError(f"ethtool {what}: {name} {value!r} is not a number") from None
    if not out:
        raise CliError(f"ethtool {what}: nothing to change ({', '.join(allowed)})")
    return out


def cmd_ethtool(args: argparse.Namespace) -> int:
    dev = args.devname
    if args.set_ring is not None:
        result = node_call(args, "ethtool", op="set_ringparam", dev=dev, **_pairs(args.set_ring, _RING_KEYS, "-G"))
    elif args.set_coalesce is not None:
        result = node_call(args, "ethtool", op="set_coalesce", dev=dev,
                           **_pairs(args.set_coalesce, _COALESCE_KEYS, "-C"))
    else:
        op = {"i": "drvinfo", "S": "stats", "g": "get_ringparam", "c": "get_coalesce"}.get(args.mode, "link")
        result = node_call(args, "ethtool", op=op, dev=dev)
        if args.json:
            _emit_json(result)
        elif op == "drvinfo":
            for k, v in result.items():
                print(f"{k.replace('_', '-')}: {v}")
        elif op == "stats":
            print("NIC statistics:")
            for k, v in result.items():
                print(f"     {k}: {v}")
        elif op == "get_ringparam":
            print(f"Ring parameters for {dev}:\nPre-set maximums:")
            print(f"RX:\t\t{result.get('rx_max_pending')}\nTX:\t\t{result.get('tx_max_pending')}")
            print("Current hardware settings:")
            print(f"RX:\t\t{result.get('rx_pending')}\nTX:\t\t{result.get('tx_pending')}")
        elif op == "get_coalesce":
            print(f"Coalesce parameters for {dev}:")
            for k, v in result.items():
                print(f"{k.replace('_', '-')}: {v}")
        else:
            print(f"Settings for {dev}:\n\tLink detected: {'yes' if result else 'no'}")
        return 0
    if args.json:
        _emit_json(result)
    return 0


# -- vnet ping / arping -----------------------------------------------------------------------


def cmd_ping(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise CliError("ping: -c needs a count of at least 1")
    if args.interval < 0.001:
        raise CliError("ping: -i must be at least 0.001 s")
    if not 0 <= args.size <= 65507:
        raise CliError("ping: -s must be between 0 and 65507")
    return asyncio.run(_ping(args))


async def _ping(args: argparse.Namespace) -> int:
    import zmq.asyncio

    from vnet.node.stack import PingStats

    ctx = zmq.asyncio.Context()
    client = AsyncControlClient(ctx, node_endpoint(args), timeout=args.timeout)
    stats = PingStats()
    replies: list[dict] = []
    src = None
    if not args.json:
        print(f"PING {args.dst} ({args.dst}) {args.size}({args.size + 28}) bytes of data.")
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def probe(seq: int) -> None:
        nonlocal src
        stats.on_transmit()
        r = await client.call("ping", wait=args.wait + args.timeout, dst=args.dst, seq=seq,
                              size=args.size, timeout=args.wait)
        replies.append(r)
        if r["status"] == "reply":
            stats.on_reply(r["rtt_ms"] / 1000.0)
            if not args.json:
                print(f"{r['bytes']} bytes from {r['from']}: icmp_seq={seq} ttl={r['ttl']} time={r['rtt_ms']:.3f} ms")
        elif r["status"] == "unreachable":
            stats.on_error()
            if not args.json:
                if src is None:
                    addrs = (await client.call("addr_show"))["addresses"]
                    src = addrs[0]["address"] if addrs else "?"
                print(f"From {src} icmp_seq={seq} Destination Host Unreachable")

    tasks = []
    try:
        seq = 0
        while args.count is None or seq < args.count:
            seq += 1
            tasks.append(loop.create_task(probe(seq)))
            if args.count is not None and seq >= args.count:
                break
            await asyncio.sleep(args.interval)  # ping's probe interval (-i)
        await asyncio.gather(*tasks)
    except (KeyboardInterrupt, asyncio.CancelledError):
        for t in tasks:
            t.cancel()
    finally:
        await client.close()
        ctx.term()
    elapsed = loop.time() - started
    if args.json:
        rtt = stats.rtt_us()
        _emit_json({
            "dst": args.dst, "transmitted": stats.transmitted, "received": stats.received,
            "errors": stats.errors, "loss_pct": stats.loss_percent, "time_ms": elapsed * 1000.0,
            "rtt_ms": dict(zip(("min", "avg", "max", "mdev"), (v / 1000.0 for v in rtt))) if rtt else None,
            "replies": sorted(replies, key=lambda r: r["seq"]),
        })
    else:
        print()
        print(stats.format(args.dst, elapsed))
    return 0 if stats.received else 1


def cmd_arping(args: argparse.Namespace) -> int:
    got = 0
    results = []
    if not args.json:
        print(f"ARPING {args.dst}")
    for _ in range(args.count):
        r = node_call(args, "arping", wait=args.wait + args.timeout, dst=args.dst, timeout=args.wait)
        results.append(r)
        if r["status"] == "reply":
            got += 1
            if not args.json:
                print(f"Unicast reply from {args.dst} [{r['mac']}]  {r['rtt_ms']:.3f}ms")
        elif not args.json:
            print(f"Timeout waiting for a reply from {args.dst}")
    if args.json:
        _emit_json({"dst": args.dst, "sent": args.count, "received": got, "replies": results})
    else:
        print(f"Sent {args.count} probes (1 broadcast(s))\nReceived {got} response(s)")
    return 0 if got else 1


# -- vnet udp ---------------------------------------------------------------------------------


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise CliError(f"udp: {text!r}: expected IP:PORT")
    try:
        p = int(port)
    except ValueError:
        raise CliError(f"udp: port {port!r} is not a number") from None
    if not 1 <= p <= 65535:
        raise CliError(f"udp: port {p} is out of range 1..65535")
    return host, p


def cmd_udp(args: argparse.Namespace) -> int:
    if args.udp_cmd == "send":
        host, port = _host_port(args.target)
        r = node_call(args, "udp_send", dst=host, port=port, data=args.data.encode(), sport=args.sport)
        if args.json:
            _emit_json(r)
        else:
            print(f"sent {r['bytes']} bytes to {host}:{port} from port {r['sport']}")
        return 0
    if not 1 <= args.port <= 65535:
        raise CliError(f"udp listen: port {args.port} is out of range 1..65535")
    with ControlClient(node_endpoint(args), timeout=args.timeout) as client:
        client.call("udp_bind", port=args.port)
        got = 0
        try:
            while args.count is None or got < args.count:
                batch = client.call("udp_recv", wait=args.timeout + 1.0, port=args.port, timeout=1.0)
                for d in batch:
                    got += 1
                    if args.json:
                        print(json.dumps(_jsonable(d)), flush=True)
                    else:
                        print(f"{d['src']}:{d['sport']} -> {d['dst']}:{d['port']}: "
                              f"{d['data'].decode(errors='replace')}", flush=True)
                    if args.count is not None and got >= args.count:
                        break
        except KeyboardInterrupt:
            pass
        finally:
            client.call("udp_unbind", port=args.port)
    return 0


# -- vnet inject ------------------------------------------------------------------------------


def build_frames(source: str, src_mac: str, src_ip: str | None) -> list[bytes]:
    """Frames from a pcap file path or a scapy expression, with the node's MAC/IP as defaults.

    Missing destination MACs become broadcast, so scapy never tries to resolve anything on
    the host's own network.
    """
    from scapy.all import IP, Ether, Packet, rdpcap  # scapy is slow to import: only here
    import scapy.all as scapy_all

    if os.path.isfile(source):
        try:
            return [bytes(p) for p in rdpcap(source)]
        except Exception as exc:
            raise CliError(f"inject: cannot read pcap {source!r}: {exc}") from None
    namespace = {k: getattr(scapy_all, k) for k in dir(scapy_all) if not k.startswith("_")}
    try:
        obj = eval(source, namespace)  # the user's own expression, in their own shell
    except Exception as exc:
        raise CliError(f"inject: {source!r} is neither a pcap file nor a scapy expression: "
                       f"{exc.__class__.__name__}: {exc}") from None
    packets = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    frames = []
    for pkt in packets:
        if isinstance(pkt, (bytes, bytearray)):
            frames.append(bytes(pkt))
            continue
        if not isinstance(pkt, Packet):
            raise CliError(f"inject: the expression gave a {type(pkt).__name__}, not a packet")
        if not isinstance(pkt, Ether):
            pkt = Ether() / pkt
        if pkt.dst is None or "dst" not in pkt.fields:
            pkt.dst = "ff:ff:ff:ff:ff:ff"
        if "src" not in pkt.fields:
            pkt.src = src_mac
        if src_ip and pkt.haslayer(IP) and "src" not in pkt[IP].fields:
            pkt[IP].src = src_ip
        frames.extend(bytes(p) for p in pkt)  # an expression with ranges yields several
    return frames


def cmd_inject(args: argparse.Namespace) -> int:
    link = node_call(args, "link_show")[0]
    addrs = node_call(args, "addr_show")["addresses"]
    frames = build_frames(args.source, link["address"], addrs[0]["address"] if addrs else None)
    frames = frames * args.count
    r = node_call(args, "inject", frames=frames, dev=args.dev)
    if args.json:
        _emit_json(r)
    else:
        print(f"injected {r['sent']} frame(s) through {args.dev}")
    return 0


# -- vnet capture -----------------------------------------------------------------------------


def frame_summary(frame: bytes) -> str:
    """One line about a frame, like tcpdump's (scapy's dissection; not on any hot path)."""
    from scapy.all import Ether

    try:
        return Ether(frame).summary()
    except Exception as exc:  # a frame scapy cannot dissect is still a frame
        return f"{len(frame)} bytes, undissectable ({exc.__class__.__name__})"


def run_capture(args: argparse.Namespace, connect: Callable[[], ControlClient], what: str, start: str, read: str,
                stop: str, **start_args: Any) -> int:
    """The capture loop ``vnet capture`` and ``vnet switch mirror`` share: start a capture on
    the daemon ``connect()`` reaches (``start`` command), fetch frames with ``read`` until -c
    N, Ctrl-C or SIGTERM, then ``stop``; write a pcap with -w, else a line per frame (JSON
    with --json)."""
    import signal
    import time

    if args.count is not None and args.count < 1:
        raise CliError(f"{what}: -c needs a count of at least 1")
    writer = None
    if args.write:
        from scapy.utils import PcapWriter

        try:
            writer = PcapWriter(args.write, linktype=1, sync=True)  # DLT_EN10MB
        except OSError as exc:
            raise CliError(f"{what}: cannot write {args.write}: {exc}") from None
    stopping = False

    def on_sigterm(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_sigterm)
    got = 0
    with connect() as client:
        started = client.call(start, filter=" ".join(args.filter), count=args.count, **start_args)
        cid = started["id"]
        if not args.json:
            print(f"{what}{', filter ' + started['filter'] if started['filter'] else ''}"
                  f"{', writing ' + args.write if args.write else ''}", file=sys.stderr, flush=True)
        try:
            while not stopping:
                batch = client.call(read, wait=args.timeout + 2.0, id=cid, timeout=0.5)
                for c in batch["frames"]:
                    got += 1
                    if writer is not None:
                        from scapy.all import Ether

                        pkt = Ether(c["frame"])
                        pkt.time = c["ts"]
                        writer.write(pkt)
                    elif args.json:
                        print(json.dumps({"ts": c["ts"], "dir": c["dir"], "len": len(c["frame"]),
                                          "frame": c["frame"].hex()}), flush=True)
                    else:
                        stamp = time.strftime("%H:%M:%S", time.localtime(c["ts"])) + f"{c['ts'] % 1:.6f}"[1:]
                        print(f"{stamp} {c['dir']:<3} {frame_summary(c['frame'])}", flush=True)
                if batch["done"]:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            final = client.call(stop, id=cid)
            if writer is not None:
                writer.close()
    if not args.json:
        print(f"{got} packets captured\n{final['matched']} packets received by filter\n"
              f"{final['dropped']} packets dropped by the capture buffer", file=sys.stderr)
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    """``vnet capture [-i vnet0] [-w FILE] [-c N] [FILTER]``: frames as vnet0 sees them, both
    directions; a pcap file with -w, else a line per frame. Stops at -c N or Ctrl-C/SIGTERM."""
    if args.iface != "vnet0":
        raise CliError(f"capture: no device {args.iface!r} (vnet nodes have vnet0)")
    return run_capture(args, lambda: ControlClient(node_endpoint(args), timeout=args.timeout), f"capture on {args.iface}",
                       "capture_start", "capture_read", "capture_stop")


# -- vnet dhcp --------------------------------------------------------------------------------


def cmd_dhcp(args: argparse.Namespace) -> int:
    info = node_call(args, "dhcp_show")
    if args.json:
        _emit_json(info)
        return 0
    client, server = info["client"], info["server"]
    if client is None and server is None:
        print("this node neither asks for nor serves DHCP")
    if client is not None:
        left = client.get("lease_remaining")
        print(f"client: {client['state']} address {client.get('address') or '-'} from {client.get('server') or '-'}"
              + (f", lease {left:.0f} s left" if left is not None else ""))
    if server is not None:
        print(f"server: {len(server)} lease(s)")
        for lease in server:
            left = lease.get("remaining")
            print(f"  {lease['ip']:<15} {lease['state']:<8} {lease.get('hostname') or lease['client_id']}"
                  + (f"  {left:.0f} s" if left is not None else ""))
    return 0


# -- vnet health ------------------------------------------------------------------------------


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when healthy, 1 when not, with one line saying why (the image's HEALTHCHECK).

    A node is healthy when it has carrier (attached to the switch) and at least one address,
    every one past duplicate address detection; the switch when its control endpoint answers.
    The role is the switch's with --switch or $VNET_ROLE=switch, else the node's.
    """
    role = "switch" if args.switch or os.environ.get("VNET_ROLE") == "switch" else "node"
    try:
        if role == "switch":
            with switch_client(args, timeout=min(args.timeout, 2.0)) as client:
                pong = client.call("ping")
            print(f"healthy: switch answers, {pong.get('ports')} ports")
            return 0
        with ControlClient(node_endpoint(args), timeout=min(args.timeout, 2.0)) as client:
            health = client.call("health")
    except (CliError, ControlError, TimeoutError) as exc:
        print(f"unhealthy: {exc}")
        return 1
    addrs = [f"{a['address']}/{a['prefixlen']} {a['state']}" for a in health["addresses"]]
    if not health["carrier"]:
        print(f"unhealthy: node {health['name']} has no carrier (switch attached: {health['attached']})")
        return 1
    if not addrs or any(not a.endswith(" ok") for a in addrs):
        print(f"unhealthy: node {health['name']} has carrier, addresses not ready: {', '.join(addrs) or 'none yet'}")
        return 1
    print(f"healthy: node {health['name']} carrier up, addresses {', '.join(addrs)}")
    return 0


# -- vnet call --------------------------------------------------------------------------------


def _untag(obj: Any) -> Any:
    """JSON in, with ``{"$bytes": HEX}`` standing for binary values."""
    if isinstance(obj, dict):
        if set(obj) == {"$bytes"}:
            return bytes.fromhex(obj["$bytes"])
        return {k: _untag(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_untag(v) for v in obj]
    return obj


def _tag(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return {"$bytes": bytes(obj).hex()}
    if isinstance(obj, dict):
        return {str(k): _tag(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tag(v) for v in obj]
    return obj


def _call_stream(args: argparse.Namespace) -> int:
    """``vnet call --stream``: the persistent control channel (vnet/ctlstream.py)."""
    import zmq.asyncio

    from vnet.ctlstream import relay
    from vnet.proto.control import AsyncControlClient

    async def serve() -> int:
        ctx = zmq.asyncio.Context()
        try:
            curve = curve_client(args) if args.switch else None
            endpoint = switch_endpoint(args) if args.switch else node_endpoint(args)
            return await relay(AsyncControlClient(ctx, endpoint, curve=curve))
        finally:
            ctx.term()

    return asyncio.run(serve())


def cmd_call(args: argparse.Namespace) -> int:
    """Any control request. ``vnet call CMD '{"arg": 1}'`` prints the result as JSON (binary as
    ``{"$bytes": HEX}``); ``vnet call --stdio`` relays one msgpack request from stdin and writes
    the raw msgpack reply to stdout (how the Docker LAN fixture reaches a node in a container)."""
    import msgpack
    import zmq

    if args.stream:
        return _call_stream(args)
    if args.stdio:
        request = sys.stdin.buffer.read()
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            if args.switch:
                curve = curve_client(args)
                if curve is not None:
                    curve.apply(sock)
            sock.connect(switch_endpoint(args) if args.switch else node_endpoint(args))
            sock.send_multipart([b"", request])
            wait = args.wait if args.wait is not None else args.timeout
            if not sock.poll(int(wait * 1000)):
                raise CliError(f"no answer from the {'switch' if args.switch else 'node'} within {wait:g} s")
            sys.stdout.buffer.write(sock.recv_multipart()[-1])
            sys.stdout.buffer.flush()
        finally:
            sock.close(linger=0)
        return 0
    if not args.cmd:
        raise CliError("call: give a command name (or --stdio)")
    try:
        params = _untag(json.loads(args.params)) if args.params else {}
    except json.JSONDecodeError as exc:
        raise CliError(f"call: arguments must be a JSON object: {exc}") from None
    if not isinstance(params, dict):
        raise CliError("call: arguments must be a JSON object")
    if args.switch:
        with switch_client(args, timeout=args.timeout) as client:
            result = client.call(args.cmd, wait=args.wait, **params)
    else:
        result = node_call(args, args.cmd, wait=args.wait, **params)
    print(json.dumps(_tag(result), indent=2))
    return 0


# -- vnet compose -----------------------------------------------------------------------------


def cmd_compose(args: argparse.Namespace) -> int:
    """``vnet compose [DIR] [--build]``: vnet's compose project, written out from the installed
    vnet (vnet/compose/tree.py), and optionally its image built."""
    from vnet.compose.tree import TreeError, build_image, write_tree

    dest = os.path.abspath(args.dir)
    try:
        written = write_tree(dest, force=args.force)
        for path in written:
            print(f"wrote {os.path.relpath(path)}")
        if not written:
            print(f"{dest} already holds vnet's compose project")
        if args.build:
            build_image(dest)
    except TreeError as exc:
        raise CliError(str(exc)) from None
    here = "" if os.path.samefile(dest, os.getcwd()) else f"cd {os.path.relpath(dest)} && "
    if args.build:
        print(f"\nimage built; start the LAN:  {here}docker compose up -d     (Compose v1: docker-compose up -d)")
    else:
        print(f"\nnext:  {here}vnet compose --build .     (or, on a host with a registry: docker compose up -d --build)")
    return 0


# -- vnet switch ------------------------------------------------------------------------------


def cmd_switch(args: argparse.Namespace) -> int:
    if args.switch_cmd is None:
        return run_switch(args)
    if args.switch_cmd == "port":
        return _switch_port(args)
    if args.switch_cmd == "impair":
        return _switch_impair(args)
    if args.switch_cmd == "mirror":
        return _switch_mirror(args)
    params: dict[str, Any] = {}
    if args.switch_cmd == "flush" and args.arg:
        params["port"] = args.arg
    if args.switch_cmd == "set-ageing":
        if args.arg is None:
            raise CliError("usage: vnet switch set-ageing SECONDS")
        try:
            params["seconds"] = float(args.arg)
        except ValueError:
            raise CliError(f"switch set-ageing: {args.arg!r} is not a number of seconds") from None
    if args.switch_cmd == "port-security":
        params = {k: v for k, v in (("max_macs", args.set_max_macs), ("violation", args.set_violation)) if v is not None}
    cmd = {"set-ageing": "set_ageing", "port-security": "port_security"}.get(args.switch_cmd, args.switch_cmd)
    with switch_client(args, timeout=args.timeout) as client:
        result = client.call(cmd, **params)
    if args.json:
        _emit_json(result)
        return 0
    if cmd == "fdb":
        for e in result:
            print(f"{e['mac']} dev {e['port']} vlan {e['vlan']} master vnet-switch age {e['age']:.1f}s")
    elif cmd == "ports":
        for p in result:
            c = p.get("counters", {})
            down = c.get("port_down", 0)
            psec = c.get("port_security", 0)
            print(f"port {p['port_id']}: {p['name']} state {p.get('admin', 'up').upper()} "
                  f"macs {','.join(p['macs'])} mtu {p['mtu']} rx {c.get('rx_packets', 0)} tx {c.get('tx_packets', 0)}"
                  f"{f' port_down {down}' if down else ''}"
                  f"{f' port_security {psec}' if psec else ''}"
                  f"{'  impaired' if p.get('impaired') else ''}{'  mirrored' if p.get('mirrors') else ''}")
    elif cmd == "stats":
        _print_tree(result)
    elif cmd == "flush":
        print(f"flushed {result} entries")
    elif cmd == "port_security":
        limit = result["max_macs"] or "unlimited"
        print(f"max-macs {limit} violation {result['violation']}")
    else:
        print(result)
    return 0


def _switch_port(args: argparse.Namespace) -> int:
    """``vnet switch port NODE down|up``: cut or restore a node's cable at the switch."""
    with switch_client(args, timeout=args.timeout) as client:
        result = client.call("port_set", port=args.port, up=args.state == "up")
    if args.json:
        _emit_json(result)
    else:
        print(f"port {result['name']}: admin {result['admin']}"
              f"{'' if result['attached'] else ' (not attached: applies when it attaches)'}")
    return 0


IMPAIR_OPTIONS = ("loss", "loss_burst", "delay", "jitter", "rate", "queue", "duplicate", "corrupt", "reorder", "seed")


def _switch_impair(args: argparse.Namespace) -> int:
    """``vnet switch impair PORT [--dir in|out|both] [--loss 10%] ... | --clear``; with no
    setting, show the current ones and the counters. Values are parsed by the switch
    (switch/impair.py), which answers a clear error for a bad one."""
    params = {name: getattr(args, name) for name in IMPAIR_OPTIONS if getattr(args, name) is not None}
    with switch_client(args, timeout=args.timeout) as client:
        if params or args.clear:
            result = client.call("impair", port=args.port, dir=args.dir, clear=args.clear, **params)
        else:
            result = client.call("impair", port=args.port)
    if args.json:
        _emit_json(result)
        return 0
    print(f"port {result['port']}")
    for direction, what in (("in", "from the node"), ("out", "to the node")):
        d = result[direction]
        print(f"  {direction:<3} ({what}): {d['describe']}")
        counters = " ".join(f"{k} {v}" for k, v in d["counters"].items() if v or k == "frames")
        print(f"      {counters} held {d['held']}")
    return 0


def _switch_mirror(args: argparse.Namespace) -> int:
    """``vnet switch mirror PORT [-w FILE.pcap] [-c N] [FILTER]``: what crosses a switch port,
    both directions ("in": from the node, "out": to it), as ``vnet capture`` shows a node's."""
    if not args.port:
        raise CliError("usage: vnet switch mirror PORT [-w FILE.pcap] [-c N] [FILTER]")
    return run_capture(args, lambda: switch_client(args, timeout=args.timeout), f"mirror of switch port {args.port}",
                       "mirror_start", "mirror_read", "mirror_stop", port=args.port)

def _print_tree(obj: Any, indent: int = 0) -> None:
    pad = "  " * indent
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                print(f"{pad}{k}:")
                _print_tree(v, indent + 1)
            else:
                print(f"{pad}{k}: {v}")
    elif isinstance(obj, list):
        for v in obj:
            _print_tree(v, indent)
            print()
    else:
        print(f"{pad}{obj}")


def run_switch(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    from vnet.switch.server import SwitchConfig, serve
    from vnet.proto.control import print_final, print_ready

    try:
        config = SwitchConfig(
            bind=args.bind, control=args.switch_control or f"tcp://127.0.0.1:{DEFAULT_CONTROL_PORT}",
            ageing_time=args.ageing, heartbeat_interval=args.heartbeat_interval,
            heartbeat_timeout=args.heartbeat_timeout, mtu=args.mtu, fdb_max=args.fdb_max,
            port_hwm=args.port_hwm, max_macs=args.max_macs, violation=args.violation,
            max_ports=args.max_ports, hello_rate=args.hello_rate, port_queue_bytes=args.port_queue_bytes,
            curve_secret=getattr(args, "curve_secret", None) or os.environ.get("VNET_CURVE_SECRET"),
            curve_allowed=args.curve_allowed or os.environ.get("VNET_CURVE_ALLOWED"),
        )
    except ValueError as exc:
        raise CliError(f"switch: {exc}") from None
    ready = lambda server: print_ready({"switch": True, "data": server.data_endpoint,  # noqa: E731
                                        "control": server.control_endpoint})
    final = lambda server: print_final(server.final_stats)  # noqa: E731
    try:
        asyncio.run(serve(config, on_ready=ready, on_closed=final))
    except OSError as exc:  # an endpoint that cannot be bound: in use, bad address
        raise CliError(f"switch: {exc}") from None
    return 0


# -- vnet node --------------------------------------------------------------------------------


def run_node(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    from vnet.node.daemon import NodeConfig, serve

    name = args.name or os.environ.get("VNET_NODE") or socket.gethostname()
    addresses = args.address or [a for a in os.environ.get("VNET_ADDRESS", "").split(",") if a]
    config = NodeConfig(
        name=name,
        switch=args.switch or os.environ.get("VNET_SWITCH") or f"tcp://127.0.0.1:{DEFAULT_DATA_PORT}",
        addresses=addresses, control=args.control, mac=args.mac, mtu=args.mtu,
        tx_ring_size=args.tx_ring, rx_ring_size=args.rx_ring,
        heartbeat_interval=args.heartbeat_interval, heartbeat_timeout=args.heartbeat_timeout,
        dhcp=args.dhcp, dhcp_server=args.dhcp_server, lease_file=args.lease_file, lease_time=args.lease_time,
        curve_secret=getattr(args, "curve_secret", None) or os.environ.get("VNET_CURVE_SECRET"),
        curve_server_key=getattr(args, "curve_server_key", None) or os.environ.get("VNET_CURVE_SERVER_KEY"),
    )
    try:
        config.validate()
    except ValueError as exc:
        raise CliError(f"node: {exc}") from None
    return asyncio.run(serve(config))


# -- vnet keygen ------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    """``vnet keygen DIR NODE...``: the LAN's CURVE keys (vnet/auth.py has the layout)."""
    from vnet.proto.auth import keygen

    try:
        written = keygen(args.dir, args.nodes)
    except (ValueError, OSError) as exc:
        raise CliError(f"keygen: {exc}") from None
    for path in written:
        print(path)
    d = args.dir
    print(f"# switch: --curve-secret {d}/switch.key_secret --curve-allowed {d}/allowed", file=sys.stderr)
    print(f"# node:   --curve-secret {d}/NODE.key_secret --curve-server-key {d}/switch.key", file=sys.stderr)
    return 0


# -- vnet lan ---------------------------------------------------------------------------------


def cmd_lan(args: argparse.Namespace) -> int:
    from vnet import lan as lanmod

    if args.nodes < 1:
        raise CliError("lan: --nodes must be at least 1")
    try:
        if args.lan_cmd == "up":
            return asyncio.run(lanmod.lan_up(args.nodes, args.subnet, curve=args.curve))
        return asyncio.run(lanmod.lan_demo(args.nodes, args.subnet, as_json=args.json, count=args.count,
                                           curve=args.curve))
    except ValueError as exc:
        raise CliError(f"lan: {exc}") from None


# -- argument parsing -------------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    """Daemon logging on stderr; SIGUSR1 dumps every thread's Python stack there (a stuck
    daemon can be asked where it is: ``kill -USR1 PID``)."""
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """No abbreviated long options: ``--curve`` (vnet lan) must not pass for ``--curve-secret``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


class _IntermixedParser(_Parser):
    """A subcommand parser that lets options and positionals mix, as tcpdump's command line
    does (``vnet switch mirror node2 -w f.pcap icmp``): plain argparse stops taking
    positionals at the first option."""

    _inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:  # parse_known_intermixed_args calls back in
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--node", default=argparse.SUPPRESS, help="the node to talk to (default: $VNET_NODE, "
                        "or the only node on this host)")
    common.add_argument("--control", default=argparse.SUPPRESS, help="a node's control endpoint, instead of --node")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help="seconds to wait for the control endpoint (default 5)")
    common.add_argument("--curve-secret", dest="curve_secret", metavar="FILE", default=argparse.SUPPRESS,
                        help="CURVE: this side's key pair, a .key_secret file from `vnet keygen` "
                             "(default $VNET_CURVE_SECRET)")
    common.add_argument("--curve-server-key", dest="curve_server_key", metavar="FILE", default=argparse.SUPPRESS,
                        help="CURVE: the switch's public key, its .key file (default $VNET_CURVE_SERVER_KEY)")

    p = _Parser(prog="vnet", parents=[common],
                                description="A virtual Ethernet LAN for containers and processes.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    ip = sub.add_parser("ip", parents=[common], help="links, addresses and neighbours (like iproute2)")
    ip.add_argument("-s", "-stats", "--stats", dest="stats", action="store_true", help="show statistics")
    ip.add_argument("object", choices=["link", "l", "addr", "address", "a", "neigh", "neighbour", "neighbor", "n"])
    ip.add_argument("action", nargs="?", help="show | set | add | del | flush")
    ip.add_argument("rest", nargs="*", help="arguments of the action")
    ip.set_defaults(func=cmd_ip, dev="vnet0")

    et = sub.add_parser("ethtool", parents=[common], help="driver info, statistics, rings, coalescing")
    mode = et.add_mutually_exclusive_group()
    mode.add_argument("-i", dest="mode", action="store_const", const="i", help="driver information")
    mode.add_argument("-S", dest="mode", action="store_const", const="S", help="NIC statistics")
    mode.add_argument("-g", dest="mode", action="store_const", const="g", help="ring sizes")
    mode.add_argument("-c", dest="mode", action="store_const", const="c", help="interrupt coalescing")
    mode.add_argument("-G", dest="set_ring", action="store_true", help="set ring sizes: rx N tx N")
    mode.add_argument("-C", dest="set_coalesce", action="store_true", help="set coalescing: rx-usecs N rx-frames N")
    et.add_argument("devname", metavar="DEVNAME")
    et.add_argument("params", nargs="*", help="NAME VALUE pairs for -G / -C")
    et.set_defaults(func=cmd_ethtool, mode=None)

    ping = sub.add_parser("ping", parents=[common], help="ICMP echo, like ping(8)")
    ping.add_argument("-c", dest="count", type=int, default=None, help="stop after COUNT probes")
    ping.add_argument("-i", dest="interval", type=float, default=1.0, help="seconds between probes (default 1)")
    ping.add_argument("-s", dest="size", type=int, default=56, help="payload bytes (default 56)")
    ping.add_argument("-W", dest="wait", type=float, default=4.0, help="seconds to wait for each reply (default 4)")
    ping.add_argument("dst", metavar="IP")
    ping.set_defaults(func=cmd_ping)

    arping = sub.add_parser("arping", parents=[common], help="ARP requests, like arping(8)")
    arping.add_argument("-c", dest="count", type=int, default=1, help="requests to send (default 1)")
    arping.add_argument("-w", dest="wait", type=float, default=1.0, help="seconds to wait for each reply")
    arping.add_argument("dst", metavar="IP")
    arping.set_defaults(func=cmd_arping)

    udp = sub.add_parser("udp", parents=[common], help="send or receive UDP datagrams")
    usub = udp.add_subparsers(dest="udp_cmd", metavar="send|listen", required=True, parser_class=_Parser)
    us = usub.add_parser("send", parents=[common], help="send one datagram")
    us.add_argument("target", metavar="IP:PORT")
    us.add_argument("data", metavar="DATA")
    us.add_argument("--sport", type=int, default=0, help="source port (default: an ephemeral one)")
    ul = usub.add_parser("listen", parents=[common], help="print datagrams arriving on a port")
    ul.add_argument("port", type=int, metavar="PORT")
    ul.add_argument("-c", dest="count", type=int, default=None, help="exit after COUNT datagrams")
    udp.set_defaults(func=cmd_udp)

    inj = sub.add_parser("inject", parents=[common], help="send raw frames: a scapy expression or a pcap file")
    inj.add_argument("source", metavar="EXPR|FILE.pcap")
    inj.add_argument("-n", dest="count", type=int, default=1, help="send the frames this many times")
    inj.add_argument("--dev", default="vnet0")
    inj.set_defaults(func=cmd_inject)

    cap = sub.add_parser("capture", parents=[common], help="capture frames on vnet0, like tcpdump")
    cap.add_argument("-i", dest="iface", default="vnet0", help="device (vnet0)")
    cap.add_argument("-w", dest="write", metavar="FILE", help="write a pcap file instead of printing")
    cap.add_argument("-c", dest="count", type=int, default=None, help="stop after COUNT frames")
    cap.add_argument("filter", nargs="*", metavar="FILTER",
                     help="e.g. 'icmp', 'host 10.0.0.2 and udp port 53', 'ether proto 0x88b5', 'not arp'")
    cap.set_defaults(func=cmd_capture)

    dhcp = sub.add_parser("dhcp", parents=[common], help="the node's DHCP client state and, on a server, its leases")
    dhcp.set_defaults(func=cmd_dhcp)

    health = sub.add_parser("health", parents=[common], help="exit 0 if the local node (or --switch) is healthy")
    health.add_argument("--switch", action="store_true", help="check the switch instead of a node")
    health.add_argument("--switch-control", dest="switch_control", default=None, help="the switch's control endpoint")
    health.set_defaults(func=cmd_health)

    call = sub.add_parser("call", parents=[common], help="send any control request to a node (JSON in and out)")
    call.add_argument("cmd", nargs="?", metavar="CMD", help="e.g. neigh_show, stats, ping")
    call.add_argument("params", nargs="?", metavar="JSON", help='arguments, e.g. \'{"dst": "10.0.0.2"}\'')
    call.add_argument("--stdio", action="store_true", help="relay a msgpack request from stdin (for programs)")
    call.add_argument("--stream", action="store_true",
                      help="relay msgpack requests from stdin until it ends, concurrently (a persistent channel)")
    call.add_argument("--wait", type=float, default=None, help="seconds to wait for the answer")
    call.add_argument("--switch", action="store_true", help="ask the switch (its control endpoint) instead of a node")
    call.add_argument("--switch-control", dest="switch_control", default=None, help="the switch's control endpoint")
    call.set_defaults(func=cmd_call)

    sw = sub.add_parser("switch", parents=[common],
                        help="run the switch daemon, or query and drive it: fdb, ports, stats, flush, set-ageing, "
                             "port, impair, mirror")
    sw.add_argument("--switch-control", dest="switch_control", default=None,
                    help=f"the switch's control endpoint (default $VNET_SWITCH_CONTROL or tcp://127.0.0.1:{DEFAULT_CONTROL_PORT})")
    sw.add_argument("--bind", default=f"tcp://127.0.0.1:{DEFAULT_DATA_PORT}",
                    help=f"daemon: data endpoint to bind (default tcp://127.0.0.1:{DEFAULT_DATA_PORT})")
    sw.add_argument("--ageing", type=float, default=300.0, help="daemon: FDB ageing time, s (0 = never)")
    sw.add_argument("--heartbeat-interval", type=float, default=1.0)
    sw.add_argument("--heartbeat-timeout", type=float, default=3.0)
    sw.add_argument("--mtu", type=int, default=1500)
    sw.add_argument("--fdb-max", type=int, default=8192, help="daemon: FDB size bound")
    sw.add_argument("--port-hwm", type=int, default=1000, help="daemon: per-port output queue, in messages")
    sw.add_argument("--port-queue-bytes", dest="port_queue_bytes", type=int, default=64 * 1024 * 1024,
                    help="daemon: per-port output queue, in bytes (default 64 MiB; at least 256 KiB)")
    sw.add_argument("--max-ports", dest="max_ports", type=int, default=4096,
                    help="daemon: ports attached at most; a HELLO for one more is refused (default 4096)")
    sw.add_argument("--hello-rate", dest="hello_rate", type=float, default=1000.0,
                    help="daemon: HELLOs a second from new nodes, after a burst of 1000; 0 = no limit")
    sw.add_argument("--max-macs", dest="max_macs", type=int, default=0,
                    help="daemon: port security, MAC addresses a port may hold (0 = unlimited)")
    sw.add_argument("--violation", choices=["drop", "shutdown"], default="drop",
                    help="daemon: a frame from one MAC too many is dropped, or also shuts the port down")
    sw.add_argument("--curve-allowed", dest="curve_allowed", metavar="DIR", default=None,
                    help="daemon: CURVE on, allowing the public keys (.key files) in DIR; with --curve-secret "
                         "(default $VNET_CURVE_ALLOWED)")
    sw.add_argument("--log-level", default="info")
    sw.set_defaults(func=cmd_switch)
    swsub = sw.add_subparsers(dest="switch_cmd", parser_class=_IntermixedParser,
                              metavar="fdb|ports|stats|flush [PORT]|set-ageing SECONDS|port|port-security|impair|mirror")

    def switch_cmd(name: str, text: str) -> argparse.ArgumentParser:
        sp = swsub.add_parser(name, parents=[common], help=text, description=text)
        sp.add_argument("--switch-control", dest="switch_control", default=argparse.SUPPRESS,
                        help="the switch's control endpoint")
        return sp

    switch_cmd("fdb", "the MAC table, like `bridge fdb show`")
    switch_cmd("ports", "attached ports, their admin state and counters")
    switch_cmd("stats", "switch counters: totals, per port, FDB")
    switch_cmd("flush", "flush the FDB, or one port's entries").add_argument("arg", nargs="?", metavar="PORT")
    switch_cmd("set-ageing", "set the FDB ageing time").add_argument("arg", nargs="?", metavar="SECONDS")
    sp = switch_cmd("port", "cut (down) or restore (up) a node's cable at the switch: its carrier follows")
    sp.add_argument("port", metavar="NODE")
    sp.add_argument("state", choices=["down", "up"])
    sp = switch_cmd("port-security", "show or set the MAC limit per port and what a violation does")
    sp.add_argument("--max-macs", dest="set_max_macs", type=int, default=None, metavar="N", help="0 = unlimited")
    sp.add_argument("--violation", dest="set_violation", choices=["drop", "shutdown"], default=None)
    sp = switch_cmd("impair", "impair a port (loss, delay, rate, ...) like netem; without settings, show them")
    sp.add_argument("port", metavar="PORT")
    sp.add_argument("--dir", choices=["in", "out", "both"], default="both",
                    help="in: frames from the node, out: frames to it (default both)")
    sp.add_argument("--loss", metavar="PCT", help="random loss, e.g. 10%%")
    sp.add_argument("--loss-burst", dest="loss_burst", metavar="P,R[,1-H[,1-K]]",
                    help="bursty loss, netem's gemodel: P good->bad, R bad->good, 1-H loss when bad "
                         "(100%%), 1-K loss when good (0%%), e.g. 1%%,30%%")
    sp.add_argument("--delay", metavar="TIME", help="delay, e.g. 20ms, 500us, 1s")
    sp.add_argument("--jitter", metavar="TIME", help="uniform jitter around the delay, e.g. 5ms")
    sp.add_argument("--rate", metavar="RATE", help="rate limit, e.g. 10mbit, 512kbit (0: unlimited)")
    sp.add_argument("--queue", metavar="FRAMES", help="frames held at most by rate/delay before tail drop (1000)")
    sp.add_argument("--duplicate", metavar="PCT", help="duplicate this share of frames, e.g. 1%%")
    sp.add_argument("--corrupt", metavar="PCT", help="flip one bit past the Ethernet header, e.g. 0.1%%")
    sp.add_argument("--reorder", metavar="PCT", help="with --delay, this share of frames skips the delay")
    sp.add_argument("--seed", metavar="N", help="seed the random choices (reproducible runs)")
    sp.add_argument("--clear", action="store_true", help="remove every impairment (before applying any given)")
    sp = switch_cmd("mirror", "record what crosses a switch port, both directions, like tcpdump")
    sp.add_argument("port", nargs="?", metavar="PORT")
    sp.add_argument("-w", dest="write", metavar="FILE", help="write a pcap file instead of printing")
    sp.add_argument("-c", dest="count", type=int, default=None, help="stop after COUNT frames")
    sp.add_argument("filter", nargs="*", metavar="FILTER", help="as vnet capture's, e.g. 'icmp', 'not arp'")

    nd = sub.add_parser("node", parents=[common], help="run a node daemon")
    nd.add_argument("--name", default=None, help="node name (default $VNET_NODE, else the hostname)")
    nd.add_argument("--switch", default=None, help=f"switch data endpoint (default $VNET_SWITCH or tcp://127.0.0.1:{DEFAULT_DATA_PORT})")
    nd.add_argument("--address", action="append", help="an IPv4 address with prefix, e.g. 10.0.0.1/24 (repeatable; default $VNET_ADDRESS)")
    nd.add_argument("--mac", default=None, help="MAC address (default: derived from the name)")
    nd.add_argument("--mtu", type=int, default=1500)
    nd.add_argument("--tx-ring", type=int, default=256)
    nd.add_argument("--rx-ring", type=int, default=256)
    nd.add_argument("--heartbeat-interval", type=float, default=1.0)
    nd.add_argument("--heartbeat-timeout", type=float, default=3.0)
    nd.add_argument("--dhcp", action="store_true", help="get an address by DHCP from the LAN's DHCP server")
    nd.add_argument("--dhcp-server", metavar="FIRST-LAST", default=None,
                    help="serve DHCP from this node's (static) address, handing out FIRST..LAST")
    nd.add_argument("--lease-file", default=None, help="DHCP server: keep the leases in this JSON file")
    nd.add_argument("--lease-time", type=float, default=3600.0, help="DHCP server: lease time in seconds")
    nd.add_argument("--log-level", default="info")
    nd.set_defaults(func=run_node)

    cp = sub.add_parser("compose", parents=[common],
                        help="write vnet's docker-compose.yml and compose/ folder into DIR; --build the image")
    cp.add_argument("dir", nargs="?", default=".", metavar="DIR", help="where to write them (default: here)")
    cp.add_argument("--build", action="store_true",
                    help="then build the image: base image (offline if need be), wheelhouse, vnet:latest")
    cp.add_argument("--force", action="store_true", help="overwrite files that differ from vnet's")
    cp.set_defaults(func=cmd_compose)

    kg = sub.add_parser("keygen", parents=[common], help="make CURVE keys for a LAN: the switch's pair, one per node, "
                                                      "and the allowed list")
    kg.add_argument("dir", metavar="DIR", help="where to write them (existing keys are kept)")
    kg.add_argument("nodes", nargs="*", metavar="NODE", help="node names (one key pair each)")
    kg.set_defaults(func=cmd_keygen)

    lan = sub.add_parser("lan", parents=[common], help="an embedded LAN on this machine: up, or demo")
    lsub = lan.add_subparsers(dest="lan_cmd", metavar="up|demo", required=True, parser_class=_Parser)
    for name, text in (("up", "run a LAN until Ctrl-C"), ("demo", "every node pings every other, then exit")):
        lp = lsub.add_parser(name, parents=[common], help=text)
        lp.add_argument("--nodes", type=int, default=3)
        lp.add_argument("--subnet", default="10.0.0.0/24")
        lp.add_argument("--curve", action="store_true", help="CURVE on every link (keys made in the runtime directory)")
        if name == "demo":
            lp.add_argument("--count", type=int, default=3, help="pings per pair (default 3)")
    lan.set_defaults(func=cmd_lan)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "set_ring", False) or getattr(args, "set_coalesce", False):
        args.set_ring = args.params if args.set_ring else None
        args.set_coalesce = args.params if args.set_coalesce else None
    elif args.command == "ethtool":
        args.set_ring = args.set_coalesce = None
        if args.params:
            parser.error(f"ethtool: unexpected arguments {' '.join(args.params)}")
    for name, default in (("json", False), ("timeout", 5.0), ("node", None), ("control", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"vnet: error: {exc}", file=sys.stderr)
        return 2
    except ControlError as exc:
        print(f"vnet: error: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"vnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
