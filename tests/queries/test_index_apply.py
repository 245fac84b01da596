"""Index advice applied for real: built concurrently, verified on the monitor's latencies,
kept or dropped, and nothing half-built left behind whatever goes wrong."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from tenantry.app import create_app
from tenantry.db import Database
from tenantry.errors import Conflict, Forbidden, InvalidInput, ServiceUnavailable
from tenantry.queries.index_apply import (
    BUILD_APPLICATION_NAME,
    LOCK_KEY,
    ApplyPolicy,
    canonical,
)
from tenantry.queries.index_verdict import ShapeFigures, judge
from tenantry.queries.service import QueryOptimizer
from tenantry.settings import Settings, async_database_url, load_settings
from tests.conftest import ADMIN, ADMIN_TOKEN, SETTINGS_VARIABLES, client_from
from tests.dashboard.conftest import log_in

ROWS = 60_000
ITEMS = [
    "CREATE TABLE items (id serial PRIMARY KEY, k int NOT NULL, payload text NOT NULL)",
    f"INSERT INTO items (k, payload) SELECT g, repeat('x', 40) FROM generate_series(1, {ROWS}) g",
    "ANALYZE items",
]
LOOKUP = "SELECT id, payload FROM items WHERE k = :k"
FAST = ApplyPolicy(enabled=True, verify_seconds=0, min_calls=20, min_improvement=0.1)


# --- the comparator: figures in, verdict out -----------------------------------------
def _f(calls: int, total_ms: float) -> ShapeFigures:
    return ShapeFigures(calls, total_ms)


def test_faster_by_the_margin_is_kept() -> None:
    # a: 10 ms a call before; 200 calls since took 400 ms, which at 10 ms would be 2000 ms
    verdict = judge({"a": _f(100, 1000)}, {"a": _f(200, 400)}, min_calls=50, min_improvement=0.1)
    assert verdict.decision == "keep"
    assert verdict.before_ms == pytest.approx(2000)
    assert verdict.after_ms == pytest.approx(400)
    assert verdict.ratio == pytest.approx(0.2)


def test_not_faster_by_the_margin_is_dropped() -> None:
    # 95 % of the time before: faster, but not by the 10 % the index must save
    verdict = judge({"a": _f(10, 100)}, {"a": _f(100, 950)}, min_calls=50, min_improvement=0.1)
    assert (verdict.decision, verdict.ratio) == ("drop", pytest.approx(0.95))
    slower = judge({"a": _f(10, 100)}, {"a": _f(100, 1500)}, min_calls=50, min_improvement=0.1)
    assert slower.decision == "drop"


def test_the_calls_since_are_priced_at_each_shapes_own_mean() -> None:
    # a: 1 ms before, 100 calls since at 1 ms = 100 ms; b: 50 ms before, 10 calls at 5 ms = 50 ms.
    # Priced before: 100 * 1 + 10 * 50 = 600 ms; spent 150 ms: 25 %. A mix-blind mean over
    # both shapes (before (100 + 500) / 110 ... ) is not what is compared.
    before = {"a": _f(1000, 1000), "b": _f(20, 1000)}
    after = {"a": _f(100, 100), "b": _f(10, 50)}
    verdict = judge(before, after, min_calls=100, min_improvement=0.1)
    assert verdict.decision == "keep"
    assert verdict.before_ms == pytest.approx(600)
    assert verdict.ratio == pytest.approx(0.25)


def test_too_few_calls_since_waits() -> None:
    verdict = judge({"a": _f(10, 100)}, {"a": _f(19, 1)}, min_calls=20, min_improvement=0.1)
    assert (verdict.decision, verdict.calls_after) == ("wait", 19)
    # a shape never seen before the build cannot be priced: it does not count
    unseen = judge({"a": _f(0, 0)}, {"a": _f(500, 1)}, min_calls=20, min_improvement=0.1)
    assert unseen.decision == "wait"


def test_figures_since_subtract_and_survive_a_reset() -> None:
    before = ShapeFigures(10, 100.0, {5: 4, 6: 6})
    now = ShapeFigures(15, 130.0, {5: 4, 6: 8, 7: 3})
    assert now.since(before) == ShapeFigures(5, 30.0, {6: 2, 7: 3})
    reset = ShapeFigures(3, 9.0, {2: 3})  # fewer calls than before: figures were reset
    assert reset.since(before) == reset


def test_statements_match_whatever_their_spacing_quoting_and_case() -> None:
    ours = "CREATE INDEX CONCURRENTLY idx_items_k ON public.items (k)"
    assert canonical('create index  "idx_items_k"\n on PUBLIC."items"(  "k" )') == canonical(ours)
    assert canonical("CREATE INDEX idx_items_k ON public.items (k)") == canonical(ours)
    assert canonical("CREATE INDEX idx_items_k ON public.items (k, id)") != canonical(ours)
    for bad in ("DROP TABLE items", "CREATE INDEX x ON t (a); DROP TABLE t", "nonsense ("):
        assert canonical(bad) is None


# --- on PostgreSQL ---------------------------------------------------------------------
@pytest.fixture
def pg_url(migrated_database: Callable[[str], str]) -> str:
    return migrated_database("postgresql")


@pytest.fixture
async def items(pg_url: str) -> str:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        for sql in ITEMS:
            await conn.execute(sql)
    return pg_url


async def _optimizer(url: str, policy: ApplyPolicy = FAST) -> QueryOptimizer:
    return QueryOptimizer(Database(async_database_url(url)), apply_policy=policy)


@pytest.fixture
async def optimizer(items: str) -> AsyncIterator[QueryOptimizer]:
    service = await _optimizer(items)
    try:
        yield service
    finally:
        await service.close()
        await service.db.dispose()


async def _lookups(optimizer: QueryOptimizer, calls: int, offset: int = 0) -> None:
    """The workload, through the monitored engine."""
    async with optimizer.db.engine.connect() as conn:
        for i in range(calls):
            await conn.execute(text(LOOKUP), {"k": 1 + (offset + i) * 7919 % ROWS})


async def _items_recommendation(optimizer: QueryOptimizer) -> str:
    advice = await optimizer.analyze_indexes()
    found = [r for r in advice.recommendations if r.table == "public.items"]
    assert found, advice
    return found[0].create_statement


async def _indexes(url: str, table: str = "items") -> dict[str, bool]:
    """Every index of `table` but its primary key, and whether it is valid."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        rows = await conn.execute(
            "SELECT i.relname, x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = %s::regclass AND NOT x.indisprimary",
            (table,),
        )
        return dict(await rows.fetchall())


