"""Index advice on a multi-tenant workload: Tenantry's advisor vs one index per filtered column.

1. Builds a fresh PostgreSQL database with the schema and data of workload.py
   (~600k rows at --scale 1), runs the fixed query mix through an engine the
   QueryOptimizer monitors, and asks `analyze_indexes` for k indexes.
2. The naive advisor a user might write: a single-column index on each column the
   workload filters on (equality or range), most-called first, k of them.
3. Both sets are priced by the same oracle — PostgreSQL's planner with the indexes
   as HypoPG hypothetical indexes — as the workload's estimated cost,
   sum(calls * plan cost); for k = 3 also, as a yardstick for "the best set of
   the same size", the best 3-index set found by trying every combination of the
   12 candidates that save the most on their own plus the advisor's picks
   ("advisor/best" 1.000x: the greedy search found that best set).
4. The fixed mix's SELECTs then run for real with each set built (real indexes),
   and random mixes (workload.random_mix: statements nobody tuned for) are priced
   the same way.

Run: python -m benchmarks.queries.advisor_vs_naive [--scale 1.0] [--random-mixes 3]
(needs PostgreSQL with HypoPG; `scripts/services.sh` installs it). The database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import time
import uuid
from typing import Any

import psycopg
from benchmarks.queries.workload import FIXED_MIX, SCHEMA, Query, data_sql, random_mix
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantry.context import company_scope
from tenantry.db import Database
from tenantry.queries import advisor
from tenantry.queries.results import IndexAdvice
from tenantry.queries.service import QueryOptimizer

SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def naive_advice(workload: list[advisor.WorkloadStatement], schema: advisor.Schema, k: int
                 ) -> list[advisor.IndexDef]:  # fmt: skip
    """One single-column index per filtered column, the most-called columns first."""
    weight: dict[tuple[str, str], int] = {}
    for statement in workload:
        assert statement.use is not None
        for use in statement.use.uses:
            for column in use.filtered:
                weight[(use.table, column)] = weight.get((use.table, column), 0) + statement.calls
    ranked = sorted(weight, key=lambda key: -weight[key])
    chosen = []
    for table, column in ranked:
        index = advisor.IndexDef(table, (column,))
        if not schema.covered(index):
            chosen.append(index)
        if len(chosen) == k:
            break
    return chosen


async def price(
    conn: AsyncConnection, workload: list[advisor.WorkloadStatement], sets: dict[str, list[Any]]
) -> dict[str, float]:
    """The workload's estimated cost with each index set, by the planner with HypoPG."""
    planner = advisor.HypoPGPlanner(conn)
    search = advisor.Search(planner, workload)
    await search.baseline()
    return {name: await search.total(frozenset(indexes)) for name, indexes in sets.items()}


async def best_of_pool(
    conn: AsyncConnection, workload: list[advisor.WorkloadStatement], schema: advisor.Schema,
    k: int, ours: list[advisor.IndexDef], pool_size: int = 12,
) -> tuple[float, tuple[advisor.IndexDef, ...], int]:  # fmt: skip
    planner = advisor.HypoPGPlanner(conn)
    search = advisor.Search(planner, workload)
    base = await search.baseline()
    candidates = advisor.generate_candidates(search.workload, schema)
    gains = []
    for index in candidates:
        saved, _, _ = await search.gain(index, frozenset(), base)
        gains.append((saved, index))
    strongest = [index for _, index in sorted(gains, key=lambda g: -g[0])[:pool_size]]
    pool = list(dict.fromkeys([*strongest, *ours]))
    best: tuple[float, tuple[advisor.IndexDef, ...]] = (float("inf"), ())
    for combo in itertools.combinations(pool, k):
        cost = await search.total(frozenset(combo))
        best = min(best, (cost, combo), key=lambda b: b[0])
    return best[0], best[1], len(pool)


async def record(optimizer: QueryOptimizer, mix: list[Query], counts: dict[str, int],
                 seed: int, cap: int | None = None) -> None:  # fmt: skip
    rng = random.Random(seed)
    async with optimizer.db.engine.connect() as conn:
        for query in mix:
            for _ in range(query.calls if cap is None else min(query.calls, cap)):
                with company_scope("bench"):
                    await conn.execute(text(query.sql), query.params(rng, counts))
        await conn.rollback()  # the mix's writes are not kept


async def real_seconds(db: Database, mix: list[Query], counts: dict[str, int],
                       indexes: list[advisor.IndexDef]) -> float:  # fmt: skip
    """The mix's SELECTs, each run once per call, with `indexes` built for real."""
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        for index in indexes:
            await conn.exec_driver_sql(index.ddl())
        rng = random.Random(7)
        started = time.perf_counter()
        for query in mix:
            if query.sql.startswith("SELECT"):
                for _ in range(query.calls):
                    await conn.execute(text(query.sql), query.params(rng, counts))
        elapsed = time.perf_counter() - started
        for index in indexes:
            await conn.exec_driver_sql(f'DROP INDEX "{index.name}"')
    return elapsed


def _sets(report: IndexAdvice) -> list[advisor.IndexDef]:
    return [advisor.IndexDef(r.table, tuple(r.columns)) for r in report.recommendations]


def _show(indexes: list[advisor.IndexDef]) -> str:
    return ", ".join(f"{i.table.split('.')[1]}({', '.join(i.columns)})" for i in indexes)


