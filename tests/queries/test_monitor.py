"""The monitor: every statement timed, grouped by shape and company, slow log with plans."""

from __future__ import annotations

import random
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import Integer, String, bindparam, column, create_engine, select, table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry.context import company_scope
from tenantry.queries.monitor import NO_COMPANY, QueryMonitor, Series, merge_series
from tenantry.queries.shapes import shape_of, tokenize_normalize
from tenantry.queries.sketch import MAX_INDEX, MIN_INDEX, LatencySketch

items = table("items", column("id", Integer), column("company_id", String), column("n", Integer))


async def _make_items(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TABLE items (id integer primary key, company_id varchar(20), n integer)"
        )
        for i in range(30):
            await conn.execute(
                text("INSERT INTO items (id, company_id, n) VALUES (:id, :c, :n)"),
                {"id": i, "c": "acme" if i % 3 else "globex", "n": i},
            )


def _shape_for(monitor: QueryMonitor, fragment: str) -> str:
    matches = [
        sid for sid, info in monitor.shapes().items() if fragment.lower() in info.shape.text.lower()
    ]
    assert len(matches) == 1, (fragment, [i.shape.text for i in monitor.shapes().values()])
    return matches[0]


async def test_statements_grouped_by_shape_and_company(engine: AsyncEngine) -> None:
    monitor = QueryMonitor()
    monitor.attach(engine)
    await _make_items(engine)
    query = select(items.c.id).where(
        items.c.company_id == bindparam("c"), items.c.n.in_(bindparam("ns", expanding=True))
    )
    async with engine.connect() as conn:
        with company_scope("acme"):
            for size in (1, 2, 5):  # IN lists of different lengths: one shape
                await conn.execute(query, {"c": "acme", "ns": list(range(size))})
            # literals instead of parameters: still the same shape as each other
            await conn.exec_driver_sql("SELECT count(*) FROM items WHERE n > 3")
            await conn.exec_driver_sql("SELECT count(*) FROM items WHERE n > 17")
        with company_scope("globex"):
            await conn.execute(query, {"c": "globex", "ns": [1, 2]})
            result = await conn.exec_driver_sql("SELECT id FROM items WHERE company_id = 'globex'")
            assert len(result.all()) == 10
    series = monitor.local_series()
    in_shape = _shape_for(monitor, " IN (")
    count_shape = _shape_for(monitor, "count")
    assert series[(in_shape, "acme")].calls == 3
    assert series[(in_shape, "globex")].calls == 1
    assert series[(count_shape, "acme")].calls == 2
    assert (count_shape, "globex") not in series
    # literals are gone from the shape text
    assert "17" not in monitor.shape(count_shape).shape.text  # type: ignore[union-attr]
    # the CREATE/INSERT outside any company are recorded too, under no company
    assert any(company == NO_COMPANY for _, company in series)
    summary = series[(in_shape, "acme")].summary()
    assert summary["calls"] == 3
    assert summary["p50Ms"] is not None and summary["p50Ms"] > 0
    assert summary["p50Ms"] <= summary["p95Ms"] <= summary["p99Ms"]
    monitor.detach_all()


async def test_rows_counted_on_postgres(pg_engine: AsyncEngine) -> None:
    """(SQLite's driver reports no row count for a SELECT, so this is PostgreSQL only.)"""
    engine = pg_engine
    await _make_items(engine)
    monitor = QueryMonitor()
    monitor.attach(engine)
    async with engine.connect() as conn:
        with company_scope("acme"):
            await conn.exec_driver_sql("SELECT id FROM items WHERE company_id = 'acme'")
    shape = _shape_for(monitor, "SELECT id FROM items")
    assert monitor.local_series()[(shape, "acme")].rows == 20


