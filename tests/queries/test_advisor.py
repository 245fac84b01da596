"""Index advice: measured with HypoPG, never repeating an existing index, checked for real."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from tenantry.context import company_scope
from tenantry.db import Database
from tenantry.queries.service import QueryOptimizer
from tenantry.settings import async_database_url

SCHEMA = [
    "CREATE TABLE customers (id int PRIMARY KEY, company_id int NOT NULL, email text NOT NULL)",
    "CREATE TABLE orders (id serial PRIMARY KEY, company_id int NOT NULL, customer_id int NOT NULL,"
    " status text NOT NULL, created_at timestamptz NOT NULL, total numeric NOT NULL)",
    "INSERT INTO customers SELECT g, g %% 40, 'user' || g || '@example.com'"
    " FROM generate_series(1, 8000) g",
    "INSERT INTO orders (company_id, customer_id, status, created_at, total)"
    " SELECT (g * 7) %% 40, 1 + (g * 13) %% 8000,"
    " (ARRAY['open','paid','shipped','void'])[1 + g %% 4],"
    " now() - (g %% 1000) * interval '1 hour', (g %% 500)::numeric"
    " FROM generate_series(1, 60000) g",
    # existing indexes: one the advisor must not repeat, one never used, two duplicates
    "CREATE INDEX orders_company_status ON orders (company_id, status)",
    "CREATE INDEX orders_total_unused ON orders (total)",
    "CREATE INDEX customers_company_a ON customers (company_id)",
    "CREATE INDEX customers_company_b ON customers (company_id)",
    "ANALYZE",
]

WORKLOAD = [  # (statement, parameters, calls)
    (
        "SELECT id, total FROM orders WHERE company_id = :c AND status = :s"
        " ORDER BY created_at DESC LIMIT 20",
        lambda r: {"c": r.randrange(40), "s": r.choice(["open", "paid"])},
        30,
    ),
    ("SELECT * FROM orders WHERE customer_id = :cu", lambda r: {"cu": r.randrange(1, 8000)}, 40),
    (
        "SELECT id FROM customers WHERE company_id = :c AND email = :e",
        lambda r: {"c": 3, "e": f"user{r.randrange(8000)}@example.com"},
        20,
    ),
    (
        "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id"
        " WHERE c.company_id = :c AND o.created_at > now() - interval '2 days'",
        lambda r: {"c": r.randrange(40)},
        5,
    ),
]


@pytest.fixture
async def optimizer(postgres_url: str) -> AsyncIterator[QueryOptimizer]:
    db = Database(async_database_url(postgres_url))
    async with db.engine.begin() as conn:
        for sql in SCHEMA:
            await conn.exec_driver_sql(sql)
    service = QueryOptimizer(db)
    rng = random.Random(1)
    async with db.engine.connect() as conn:
        with company_scope("acme"):
            for statement, parameters, calls in WORKLOAD:
                for _ in range(calls):
                    await conn.execute(text(statement), parameters(rng))
    try:
        yield service
    finally:
        await service.close()
        await db.dispose()


async def _hypopg_installed(db: Database) -> bool:
    async with db.engine.connect() as conn:
        found = await conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'")
        return found.first() is not None


async def _planner_cost(db: Database, sql: str) -> float:
    async with db.engine.connect() as conn:
        raw = (await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()
    return float(raw[0]["Plan"]["Total Cost"])


async def test_recommendations_are_measured_and_cut_the_workload_cost(
    optimizer: QueryOptimizer,
) -> None:
    async with optimizer.db.engine.begin() as conn:
        await conn.exec_driver_sql("CREATE EXTENSION hypopg")
    report = await optimizer.analyze_indexes(max_indexes=4)
    assert report.method == "hypopg"
    assert report.statements_analysed >= 4
    assert report.workload_cost_after < report.workload_cost_before * 0.7
    recommendations = report.recommendations
    assert recommendations
    by_columns = {(r.table, tuple(r.columns)) for r in recommendations}
    # the most frequent lookup gets its index
    assert any(t == "public.orders" and c[0] == "customer_id" for t, c in by_columns)
    for rec in recommendations:
        columns = tuple(rec.columns)
        # never the existing index nor a prefix of it
        assert not (rec.table == "public.orders" and ("company_id", "status")[: len(columns)]
                    == columns)  # fmt: skip
        assert rec.create_statement.startswith("CREATE INDEX CONCURRENTLY ")
        assert rec.estimated_size_bytes > 0
        assert 0 < rec.estimated_improvement <= 1
        assert rec.priority in ("high", "medium", "low")
        assert rec.reason and rec.statements
    total = sum(r.estimated_improvement for r in recommendations)
    assert total == pytest.approx(report.estimated_improvement, abs=0.05)
    # hypothetical indexes are gone, the extension is untouched
    async with optimizer.db.engine.connect() as conn:
        left = (await conn.exec_driver_sql("SELECT count(*) FROM hypopg_list_indexes")).scalar()
    assert left == 0


async def test_the_advice_holds_with_real_indexes(optimizer: QueryOptimizer) -> None:
    """Build what was recommended, for real: the planner's cost of the statements drops."""
    report = await optimizer.analyze_indexes(max_indexes=3)
    lookup = "SELECT * FROM orders WHERE customer_id = 77"
    before = await _planner_cost(optimizer.db, lookup)
    async with optimizer.db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        for rec in report.recommendations:
            await conn.exec_driver_sql(rec.create_statement)
    after = await _planner_cost(optimizer.db, lookup)
    assert after < before / 10
    # asked again, the advisor does not recommend what now exists
    again = await optimizer.analyze_indexes(max_indexes=3)
    made = {(r.table, tuple(r.columns)) for r in report.recommendations}
    assert not made & {(r.table, tuple(r.columns)) for r in again.recommendations}


