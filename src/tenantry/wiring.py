"""Builds every service of one running Tenantry from settings, in dependency order.

`build_services` is the one place that knows how the parts fit: each service is
constructed with exactly what it needs, complete before anything uses it, and this
module alone decides what goes behind which circuit breaker:

| circuit    | what goes through it                                                 |
| ---------- | -------------------------------------------------------------------- |
| `database` | the API-key and dashboard-session tables, the flag store, rollout    |
|            | plans and scheduled flag changes, /ready's ping                      |
| `redis`    | enqueueing a job (a job that cannot reach Redis waits in the outbox), |
|            | /ready's ping                                                        |
| `storage`  | every call to the object store (put, open, size, delete, sign, check) |

Everything started here (workers, relays, refresh loops) is stopped by `stack`.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry import db as database
from tenantry import redis_clients
from tenantry.auth import FailedAuthLimiter, KeyRecords, KeyStore, load_or_create_secret
from tenantry.background import Background, every, until_done
from tenantry.container import Services
from tenantry.health import HealthCheck, HealthChecks
from tenantry.jobs import prometheus as job_metrics
from tenantry.jobs import queues as q
from tenantry.jobs.backends import BullMQBackend, InProcessBackend, JobBackend
from tenantry.jobs.outbox import JobOutbox
from tenantry.jobs.registry import HandlerRegistry, declared
from tenantry.jobs.service import (
    JobService,
    cleanup_cron,
    load_handler_modules,
    schedule_cleanup,
)
from tenantry.jobs.types import ai, cleanup, email, export, notification, report
from tenantry.jobs.types.company_data import CompanyData
from tenantry.metrics import Metrics
from tenantry.queries import explain
from tenantry.queries import prometheus as query_metrics
from tenantry.queries.explain_role import ensure_explain_role
from tenantry.queries.index_apply import ApplyPolicy
from tenantry.queries.schemas import health_details as query_health_details
from tenantry.queries.service import QueryOptimizer, flag_gate
from tenantry.redis_clients import AnyRedis
from tenantry.resilience import rollout_metrics
from tenantry.resilience.breaker import Breaker, CircuitOpenError
from tenantry.resilience.guard import guard
from tenantry.resilience.registry import BreakerRegistry
from tenantry.resilience.rollout_store import DatabaseRolloutStore
from tenantry.resilience.rollouts import RolloutRunner
from tenantry.resilience.service import (
    FlagService,
    ResilienceService,
    breaker_overrides,
    seed_defaults,
)
from tenantry.resilience.stores.database import DatabaseFlagStore
from tenantry.resilience.stores.failsafe import FailsafeStore
from tenantry.resilience.stores.memoized import MemoizedStore
from tenantry.resilience.sync import RedisSync
from tenantry.resilience.usage import FlagUsage, FlagUsageRecords
from tenantry.sessions import DashboardSessions, SessionRecords
from tenantry.settings import ConfigError, Settings, async_database_url
from tenantry.storage.service import StorageService
from tenantry.tenants import prometheus as top_companies
from tenantry.tenants.metering import UsageMeter
from tenantry.tenants.plans import configured_plans
from tenantry.tenants.service import TenantService

if TYPE_CHECKING:  # opentelemetry is imported only when tracing is on
    from opentelemetry.sdk.trace import TracerProvider

    from tenantry.tracing.tracer import Tracing

# Opening a download is guarded, not its streaming; an interrupted client upload is the
# caller's error (a 400), so it never trips the circuit.
STORAGE_GUARDED = ("put", "open", "size", "delete", "signed_url", "check")


async def build_services(
    settings: Settings,
    stack: AsyncExitStack,
    metrics: Metrics | None = None,
    tracer: Tracing | None = None,
    *,
    engine: AsyncEngine | None = None,
    handlers: HandlerRegistry | None = None,
) -> Services:
    """Every service, started; `stack` stops them. An embedding application may give its
    own `engine` (Tenantry's tables live there; the application disposes of it) and its
    own job `handlers` (added last, so they win)."""
    metrics = metrics or Metrics()
    tracer = tracer or tracing(settings)
    if tracer is not None:
        stack.push_async_callback(tracer.close)  # first in, so last out: every span sent
    db = await _database(settings, stack, engine)
    redis = _redis(settings, stack)
    breakers = BreakerRegistry(metrics.registry, breaker_overrides(settings.circuit_breakers))
    admin_token = secret(settings, settings.admin_token, "admin-token", "admin key")
    secret_key = secret(settings, settings.secret_key, "secret-key", "")
    records = guard(KeyRecords(db), breakers["database"], unavailable="the database")
    keys = KeyStore(records, admin_token)
    sessions = DashboardSessions(
        guard(SessionRecords(db), breakers["database"], unavailable="the database"),
        secret_key,
        keys.admin_fingerprint,
    )
    # The flag service exists (empty) before the optimizer, whose replica gate asks it;
    # the optimizer is started before the flags load, so it times their statements too.
    memo, failsafe = flag_store_stack(db, breakers["database"])
    flags = FlagService(memo, metrics.registry)
    queries = _queries(settings, db, flags, stack)
    resilience = await _resilience(settings, db, redis, breakers, flags, failsafe, stack)
    rollouts = _rollouts(settings, db, breakers, flags, stack)
    tenants = _tenants(settings, db, redis, queries, stack)
    top_companies.register(metrics.registry, tenants.meter, settings.metrics_top_companies)
    storage = StorageService.from_settings(settings, db, secret_key, quota=tenants.quota)
    storage.wrap_backends(lambda backend: guard(backend, breakers["storage"], STORAGE_GUARDED))
    stack.push_async_callback(storage.close)
    jobs = await _jobs(settings, db, breakers["redis"], tenants, stack)
    tenants.listen(jobs.apply_limits)  # a company's new limits reach its queues at once
    if tracer is not None:
        _trace(tracer, queries, flags, storage, jobs)
    _register_handlers(jobs, settings, storage, queries, secret_key)
    if handlers is not None:
        jobs.registry.update(handlers)
    await _start_jobs(jobs, settings, stack)
    _scrape_figures(metrics, settings, queries, rollouts, tenants, jobs)
    health = HealthChecks()
    health.register("database", _guarded_check(breakers["database"], lambda: _ping(db)))
    if redis is not None:
        health.register("redis", _guarded_check(breakers["redis"], lambda: _ping_redis(redis)))
    health.register("queries", lambda: _query_health(queries))
    health.register("resilience", lambda: _resilience_health(resilience))
    health.register("storage", storage.health)
    health.register("jobs", jobs.health)
    return Services(
        settings=settings,
        db=db,
        redis=redis,
        metrics=metrics,
        health=health,
        keys=keys,
        auth_limiter=_auth_limiter(settings, stack),
        sessions=sessions,
        secret_key=secret_key,
        queries=queries,
        resilience=resilience,
        rollouts=rollouts,
        storage=storage,
        jobs=jobs,
        tenants=tenants,
    )


def secret(settings: Settings, value: Any, filename: str, label: str) -> str:
    """A configured secret, or one generated once into the data directory."""
    if value is not None:
        return str(value.get_secret_value())
    generated, created = load_or_create_secret(settings.data_dir / filename)
    if created and label:
        # Printed once, on the run that generated it; afterwards it is only in the file.
        print(f"Generated {label}: {generated}\n(stored in {settings.data_dir / filename})")
    return generated


def tracing(settings: Settings, provider: TracerProvider | None = None) -> Tracing | None:
    """Tracing on `provider` (a test's), or as the OTEL_* variables configure it; None
    when they leave it off, without importing opentelemetry."""
    switch = settings.tracing_switch
    if provider is None and switch is None:
        return None
    try:
        from tenantry.tracing.provider import provider_from_environment
        from tenantry.tracing.tracer import Tracing
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise ConfigError(
            f"{switch}: tracing is on but OpenTelemetry is not installed:"
            " pip install 'tenantry[otel]'"
        ) from None
    if provider is not None:
        return Tracing(provider)
    return Tracing(provider_from_environment(settings), owned=True)


def _trace(
    tracer: Tracing,
    queries: QueryOptimizer,
    flags: FlagService,
    storage: StorageService,
    jobs: JobService,
) -> None:
    """Each traced service gets the tracer: until then, each pays one attribute check."""
    queries.monitor.trace_with(tracer)
    flags.tracing = tracer
    storage.tracing = tracer
    jobs.tracing = tracer


def flag_store_stack(
    db: database.Database, breaker: Breaker
) -> tuple[MemoizedStore, FailsafeStore]:
    """The flag store the service runs: Memoized(Failsafe(guard(Database)))."""
    failsafe = FailsafeStore(guard(DatabaseFlagStore(db), breaker))
    return MemoizedStore(failsafe), failsafe


# --- one capability at a time ---------------------------------------------------------


async def _database(
    settings: Settings, stack: AsyncExitStack, engine: AsyncEngine | None = None
) -> database.Database:
    url = settings.effective_database_url if engine is None else engine_url(engine)
    if settings.auto_migrate:
        await asyncio.to_thread(database.upgrade, url)
        await asyncio.to_thread(
            ensure_explain_role, url, settings.explain_role, settings.explain_schema_list
        )
    if engine is not None:
        return database.Database(url, engine=engine)  # the application disposes of it
    db = database.Database(url)
    stack.push_async_callback(db.dispose)
    return db


def engine_url(engine: AsyncEngine) -> str:
    """The URL of an application's engine, password included, for the migrations and
    Tenantry's own short-lived engines; asyncpg has no synchronous side, psycopg has."""
    url = engine.url
    if url.drivername == "postgresql+asyncpg":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _redis(settings: Settings, stack: AsyncExitStack) -> AnyRedis | None:
    if not settings.effective_redis_url:
        return None
    redis = redis_clients.client(settings.effective_redis_url)
    stack.push_async_callback(redis.aclose)
    return redis


def _auth_limiter(settings: Settings, stack: AsyncExitStack) -> FailedAuthLimiter:
    """Failed authentications counted in Redis when there is one: the limit is the
    deployment's, not each process's."""
    redis: AnyRedis | None = None
    if settings.effective_redis_url and settings.auth_failures_per_minute:
        # Its own client with short timeouts: a hung Redis must not hang a 401.
        redis = redis_clients.client(
            settings.effective_redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        stack.push_async_callback(redis.aclose)
    return FailedAuthLimiter(settings.auth_failures_per_minute, redis=redis)


def _queries(
    settings: Settings, db: database.Database, flags: FlagService, stack: AsyncExitStack
) -> QueryOptimizer:
    cache_redis: AnyRedis | None = None
    if settings.effective_redis_url:
        # Its own client with short timeouts: a hung Redis must not hang a cached read.
        cache_redis = redis_clients.client(
            settings.effective_redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        stack.push_async_callback(cache_redis.aclose)
    explain_url = settings.explain_database_url
    optimizer = QueryOptimizer(
        db,
        redis=cache_redis,
        slow_query_ms=settings.slow_query_ms,
        cache_ttl=settings.query_cache_ttl_seconds,
        explain_timeout_ms=settings.query_explain_timeout_ms,
        # With a login role of its own, EXPLAIN runs as that role and enters none.
        explain_access=explain.ExplainAccess(
            role=None if explain_url else settings.explain_role,
            allowed_functions=settings.explain_allowed_function_set,
        ),
        explain_url=async_database_url(explain_url) if explain_url else None,
        replica_urls=settings.replica_urls,
        replica_gate=flag_gate(flags.is_enabled),  # `use-read-replicas`, per company
        replica_max_lag_ms=settings.replica_max_lag_ms,
        replica_poll_seconds=settings.replica_poll_ms / 1000,
        flush_seconds=settings.query_metrics_flush_seconds,
        advisor_max_mb=settings.query_advisor_max_mb,
        apply_policy=ApplyPolicy(
            enabled=settings.query_apply_indexes,
            verify_seconds=settings.query_apply_verify_seconds,
            min_calls=settings.query_apply_min_calls,
            min_improvement=settings.query_apply_min_improvement,
            build_timeout_ms=settings.query_apply_build_timeout_ms,
        ),
    )
    optimizer.start()
    stack.push_async_callback(optimizer.close)
    return optimizer


async def _resilience(
    settings: Settings,
    db: database.Database,
    redis: AnyRedis | None,
    breakers: BreakerRegistry,
    flags: FlagService,
    failsafe: FailsafeStore,
    stack: AsyncExitStack,
) -> ResilienceService:
    await seed_defaults(DatabaseFlagStore(db))  # unguarded, like a migration
    await flags.refresh()
    resilience = ResilienceService(breakers, flags, failsafe=failsafe)
    if redis is not None and settings.resilience_redis_sync:
        sync = RedisSync(redis, breakers, flags.refresh)
        await sync.start()
        stack.push_async_callback(sync.stop)
        flags.publish = sync.publish_flag_change
        resilience.sync = sync
    # A backstop for missed Redis messages, and the only propagation without Redis.
    background = Background()
    refresh = every(settings.flags_refresh_seconds, flags.refresh, name="periodic flag refresh")
    background.start(refresh, "flag-refresh")
    stack.push_async_callback(background.stop)
    _flag_usage(settings, db, breakers, flags, stack)
    return resilience


def _flag_usage(
    settings: Settings,
    db: database.Database,
    breakers: BreakerRegistry,
    flags: FlagService,
    stack: AsyncExitStack,
) -> FlagUsage:
    """Each process's evaluation counts, flushed to the shared hourly figures."""
    records = guard(FlagUsageRecords(db), breakers["database"], unavailable="the database")
    usage = FlagUsage(
        records,
        flags.counts,
        retention_days=settings.flag_usage_retention_days,
        stale_days=settings.flag_stale_days,
    )
    flags.usage = usage
    stack.push_async_callback(usage.close)  # what was counted since the last flush
    background = Background()
    flushing = every(settings.flag_usage_flush_seconds, usage.flush, name="flag usage flush")
    background.start(flushing, "flag-usage-flush")
    stack.push_async_callback(background.stop)
    return usage


def _rollouts(
    settings: Settings,
    db: database.Database,
    breakers: BreakerRegistry,
    flags: FlagService,
    stack: AsyncExitStack,
) -> RolloutRunner:
    """Every process runs the plans and scheduled changes; the database makes each move once."""
    store = guard(DatabaseRolloutStore(db), breakers["database"], unavailable="the database")
    rollouts = RolloutRunner(store, flags, breakers)
    background = Background()
    ticking = every(settings.rollout_tick_seconds, rollouts.tick, name="rollout tick")
    background.start(ticking, "rollout-tick")
    stack.push_async_callback(background.stop)
    return rollouts


def _tenants(
    settings: Settings,
    db: database.Database,
    redis: AnyRedis | None,
    queries: QueryOptimizer,
    stack: AsyncExitStack,
) -> TenantService:
    try:
        plans = configured_plans(settings.plans, q.QUEUE_NAMES)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if settings.default_plan not in plans:
        raise ConfigError(f"TENANTRY_DEFAULT_PLAN: no plan named {settings.default_plan!r}")
    meter = UsageMeter(
        db,
        retention_hours=settings.usage_retention_hours,
        query_sources=[queries.monitor.drain_company_totals],
    )
    stack.push_async_callback(meter.close)  # what was counted since the last flush
    background = Background()
    flushing = every(settings.usage_flush_seconds, meter.flush, name="usage flush")
    background.start(flushing, "usage-flush")
    stack.push_async_callback(background.stop)
    return TenantService(
        db,
        meter=meter,
        plans=plans,
        default_plan=settings.default_plan,
        cache_seconds=settings.tenant_cache_seconds,
        queues=q.QUEUE_NAMES,
        redis=redis,  # API request counts, shared by every process
    )


def job_backend(settings: Settings) -> JobBackend:
    """BullMQ on Redis when queues are enabled and Redis is configured, else in-process."""
    url = settings.effective_redis_url
    if settings.enable_job_queues and url:
        return BullMQBackend(url, prefix=settings.job_prefix, queues=q.QUEUE_NAMES)
    return InProcessBackend(queues=q.QUEUE_NAMES)


async def _jobs(
    settings: Settings,
    db: database.Database,
    redis_breaker: Breaker,
    tenants: TenantService,
    stack: AsyncExitStack,
) -> JobService:
    backend = job_backend(settings)
    # Each company's share of a queue (weight, concurrency, rate) comes from its plan.
    per_company: dict[str, Any] = {"limits": tenants, "on_job_run": tenants.meter.job_run}
    if backend.durable:
        # BullMQ behind the `redis` circuit, with the database outbox for Redis outages.
        enqueue = guard(backend, redis_breaker, ("add",)).add
        service = JobService(
            settings,
            backend,
            HandlerRegistry(),
            outbox=JobOutbox(db),
            enqueue=enqueue,
            **per_company,
        )
    else:
        service = JobService(settings, backend, HandlerRegistry(), **per_company)
    stack.push_async_callback(service.close)
    return service


def _register_handlers(
    jobs: JobService,
    settings: Settings,
    storage: StorageService,
    queries: QueryOptimizer,
    secret_key: str,
) -> None:
    """Tenantry's handlers, each with what it needs; then the application's, which win."""
    registry = jobs.registry
    company_data = CompanyData(storage, queries, settings.job_export_url_expires_seconds)
    configured = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    registry.register(q.EMAIL, "*", email.SendEmail(email.Smtp.from_settings(settings)))
    registry.register(
        q.NOTIFICATION,
        "*",
        notification.DeliverWebhook(configured or secret_key, settings.webhook_timeout_seconds),
    )
    registry.register(q.EXPORT, "*", export.ExportData(company_data))
    registry.register(q.REPORT, "*", report.GenerateReport(company_data))
    registry.register(q.AI_PROCESSING, "*", ai.example_ai_task)
    cleaner = cleanup.Cleanup(
        jobs, storage, cleanup.temp_dir(settings), cleanup.CleanupAges.from_settings(settings)
    )
    registry.register(q.CLEANUP, "*", cleaner)
    load_handler_modules(settings)
    registry.update(declared)


async def _start_jobs(jobs: JobService, settings: Settings, stack: AsyncExitStack) -> None:
    """Without Redis the handlers run in this event loop. With Redis, what needs it (the
    cleanup schedule, in-app workers, the outbox relay) starts in the background: the app
    serves (and /ready reports Redis down) during an outage."""
    cron = cleanup_cron(settings)
    if not jobs.durable:
        await schedule_cleanup(jobs, cron)
        await jobs.start_workers()
        stack.push_async_callback(jobs.stop_workers)
        return
    stack.push_async_callback(jobs.stop_workers)
    background = Background()
    scheduling = until_done(lambda: schedule_cleanup(jobs, cron), name="job queues")
    background.start(scheduling, "cleanup-schedule")
    if jobs.outbox is not None:
        outbox, enqueue = jobs.outbox, jobs.enqueue
        relaying = every(
            settings.job_outbox_relay_seconds,
            lambda: outbox.relay_all(enqueue),
            name="outbox relay round",
            now=True,
        )
        background.start(relaying, "outbox-relay")
    if settings.job_fair_scheduling:
        # Staged jobs reach BullMQ's `wait` even with no Tenantry worker (Node workers).
        dispatching = every(
            settings.job_fair_dispatch_seconds, jobs.dispatch_all, name="job dispatch", quiet=True
        )
        background.start(dispatching, "job-dispatch")
    if settings.job_workers_in_app:
        background.start(until_done(jobs.start_workers, name="job workers"), "job-workers")
    stack.push_async_callback(background.stop)


def _scrape_figures(
    metrics: Metrics,
    settings: Settings,
    queries: QueryOptimizer,
    rollouts: RolloutRunner,
    tenants: TenantService,
    jobs: JobService,
) -> None:
    """What /metrics adds to the services' own counters: the figures alerts need."""
    query_metrics.register(metrics.registry, queries)
    rollout_metrics.register(metrics, rollouts)
    top_companies.register_quota(metrics, tenants, settings.metrics_top_companies)
    job_metrics.register(metrics, jobs)


# --- readiness checks ----------------------------------------------------------------


def _guarded_check(breaker: Breaker, check: HealthCheck) -> HealthCheck:
    """A dependency's ping through its breaker: an open circuit is reported as such,
    and a failing ping counts towards opening it."""

    async def guarded() -> dict[str, Any]:
        try:
            details = await breaker.call_async(check)
        except CircuitOpenError as exc:
            raise RuntimeError(f"circuit {breaker.name} is {exc.state.value}") from None
        return {**(details or {}), "circuit": breaker.state.value}

    return guarded


async def _ping(db: database.Database) -> dict[str, Any]:
    async with db.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return {"dialect": db.dialect}


async def _ping_redis(redis: AnyRedis) -> dict[str, Any]:
    await redis_clients.ping(redis)
    return {}


async def _query_health(queries: QueryOptimizer) -> dict[str, Any]:
    return query_health_details(await queries.health())


async def _resilience_health(resilience: ResilienceService) -> dict[str, Any]:
    return resilience.health()