async def test_per_company_percentiles_follow_real_durations(engine: AsyncEngine) -> None:
    monitor = QueryMonitor()
    monitor.attach(engine)
    async with engine.connect() as conn:
        for company, delay in (("fast", 1), ("slow", 150)):
            with company_scope(company):
                for _ in range(5):
                    await conn.execute(text("SELECT sleep_ms(:ms)"), {"ms": delay})
    shape = _shape_for(monitor, "sleep_ms")
    series = monitor.local_series()
    fast, slow = series[(shape, "fast")].summary(), series[(shape, "slow")].summary()
    assert fast["calls"] == slow["calls"] == 5
    # Lower bounds only (a loaded machine makes a sleep longer, never shorter), and the
    # companies' figures kept apart: the fast one's median is far from the slow one's.
    assert slow["p50Ms"] >= 150 * 0.99  # a sketch value is within 1 % of a real one
    assert slow["p99Ms"] >= slow["p50Ms"]
    assert slow["totalMs"] >= 750 * 0.99
    assert fast["p50Ms"] < 150 * 0.99


async def test_slow_log_with_plan_captured_once_per_shape(engine: AsyncEngine) -> None:
    await _make_items(engine)
    # Far apart (1 ms and 150 ms around a 100 ms threshold), so load cannot blur them.
    monitor = QueryMonitor(slow_query_ms=100, slow_log_size=3)
    monitor.attach(engine)
    async with engine.connect() as conn:
        with company_scope("acme"):
            for _ in range(5):
                await conn.execute(
                    text("SELECT id, sleep_ms(:ms) FROM items WHERE id = :id"), {"ms": 150, "id": 1}
                )
            await conn.execute(text("SELECT sleep_ms(:ms)"), {"ms": 1})  # fast: not logged
    shape = _shape_for(monitor, "FROM items WHERE")
    assert len(monitor.slow_log) == 3  # bounded
    assert {entry.shape_id for entry in monitor.slow_log} == {shape}
    assert all(
        entry.duration_ms >= 100 and entry.company_id == "acme" for entry in monitor.slow_log
    )
    assert monitor.local_series()[(shape, "acme")].slow == 5
    plan = monitor.shape(shape).plan  # type: ignore[union-attr]
    assert plan not in (None, "unavailable")
    if engine.dialect.name == "postgresql":
        assert plan[0]["Plan"]["Node Type"] in ("Index Scan", "Seq Scan", "Index Only Scan")
    else:
        assert any("items" in row["detail"] for row in plan)


async def test_plan_capture_never_breaks_the_callers_transaction(pg_engine: AsyncEngine) -> None:
    """A plan that cannot be taken (a statement EXPLAIN refuses) leaves the transaction usable."""
    engine = pg_engine
    await _make_items(engine)
    monitor = QueryMonitor(slow_query_ms=0)  # everything is slow: plans for every shape
    monitor.attach(engine)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE items SET n = n + 1 WHERE id = 1")
        await conn.exec_driver_sql("SHOW server_version")  # not explainable
        value = (await conn.exec_driver_sql("SELECT n FROM items WHERE id = 1")).scalar_one()
    assert value == 2
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT n FROM items WHERE id = 1")).scalar_one() == 2


def test_sync_engine_is_monitored_too(tmp_path: object) -> None:
    engine = create_engine("sqlite://")
    monitor = QueryMonitor()
    monitor.attach(engine)
    with engine.connect() as conn, company_scope("initech"):
        for value in range(4):
            conn.execute(text("SELECT :v + 1"), {"v": value})
    series = monitor.local_series()
    shape = _shape_for(monitor, "select ? + ?")
    assert series[(shape, "initech")].calls == 4
    engine.dispose()


