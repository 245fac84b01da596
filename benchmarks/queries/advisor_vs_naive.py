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
5. Against a greedy HypoPG search (every ordering of one to three of a statement's
   predicate and sort columns; add the index that saves the most, then swap while a
   swap lowers the cost), with each set's size (hypopg_relation_size): both at k
   indexes, then each under an MB budget equal to the other's size (the advisor
   through `max_mb`), with no count bound.

Run: python -m benchmarks.queries.advisor_vs_naive [--scale 1.0] [--random-mixes 3]
(needs PostgreSQL with HypoPG; `scripts/services.sh` installs it). The database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import math
import os
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
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


# --- the greedy HypoPG baseline ----------------------------------------------------
def greedy_candidates(workload: list[advisor.WorkloadStatement], schema: advisor.Schema
                      ) -> list[advisor.IndexDef]:  # fmt: skip
    """Every ordering of one to three of each statement's predicate and sort columns."""
    found: set[advisor.IndexDef] = set()
    for statement in workload:
        assert statement.use is not None
        for use in statement.use.uses:
            columns = sorted({*use.filtered, *use.join, *use.order_by, *use.group_by})
            for width in (1, 2, 3):
                for combo in itertools.permutations(columns, width):
                    found.add(advisor.IndexDef(use.table, combo))
    return sorted((c for c in found if not schema.covered(c)), key=lambda c: (c.table, c.columns))


class Greedy:
    """Add the index that saves the most estimated cost while it fits, then swap.

    The textbook HypoPG search (what a DBA would script): the same planner oracle
    and maintenance charge as the advisor, narrow candidates only, no per-byte weighing.
    Lazy evaluation (an index's saving only shrinks as others are chosen) keeps it
    to a few thousand EXPLAINs; the swap phase tries the strongest candidates alone.
    """

    def __init__(self, search: advisor.Search, candidates: list[advisor.IndexDef],
                 sizes: dict[advisor.IndexDef, int]) -> None:  # fmt: skip
        self.search = search
        self.candidates = [c for c in candidates if c in sizes]
        self.sizes = sizes

    async def run(self, k: int, max_bytes: float, swap_pool: int = 30) -> list[advisor.IndexDef]:
        chosen = await self._add(k, max_bytes)
        return await self._swap(chosen, max_bytes, swap_pool)

    async def _add(self, k: int, max_bytes: float) -> list[advisor.IndexDef]:
        chosen: list[advisor.IndexDef] = []
        cost = await self.search.total(frozenset())
        heap = [(-math.inf, n, c) for n, c in enumerate(self.candidates)]
        fresh: set[advisor.IndexDef] = set()
        while heap and len(chosen) < k:
            _, n, index = heapq.heappop(heap)
            if self._bytes([*chosen, index]) > max_bytes:
                continue
            if index not in fresh:  # re-measure against what is chosen now
                saved = cost - await self.search.total(frozenset([*chosen, index]))
                if saved > 0:
                    heapq.heappush(heap, (-saved, n, index))
                    fresh.add(index)
                continue
            chosen.append(index)
            cost = await self.search.total(frozenset(chosen))
            fresh.clear()
        return chosen

    async def _swap(self, chosen: list[advisor.IndexDef], max_bytes: float, pool_size: int
                    ) -> list[advisor.IndexDef]:  # fmt: skip
        alone = {c: await self.search.total(frozenset([c])) for c in self.candidates}
        pool = sorted(alone, key=lambda c: alone[c])[:pool_size]
        cost = await self.search.total(frozenset(chosen))
        improved = True
        while improved:
            improved = False
            for out, into in itertools.product(list(chosen), pool):
                trial = [into if c == out else c for c in chosen]
                if into in chosen or self._bytes(trial) > max_bytes:
                    continue
                trial_cost = await self.search.total(frozenset(trial))
                if trial_cost < cost - 1e-6:
                    chosen, cost, improved = trial, trial_cost, True
                    break
        return chosen

    def _bytes(self, indexes: list[advisor.IndexDef]) -> int:
        return sum(self.sizes[i] for i in indexes)


async def hypo_sizes(planner: advisor.HypoPGPlanner, indexes: Iterable[advisor.IndexDef]
                     ) -> dict[advisor.IndexDef, int]:  # fmt: skip
    """HypoPG's estimate of each index's size on disk (hypopg_relation_size)."""
    sizes = {}
    for index in indexes:
        size = await planner.size(index)
        if size is not None:
            sizes[index] = size
    return sizes


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
        rows: list[Any] = []
        disk: list[DiskRow] = []
        for k in (3, 5):
            report = await optimizer.analyze_indexes(max_indexes=k)
            rows.append(await compare(optimizer, f"fixed mix, k={k}", report, k))
            disk += await versus_greedy(optimizer, f"fixed mix, k={k}", k, _sets(report))
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
            disk += await versus_greedy(optimizer, f"random mix {seed}, k=3", 3, _sets(report))
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
        print_disk(disk)
    finally:
        await optimizer.close()
        await db.dispose()
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the advisor and the greedy search, at the same count and at the same disk -----------
@dataclass(frozen=True)
class Outcome:
    indexes: int
    bytes: int
    saved: float  # share of the workload's cost