async def _steps(optimizer: QueryOptimizer) -> list[str]:
    return [c.step for c in reversed(await optimizer.index_changes())]


async def test_an_index_that_helps_is_built_and_kept(optimizer: QueryOptimizer, items: str) -> None:
    await _lookups(optimizer, 30)  # sequential scans of 60,000 rows
    statement = await _items_recommendation(optimizer)
    applied = await optimizer.apply_index(statement, actor="test")
    assert [c.step for c in applied.changes] == ["requested", "building", "built"]
    assert await _indexes(items) == {applied.index_name: True}
    built = applied.changes[-1]
    assert built.before is not None
    (shape,) = built.before["shapes"].values()
    assert shape["calls"] == 30 and shape["meanMs"] > 0
    # judged before any call since: it waits, and says so
    (waiting,) = await optimizer.verify_indexes()
    assert waiting.step == "verify-extended"
    assert "0 of the 20 calls" in waiting.detail
    await _lookups(optimizer, 30, offset=30)  # index scans now
    (verdict,) = await optimizer.verify_indexes()
    assert verdict.step == "verified-kept", verdict.detail
    assert verdict.after is not None and verdict.after["ratio"] < 0.9
    assert await _indexes(items) == {applied.index_name: True}
    assert await _steps(optimizer) == [
        "requested",
        "building",
        "built",
        "verify-extended",
        "verified-kept",
    ]
    assert await optimizer.verify_indexes() == []  # judged once


