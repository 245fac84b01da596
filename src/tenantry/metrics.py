"""Prometheus metrics: one registry per app, and request counts and latencies per route.

Collectors are read synchronously; figures that need a round trip (Redis, the database)
are fetched by the refreshes registered with `before_scrape`, which `/metrics` awaits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Label children kept at most (method, route template, status): methods are the
# client's to choose, so the cache is bounded; past it, `labels()` as before.
_MAX_CACHED_CHILDREN = 4096
# A scrape waits this long for a refresh; a slower one leaves its figures out this time.
REFRESH_TIMEOUT_SECONDS = 2.0

log = logging.getLogger("tenantry.metrics")
Refresh = Callable[[], Awaitable[None]]


class Metrics:
    """The app's metrics. A registry per instance keeps apps (and tests) independent."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tenantry_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tenantry_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._refreshes: dict[str, Refresh] = {}

    def before_scrape(self, name: str, refresh: Refresh) -> None:
        """Run `refresh` (it updates a collector's figures) before each scrape."""
        self._refreshes[name] = refresh

    async def refresh(self) -> None:
        """Every refresh at once, each bounded; one that fails is logged and the scrape
        goes on (its collector shows no samples rather than stale ones)."""
        names = list(self._refreshes)
        results = await asyncio.gather(
            *(asyncio.wait_for(self._refreshes[n](), REFRESH_TIMEOUT_SECONDS) for n in names),
            return_exceptions=True,
        )
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("metrics: %s not refreshed: %s", name, result or type(result).__name__)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency. `labels()` builds a tuple of strings and
        takes a lock on every call; the children it returns are cached here instead."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            if len(self._children) < _MAX_CACHED_CHILDREN:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware, and streaming-safe)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope["method"], route, status, perf_counter() - started)
