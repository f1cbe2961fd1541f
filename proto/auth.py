"""CURVE authentication and encryption for the node-switch link and the switch's control.

The model is SSH's: the switch has the LAN key pair and a list of allowed public keys (one
file per node, like ``authorized_keys``); each node has its own key pair and knows the LAN's
public key (like ``known_hosts``). With CURVE on, ZeroMQ encrypts every message and the switch
asks its ZAP handler (RFC 27, ``inproc://zeromq.zap.01``) about every connecting key: a key
that is not allowed never completes the handshake, so nothing it sends reaches the switch,
let alone another node. The allowed list is read again when it changes, so adding a node's
key needs no restart.

Key files are ZeroMQ certificates (``zmq.auth`` / czmq's ZPL format): ``NAME.key`` holds the
public key, ``NAME.key_secret`` both keys (mode 0600). ``vnet keygen DIR NODE...`` writes a
LAN's keys::

    DIR/switch.key, DIR/switch.key_secret     the LAN key pair (the switch's)
    DIR/NODE.key, DIR/NODE.key_secret         each node's pair
    DIR/allowed/NODE.key                      the allowed list the switch reads

The switch runs with ``--curve-secret DIR/switch.key_secret --curve-allowed DIR/allowed``; a
node with ``--curve-secret DIR/NODE.key_secret --curve-server-key DIR/switch.key`` (or the
``VNET_CURVE_*`` variables; docs/reliability.md has the compose recipe).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from dataclasses import dataclass

import zmq
import zmq.asyncio
import zmq.auth
from zmq.utils import z85

from vnet.proto.ratelimit import RateLimit

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
LAN_KEY_NAME = "switch"


class KeyFileError(ValueError):
    """A key file that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class CurveKeys:
    """One side's CURVE keys (Z85 text, 40 characters each)."""

    public: bytes
    secret: bytes


def load_secret(path: str) -> CurveKeys:
    """The key pair in ``path`` (a ``.key_secret`` certificate)."""
    public, secret = _load(path)
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key: give the .key_secret file (vnet keygen writes it)")
    return CurveKeys(public, secret)


def load_public(path: str) -> bytes:
    """The public key in ``path`` (a ``.key`` or ``.key_secret`` certificate)."""
    return _load(path)[0]