async def test_hypopg_created_for_the_analysis_is_rolled_back(optimizer: QueryOptimizer) -> None:
    assert not await _hypopg_installed(optimizer.db)
    report = await optimizer.analyze_indexes()
    assert report.method == "hypopg"
    assert not await _hypopg_installed(optimizer.db)


async def test_unused_and_duplicate_indexes_are_reported(optimizer: QueryOptimizer) -> None:
    report = await optimizer.analyze_indexes()
    unused = {u.index for u in report.unused_indexes}
    assert "orders_total_unused" in unused
    assert "orders_pkey" not in unused  # constraints are never "unused"
    duplicates = report.duplicate_indexes
    assert len([d for d in duplicates if d.table == "public.customers"]) == 1
    assert duplicates[0].statement.startswith("DROP INDEX CONCURRENTLY")


async def test_without_hypopg_a_labelled_heuristic_answers(optimizer: QueryOptimizer) -> None:
    from tenantry.queries import advisor

    series, _ = await optimizer._series()
    report = await advisor.analyze_indexes(
        optimizer._tools_engine(), optimizer.workload(series), use_hypopg=False
    )
    assert report.method == "heuristic"
    assert "HEURISTIC" in report.method_note
    recs = report.recommendations
    assert recs and report.workload_cost_after < report.workload_cost_before
    assert any(r.columns[0] == "customer_id" for r in recs)
    for rec in recs:
        assert tuple(rec.columns) not in {("company_id",), ("company_id", "status")}


async def test_an_empty_workload_recommends_nothing(postgres_url: str) -> None:
    db = Database(async_database_url(postgres_url))
    service = QueryOptimizer(db)
    try:
        report = await service.analyze_indexes()
        assert report.recommendations == []
        assert report.workload_cost_before == 0
    finally:
        await service.close()
        await db.dispose()


async def test_plain_sql_workload_with_literals(optimizer: QueryOptimizer) -> None:
    """A workload given as SQL text (values written in, a literal %) is advised the same way."""
    from tenantry.queries import advisor

    workload = [
        advisor.WorkloadStatement.from_sql(
            "SELECT id FROM customers WHERE email LIKE 'user1%' AND company_id = 7", calls=5
        ),
        advisor.WorkloadStatement.from_sql(
            "SELECT status, count(*) FROM orders WHERE customer_id = 42 GROUP BY status",
            calls=50,
        ),
    ]
    report = await advisor.analyze_indexes(optimizer._tools_engine(), workload, max_indexes=2)
    assert report.statements_analysed == 2 and not report.skipped_statements
    assert report.recommendations[0].columns[0] == "customer_id"
    assert report.workload_cost_after < report.workload_cost_before


async def test_pg_stat_statements_without_preload_is_ignored(optimizer: QueryOptimizer) -> None:
    """The extension present but not preloaded: its view errors; the advice goes on."""
    async with optimizer.db.engine.begin() as conn:
        await conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    report = await optimizer.analyze_indexes(max_indexes=2)
    assert report.recommendations