@dataclass(frozen=True)
class DiskRow:
    workload: str
    bound: str
    advisor: Outcome
    greedy: Outcome


async def versus_greedy(optimizer: QueryOptimizer, label: str, k: int,
                        ours: list[advisor.IndexDef]) -> list[DiskRow]:  # fmt: skip
    """Both at k indexes; then each under an MB budget equal to the other's size."""
    started = time.perf_counter()
    async with optimizer._tools_engine().connect() as conn:
        await advisor.enable_hypopg(conn)
        workload, schema = await _workload(optimizer, conn)
        planner = advisor.HypoPGPlanner(conn)
        search = advisor.Search(planner, workload)
        await search.baseline()
        candidates = greedy_candidates(search.workload, schema)
        greedy = Greedy(search, candidates, await hypo_sizes(planner, candidates))
        greedy_k = await greedy.run(k, math.inf)
        measure = Measure(search, planner)
        ours_k, theirs_k = await measure(ours), await measure(greedy_k)
        # Under a budget both choose any number of indexes: the greedy too, not its k-set.
        at_theirs = await measure(await greedy.run(MANY, theirs_k.bytes))
        at_ours = await measure(await greedy.run(MANY, ours_k.bytes))
        await conn.rollback()
    searched = time.perf_counter() - started
    budgeted = []
    for budget in (theirs_k.bytes, ours_k.bytes):
        report = await optimizer.analyze_indexes(max_indexes=MANY, max_mb=budget / MB)
        budgeted.append(_sets(report))
    async with optimizer._tools_engine().connect() as conn:
        await advisor.enable_hypopg(conn)
        workload, _ = await _workload(optimizer, conn)
        planner = advisor.HypoPGPlanner(conn)
        measure = Measure(advisor.Search(planner, workload), planner)
        await measure.search.baseline()
        at_theirs_ours, at_ours_ours = [await measure(s) for s in budgeted]
        await conn.rollback()
    print(f"{label}: greedy HypoPG search over {len(candidates)} candidates "
          f"in {searched:.1f} s: {_show(greedy_k)}")  # fmt: skip
    print(f"{' ' * len(label)}  advisor at {theirs_k.bytes / MB:.0f} MB: {_show(budgeted[0])}")
    return [
        DiskRow(label, f"{k} indexes", ours_k, theirs_k),
        DiskRow(label, f"<= {theirs_k.bytes / MB:.0f} MB (greedy's)", at_theirs_ours, at_theirs),
        DiskRow(label, f"<= {ours_k.bytes / MB:.0f} MB (advisor's)", at_ours_ours, at_ours),
    ]


MB = 1024 * 1024
MANY = 50  # the route's largest count: under a size budget, the size is the bound


class Measure:
    """An index set's count, HypoPG size and share of the workload's cost saved."""

    def __init__(self, search: advisor.Search, planner: advisor.HypoPGPlanner) -> None:
        self.search, self.planner = search, planner

    async def __call__(self, indexes: list[advisor.IndexDef]) -> Outcome:
        before = await self.search.total(frozenset())
        after = await self.search.total(frozenset(indexes))
        sizes = await hypo_sizes(self.planner, indexes)
        return Outcome(len(indexes), sum(sizes.values()), 1 - after / before)


def print_disk(rows: list[DiskRow]) -> None:
    print()
    print("advisor vs greedy HypoPG search (1-3 columns, add the best, then swap); "
          "size = hypopg_relation_size")  # fmt: skip
    print(f"{'workload':20} {'bound':26} {'advisor: idx':>12} {'MB':>6} {'saves':>7} "
          f"{'greedy: idx':>12} {'MB':>6} {'saves':>7} {'advisor - greedy':>17}")  # fmt: skip
    for row in rows:
        ours, theirs = row.advisor, row.greedy
        gap = f"{(ours.saved - theirs.saved) * 100:+15.1f}pp"
        print(f"{row.workload:20} {row.bound:26} {_cells(ours)} {_cells(theirs)} {gap}")


def _cells(outcome: Outcome) -> str:
    return f"{outcome.indexes:12} {outcome.bytes / MB:6.0f} {outcome.saved:7.1%}"


async def _workload(optimizer: QueryOptimizer, conn: AsyncConnection
                    ) -> tuple[list[advisor.WorkloadStatement], advisor.Schema]:  # fmt: skip
    series, _ = await optimizer._series()
    schema = await advisor.load_schema(conn)
    workload, _ = advisor.prepare_workload(optimizer.workload(series), schema)
    return workload, schema


async def compare(optimizer: QueryOptimizer, label: str, report: IndexAdvice, k: int
                  ) -> tuple[Any, ...]:  # fmt: skip
    ours = _sets(report)
    async with optimizer._tools_engine().connect() as conn:
        await advisor.enable_hypopg(conn)
        workload, schema = await _workload(optimizer, conn)
        naive = naive_advice(workload, schema, k)
        costs = await price(conn, workload, {"none": [], "naive": naive, "ours": ours})
        await conn.rollback()
    print(f"{label}: advisor ({report.method}): {_show(ours)}")
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
