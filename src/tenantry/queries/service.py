"""`QueryOptimizer`: the one object the rest of Tenantry talks to about queries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from tenantry.auth import validate_company_id
from tenantry.background import Background, every
from tenantry.context import company_scope
from tenantry.db import Database
from tenantry.errors import ServiceUnavailable
from tenantry.queries import advisor, explain
from tenantry.queries.cache import ReadCache
from tenantry.queries.cache_backends import CacheBackend, MemoryCache, RedisCache
from tenantry.queries.index_apply import AppliedIndex, ApplyPolicy, IndexApplier
from tenantry.queries.index_changes import IndexChange
from tenantry.queries.index_verdict import ShapeFigures
from tenantry.queries.monitor import NO_COMPANY, QueryMonitor, Series, merge_series
from tenantry.queries.replicas import ReplicaGate, ReplicaRouter
from tenantry.queries.results import (
    CacheHealth,
    CompanyFigures,
    ExplainResult,
    Figures,
    IndexAdvice,
    QueryHealth,
    QueryMetrics,
    QueryStatistics,
    Recommendation,
    ReplicaHealth,
    ShapeMetrics,
    SlowStatement,
)
from tenantry.queries.write_marks import WriteMarks
from tenantry.redis_clients import AnyRedis, Batch, is_cluster
from tenantry.redis_url import one_slot

log = logging.getLogger("tenantry.queries")
T = TypeVar("T")
_CACHE_STATS_KEY = "tenantry:queries:cache"
MAX_RECOMMENDATIONS = 50  # GET /api/query-optimizer/indexes?maxIndexes= at most


class QueryOptimizer:
    def __init__(
        self,
        db: Database,
        *,
        redis: AnyRedis | None = None,
        slow_query_ms: float = 1000.0,
        cache_ttl: float = 300.0,
        explain_timeout_ms: int = 5000,
        explain_access: explain.ExplainAccess = explain.DEFAULT_ACCESS,
        explain_url: str | None = None,
        replica_urls: Iterable[str] = (),
        replica_gate: ReplicaGate | None = None,
        replica_max_lag_ms: float = 1000.0,
        replica_poll_seconds: float = 0.2,
        flush_seconds: float = 5.0,
        cache_backend: CacheBackend | None = None,
        apply_policy: ApplyPolicy | None = None,
        advisor_max_mb: float | None = None,
    ) -> None:
        self.db = db
        self.advisor_max_mb = advisor_max_mb
        self.redis = redis
        self.cache_ttl = cache_ttl
        self.explain_timeout_ms = explain_timeout_ms
        self.explain_access = explain_access
        self.explain_url = explain_url
        self.flush_seconds = flush_seconds
        # On a cluster the figures share one slot: a flush is one MULTI/EXEC.
        prefix = one_slot("tenantry:queries", is_cluster(redis)) + ":"
        self.monitor = QueryMonitor(slow_query_ms=slow_query_ms, redis_prefix=prefix)
        self.monitor.attach(db.engine)
        backend = cache_backend or (RedisCache(redis) if redis is not None else MemoryCache())
        self.cache = ReadCache(backend)
        # A write's mark outlives the moment a replica that has not replayed it is
        # skipped for lag anyway (REPLICA_MAX_LAG_MS, measured to one poll), with room.
        marks = WriteMarks(replica_max_lag_ms / 1000 + replica_poll_seconds + 5.0, redis)
        self.replicas = ReplicaRouter(
            db,
            list(replica_urls),
            replica_gate or _off,
            marks,
            monitor=self.monitor,
            max_lag_ms=replica_max_lag_ms,
            poll_seconds=replica_poll_seconds,
        )
        self._tools: AsyncEngine | None = None
        self._explainer: AsyncEngine | None = None
        self.indexes = IndexApplier(
            db, self._recommendations, self._shape_figures, apply_policy or ApplyPolicy()
        )
        self._background = Background()
        self._started = False
        self._cache_flushed: dict[str, tuple[int, int]] = {}

    # --- life cycle -------------------------------------------------------------
    def attach(self, engine: Any) -> None:
        """Time every statement of another engine (the application's own, say)."""
        self.monitor.attach(engine)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.redis is not None:
            # Redis away: figures stay local and go next time (so quietly).
            flushing = every(self.flush_seconds, self.flush, name="query metrics flush", quiet=True)
            self._background.start(flushing, "query-metrics")
        if self.replicas.replicas:
            # Until its first round a replica is not used; a failed round marks it down.
            polling = every(
                self.replicas.poll_seconds,
                self.replicas.poll,
                name="replica lag poll",
                now=True,
                quiet=True,
            )
            self._background.start(polling, "replica-lag")
        if self.applying_indexes:
            # Every process looks; the advisory lock lets one judge at a time.
            verifying = every(
                _verify_interval(self.indexes.policy.verify_seconds),
                self.verify_indexes,
                name="index verification",
            )
            self._background.start(verifying, "index-verification")

    async def close(self) -> None:
        if self._started:
            await self._background.stop()
            self._started = False
            with contextlib.suppress(Exception):
                await self.flush()
        self.monitor.detach_all()
        await self.replicas.dispose()
        await self.indexes.close()
        for engine in (self._tools, self._explainer):
            if engine is not None:
                await engine.dispose()

    async def flush(self) -> None:
        """Adds this process's figures into Redis, so every process reads the same totals."""
        if self.redis is None:
            return
        await self.monitor.flush(self.redis)
        # Counts as of now; reads that land while Redis answers go in the next flush.
        snapshot = {c: (s.hits, s.misses) for c, s in self.cache.stats.items()}
        deltas = {}
        for company, (hits, misses) in snapshot.items():
            flushed_hits, flushed_misses = self._cache_flushed.get(company, (0, 0))
            if (hits, misses) != (flushed_hits, flushed_misses):
                deltas[company] = (hits - flushed_hits, misses - flushed_misses)
        if deltas:
            batch = Batch()
            for company, (hits, misses) in deltas.items():
                batch.add("HINCRBY", _CACHE_STATS_KEY, f"{company}:hits", hits)
                batch.add("HINCRBY", _CACHE_STATS_KEY, f"{company}:misses", misses)
            await batch.run(self.redis)
            self._cache_flushed.update({c: snapshot[c] for c in deltas})

    # --- the read cache ---------------------------------------------------------
    async def optimized_read(
        self,
        company_id: str,
        name: str,
        fn: Callable[[AsyncSession], Awaitable[T]],
        cache_ttl: float | None = None,
    ) -> Any:
        """`fn(session)` for `company_id`, cached under `name` in that company's namespace.

        Concurrent misses of one key run `fn` once; on a replica when they are on for
        the company and one is fit: up, within REPLICA_MAX_LAG_MS, and past the
        company's last `optimized_write` (from any process sharing Redis).
        """
        ttl = self.cache_ttl if cache_ttl is None else cache_ttl

        async def load() -> T:
            with company_scope(company_id):
                return await self.replicas.read(company_id, fn)

        return await self.cache.read(company_id, name, load, ttl)

    async def optimized_write(
        self,
        company_id: str,
        fn: Callable[[AsyncSession], Awaitable[T]],
        invalidates: Iterable[str] = (),
    ) -> T:
        """`fn(session)` on the primary in a transaction, then drops that company's reads.

        `invalidates` holds cache names, or prefixes ending in '*'; other companies'
        entries are never touched. With replicas, the primary's WAL position after the
        commit is noted for the company before its reads are dropped: from then on its
        reads go to a replica only once that has replayed the write, else to the primary.
        """
        validate_company_id(company_id)
        with company_scope(company_id):
            async with self.db.session() as session:
                result = await fn(session)
        await self.replicas.wrote(company_id)
        names = list(invalidates)
        if names:
            await self.cache.invalidate(company_id, names)
        return result

    # --- figures ------------------------------------------------------------------
    async def _series(
        self, company_id: str | None = None
    ) -> tuple[dict[tuple[str, str], Series], str]:
        """Every series, or one company's only (its reads cost in proportion to it)."""
        local = self.monitor.local_series(company_id)
        if self.redis is None:
            return local, "process"
        try:
            shared = await self.monitor.redis_series(self.redis, company_id)
        except Exception as exc:
            log.warning("query metrics: Redis unavailable, showing this process only: %s", exc)
            return local, "process"
        return merge_series(shared.items(), local.items()), "redis"

    async def _shape_texts(self) -> dict[str, dict[str, Any]]:
        texts: dict[str, dict[str, Any]] = {}
        if self.redis is not None:
            with contextlib.suppress(Exception):
                texts.update(await self.monitor.redis_shapes(self.redis))
        for shape_id, info in self.monitor.shapes().items():
            entry = texts.setdefault(shape_id, {})
            entry.update(text=info.shape.text, dialect=info.shape.dialect)
            if info.plan is not None:
                entry["plan"] = info.plan
        return texts

    async def _slow_log(self) -> list[dict[str, Any]]:
        local = [entry.as_dict() for entry in reversed(self.monitor.slow_log)]
        if self.redis is None:
            return local
        try:
            shared = await self.monitor.redis_slow(self.redis)
        except Exception:
            return local
        flushed = {(e["shapeId"], e["at"]) for e in shared}
        merged = shared + [e for e in local if (e["shapeId"], e["at"]) not in flushed]
        return sorted(merged, key=lambda e: e["at"], reverse=True)

    async def metrics(
        self, company_id: str | None = None, slow_only: bool = False, include_plans: bool = True
    ) -> QueryMetrics:
        """Figures per shape (and per company within it) and the slow-query log.

        Plans show parameter values of whichever company's statement was slow first,
        so a caller that may only see one company's data asks without them.
        """
        wanted = company_id or None
        series, source = await self._series(wanted)
        texts = await self._shape_texts()
        per_shape: dict[str, list[tuple[str, Series]]] = {}
        for (shape_id, company), figures in series.items():
            if wanted is None or company == wanted:
                per_shape.setdefault(shape_id, []).append((company, figures))
        shapes = []
        for shape_id, companies in per_shape.items():
            total = Series()
            for _, figures in companies:
                total.merge(figures)
            if slow_only and total.slow == 0:
                continue
            info = texts.get(shape_id, {})
            shapes.append(
                ShapeMetrics(
                    shape_id=shape_id,
                    statement=info.get("text"),
                    dialect=info.get("dialect"),
                    figures=_figures(total),
                    plan=info.get("plan") if total.slow and include_plans else None,
                    companies=[
                        CompanyFigures(None if c == NO_COMPANY else c, _figures(f))
                        for c, f in sorted(companies, key=lambda cf: -cf[1].total)
                    ],
                )
            )
        shapes.sort(key=lambda s: -(s.figures.total_ms or 0))
        slow = [
            SlowStatement(
                shape_id=entry["shapeId"],
                company_id=entry["companyId"],
                duration_ms=entry["durationMs"],
                statement=entry["statement"],
                at=entry["at"],
                plan=texts.get(entry["shapeId"], {}).get("plan") if include_plans else None,
            )
            # The slow log's stored form (here and in Redis) is camelCase JSON.
            for entry in await self._slow_log()
            if wanted is None or entry["companyId"] == wanted
        ]
        return QueryMetrics(source=source, shapes=shapes, slow_queries=slow)

    async def statistics(self, company_id: str | None = None) -> QueryStatistics:
        series, source = await self._series(company_id)
        total = Series()
        for (_, company), figures in series.items():
            if company_id is None or company == company_id:
                total.merge(figures)
        overall = _figures(total)
        return QueryStatistics(
            company_id=company_id,
            source=source,
            calls=total.calls,
            shapes=len({k[0] for k in series if company_id is None or k[1] == company_id}),
            avg_ms=overall.mean_ms,
            p50_ms=overall.p50_ms,
            p95_ms=overall.p95_ms,
            p99_ms=overall.p99_ms,
            slow_count=total.slow,
            cache_hit_rate=await self.cache_hit_rate(company_id),
            histogram_buckets=len(total.sketch.buckets),
        )

    async def cache_hit_rate(self, company_id: str | None = None) -> float | None:
        hits = misses = 0
        for company, stats in self.cache.stats.items():
            if company_id is None or company == company_id:
                flushed = self._cache_flushed.get(company, (0, 0))
                hits += stats.hits - flushed[0]
                misses += stats.misses - flushed[1]
        if self.redis is not None:
            with contextlib.suppress(Exception):
                raw = await self.redis.hgetall(_CACHE_STATS_KEY)  # type: ignore[misc]
                for key, value in raw.items():
                    company, _, kind = key.decode().rpartition(":")
                    if company_id is None or company == company_id:
                        if kind == "hits":
                            hits += int(value)
                        else:
                            misses += int(value)
        total = hits + misses
        return round(hits / total, 4) if total else None

    async def cache_hit_rates(self) -> dict[str, float | None]:
        """The hit rate of every company the cache has served, busiest companies first."""
        companies = set(self.cache.stats)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                raw = await self.redis.hgetall(_CACHE_STATS_KEY)  # type: ignore[misc]
                companies.update(key.decode().rpartition(":")[0] for key in raw)
        return {company: await self.cache_hit_rate(company) for company in sorted(companies)}

    async def reset_metrics(self) -> None:
        self.monitor.reset()
        self.cache.reset_stats()
        self._cache_flushed.clear()
        if self.redis is not None:
            try:
                await self.monitor.redis_reset(self.redis)
                await self.redis.delete(_CACHE_STATS_KEY)
            except Exception as exc:
                raise ServiceUnavailable(
                    "this process's figures were reset, but Redis (which holds every "
                    f"process's) could not be reached: {exc}; try again",
                    details={"dependency": "redis"},
                ) from None

    # --- EXPLAIN and index advice ------------------------------------------------
    def _tools_engine(self) -> AsyncEngine:
        """A separate, unmonitored engine: EXPLAINs must not count as workload."""
        if self._tools is None:
            self._tools = create_async_engine(self.db.url, poolclass=NullPool)
        return self._tools

    def _explain_engine(self) -> AsyncEngine:
        """Unmonitored too; on EXPLAIN_DATABASE_URL's login role when one is given."""
        if self.explain_url is None:
            return self._tools_engine()
        if self._explainer is None:
            self._explainer = create_async_engine(self.explain_url, poolclass=NullPool)
        return self._explainer

    async def explain_query(self, query: str) -> ExplainResult:
        engine = self.db.engine if self.db.dialect != "postgresql" else self._explain_engine()
        return await explain.explain_query(
            engine, query, self.explain_timeout_ms, self.explain_access
        )

    def workload(
        self,
        series: dict[tuple[str, str], Series],
        texts: dict[str, dict[str, Any]] | None = None,
    ) -> list[advisor.WorkloadStatement]:
        """PostgreSQL shapes with their calls across companies (and processes, via `texts`).

        Shapes this process saw carry real parameter samples; shapes only other
        processes saw are planned generically from their $n text.
        """
        totals: dict[str, Series] = {}
        for (shape_id, _), figures in series.items():
            totals.setdefault(shape_id, Series()).merge(figures)
        shapes = self.monitor.shapes()
        statements = []
        for shape_id, figures in totals.items():
            info = shapes.get(shape_id)
            dialect: str | None
            text: str | None
            if info is not None:
                dialect, text, samples = info.shape.dialect, info.shape.text, list(info.samples)
            else:
                known = (texts or {}).get(shape_id, {})
                dialect, text, samples = known.get("dialect"), known.get("text"), []
            if dialect != "postgresql" or not text:
                continue
            statements.append(
                advisor.WorkloadStatement(
                    shape_id, text, figures.calls, figures.total * 1000, figures.rows, samples
                )
            )
        return statements

    async def analyze_indexes(
        self, max_indexes: int = 5, max_mb: float | None = None
    ) -> IndexAdvice:
        """At most `max_indexes` and `max_mb` (QUERY_ADVISOR_MAX_MB unless given) of them."""
        engine = self.db.engine if self.db.dialect != "postgresql" else self._tools_engine()
        series, _ = await self._series()
        workload = self.workload(series, await self._shape_texts())
        budget = max_mb if max_mb is not None else self.advisor_max_mb
        return await advisor.analyze_indexes(
            engine, workload, max_indexes=max_indexes, max_mb=budget
        )

    # --- applying index advice -------------------------------------------------
    @property
    def applying_indexes(self) -> bool:
        """QUERY_APPLY_INDEXES is on and the database is PostgreSQL."""
        return self.indexes.policy.enabled and self.db.dialect == "postgresql"

    async def apply_index(self, statement: str, actor: str) -> AppliedIndex:
        """Build one of the current recommendations (`statement`: its createStatement)."""
        return await self.indexes.apply(statement, actor)

    async def index_changes(self, limit: int = 100) -> list[IndexChange]:
        """The audit log of applied indexes, newest first."""
        return await self.indexes.log.recent(limit)

    async def verify_indexes(self) -> list[IndexChange]:
        """One verification round (the background runs one every little while)."""
        return await self.indexes.verify()

    async def _recommendations(self) -> list[Recommendation]:
        # As many as the route can list, so any recommendation it showed is matched.
        return (await self.analyze_indexes(max_indexes=MAX_RECOMMENDATIONS)).recommendations

    async def _shape_figures(self) -> dict[str, ShapeFigures]:
        """Every shape's figures summed over companies (and processes, with Redis)."""
        series, _ = await self._series()
        totals: dict[str, Series] = {}
        for (shape_id, _company), figures in series.items():
            totals.setdefault(shape_id, Series()).merge(figures)
        return {
            shape_id: ShapeFigures(s.calls, s.total * 1000, dict(s.sketch.buckets))
            for shape_id, s in totals.items()
        }

    # --- health ---------------------------------------------------------------
    async def health(self) -> QueryHealth:
        backend = self.cache.backend
        try:
            await asyncio.wait_for(backend.ping(), 1.0)
            status = "up"
        except Exception as exc:  # reads still work without it: reported, not fatal
            status = f"down ({type(exc).__name__}); reads go to the database"
        return QueryHealth(
            shapes=len(self.monitor.shapes()),
            slow_query_ms=self.monitor.slow_seconds * 1000,
            cache=CacheHealth(backend.name, self.cache.backend_errors, status),
            replicas=self.replica_health(),
            primary_reads=self.primary_reads,
        )

    def replica_health(self) -> list[ReplicaHealth]:
        """Each replica's state, lag and reads, as the lag monitor last saw it."""
        return self.replicas.health()

    @property
    def primary_reads(self) -> int:
        """`optimized_read` loads the primary answered (replicas off, or none fit)."""
        return self.replicas.primary_reads


def _figures(series: Series) -> Figures:
    summary = series.summary()
    return Figures(
        calls=summary["calls"],
        total_ms=summary["totalMs"],
        mean_ms=summary["meanMs"],
        p50_ms=summary["p50Ms"],
        p95_ms=summary["p95Ms"],
        p99_ms=summary["p99Ms"],
        rows=summary["rows"],
        slow_count=summary["slowCount"],
    )


def _verify_interval(verify_seconds: float) -> float:
    """Rounds often enough to judge near the window's end, never busier than once a second."""
    return min(60.0, max(1.0, verify_seconds / 10))


async def _off(_: str | None) -> bool:
    return False


def flag_gate(
    is_enabled: Callable[[str, str | None], bool], key: str = "use-read-replicas"
) -> ReplicaGate:
    """Replicas per company from a feature flag, e.g. `flag_gate(resilience.flags.is_enabled)`."""

    async def gate(company: str | None) -> bool:
        return is_enabled(key, company)

    return gate


def setting_gate(enabled: bool) -> ReplicaGate:
    """A fixed gate, for an application that uses QueryOptimizer without flags."""

    async def gate(_: str | None) -> bool:
        return enabled

    return gate
