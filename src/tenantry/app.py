"""create_app(): the service. Its lifespan runs the wiring (tenantry.wiring) once; the
routers, the dashboard and the middlewares are mounted here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from tenantry import health_routes, keys_routes
from tenantry.dashboard import routes as dashboard
from tenantry.http_errors import install_error_handlers
from tenantry.http_limits import RequestLimits
from tenantry.jobs.routes import router as jobs_router
from tenantry.metrics import Metrics, MetricsMiddleware
from tenantry.openapi import install_openapi
from tenantry.queries.routes import router as queries_router
from tenantry.resilience.rollout_routes import router as rollouts_router
from tenantry.resilience.routes import install as install_resilience
from tenantry.resilience.usage_routes import router as flag_usage_router
from tenantry.settings import Settings, load_settings
from tenantry.storage.multipart import FORM_OVERHEAD
from tenantry.storage.routes import UPLOAD_PATH
from tenantry.storage.routes import router as storage_router
from tenantry.tenants.routes import router as tenants_router
from tenantry.tracing.middleware import TracingMiddleware
from tenantry.version import __version__
from tenantry.wiring import build_services, tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from starlette.types import Lifespan

    from tenantry.tracing.tracer import Tracing

log = logging.getLogger("tenantry")


async def close_within(stack: AsyncExitStack, seconds: float) -> None:
    """Release every resource, but never let one stuck dependency hang a shutdown."""
    try:
        await asyncio.wait_for(stack.aclose(), seconds)
    except TimeoutError:
        log.error("shutdown: still closing after %.0f s; exiting without waiting", seconds)


def create_app(
    settings: Settings | None = None,
    *,
    demo: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The service `tenantry serve` runs: the management API, health, metrics, dashboard.

    Its lifespan builds every service from `settings` and closes them on shutdown. To
    add Tenantry to an application of your own instead, use `Tenantry`.

    Args:
        settings: The configuration; by default read from the environment.
        demo: Fill the first start with demo data (`tenantry serve --demo`).
        tracer_provider: Trace on this OpenTelemetry provider; by default tracing is
            on when the `OTEL_*` variables say so.

    Returns:
        The FastAPI application.
    """
    settings = settings or load_settings()
    tracer = tracing(settings, tracer_provider)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stack = AsyncExitStack()
        try:
            app.state.services = await build_services(settings, stack, metrics, tracer)
            if demo:
                from tenantry.demo import seed_demo

                await seed_demo(app.state.services)
            yield
        finally:
            await close_within(stack, settings.shutdown_timeout_seconds)

    return management_app(settings, metrics, tracer, lifespan=lifespan)


def management_app(
    settings: Settings,
    metrics: Metrics,
    tracer: Tracing | None = None,
    lifespan: Lifespan[FastAPI] | None = None,
) -> FastAPI:
    """The management API and the dashboard, with their middlewares: `tenantry serve`'s
    app (with the lifespan that runs the wiring), or what an embedding mounts (without:
    the embedding runs the wiring and sets `state.services`)."""
    app = FastAPI(
        title="Tenantry",
        version=__version__,
        description="Storage, jobs, query insight and resilience for multi-tenant backends.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app)
    # Inside the metrics middleware, so refused bodies are counted too.
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_request_body_bytes,
        body_timeout=settings.body_timeout_seconds,
        route_limits={("POST", UPLOAD_PATH): settings.max_upload_bytes + FORM_OVERHEAD},
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if tracer is not None:  # outermost: the request's span covers everything inside
        app.add_middleware(TracingMiddleware, tracing=tracer)
    app.include_router(health_routes.router)
    app.include_router(keys_routes.router)
    install_resilience(app)  # its routes, the circuit fallbacks, maintenance mode
    app.include_router(flag_usage_router)  # flag usage and the stale-flag report
    app.include_router(rollouts_router)  # rollout plans and scheduled flag changes
    app.include_router(queries_router)
    app.include_router(storage_router)
    app.include_router(jobs_router)
    app.include_router(tenants_router)
    dashboard.install(app)
    return app
