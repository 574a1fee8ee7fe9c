"""The operator's endpoints, the same on every process: GET /healthz, /readyz and /metrics.

The Slack HTTP server mounts them beside /slack/events; the Discord process and Slack Socket Mode,
which have no web server of their own, serve them on CHATBOT_HEALTH_PORT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from aiohttp import web

if TYPE_CHECKING:
    from core.app import ChatCore

log = structlog.get_logger(__name__)

HEALTH_PATH, READY_PATH, METRICS_PATH = "/healthz", "/readyz", "/metrics"


def ops_routes(core: ChatCore) -> list[web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")  # alive: the event loop answers; nothing else is asked

    async def readyz(request: web.Request) -> web.Response:
        report = await core.readiness.report()
        if not report.ok:
            log.warning("ops.not_ready", failed=[c.name for c in report.checks if not c.ok])
        return web.json_response(report.as_dict(), status=200 if report.ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = core.metrics.exposition()  # the Prometheus text format
        return web.Response(body=body, headers={"Content-Type": content_type})

    return [web.get(HEALTH_PATH, healthz), web.get(READY_PATH, readyz), web.get(METRICS_PATH, metrics)]


class OpsServer:
    """A small listener serving only the operator's endpoints."""

    def __init__(self, core: ChatCore, *, port: int, host: str = "0.0.0.0") -> None:
        self.core = core
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen; returns the bound port (the real one when asked for 0)."""
        app = web.Application()
        app.add_routes(ops_routes(self.core))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            from core.app import ConfigError

            raise ConfigError(f"CHATBOT_HEALTH_PORT {self.port} cannot be used: {exc.strerror}") from exc
        self.port = int(self._runner.addresses[0][1])
        log.info("ops.listening", port=self.port)
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
