"""CURVE authentication and encryption for the node-switch link and the switch's control.

The model is SSH's: the switch has the LAN key pair and a list of allowed public keys (one
file per node, like ``authorized_keys``); each node has its own key pair and knows the LAN's
public key (like ``known_hosts``). With CURVE on, ZeroMQ encrypts every message and the switch
asks its ZAP handler (RFC 27, ``inproc://zeromq.zap.01``; pyzmq's authenticator) about every connecting key: a key
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

import ipaddress
import logging
import os
import shutil
from dataclasses import dataclass

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

from vnet.proto.ratelimit import RateLimit

log = logging.getLogger(__name__)

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


class _AllowedKeysProvider:
    """pyzmq's credentials provider (``configure_curve_callback``): asks ``AllowedKeys``,
    which reads the directory again when it changes, so a key added there needs no restart."""

    def __init__(self, handler: "ZapHandler") -> None:
        self._handler = handler

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = self._handler.allowed
        try:
            ok = allowed.allows(key)
        except (OSError, KeyFileError) as exc:
            self._handler.why = f"allowed keys unreadable: {exc}"
            return False
        if not ok:
            self._handler.why = f"key {key.decode(errors='replace')} is not in {allowed.location}"
        return ok


class _Authenticator(AsyncioAuthenticator):
    """pyzmq's asyncio ZAP authenticator, counting and logging each answer it sends."""

    def __init__(self, ctx: zmq.Context, handler: "ZapHandler") -> None:
        super().__init__(ctx, log=logging.getLogger("zmq.auth"))
        self._handler = handler

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._handler.address = msg[3].decode(errors="replace") if len(msg) > 3 else "?"
        self._handler.why = "refused"
        await super().handle_zap_message(msg)

    def _send_zap_reply(self, request_id: bytes, status_code: bytes, status_text: bytes,
                        user_id: str = "anonymous") -> None:
        self._handler.answered(status_code == b"200", status_text)
        super()._send_zap_reply(request_id, status_code, status_text, user_id)


class ZapHandler:
    """The ZAP handler (RFC 27) of one ZeroMQ context: pyzmq's ``AsyncioAuthenticator`` with a
    credentials provider that allows the keys in ``allowed`` (read again when the directory
    changes). Counters: ``accepted``, ``denied`` (each denial logged, rate-limited). Start it
    before any CURVE server socket binds: without a handler, libzmq lets every key in."""

    def __init__(self, ctx: zmq.asyncio.Context, allowed: AllowedKeys) -> None:
        self.allowed = allowed
        self.accepted = 0
        self.denied = 0
        self.address = "?"  # of the request being answered (ZAP requests are answered in turn)
        self.why = "refused"
        self._ratelimit = RateLimit()
        self._auth = _Authenticator(ctx, self)

    def start(self) -> None:
        self._auth.start()  # binds inproc://zeromq.zap.01
        self._auth.configure_curve_callback(domain="*", credentials_provider=_AllowedKeysProvider(self))

    def answered(self, ok: bool, status_text: bytes) -> None:
        if ok:
            self.accepted += 1
            return
        self.denied += 1
        why = self.why if self.why != "refused" else status_text.decode(errors="replace")
        self._ratelimit.log(log, logging.WARNING, "CURVE: refused a connection from %s: %s", self.address, why)

    def counters(self) -> dict:
        return {"accepted": self.accepted, "denied": self.denied, "allowed_keys": len(self.allowed.keys())}

    async def close(self) -> None:
        self._auth.stop()


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
    """True for ipc://, inproc:// and tcp:// on a loopback address (127.0.0.0/8, ::1, or the
    name ``localhost``): endpoints other hosts and containers cannot reach. Any other host
    name is not local, whatever it starts with (``tcp://127.evil.example:1``)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    rest = endpoint[len("tcp://"):]
    if ";" in rest:  # tcp://SOURCE;DEST: what is bound or reached is DEST
        rest = rest.rsplit(";", 1)[1]
    host = rest.rsplit(":", 1)[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