async def test_an_index_that_does_not_help_is_dropped(
    optimizer: QueryOptimizer, items: str
) -> None:
    await _lookups(optimizer, 30)
    applied = await optimizer.apply_index(await _items_recommendation(optimizer), actor="test")
    before = {s: ShapeFigures.from_json(f) for s, f in applied.changes[-1].before["shapes"].items()}

    async def no_faster() -> dict[str, ShapeFigures]:
        # 40 calls since, each as slow as before the build
        return {
            s: ShapeFigures(f.calls + 40, f.total_ms + 40 * (f.mean_ms or 0), dict(f.buckets))
            for s, f in before.items()
        }

    optimizer.indexes.shapes = no_faster
    (verdict,) = await optimizer.verify_indexes()
    assert verdict.step == "verified-dropped"
    assert verdict.after["ratio"] == pytest.approx(1.0)
    assert await _indexes(items) == {}
    assert (await _steps(optimizer))[-1] == "verified-dropped"


@pytest.fixture
async def blocker(items: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A transaction that wrote to the table and stays open: a concurrent build waits for it."""
    conn = await psycopg.AsyncConnection.connect(items)
    await conn.execute("UPDATE items SET payload = payload WHERE id = 1")
    try:
        yield conn
    finally:
        await conn.close()


async def _waiting_build(url: str) -> int:
    """The pid of the build once it waits for the blocker (a generous deadline, not a timing)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(400):
            row = await (
                await conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                    " AND wait_event_type = 'Lock' AND query LIKE 'CREATE INDEX%%'",
                    (BUILD_APPLICATION_NAME,),
                )
            ).fetchone()
            if row:
                return int(row[0])
            await asyncio.sleep(0.05)
    raise AssertionError("the build never started waiting")


