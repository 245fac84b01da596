"""Times every statement of any SQLAlchemy engine, grouped by shape and by company.

`QueryMonitor.attach(engine)` listens to the engine's `do_execute`,
`do_execute_no_params` and `do_executemany` events (an `AsyncEngine` is attached
through its `sync_engine`), so every statement is seen without the caller doing
anything.
The hot path is two `perf_counter()` calls, a dict lookup of the statement text's
shape (parsed once per distinct text, cached), a context-variable read, and a
histogram increment under an uncontended lock (see benchmarks/queries/monitor_overhead.py
for what it adds per statement). With tracing on (`trace_with`, docs/tracing.md) traced
listeners replace these, a span around each statement; off, nothing is checked.

Figures live in the process until `flush()` pushes them into Redis (HINCRBY, so
the server and every worker add into the same counters); readers then merge
what Redis holds with what this process has not flushed yet.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry.context import current_company
from tenantry.queries.shapes import Shape, shape_of
from tenantry.queries.sketch import LatencySketch, bucket_index
from tenantry.redis_clients import AnyRedis, Batch

if TYPE_CHECKING:
    from tenantry.tracing.tracer import Tracing

log = logging.getLogger("tenantry.queries")

NO_COMPANY = "-"  # statements run outside any company (start-up, admin work)
OVERFLOW_SHAPE = "overflow"  # every shape past max_shapes, so memory stays bounded
MAX_SAMPLED_TEXT = 20_000  # longer statements are not kept as advisor samples
_SAMPLE_AT = frozenset({1, 10, 100, 1000, 10000})  # calls at which parameters are sampled
_EXPLAINABLE = ("select", "with", "insert", "update", "delete", "values", "table")


@dataclass(slots=True)
class Series:
    """The figures of one (shape, company) pair."""

    calls: int = 0
    total: float = 0.0  # seconds
    rows: int = 0
    slow: int = 0
    sketch: LatencySketch = field(default_factory=LatencySketch)

    def merge(self, other: Series) -> None:
        self.calls += other.calls
        self.total += other.total
        self.rows += other.rows
        self.slow += other.slow
        self.sketch.merge(other.sketch)

    def summary(self) -> dict[str, Any]:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 3)

        return {
            "calls": self.calls,
            "totalMs": ms(self.total),
            "meanMs": ms(self.total / self.calls) if self.calls else None,
            "p50Ms": ms(self.sketch.quantile(0.50)),
            "p95Ms": ms(self.sketch.quantile(0.95)),
            "p99Ms": ms(self.sketch.quantile(0.99)),
            "rows": self.rows,
            "slowCount": self.slow,
        }


@dataclass(slots=True)
class ShapeInfo:
    shape: Shape
    samples: list[tuple[str, Any]] = field(default_factory=list)  # (statement, parameters)
    plan: Any = None


@dataclass(frozen=True, slots=True)
class SlowQuery:
    shape_id: str
    company_id: str
    duration_ms: float
    statement: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "shapeId": self.shape_id,
            "companyId": None if self.company_id == NO_COMPANY else self.company_id,
            "durationMs": round(self.duration_ms, 3),
            "statement": self.statement,
            "at": self.at,
        }


class QueryMonitor:
    def __init__(
        self,
        *,
        slow_query_ms: float = 1000.0,
        slow_log_size: int = 200,
        max_shapes: int = 5000,
        max_texts: int = 20000,
        capture_plans: bool = True,
        redis_prefix: str = "tenantry:queries:",
    ) -> None:
        self.slow_seconds = slow_query_ms / 1000.0
        self.max_shapes = max_shapes
        self.max_texts = max_texts
        self.capture_plans = capture_plans
        self.prefix = redis_prefix
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], Series] = {}  # not yet flushed to Redis
        self._texts: dict[tuple[str, str], str] = {}  # (dialect, statement) -> shape id
        self._shapes: dict[str, ShapeInfo] = {}
        self.slow_log: deque[SlowQuery] = deque(maxlen=slow_log_size)
        self._unflushed_slow: list[SlowQuery] = []
        # Slow statements since this process started (a Prometheus counter: never reset).
        self.slow_total = 0
        self._engines: list[Engine] = []
        # Calls and seconds per company since the last drain (usage metering reads them).
        self._per_company: dict[str, list[float]] = {}
        self.tracing: Tracing | None = None  # set by trace_with: a span per statement

    # --- attaching -----------------------------------------------------------
    def attach(self, engine: Engine | AsyncEngine) -> None:
        """Time every statement `engine` runs, from now on.

        The monitor takes the dialect's `do_execute*` events and calls the dialect's
        own `do_execute*` inside them, timed: one listener per statement instead of
        a before/after pair, which keeps SQLAlchemy's Connection-level event path
        (the dearer part of a listener's cost) switched off.
        """
        sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        if sync in self._engines:
            return
        for name, listener in self._listeners().items():
            event.listen(sync, name, listener)
        self._engines.append(sync)

    def detach_all(self) -> None:
        for sync in self._engines:
            for name, listener in self._listeners().items():
                event.remove(sync, name, listener)
        self._engines.clear()

    def trace_with(self, tracing: Tracing) -> None:
        """A span per statement from now on. The traced listeners replace the plain
        ones, so without tracing the hot path does not even check for it."""
        engines = list(self._engines)
        self.detach_all()
        self.tracing = tracing
        for engine in engines:
            self.attach(engine)

    def _listeners(self) -> dict[str, Any]:
        if self.tracing is not None:
            return {
                "do_execute": self._traced_execute,
                "do_execute_no_params": self._traced_execute_no_params,
                "do_executemany": self._traced_executemany,
            }
        return {
            "do_execute": self._do_execute,
            "do_execute_no_params": self._do_execute_no_params,
            "do_executemany": self._do_executemany,
        }

    # --- the hot path --------------------------------------------------------
    def _do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        started = time.perf_counter()
        context.dialect.do_execute(cursor, statement, parameters, context)
        self._record(context, cursor, statement, parameters, time.perf_counter() - started)
        return True  # executed: SQLAlchemy must not run it again

    def _do_execute_no_params(self, cursor: Any, statement: str, context: Any) -> bool:
        started = time.perf_counter()
        context.dialect.do_execute_no_params(cursor, statement, context)
        self._record(context, cursor, statement, None, time.perf_counter() - started)
        return True

    def _do_executemany(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        started = time.perf_counter()
        context.dialect.do_executemany(cursor, statement, parameters, context)
        elapsed = time.perf_counter() - started
        self._record(context, cursor, statement, parameters, elapsed, executemany=True)
        return True

    # --- traced: the same, inside a span ----------------------------------------------
    def _traced_execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        with self._statement_span(context, statement):
            return self._do_execute(cursor, statement, parameters, context)

    def _traced_execute_no_params(self, cursor: Any, statement: str, context: Any) -> bool:
        with self._statement_span(context, statement):
            return self._do_execute_no_params(cursor, statement, context)

    def _traced_executemany(
        self, cursor: Any, statement: str, parameters: Any, context: Any
    ) -> bool:
        with self._statement_span(context, statement):
            return self._do_executemany(cursor, statement, parameters, context)

    def _statement_span(self, context: Any, statement: str) -> AbstractContextManager[Any]:
        assert self.tracing is not None
        dialect = context.dialect.name
        shape_id = self._texts.get((dialect, statement)) or self._learn(dialect, statement)
        info = self._shapes.get(shape_id)  # none past max_shapes: no text, never the raw one
        return self.tracing.statement_span(dialect, info.shape.text if info else None)

    def _record(
        self,
        context: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        elapsed: float,
        executemany: bool = False,
    ) -> None:
        dialect = context.dialect.name
        shape_id = self._texts.get((dialect, statement))
        if shape_id is None:
            shape_id = self._learn(dialect, statement)
        key = (shape_id, current_company.get() or NO_COMPANY)
        rows = cursor.rowcount
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = Series()
            series.calls += 1
            series.total += elapsed
            if rows > 0:
                series.rows += rows
            sketch = series.sketch
            index = bucket_index(elapsed)
            sketch.buckets[index] = sketch.buckets.get(index, 0) + 1
            sketch.count += 1
            calls = series.calls
            totals = self._per_company.get(key[1])
            if totals is None:
                totals = self._per_company[key[1]] = [0, 0.0]
            totals[0] += 1
            totals[1] += elapsed
        if calls in _SAMPLE_AT:
            self._sample(shape_id, statement, parameters, executemany)
        if elapsed >= self.slow_seconds:
            conn = context.root_connection
            self._record_slow(conn, key, statement, parameters, elapsed, executemany)

    def _learn(self, dialect: str, statement: str) -> str:
        """The shape id of a statement text seen for the first time (parsed once)."""
        shape = shape_of(statement, dialect)
        with self._lock:
            shape_id = shape.id
            if shape_id not in self._shapes:
                if len(self._shapes) >= self.max_shapes:
                    shape_id = OVERFLOW_SHAPE
                else:
                    self._shapes[shape_id] = ShapeInfo(shape)
            if len(self._texts) >= self.max_texts:
                self._texts.clear()  # texts are only a cache of the parse
            self._texts[(dialect, statement)] = shape_id
        return shape_id

    def _sample(self, shape_id: str, statement: str, parameters: Any, many: bool) -> None:
        """Keeps a few real parameter sets per shape: the advisor plans with them."""
        info = self._shapes.get(shape_id)
        if info is None or many or len(statement) > MAX_SAMPLED_TEXT:
            return
        with self._lock:
            if len(info.samples) < 3:
                info.samples.append((statement, parameters))

    def _record_slow(
        self,
        conn: Any,
        key: tuple[str, str],
        statement: str,
        parameters: Any,
        elapsed: float,
        many: bool,
    ) -> None:
        entry = SlowQuery(key[0], key[1], elapsed * 1000, statement[:4000], time.time())
        with self._lock:
            self._series.setdefault(key, Series()).slow += 1
            self.slow_total += 1
            self.slow_log.append(entry)
            self._unflushed_slow.append(entry)
            del self._unflushed_slow[: -self.slow_log.maxlen if self.slow_log.maxlen else 0]
        info = self._shapes.get(key[0])
        if info is not None and info.plan is None and self.capture_plans and not many:
            info.plan = capture_plan(conn, statement, parameters) or "unavailable"

    # --- readers -------------------------------------------------------------
    def drain_company_totals(self) -> dict[str, tuple[int, float]]:
        """{company: (calls, milliseconds)} since the last drain, statements of no company
        left out; for usage metering (tenantry.tenants.metering)."""
        with self._lock:
            drained, self._per_company = self._per_company, {}
        drained.pop(NO_COMPANY, None)
        return {
            company: (int(calls), seconds * 1000) for company, (calls, seconds) in drained.items()
        }

    def shape(self, shape_id: str) -> ShapeInfo | None:
        return self._shapes.get(shape_id)

    def shapes(self) -> dict[str, ShapeInfo]:
        return dict(self._shapes)

    def local_series(self, company_id: str | None = None) -> dict[tuple[str, str], Series]:
        """A copy of the figures not yet flushed (all of them when Redis is not used);
        with `company_id`, that company's only."""
        with self._lock:
            copied = {}
            for key, series in self._series.items():
                if company_id is not None and key[1] != company_id:
                    continue
                clone = Series()
                clone.merge(series)
                copied[key] = clone
            return copied

    def reset(self) -> None:
        with self._lock:
            self._series.clear()
            self.slow_log.clear()
            self._unflushed_slow.clear()
            for info in self._shapes.values():
                info.plan = None

    # --- merging across processes through Redis ------------------------------
    async def flush(self, redis: AnyRedis) -> None:
        """Adds this process's figures into Redis, then forgets them locally.

        On a Redis error the figures are put back, so nothing is lost or counted twice.
        """
        with self._lock:
            pending, self._series = self._series, {}
            slow, self._unflushed_slow = self._unflushed_slow, []
        if not pending and not slow:
            return
        try:
            await self._push(redis, pending, slow)
        except Exception:
            with self._lock:
                for key, series in pending.items():
                    self._series.setdefault(key, Series()).merge(series)
                self._unflushed_slow[:0] = slow
            raise

    async def _push(
        self, redis: AnyRedis, pending: dict[tuple[str, str], Series], slow: list[SlowQuery]
    ) -> None:
        p = self.prefix
        batch = Batch()  # all or nothing, so a retried flush never counts twice
        for (shape_id, company), series in pending.items():
            key = f"{p}s:{shape_id}:{company}"
            batch.add("SADD", f"{p}series", f"{shape_id}:{company}")
            # A company's own members, so its figures read only its series.
            batch.add("SADD", f"{p}series:{company}", f"{shape_id}:{company}")
            batch.add("HINCRBY", key, "calls", series.calls)
            batch.add("HINCRBY", key, "us", round(series.total * 1e6))
            batch.add("HINCRBY", key, "rows", series.rows)
            batch.add("HINCRBY", key, "slow", series.slow)
            for index, count in series.sketch.buckets.items():
                batch.add("HINCRBY", key, f"b{index}", count)
            info = self._shapes.get(shape_id)
            if info is not None:
                value = {"text": info.shape.text, "dialect": info.shape.dialect}
                batch.add("HSETNX", f"{p}shapes", shape_id, json.dumps(value))
                if isinstance(info.plan, list | dict):
                    batch.add("HSETNX", f"{p}plans", shape_id, json.dumps(info.plan, default=str))
        for entry in slow:
            batch.add("LPUSH", f"{p}slow", json.dumps(entry.as_dict()))
        if slow:
            batch.add("LTRIM", f"{p}slow", 0, (self.slow_log.maxlen or 200) - 1)
        await batch.run(redis)

    async def redis_series(
        self, redis: AnyRedis, company_id: str | None = None
    ) -> dict[tuple[str, str], Series]:
        """Every series in Redis, or (with `company_id`) that company's only: its reads
        cost in proportion to its own statement shapes, not to every company's."""
        p = self.prefix
        index = f"{p}series" if company_id is None else f"{p}series:{company_id}"
        members = sorted(m.decode() for m in await redis.smembers(index))  # type: ignore[misc]
        pipe = redis.pipeline(transaction=False)
        for member in members:
            shape_id, company = member.split(":", 1)
            pipe.hgetall(f"{p}s:{shape_id}:{company}")
        merged: dict[tuple[str, str], Series] = {}
        for member, raw in zip(members, await pipe.execute(), strict=True):
            shape_id, company = member.split(":", 1)
            merged[(shape_id, company)] = _series_from_hash(raw)
        return merged

    async def redis_shapes(self, redis: AnyRedis) -> dict[str, dict[str, Any]]:
        p = self.prefix
        shapes = await redis.hgetall(f"{p}shapes")  # type: ignore[misc]
        plans = await redis.hgetall(f"{p}plans")  # type: ignore[misc]
        out = {k.decode(): json.loads(v) for k, v in shapes.items()}
        for k, v in plans.items():
            out.setdefault(k.decode(), {})["plan"] = json.loads(v)
        return out

    async def redis_slow(self, redis: AnyRedis) -> list[dict[str, Any]]:
        raw = await redis.lrange(f"{self.prefix}slow", 0, -1)  # type: ignore[misc]
        return [json.loads(item) for item in raw]

    async def redis_reset(self, redis: AnyRedis) -> None:
        p = self.prefix
        members = [m.decode() for m in await redis.smembers(f"{p}series")]  # type: ignore[misc]
        keys = [f"{p}s:{m}" for m in members]
        companies = {f"{p}series:{m.split(':', 1)[1]}" for m in members}
        await redis.delete(f"{p}series", f"{p}shapes", f"{p}plans", f"{p}slow", *keys, *companies)


def _series_from_hash(raw: dict[bytes, bytes]) -> Series:
    series = Series()
    buckets = {}
    for name, value in raw.items():
        field_name, number = name.decode(), int(value)
        if field_name.startswith("b"):
            buckets[int(field_name[1:])] = number
        elif field_name == "calls":
            series.calls = number
        elif field_name == "us":
            series.total = number / 1e6
        elif field_name == "rows":
            series.rows = number
        elif field_name == "slow":
            series.slow = number
    series.sketch = LatencySketch.from_counts(buckets)
    return series


def merge_series(
    *groups: Iterable[tuple[tuple[str, str], Series]],
) -> dict[tuple[str, str], Series]:
    merged: dict[tuple[str, str], Series] = {}
    for group in groups:
        for key, series in group:
            merged.setdefault(key, Series()).merge(series)
    return merged


def capture_plan(conn: Any, statement: str, parameters: Any) -> Any:
    """The plan of a slow statement, without running it again (plain EXPLAIN).

    Runs on a second cursor of the same connection, so temporary tables and the
    transaction's own changes are visible; on PostgreSQL inside a savepoint, so a
    failing EXPLAIN cannot abort the caller's transaction.
    """
    if not statement.lstrip().lower().startswith(_EXPLAINABLE):
        return None
    dialect = conn.dialect.name
    try:
        raw = conn.connection.dbapi_connection
        cursor = raw.cursor()
    except Exception:
        return None
    try:
        if dialect == "postgresql":
            return _pg_plan(cursor, statement, parameters)
        if dialect == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters or ())
            return [{"id": r[0], "parent": r[1], "detail": r[-1]} for r in cursor.fetchall()]
    except Exception as exc:  # the plan is a nicety; the statement already succeeded
        log.debug("could not capture a plan: %s", exc)
    finally:
        with contextlib.suppress(Exception):  # closing a throwaway cursor
            cursor.close()
    return None


def _pg_plan(cursor: Any, statement: str, parameters: Any) -> Any:
    try:
        cursor.execute("SAVEPOINT tenantry_plan")
        in_transaction = True
    except Exception:  # autocommit: no transaction to protect
        in_transaction = False
    try:
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        row = cursor.fetchone()
        plan = row[0] if row else None
        return json.loads(plan) if isinstance(plan, str) else plan
    except Exception:
        if in_transaction:
            cursor.execute("ROLLBACK TO SAVEPOINT tenantry_plan")
        raise
    finally:
        if in_transaction:
            cursor.execute("RELEASE SAVEPOINT tenantry_plan")