async def test_a_statement_that_cannot_be_planned_is_skipped_with_a_reason(
    optimizer: QueryOptimizer,
) -> None:
    from tenantry.queries import advisor

    workload = [
        advisor.WorkloadStatement.from_sql("SELECT * FROM orders WHERE customer_id = 3", 10),
        advisor.WorkloadStatement.from_sql("SELECT * FROM orders WHERE no_such_column = 3", 10),
        advisor.WorkloadStatement.from_sql("SELECT 1", 10),
    ]
    report = await advisor.analyze_indexes(optimizer._tools_engine(), workload)
    reasons = {s.reason for s in report.skipped_statements}
    assert len(report.skipped_statements) == 2
    assert any("cannot be planned" in r and "no_such_column" in r for r in reasons)
    assert "reads no user table" in reasons
    assert report.recommendations


async def test_shapes_seen_only_by_another_process_are_advised(
    optimizer: QueryOptimizer, redis_url: str
) -> None:
    """A worker records the workload and flushes it; the server, which never ran it, advises
    from the shapes' $n text (generic plans: no parameter values cross processes)."""
    from redis.asyncio import Redis

    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    worker = QueryOptimizer(Database(optimizer.db.url), redis=clients[0])
    server = QueryOptimizer(Database(optimizer.db.url), redis=clients[1])
    try:
        async with worker.db.engine.connect() as conn:
            with company_scope("acme"):
                for customer in range(30):
                    await conn.execute(
                        text("SELECT * FROM orders WHERE customer_id = :cu"), {"cu": customer}
                    )
        await worker.flush()
        report = await server.analyze_indexes(max_indexes=2)
        assert report.method == "hypopg"
        assert report.recommendations[0].columns[0] == "customer_id"
    finally:
        for other in (worker, server):
            await other.close()
            await other.db.dispose()
        for client in clients:
            await client.aclose()


# --- advice under a size budget, and the write cost -----------------------------------
async def _hypopg_sizes(db: Database, statements: list[str]) -> list[int]:
    """Each CREATE INDEX's size as HypoPG estimates it, measured here, not by the advisor."""
    async with db.engine.connect() as conn:
        await conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS hypopg")
        sizes = []
        for statement in statements:
            ddl = statement.replace(" CONCURRENTLY", "")
            oid = (
                await conn.exec_driver_sql(
                    "SELECT indexrelid FROM hypopg_create_index(%(ddl)s)", {"ddl": ddl}
                )
            ).scalar_one()
            size = await conn.exec_driver_sql(f"SELECT hypopg_relation_size({int(oid)})")
            sizes.append(int(size.scalar_one()))
        await conn.rollback()
    return sizes


MB = 1024 * 1024


async def test_a_size_budget_is_respected(optimizer: QueryOptimizer) -> None:
    free = await optimizer.analyze_indexes(max_indexes=10)
    free_bytes = sum(
        await _hypopg_sizes(optimizer.db, [r.create_statement for r in free.recommendations])
    )
    budget = free_bytes / 2 / MB
    bounded = await optimizer.analyze_indexes(max_indexes=10, max_mb=budget)
    statements = [r.create_statement for r in bounded.recommendations]
    assert statements  # something fits
    assert sum(await _hypopg_sizes(optimizer.db, statements)) <= budget * MB
    assert sum(r.estimated_size_bytes or 0 for r in bounded.recommendations) <= budget * MB


async def test_a_tight_budget_buys_narrow_indexes_over_a_wide_covering_one(
    optimizer: QueryOptimizer,
) -> None:
    """The covering index saves the most alone, but at its size two narrow ones save more."""
    from tenantry.queries import advisor

    async with optimizer.db.engine.connect() as conn:  # all-visible: index-only scans pay
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM ANALYZE orders")

    reads = "SELECT id, total, status, created_at FROM orders WHERE customer_id = 42"
    recent = "SELECT id FROM orders WHERE created_at > now() - interval '3 hours'"
    workload = [
        advisor.WorkloadStatement.from_sql(reads, calls=40),
        advisor.WorkloadStatement.from_sql(recent, calls=20),
    ]
    engine = optimizer._tools_engine()
    wide = advisor.IndexDef("public.orders", ("customer_id", "created_at", "id", "status", "total"))
    narrow = [advisor.IndexDef("public.orders", (c,)) for c in ("customer_id", "created_at")]
    sizes = await _hypopg_sizes(optimizer.db, [i.ddl() for i in (wide, *narrow)])
    assert sizes[1] + sizes[2] <= sizes[0] < sizes[0] + min(sizes[1:])  # the wide fits alone
    alone = await advisor.analyze_indexes(engine, workload, max_indexes=1)
    assert tuple(alone.recommendations[0].columns) == wide.columns  # the best single index
    tight = await advisor.analyze_indexes(engine, workload, max_indexes=5, max_mb=sizes[0] / MB)
    chosen = {tuple(r.columns) for r in tight.recommendations}
    assert chosen == {("customer_id",), ("created_at",)}
    assert tight.estimated_improvement > alone.estimated_improvement