async def test_a_lost_connection_answers_503_and_leaves_no_index(
    optimizer: QueryOptimizer, items: str, blocker: psycopg.AsyncConnection[Any]
) -> None:
    await _lookups(optimizer, 30)
    statement = await _items_recommendation(optimizer)
    building = asyncio.create_task(optimizer.apply_index(statement, actor="test"))
    pid = await _waiting_build(items)
    # a second apply while the first builds: refused, nothing started
    with pytest.raises(Conflict) as busy:
        await optimizer.apply_index(statement, actor="second")
    assert busy.value.code == "APPLY_BUSY" and busy.value.status_code == 409
    async with await psycopg.AsyncConnection.connect(items, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
    assert list((await _indexes(items)).values()) == [False]  # the half-built index
    await blocker.rollback()
    with pytest.raises(ServiceUnavailable) as lost:
        await building
    assert lost.value.code == "INDEX_BUILD_INTERRUPTED" and lost.value.status_code == 503
    assert "INVALID index it left was dropped" in lost.value.message
    assert await _indexes(items) == {}
    assert await _steps(optimizer) == ["requested", "building", "failed", "invalid-dropped"]


async def test_a_failed_build_that_cannot_clean_up_at_once_is_swept(
    items: str, blocker: psycopg.AsyncConnection[Any]
) -> None:
    policy = ApplyPolicy(enabled=True, build_timeout_ms=300, drop_lock_timeout_ms=200)
    optimizer = await _optimizer(items, policy)
    try:
        await _lookups(optimizer, 30)
        statement = await _items_recommendation(optimizer)
        with pytest.raises(ServiceUnavailable) as cancelled:
            await optimizer.apply_index(statement, actor="test")
        assert cancelled.value.code == "INDEX_BUILD_CANCELLED"
        assert "next verification round drops" in cancelled.value.message
        assert list((await _indexes(items)).values()) == [False]
        await blocker.rollback()
        (swept,) = await optimizer.verify_indexes()
        assert swept.step == "invalid-dropped"
        assert await _indexes(items) == {}
        assert await _steps(optimizer) == ["requested", "building", "failed", "invalid-dropped"]
    finally:
        await optimizer.close()
        await optimizer.db.dispose()


async def test_a_partitioned_table_is_refused_before_anything_is_built(pg_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE events (id int NOT NULL, k int) PARTITION BY RANGE (id)")
        await conn.execute("CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (0) TO (1e6)")
        await conn.execute("INSERT INTO events SELECT g, g FROM generate_series(1, 50000) g")
        await conn.execute("ANALYZE events")
    optimizer = await _optimizer(pg_url)
    try:
        async with optimizer.db.engine.connect() as conn:
            for i in range(20):
                await conn.execute(text("SELECT * FROM events WHERE k = :k"), {"k": i * 31})
        advice = await optimizer.analyze_indexes()
        (rec,) = [r for r in advice.recommendations if r.table == "public.events"]
        with pytest.raises(InvalidInput) as refused:
            await optimizer.apply_index(rec.create_statement, actor="test")
        assert refused.value.code == "PARTITIONED_TABLE"
        assert "cannot CREATE INDEX CONCURRENTLY" in refused.value.message
        assert "ON ONLY public.events" in refused.value.message
        assert refused.value.details["partitions"] == ["events_1"]
        assert await _indexes(pg_url, "events") == {}
        assert await _steps(optimizer) == ["requested", "failed"]
    finally:
        await optimizer.close()
        await optimizer.db.dispose()


@pytest.fixture
def other_role(items: str) -> Iterator[str]:
    """A login role that may read the table but does not own it; dropped afterwards."""
    role = f"tenantry_apply_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(items, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON items TO {role}")
        conn.execute(f"GRANT SELECT, INSERT ON tenantry_index_changes TO {role}")
        conn.execute(f"GRANT USAGE ON SEQUENCE tenantry_index_changes_id_seq TO {role}")
        conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    try:
        yield re.sub(r"//[^@/]+@", f"//{role}@", items)
    finally:
        with psycopg.connect(items, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


async def test_a_table_the_role_does_not_own_is_refused_with_the_reason(
    other_role: str, items: str
) -> None:
    optimizer = await _optimizer(other_role)
    try:
        await _lookups(optimizer, 30)
        statement = await _items_recommendation(optimizer)
        with pytest.raises(Forbidden) as refused:
            await optimizer.apply_index(statement, actor="test")
        assert refused.value.code == "INSUFFICIENT_PRIVILEGE"
        assert "does not own public.items (its owner is postgres)" in refused.value.message
        assert await _indexes(items) == {}
        assert await _steps(optimizer) == ["requested", "failed"]
    finally:
        await optimizer.close()
        await optimizer.db.dispose()


async def test_refused_when_off_or_not_a_current_recommendation(
    optimizer: QueryOptimizer, items: str
) -> None:
    await _lookups(optimizer, 30)
    statement = await _items_recommendation(optimizer)
    with pytest.raises(InvalidInput) as other:
        await optimizer.apply_index("CREATE INDEX x ON items (payload)", actor="test")
    assert other.value.code == "NOT_A_RECOMMENDATION"
    assert other.value.details["current"] == [statement]
    with pytest.raises(InvalidInput):
        await optimizer.apply_index("DROP TABLE items", actor="test")
    off = await _optimizer(items, ApplyPolicy())
    try:
        with pytest.raises(Forbidden) as disabled:
            await off.apply_index(statement, actor="test")
        assert disabled.value.code == "APPLY_DISABLED"
    finally:
        await off.close()
        await off.db.dispose()
    assert await _indexes(items) == {}
    assert await optimizer.index_changes() == []  # refusals at the door are not logged


# --- over HTTP and on the dashboard -----------------------------------------------------
def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, **extra: Any) -> Settings:
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS_VARIABLES & set(os.environ):
        monkeypatch.delenv(name)
    return load_settings(
        data_dir=tmp_path / "data",
        upload_dir=tmp_path / "uploads",
        database_url=url,
        admin_token=ADMIN_TOKEN,
        secret_key="test-secret-key",
        **extra,
    )


async def test_the_routes_apply_and_list_for_the_admin_only(
    items: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(
        tmp_path, monkeypatch, items, query_apply_indexes=True, query_apply_verify_seconds=3600
    )
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=30), client_from(application) as client:
        services = application.state.services
        company, _ = await services.keys.create("acme", "test")
        await _lookups(services.queries, 30)
        advice = await client.get("/api/query-optimizer/indexes", headers=ADMIN)
        statement = next(
            r["createStatement"] for r in advice.json()["recommendations"]
            if r["table"] == "public.items"
        )  # fmt: skip
        url = "/api/query-optimizer/indexes/apply"
        as_company = await client.post(
            url, json={"statement": statement}, headers={"Authorization": f"Bearer {company}"}
        )
        assert as_company.status_code == 403
        assert (await client.post(url, json={"statement": statement})).status_code == 401
        for bad in ({}, {"statement": ""}, {"statement": 5}, {"statement": "x" * 10_001}):
            assert (await client.post(url, json=bad, headers=ADMIN)).status_code == 422
        # another process holds the lock: a build is running there
        async with await psycopg.AsyncConnection.connect(items, autocommit=True) as other:
            await other.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            busy = await client.post(url, json={"statement": statement}, headers=ADMIN)
            assert busy.status_code == 409 and busy.json()["error"]["code"] == "APPLY_BUSY"
        # the dashboard offers it behind a confirmation, and builds it from there
        csrf = await log_in(client)
        page = await client.get("/admin/queries/indexes")
        assert (
            'action="/admin/queries/indexes/apply"' in page.text and "<summary>Apply" in page.text
        )
        no_token = await client.post("/admin/queries/indexes/apply", data={"statement": statement})
        assert no_token.status_code == 403
        done = await client.post(
            "/admin/queries/indexes/apply", data={"statement": statement, "csrf": csrf}
        )
        assert done.status_code == 200 and "Built idx_items_" in done.text, done.text
        again = await client.post(url, json={"statement": statement}, headers=ADMIN)
        assert again.status_code == 422
        assert again.json()["error"]["code"] == "NOT_A_RECOMMENDATION"
        changes = await client.get("/api/query-optimizer/indexes/changes", headers=ADMIN)
        assert changes.status_code == 200
        steps = [c["step"] for c in reversed(changes.json()["changes"])]
        assert steps == ["requested", "building", "built"]
        assert changes.json()["changes"][-1]["actor"] == "admin (dashboard)"
        listed = await client.get(
            "/api/query-optimizer/indexes/changes", headers={"Authorization": f"Bearer {company}"}
        )
        assert listed.status_code == 403
        queries_page = await client.get("/admin/queries")
        assert 'data-step="built"' in queries_page.text
    assert list((await _indexes(items)).values()) == [True]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_route_refuses_when_off_and_on_sqlite(
    kind: str,
    migrated_database: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = migrated_database(kind)
    cases = [(False, 403, "APPLY_DISABLED")]
    if kind == "sqlite":
        cases.append((True, 422, "UNSUPPORTED_DATABASE"))
    for enabled, status, code in cases:
        settings = _settings(tmp_path, monkeypatch, url, query_apply_indexes=enabled)
        application = create_app(settings)
        async with (
            LifespanManager(application, startup_timeout=30),
            client_from(application) as client,
        ):
            body = {"statement": "CREATE INDEX CONCURRENTLY idx_t_a ON public.t (a)"}
            answer = await client.post(
                "/api/query-optimizer/indexes/apply", json=body, headers=ADMIN
            )
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
            page = await client.get("/api/query-optimizer/indexes/changes", headers=ADMIN)
            assert page.status_code == 200 and page.json() == {"changes": []}
