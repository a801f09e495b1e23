"""/metrics, /healthz and /readyz on one small aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from eventtrace.metrics import Metrics


class HealthServer:
    """Started before the pipeline, so a taken port fails at start with a clear error."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        ready: Callable[[], str | None],
        healthy: Callable[[], str | None] = lambda: None,
    ):
        self.host = host
        self.port = port
        self._metrics = metrics
        self._ready = ready  # None when ready, else why not
        self._healthy = healthy  # None when healthy, else why not: Kubernetes restarts it
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = self._runner.addresses
        if sockets and self.port == 0:
            self.port = int(sockets[0][1])

    async def serve(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await self._runner.cleanup()

    async def _metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        why = self._healthy()
        if why is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"unhealthy: {why}\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        why = self._ready()
        if why is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {why}\n")
