"""The Prometheus scrape endpoint a daemon serves: ``GET /metrics`` over HTTP, from the
daemon's own asyncio loop (aiohttp), in the text exposition format prometheus-client writes.

The daemon hands in its collectors (custom ``Collector`` classes: node/metrics.py,
switch/metrics.py); each scrape runs them on the loop, so they read the live counters with
nothing copied on a timer and no thread touching the daemon's state. One server per daemon,
owned by it: ``await start()`` binds (the actual port is in ``url``), ``await close()`` stops.

``parse_listen`` checks the ``--metrics HOST:PORT`` option (``off``: no endpoint): loopback
by default, as the control endpoints; another address is the operator's choice.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from aiohttp import web

# aiohttp and prometheus-client load with the first MetricsServer: every `vnet` command imports
# parse_listen (through the daemons' options), only a daemon serves.

log = logging.getLogger(__name__)

DEFAULT_METRICS = "127.0.0.1:0"  # loopback, a port the kernel picks (the ready line says which)
METRICS_PATH = "/metrics"


def parse_listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[V6]:PORT`` for IPv6) as (host, port); ``off`` as None. A bad value
    is a ValueError saying what would be accepted."""
    if not isinstance(text, str):
        raise ValueError(f"metrics {text!r}: expected HOST:PORT (e.g. 127.0.0.1:9100, 0.0.0.0:9100) or off")
    if text.strip().lower() == "off":
        return None
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    hint = "expected HOST:PORT (e.g. 127.0.0.1:9100, 0.0.0.0:9100, [::1]:9100; port 0 picks a free one) or off"
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics {text!r}: {hint}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"metrics {text!r}: {host!r} is not an IP address; {hint}") from None
    return host, int(port)


def metrics_url(host: str, port: int) -> str:
    """The scrape URL for a bound address (IPv6 in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{METRICS_PATH}"


class MetricsServer:
    """An aiohttp app with one route, ``GET /metrics``, rendering ``collectors`` per scrape."""

    def __init__(self, host: str, port: int, collectors: Iterable[Any]) -> None:
        from prometheus_client import CollectorRegistry

        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            self.registry.register(collector)
        self.url: str | None = None
        self.scrapes = 0
        self.errors = 0  # scrapes a collector failed (answered 500, logged)
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Bind and serve; the URL with the actual port (OSError when it cannot bind)."""
        from aiohttp import web

        app = web.Application()
        app.router.add_get(METRICS_PATH, self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = metrics_url(self.host if self.host == "localhost" else host, port)
        return self.url

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.scrapes += 1
        try:
            body = generate_latest(self.registry)
        except Exception:  # a collector's bug: this scrape fails, the daemon goes on
            self.errors += 1
            log.exception("metrics: a collector failed")
            return web.Response(status=500, text="a metrics collector failed; see the daemon's log\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