async def test_a_write_heavy_table_earns_fewer_indexes(optimizer: QueryOptimizer) -> None:
    """The same reads on two copies of a table; the monitor sees one copy take many inserts."""
    async with optimizer.db.engine.begin() as conn:
        for table in ("orders_quiet", "orders_busy"):
            await conn.exec_driver_sql(f"CREATE TABLE {table} AS SELECT * FROM orders")
            await conn.exec_driver_sql(f"ANALYZE {table}")
    optimizer.monitor.reset()
    async with optimizer.db.engine.connect() as conn:
        for table in ("orders_quiet", "orders_busy"):
            for customer in range(40):
                await conn.execute(
                    text(f"SELECT * FROM {table} WHERE customer_id = :cu"), {"cu": customer}
                )
        for _ in range(5):  # 150k rows in the window; rolled back, the table is unchanged
            await conn.exec_driver_sql(
                "INSERT INTO orders_busy SELECT * FROM orders ORDER BY id LIMIT 30000"
            )
        await conn.rollback()
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM ANALYZE orders_busy")  # the same size again
    report = await optimizer.analyze_indexes(max_indexes=4)
    tables = [r.table for r in report.recommendations]
    assert "public.orders_quiet" in tables
    assert tables.count("public.orders_busy") < tables.count("public.orders_quiet")


async def test_a_size_budget_must_be_positive(optimizer: QueryOptimizer) -> None:
    from tenantry.errors import InvalidInput

    for budget in (0, -1.5, float("nan")):
        with pytest.raises(InvalidInput, match="positive number of MB"):
            await optimizer.analyze_indexes(max_mb=budget)


async def test_the_route_refuses_a_budget_of_zero_or_less(client: Any) -> None:
    from tests.conftest import ADMIN

    for budget in ("0", "-3"):
        bad = await client.get(f"/api/query-optimizer/indexes?maxMb={budget}", headers=ADMIN)
        assert bad.status_code == 422
        assert bad.json()["error"]["details"][0]["field"] == "maxMb"


# --- the same without a database: the heuristic planner on a schema given by hand ----------
def _schema(churn: dict[str, float]) -> Any:
    from tenantry.queries import advisor
    from tenantry.queries.predicates import Catalog

    columns = ["id", "company_id", "customer_id", "status", "total"]
    tables = ("public.quiet", "public.busy")
    return advisor.Schema(
        Catalog({t: columns for t in tables}),
        existing=[],
        tables={t: advisor.TableStats(100_000, 1_000, 50, 100, churn.get(t, 0.0)) for t in tables},
        columns={
            (t, c): advisor.ColumnStats(n, 0.0, 0.0, 4)
            for t in tables
            for c, n in (("customer_id", 10_000), ("company_id", 50), ("status", 4))
        },
    )


async def _heuristic(schema: Any, budget_mb: float | None = None) -> list[Any]:
    from tenantry.queries import advisor

    sql = [f"SELECT id FROM {t} WHERE customer_id = 7" for t in ("quiet", "busy")]
    workload, _ = advisor.prepare_workload(
        [advisor.WorkloadStatement.from_sql(s, calls=30) for s in sql], schema
    )
    search = advisor.Search(advisor.HeuristicPlanner(schema), workload, schema.tables)
    base = await search.baseline()
    candidates = advisor.generate_candidates(search.workload, schema)
    budget = budget_mb * MB if budget_mb is not None else None
    return await search.greedy(candidates, base, 5, 1.0, budget)


async def test_heuristic_churn_in_table_statistics_costs_indexes() -> None:
    """Writes the monitor never saw (pg_stat_user_tables' off-HOT updates and deletes)."""
    quiet = await _heuristic(_schema({}))
    assert {c.index.table for c in quiet} == {"public.quiet", "public.busy"}
    churned = await _heuristic(_schema({"public.busy": 10_000_000.0}))
    assert {c.index.table for c in churned} == {"public.quiet"}


async def test_heuristic_size_budget_is_respected() -> None:
    from tenantry.queries import advisor

    schema = _schema({})
    planner = advisor.HeuristicPlanner(schema)
    one = await planner.size(advisor.IndexDef("public.quiet", ("customer_id",)))
    assert one is not None
    chosen = await _heuristic(schema, budget_mb=one * 1.5 / MB)
    assert len(chosen) == 1
    sizes = [await planner.size(c.index) for c in chosen]
    assert sum(s or 0 for s in sizes) <= one * 1.5
