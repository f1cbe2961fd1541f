"""The web view's HTTP server (aiohttp): the page, its JSON state, an event stream, and the
few actions the page offers (cut or restore a cable, impair a port, capture).

Routes:

- ``GET /``: the page (vnet/web/static/index.html: inline CSS and JS, an SVG topology);
- ``GET /api/state``: the view model's last state (vnet/web/model.py) and the captures;
- ``GET /api/events``: Server-Sent Events, one ``state`` event per poll (once a second);
- ``POST /api/port/{switch}/{port}/down|up``: the switch's ``port_set`` (a cable cut, restored);
- ``POST /api/impair``: ``{"switch", "port", "dir", "clear", "loss", "delay", ...}``, the
  switch's ``impair`` (the same parameters as ``vnet switch impair``);
- ``POST /api/capture/start``: ``{"node": N}`` or ``{"switch": S, "port": P}``, and ``filter``;
  ``POST /api/capture/{id}/stop``; ``GET /api/capture/{id}.pcap``: the frames so far.

Access: every request carries the token when one is set (``Authorization: Bearer T``,
``X-Vnet-Token: T`` or ``?token=T``), else 401; the server refuses to listen beyond loopback
without one (vnet/cli/web.py). Without a token, a request must name a loopback host in its
``Host`` header (a DNS-rebinding page cannot drive the LAN). Mutations are POST only, with a
JSON body (``Content-Type: application/json``), which a cross-site form cannot send.
"""

from __future__ import annotations

import hmac
import importlib.resources
import json
from typing import Any, AsyncIterator

from aiohttp import web

from vnet.cli.common import jsonable
from vnet.proto.control import ControlError
from vnet.web.captures import CaptureError, Captures
from vnet.web.poll import Poller, Target


POLLER = web.AppKey("poller", Poller)
CAPTURES = web.AppKey("captures", Captures)
TOKEN = web.AppKey("token", str)
IMPAIR_PARAMS = ("loss", "loss_burst", "delay", "jitter", "rate", "queue", "duplicate", "corrupt", "reorder", "seed")
EVENT_EVERY = 1.0  # seconds: a state event at least this often, new poll or not
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def page() -> bytes:
    return importlib.resources.files("vnet.web").joinpath("static/index.html").read_bytes()


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _host_only(host: str) -> str:
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """The token (when set), the loopback Host rule (when not), JSON bodies for mutations,
    and errors as JSON with a sentence."""
    token = request.app[TOKEN]
    if token:
        given = request.headers.get("X-Vnet-Token") or request.query.get("token") or ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _error(401, "this vnet web needs its token: ?token=T or the header X-Vnet-Token: T")
    elif _host_only(request.host) not in LOOPBACK_HOSTS:
        return _error(403, f"Host {request.host!r} is not loopback: open the page as http://127.0.0.1:PORT/")
    if request.method == "POST" and request.content_type != "application/json":
        return _error(415, "send a JSON body (Content-Type: application/json)")
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (CaptureError, KeyError, ValueError) as exc:
        return _error(400, exc.args[0] if exc.args else str(exc))
    except ControlError as exc:
        return _error(400, str(exc))
    except (TimeoutError, OSError) as exc:
        return _error(502, str(exc))


async def _body(request: web.Request) -> dict:
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _state(app: web.Application) -> dict:
    state = dict(app[POLLER].view.state)
    state["captures"] = [c.view() for c in app[CAPTURES].captures.values()]
    return jsonable(state)


async def index(request: web.Request) -> web.Response:
    return web.Response(body=page(), content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def api_state(request: web.Request) -> web.Response:
    return web.json_response(_state(request.app))


async def api_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the state after every poll, and at least every EVENT_EVERY s."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await resp.prepare(request)
    poller = request.app[POLLER]
    version = -1
    try:
        while True:
            version = await poller.wait_newer(version, EVENT_EVERY)
            data = json.dumps(_state(request.app))
            await resp.write(f"event: state\ndata: {data}\n\n".encode())
    except ConnectionResetError:  # the page went away
        pass
    return resp


async def api_port(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    if action not in ("down", "up"):
        return _error(404, f"no action {action!r}: POST .../down or .../up")
    client = request.app[POLLER].switch(request.match_info["switch"])
    result = await client.call("port_set", port=request.match_info["port"], up=action == "up")
    await request.app[POLLER].refresh()  # the next state shows the cut
    return web.json_response(jsonable(result))


async def api_impair(request: web.Request) -> web.Response:
    body = await _body(request)
    unknown = set(body) - {"switch", "port", "dir", "clear", *IMPAIR_PARAMS}
    if unknown:
        raise ValueError(f"impair: unknown settings {', '.join(sorted(unknown))}; known: {', '.join(IMPAIR_PARAMS)}")
    for key in ("switch", "port"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise ValueError(f"impair: say which {key} (a name)")
    params = {k: str(body[k]) for k in IMPAIR_PARAMS if body.get(k) not in (None, "")}
    client = request.app[POLLER].switch(body["switch"])
    result = await client.call("impair", port=body["port"], dir=body.get("dir") or "both",
                               clear=bool(body.get("clear")), **params)
    return web.json_response(jsonable(result))


async def api_capture_start(request: web.Request) -> web.Response:
    body = await _body(request)
    cap = await request.app[CAPTURES].start(request.app[POLLER], node=body.get("node"), switch=body.get("switch"),
                                            port=body.get("port"), filter=body.get("filter") or "")
    return web.json_response(jsonable(cap.view()))


def _capture_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit():
        raise CaptureError(f"capture id {text!r}: a number")
    return int(text)


async def api_capture_stop(request: web.Request) -> web.Response:
    cap = await request.app[CAPTURES].stop(_capture_id(request))
    return web.json_response(jsonable(cap.view()))


async def api_capture_pcap(request: web.Request) -> web.Response:
    try:
        cap = request.app[CAPTURES].get(_capture_id(request))
    except CaptureError as exc:
        return _error(404, str(exc))
    name = f"vnet-{'-'.join(str(v) for v in cap.what.values())}-{cap.id}.pcap".replace(":", "_").replace("/", "_")
    return web.Response(body=cap.pcap(), content_type="application/vnd.tcpdump.pcap",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def make_app(target: Target, token: str = "", interval: float = 1.0) -> web.Application:
    """The application for ``target``; it polls while it runs (startup to cleanup)."""
    app = web.Application(middlewares=[guard])
    app[TOKEN] = token

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        poller = Poller(target, interval=interval)
        captures = Captures()
        app[POLLER], app[CAPTURES] = poller, captures
        await poller.poll_once()  # the first page load has a picture
        poller.start()
        yield
        await captures.aclose()
        await poller.aclose()

    app.cleanup_ctx.append(lifetime)
    app.router.add_get("/", index)
    app.router.add_get("/api/state", api_state)
    app.router.add_get("/api/events", api_events)
    app.router.add_post("/api/port/{switch}/{port}/{action}", api_port)
    app.router.add_post("/api/impair", api_impair)
    app.router.add_post("/api/capture/start", api_capture_start)
    app.router.add_post("/api/capture/{id}/stop", api_capture_stop)
    app.router.add_get(r"/api/capture/{id}.pcap", api_capture_pcap)
    return app