async def main(scale: float, random_mixes: int) -> None:
    name = f"tenantry_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db = Database(f"postgresql+psycopg://{SERVER.split('://', 1)[1].rsplit('/', 1)[0]}/{name}")
    optimizer = QueryOptimizer(db)
    try:
        started = time.perf_counter()
        async with db.engine.begin() as conn:
            for sql in SCHEMA + data_sql(scale):
                await conn.exec_driver_sql(sql)
            counts = {
                table: int((await conn.exec_driver_sql(f"SELECT max(id) FROM {table}")).scalar())
                for table in ("users", "projects", "tasks")
            }
        async with db.engine.connect() as conn:
            # settle the tables, so autovacuum does not change plans halfway through
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE")
        print(f"data: scale {scale}, loaded in {time.perf_counter() - started:.1f} s")
        optimizer.monitor.reset()
        await record(optimizer, FIXED_MIX, counts, seed=1)
        rows = []
        for k in (3, 5):
            report = await optimizer.analyze_indexes(max_indexes=k)
            rows.append(await compare(optimizer, f"fixed mix, k={k}", report, k))
            if k == 3:
                ours3 = _sets(report)
                rows[-1] += (await yardstick(optimizer, 3, ours3),)
            else:
                rows[-1] += (None,)
        await real_run(optimizer, counts, ours3, rows)
        for seed in range(1, random_mixes + 1):
            optimizer.monitor.reset()
            mix = random_mix(seed)
            await record(optimizer, mix, counts, seed=seed, cap=None)
            report = await optimizer.analyze_indexes(max_indexes=3)
            rows.append(await compare(optimizer, f"random mix {seed}, k=3", report, 3))
            rows[-1] += (await yardstick(optimizer, 3, _sets(report)),)
        print()
        print(f"{'workload':24} {'cost, no index':>15} {'naive':>12} {'advisor':>12} "
              f"{'naive saves':>12} {'advisor saves':>14} {'naive/advisor':>14} "
              f"{'advisor/best':>13}")  # fmt: skip
        for label, before, naive, ours, best in rows:
            versus = f"{ours / best:12.3f}x" if best else f"{'-':>13}"
            print(
                f"{label:24} {before:15,.0f} {naive:12,.0f} {ours:12,.0f} "
                f"{1 - naive / before:12.1%} {1 - ours / before:14.1%} {naive / ours:14.2f}x "
                + versus
            )
    finally:
        await optimizer.close()
        await db.dispose()
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _workload(optimizer: QueryOptimizer, conn: AsyncConnection
                    ) -> tuple[list[advisor.WorkloadStatement], advisor.Schema]:  # fmt: skip
    series, _ = await optimizer._series()
    schema = await advisor.load_schema(conn)
    workload, _ = advisor.prepare_workload(optimizer.workload(series), schema)
    return workload, schema


async def compare(optimizer: QueryOptimizer, label: str, report: dict[str, Any], k: int
                  ) -> tuple[Any, ...]:  # fmt: skip
    ours = _sets(report)
    async with optimizer._tools_engine().connect() as conn:
        await advisor.enable_hypopg(conn)
        workload, schema = await _workload(optimizer, conn)
        naive = naive_advice(workload, schema, k)
        costs = await price(conn, workload, {"none": [], "naive": naive, "ours": ours})
        await conn.rollback()
    print(f"{label}: advisor ({report['method']}): {_show(ours)}")
    print(f"{' ' * len(label)}  naive: {_show(naive)}")
    return label, costs["none"], costs["naive"], costs["ours"]


async def yardstick(optimizer: QueryOptimizer, k: int, ours: list[advisor.IndexDef]) -> float:
    async with optimizer._tools_engine().connect() as conn:
        await advisor.enable_hypopg(conn)
        workload, schema = await _workload(optimizer, conn)
        started = time.perf_counter()
        best_cost, best, pool = await best_of_pool(conn, workload, schema, k, ours)
        ours_cost = (await price(conn, workload, {"ours": ours}))["ours"]
        await conn.rollback()
    print(
        f"yardstick, k={k}: best {k}-index set of {pool} candidates (the 12 strongest alone, "
        f"and the advisor's), exhaustive in {time.perf_counter() - started:.1f} s, costs "
        f"{best_cost:,.0f}: {_show(list(best))};\n  "
        f"the advisor's costs {ours_cost:,.0f} ({ours_cost / best_cost:.3f}x the best)"
    )
    return best_cost


async def real_run(optimizer: QueryOptimizer, counts: dict[str, int],
                   ours: list[advisor.IndexDef], rows: list[Any]) -> None:  # fmt: skip
    async with optimizer._tools_engine().connect() as conn:
        workload, schema = await _workload(optimizer, conn)
    naive = naive_advice(workload, schema, 3)
    timings = {
        label: await real_seconds(optimizer.db, FIXED_MIX, counts, indexes)
        for label, indexes in (("no index", []), ("naive", naive), ("advisor", ours))
    }
    print(
        "fixed mix SELECTs run for real with k=3 built: "
        + ", ".join(f"{label} {seconds:.2f} s" for label, seconds in timings.items())
        + f" (naive/advisor {timings['naive'] / timings['advisor']:.1f}x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--random-mixes", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.scale, arguments.random_mixes))