def _load(path: str) -> tuple[bytes, bytes | None]:
    if not os.path.isfile(path):
        raise KeyFileError(f"key file {path} does not exist (make keys with `vnet keygen DIR NODE...`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"key file {path} is not a ZeroMQ certificate: {exc}") from None
    if public is None or len(public) != 40:
        raise KeyFileError(f"key file {path} holds no valid public key")
    return public, secret


def keygen(directory: str, nodes: list[str]) -> list[str]:
    """Write the LAN key pair and one pair per node into ``directory`` (existing keys are
    kept), and each node's public key into ``directory/allowed``. Returns the files written."""
    for name in nodes:
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name == LAN_KEY_NAME:
            raise ValueError(f"node name {name!r}: use letters, digits, '-', '_' or '.' (and not {LAN_KEY_NAME!r})")
    allowed = os.path.join(directory, "allowed")
    os.makedirs(allowed, exist_ok=True)
    written = []
    for name in [LAN_KEY_NAME, *nodes]:
        public_file = os.path.join(directory, f"{name}.key")
        secret_file = public_file + "_secret"
        if not os.path.exists(secret_file):
            zmq.auth.create_certificates(directory, name)
            os.chmod(secret_file, 0o600)
            written += [public_file, secret_file]
        if name != LAN_KEY_NAME:
            allowed_file = os.path.join(allowed, f"{name}.key")
            if not os.path.exists(allowed_file):
                _load(public_file)  # a usable public key, not just a file of that name
                shutil.copyfile(public_file, allowed_file)
                written.append(allowed_file)
    return written




class AllowedKeys:
    """The public keys allowed to connect: every ``*.key`` certificate in a directory (or one
    file). Re-read when the directory's or a file's modification time changes."""

    def __init__(self, location: str, extra: frozenset[bytes] = frozenset()) -> None:
        if not os.path.exists(location):
            raise KeyFileError(f"allowed keys {location} does not exist (vnet keygen writes DIR/allowed)")
        self.location = location
        self.extra = extra  # keys allowed besides the files (the LAN's own, for its admin tools)
        self._stamp: tuple | None = None
        self._keys: frozenset[bytes] = frozenset()
        self.keys()  # a bad file is reported at start, not at the first handshake

    def keys(self) -> frozenset[bytes]:
        files = self._files()
        stamp = tuple((f, os.stat(f).st_mtime_ns) for f in files)
        if stamp != self._stamp:
            self._keys = frozenset(load_public(f) for f in files) | self.extra
            self._stamp = stamp
            log.info("allowed keys: %d in %s", len(files), self.location)
        return self._keys

    def _files(self) -> list[str]:
        if os.path.isfile(self.location):
            return [self.location]
        return sorted(os.path.join(self.location, f) for f in os.listdir(self.location) if f.endswith(".key"))

    def allows(self, public_z85: bytes) -> bool:
        return public_z85 in self.keys()


def zap_reply(request: list[bytes], allowed: AllowedKeys) -> tuple[list[bytes], bool, str]:
    """Answer one ZAP request (RFC 27): (reply frames, allowed?, why). Sans-I/O."""
    if len(request) < 6 or request[0] != b"1.0":
        rid = request[1] if len(request) > 1 else b""
        return [b"1.0", rid, b"500", b"malformed ZAP request", b"", b""], False, "malformed ZAP request"
    rid, mechanism, creds = request[1], request[5], request[6:]
    if mechanism != b"CURVE" or len(creds) != 1 or len(creds[0]) != 32:
        why = f"mechanism {mechanism.decode(errors='replace')} is not allowed (CURVE only)"
        return [b"1.0", rid, b"400", why.encode(), b"", b""], False, why
    key = z85.encode(creds[0])
    try:
        ok = allowed.allows(key)
    except (OSError, KeyFileError) as exc:
        why = f"allowed keys unreadable: {exc}"
        return [b"1.0", rid, b"500", why.encode()[:255], b"", b""], False, why
    if not ok:
        why = f"key {key.decode()} is not in {allowed.location}"
        return [b"1.0", rid, b"400", b"key not allowed", b"", b""], False, why
    return [b"1.0", rid, b"200", b"OK", key, b""], True, "allowed"


class ZapHandler:
    """The ZAP handler of one ZeroMQ context: owns its REP socket and task. Counters:
    ``accepted``, ``denied`` (each logged, rate-limited). Start it before any CURVE server
    socket binds: without a handler, libzmq lets every key in."""

    def __init__(self, ctx: zmq.asyncio.Context, allowed: AllowedKeys) -> None:
        self.allowed = allowed
        self.accepted = 0
        self.denied = 0
        self._ratelimit = RateLimit()
        self._sock = ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            self._sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError:
            self._sock.close(linger=0)
            raise
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="zap handler")

    async def _serve(self) -> None:
        while True:
            request = await self._sock.recv_multipart()
            reply, ok, why = zap_reply(request, self.allowed)
            if ok:
                self.accepted += 1
            else:
                self.denied += 1
                address = request[3].decode(errors="replace") if len(request) > 3 else "?"
                self._ratelimit.log(log, logging.WARNING, "CURVE: refused a connection from %s: %s", address, why)
            await self._sock.send_multipart(reply)

    def counters(self) -> dict:
        return {"accepted": self.accepted, "denied": self.denied, "allowed_keys": len(self.allowed.keys())}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._sock.close(linger=0)


def curve_server(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Make ``sock`` (before bind) a CURVE server with the LAN key pair."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)


def curve_client(sock: zmq.Socket, keys: CurveKeys, server_public: bytes) -> None:
    """Make ``sock`` (before connect) a CURVE client of the server with ``server_public``."""
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SERVERKEY, server_public)


@dataclass(frozen=True)
class CurveClient:
    """What a client needs: its own pair and the server's public key."""

    keys: CurveKeys
    server_public: bytes

    @classmethod
    def from_files(cls, secret: str, server_key: str) -> "CurveClient":
        return cls(load_secret(secret), load_public(server_key))

    def apply(self, sock: zmq.Socket) -> None:
        curve_client(sock, self.keys, self.server_public)


def is_loopback_or_local(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback address: endpoints other hosts and
    containers cannot reach."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"