async def test_figures_of_several_processes_merge_through_redis(
    engine: AsyncEngine, redis_url: str
) -> None:
    """Two monitors stand for the server and a worker: Redis holds their sum."""
    server, worker = QueryMonitor(), QueryMonitor()
    server.attach(engine)
    async with engine.connect() as conn:
        with company_scope("acme"):
            for _ in range(3):
                await conn.execute(text("SELECT sleep_ms(:ms)"), {"ms": 1})
    server.detach_all()
    worker.attach(engine)
    async with engine.connect() as conn:
        with company_scope("acme"):
            for _ in range(2):
                await conn.execute(text("SELECT sleep_ms(:ms)"), {"ms": 1})
    shape = _shape_for(server, "sleep_ms")
    redis = Redis.from_url(redis_url)
    try:
        await server.flush(redis)
        await worker.flush(redis)
        assert server.local_series() == {} and worker.local_series() == {}
        merged = await server.redis_series(redis)
        assert merged[(shape, "acme")].calls == 5
        assert merged[(shape, "acme")].sketch.count == 5
        shapes = await server.redis_shapes(redis)
        assert "sleep_ms" in shapes[shape]["text"]
        # flushing again adds nothing twice
        await worker.flush(redis)
        assert (await server.redis_series(redis))[(shape, "acme")].calls == 5
    finally:
        await server.redis_reset(redis)
        await redis.aclose()


async def test_a_companys_figures_read_only_its_own_series(
    engine: AsyncEngine, redis_url: str
) -> None:
    monitor = QueryMonitor()
    monitor.attach(engine)
    async with engine.connect() as conn:
        for company, calls in (("acme", 2), ("globex", 3)):
            with company_scope(company):
                for _ in range(calls):
                    await conn.execute(text("SELECT sleep_ms(:ms)"), {"ms": 1})
    assert {key[1] for key in monitor.local_series("acme")} == {"acme"}
    redis = Redis.from_url(redis_url)
    try:
        await monitor.flush(redis)
        own = await monitor.redis_series(redis, "acme")
        assert {key[1] for key in own} == {"acme"}
        assert sum(series.calls for series in own.values()) == 2
        assert {key[1] for key in await monitor.redis_series(redis)} >= {"acme", "globex"}
        await monitor.redis_reset(redis)
        assert await monitor.redis_series(redis, "acme") == {}
        assert await redis.exists("tenantry:queries:series:acme") == 0
    finally:
        await monitor.redis_reset(redis)
        await redis.aclose()


async def test_a_failed_flush_keeps_the_figures(engine: AsyncEngine) -> None:
    monitor = QueryMonitor()
    monitor.attach(engine)
    async with engine.connect() as conn:
        with company_scope("acme"):
            await conn.execute(text("SELECT sleep_ms(:ms)"), {"ms": 1})
    before = {k: v.calls for k, v in monitor.local_series().items()}
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    with pytest.raises(Exception):
        await monitor.flush(dead)
    await dead.aclose()
    assert {k: v.calls for k, v in monitor.local_series().items()} == before


# --- shapes and the sketch, without a database ----------------------------------
def test_postgres_shapes_ignore_literals_params_and_list_lengths() -> None:
    a = shape_of("SELECT * FROM t WHERE a = %(a)s AND b IN (%(b_1)s, %(b_2)s)", "postgresql")
    b = shape_of("SELECT * FROM t WHERE a = 7 AND b IN (1, 2, 3, 4)", "postgresql")
    c = shape_of("SELECT * FROM t WHERE a = $1 AND c IN ($2)", "postgresql")
    assert a.id == b.id != c.id
    assert "$1" in a.text and "%(" not in a.text


def test_sqlite_tokenizer_keeps_quotes_and_comments_apart() -> None:
    text_a = tokenize_normalize("select * from t where a = 'it''s -- not a comment' and b in (1,2)")
    text_b = tokenize_normalize("SELECT * FROM t WHERE a = ? AND b IN (?) -- trailing")
    assert text_a == text_b == "select * from t where a = ? and b in (?)"
    assert tokenize_normalize('select "Weird Name" from t') == 'select "Weird Name" from t'


