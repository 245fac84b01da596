"""create_app(): builds every service once (in the lifespan) and mounts the routers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text

from tenantry import db as database
from tenantry import health_routes, keys_routes
from tenantry.auth import FailedAuthLimiter, KeyStore, load_or_create_secret
from tenantry.container import Services
from tenantry.dashboard import routes as dashboard
from tenantry.health import HealthChecks
from tenantry.http_errors import install_error_handlers
from tenantry.http_limits import RequestLimits
from tenantry.jobs.routes import router as jobs_router
from tenantry.jobs.service import build_job_service
from tenantry.metrics import Metrics, MetricsMiddleware
from tenantry.openapi import install_openapi
from tenantry.queries.explain_role import ensure_explain_role
from tenantry.queries.routes import health_details as query_health
from tenantry.queries.routes import router as queries_router
from tenantry.queries.service import build_query_optimizer
from tenantry.resilience.proxy import guard_async_methods
from tenantry.resilience.routes import install as install_resilience
from tenantry.resilience.service import build_resilience
from tenantry.settings import Settings, load_settings
from tenantry.storage.multipart import FORM_OVERHEAD
from tenantry.storage.routes import UPLOAD_PATH
from tenantry.storage.routes import router as storage_router
from tenantry.storage.service import build_storage

log = logging.getLogger("tenantry")


def _secret(settings: Settings, value: Any, filename: str, label: str) -> str:
    """A configured secret, or one generated once into the data directory."""
    if value is not None:
        return str(value.get_secret_value())
    secret, created = load_or_create_secret(settings.data_dir / filename)
    if created and label:
        # Printed once, on the run that generated it; afterwards it is only in the file.
        print(f"Generated {label}: {secret}\n(stored in {settings.data_dir / filename})")
    return secret


async def build_services(
    settings: Settings, stack: AsyncExitStack, metrics: Metrics | None = None
) -> Services:
    url = settings.effective_database_url
    if settings.auto_migrate:
        await asyncio.to_thread(database.upgrade, url)
        await asyncio.to_thread(
            ensure_explain_role, url, settings.explain_role, settings.explain_schema_list
        )
    db = database.Database(url)
    stack.push_async_callback(db.dispose)

    redis: Redis | None = None
    if settings.effective_redis_url:
        redis = Redis.from_url(settings.effective_redis_url)
        stack.push_async_callback(redis.aclose)

    admin_token = _secret(settings, settings.admin_token, "admin-token", "admin key")
    secret_key = _secret(settings, settings.secret_key, "secret-key", "")
    health = HealthChecks()
    services = Services(
        settings=settings,
        db=db,
        redis=redis,
        keys=KeyStore(db, admin_token),
        health=health,
        metrics=metrics or Metrics(),
        auth_limiter=FailedAuthLimiter(settings.auth_failures_per_minute),
        secret_key=secret_key,
    )
    health.register("database", lambda: _check_database(db))
    if redis is not None:
        health.register("redis", lambda: _check_redis(redis))
    # Capabilities: each builds its service onto `services` below, in dependency order.
    # Queries before the rest: its monitor then times every statement they run.
    services.queries = await build_query_optimizer(services, stack)
    health.register("queries", lambda: query_health(services.queries))
    # Resilience before storage and jobs: they call their dependencies through its breakers.
    services.resilience = await build_resilience(services, stack)
    services.storage = build_storage(services, stack)
    guard_storage(services)
    health.register("storage", services.storage.health)
    # Jobs last: its handlers use the other capabilities' services.
    services.jobs = await build_job_service(services, stack)
    health.register("jobs", services.jobs.health)
    return services


def guard_storage(services: Services) -> None:
    """Every call to the object store goes through the `storage` circuit breaker.

    Opening a download is guarded, not its streaming; an interrupted client upload is
    the caller's error (a 400), so it never trips the circuit.
    """
    breaker = services.resilience.breakers["storage"]
    methods = ("put", "open", "size", "delete", "signed_url", "check")
    services.storage.wrap_backends(lambda backend: guard_async_methods(backend, breaker, methods))


async def _check_database(db: database.Database) -> dict[str, Any]:
    async with db.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return {"dialect": db.dialect}


async def _check_redis(redis: Redis) -> dict[str, Any]:
    await redis.ping()  # type: ignore[misc]  # redis-py types ping as sync|async
    return {}


async def close_within(stack: AsyncExitStack, seconds: float) -> None:
    """Release every resource, but never let one stuck dependency hang a shutdown."""
    try:
        await asyncio.wait_for(stack.aclose(), seconds)
    except TimeoutError:
        log.error("shutdown: still closing after %.0f s; exiting without waiting", seconds)


def create_app(settings: Settings | None = None, *, demo: bool = False) -> FastAPI:
    """The service. With `demo`, the first start fills it with demo data (tenantry.demo)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stack = AsyncExitStack()
        try:
            app.state.services = await build_services(settings, stack, metrics)
            if demo:
                from tenantry.demo import seed_demo

                await seed_demo(app.state.services)
            yield
        finally:
            await close_within(stack, settings.shutdown_timeout_seconds)

    app = FastAPI(
        title="Tenantry",
        version="0.1.0",
        description="Storage, jobs, query insight and resilience for multi-tenant backends.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app)
    metrics = Metrics()
    # Inside the metrics middleware, so refused bodies are counted too.
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_request_body_bytes,
        body_timeout=settings.body_timeout_seconds,
        route_limits={("POST", UPLOAD_PATH): settings.max_upload_bytes + FORM_OVERHEAD},
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(health_routes.router)
    app.include_router(keys_routes.router)
    install_resilience(app)  # its routes, the circuit fallbacks, maintenance mode
    app.include_router(queries_router)
    app.include_router(storage_router)
    app.include_router(jobs_router)
    dashboard.install(app)
    return app