def test_sketch_quantiles_within_one_percent_and_bounded() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-6, 1.5) for _ in range(20_000)]
    sketch = LatencySketch()
    for value in values:
        sketch.add(value)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[int(q * (len(ordered) - 1))]
        estimate = sketch.quantile(q)
        assert estimate is not None
        assert abs(estimate - exact) / exact <= 0.011
    assert len(sketch.buckets) <= MAX_INDEX - MIN_INDEX + 1
    other = LatencySketch()
    other.add(10.0)
    sketch.merge(other)
    assert sketch.count == 20_001


def test_merge_series_adds() -> None:
    """A process's figures merged with Redis's: each field summed, never the last one kept."""
    assert merge_series() == {}

    def series(calls: int, seconds: float, rows: int, slow: int) -> Series:
        made = Series(calls=calls, total=calls * seconds, rows=rows, slow=slow)
        for _ in range(calls):
            made.sketch.add(seconds)
        return made

    key, other = ("shape", "acme"), ("shape", "globex")
    merged = merge_series(
        [(key, series(3, 0.010, 30, 1))],
        [(key, series(2, 0.100, 4, 2)), (other, series(1, 1, 1, 0))],
    )
    acme = merged[key]
    assert (acme.calls, acme.rows, acme.slow) == (5, 34, 3)
    assert acme.total == pytest.approx(0.230)
    assert acme.sketch.count == 5
    assert acme.sketch.quantile(0.99) == pytest.approx(0.100, rel=0.02)
    assert merged[other].calls == 1


def test_memory_stays_bounded_under_many_shapes() -> None:
    engine = create_engine("sqlite://")
    monitor = QueryMonitor(max_shapes=3, max_texts=5)
    monitor.attach(engine)
    with engine.connect() as conn, company_scope("acme"):
        for i in range(20):
            conn.exec_driver_sql(f"SELECT {i} AS c{i}")  # a new shape each time
    assert len(monitor.shapes()) == 3
    series = monitor.local_series()
    assert series[("overflow", "acme")].calls == 17  # counted, not lost
    assert sum(s.calls for s in series.values()) == 20
    engine.dispose()


async def test_executemany_is_one_statement_with_its_rows(pg_engine: AsyncEngine) -> None:
    monitor = QueryMonitor()
    monitor.attach(pg_engine)
    await _make_items(pg_engine)
    async with pg_engine.begin() as conn:
        with company_scope("acme"):
            await conn.execute(
                text("UPDATE items SET n = n + 1 WHERE id = :id"), [{"id": i} for i in range(5)]
            )
    shape = _shape_for(monitor, "UPDATE items")
    series = monitor.local_series()[(shape, "acme")]
    assert series.calls == 1 and series.rows == 5


def test_sync_postgres_engine_with_slow_plan(postgres_url: str) -> None:
    """A plain synchronous psycopg engine: timed, and its slow statement's plan captured."""
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    monitor = QueryMonitor(slow_query_ms=20)
    monitor.attach(engine)
    with engine.connect() as conn, company_scope("acme"):
        conn.execute(text("SELECT pg_sleep(:s), :v AS v"), {"s": 0.03, "v": 1})
    shape = _shape_for(monitor, "pg_sleep")
    assert monitor.local_series()[(shape, "acme")].slow == 1
    plan = monitor.shape(shape).plan  # type: ignore[union-attr]
    assert plan[0]["Plan"]["Node Type"] == "Result"
    engine.dispose()


def test_threads_sharing_a_sync_engine_lose_no_count(tmp_path: Any) -> None:
    import threading

    engine = create_engine(f"sqlite:///{tmp_path / 'threads.db'}")
    monitor = QueryMonitor()
    monitor.attach(engine)

    def work(company: str) -> None:
        with engine.connect() as conn, company_scope(company):
            for value in range(300):
                conn.execute(text("SELECT :v"), {"v": value})

    threads = [threading.Thread(target=work, args=(f"c{i % 2}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shape = _shape_for(monitor, "select ?")
    series = monitor.local_series()
    assert series[(shape, "c0")].calls == series[(shape, "c1")].calls == 600
    assert series[(shape, "c0")].sketch.count == 600
    engine.dispose()
