"""Index advice for a recorded workload, each recommendation measured before it is made.

1. The workload: statement shapes with their call counts (the monitor's figures,
   plus `pg_stat_statements` when present), weighted so that the workload's cost is
   sum(calls * planner cost) — the planner's estimate of the total time spent.
2. Candidates, per statement and table (predicates.py): each column it filters or
   joins on; its equality columns (most selective first, and tenant column first —
   a tenant-leading index is shared by every statement of that tenant); those
   followed by one range column, or by the ORDER BY columns (which also saves the
   sort, and with LIMIT stops early), or by the GROUP BY columns (a sorted
   aggregate); and each of those followed by the other columns the statement
   reads, when few, so it can be an index-only scan; and, narrow, every ordering of
   up to three of its predicate and sort columns.
   Indexes that exist, and prefixes of indexes that exist, are never candidates.
3. With HypoPG, every candidate is a hypothetical index: the statements it could
   serve are planned with and without it (EXPLAIN, never executed), and indexes
   are chosen greedily by workload cost saved, each round against the indexes
   already chosen (so two indexes serving the same statements are not both
   picked), minus what each new index costs the writes that maintain it (WriteRates:
   the table's real write rate). Lazy evaluation keeps this to a few hundred EXPLAINs.
   Under a size budget (max_mb) the better of that pass and one by saving per byte
   is kept; then swaps and additions improve the set while they lower the cost.
   Without HypoPG the same greedy search runs on a labelled cost model built from
   pg_stats (n_distinct, null_frac, correlation) and pg_class/pg_stat_user_tables.
4. Existing indexes are checked too: never used since statistics were reset, or
   duplicating / a prefix of another index.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pglast import parser as pg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantry.errors import InvalidInput
from tenantry.queries.explain_calls import escape_percent
from tenantry.queries.predicates import Catalog, StatementUse, TableUse, analyze
from tenantry.queries.results import (
    DuplicateIndex,
    IndexAdvice,
    Recommendation,
    SkippedStatement,
    UnusedIndex,
)

log = logging.getLogger("tenantry.queries")

MAX_COLUMNS = 4
MAX_COVERING_COLUMNS = 5  # key columns plus the ones read, for index-only scans
NARROW_COLUMNS = 3  # narrow candidates: every ordering of up to this many columns…
NARROW_POOL = 6  # …of at most this many of a statement's columns (6 → 156 orderings)
SWAP_POOL = 30  # swaps try the candidates strongest alone (and, under a size budget, per byte)
MAX_SWAP_ROUNDS = 20
TENANT_NAMES = ("company_id", "tenant_id", "organization_id", "org_id", "account_id")
MAINTENANCE_COST_PER_ROW = 1.0  # planner units per index entry written (≈ one page dirtied)
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


# --- the inputs ------------------------------------------------------------------
@dataclass(slots=True)
class WorkloadStatement:
    id: str
    text: str  # $n-parameter text, as pglast normalises it
    calls: int
    total_ms: float = 0.0
    rows: int = 0
    samples: list[tuple[str, Any]] = field(default_factory=list)  # driver text, parameters
    source: str = "monitor"
    use: StatementUse | None = None

    @classmethod
    def from_sql(cls, sql: str, calls: int = 1) -> WorkloadStatement:
        """A statement given as plain SQL with its values written in (no placeholders)."""
        return cls(pg.fingerprint(sql), sql, calls, samples=[(sql, None)], source="sql")

    @property
    def rows_per_call(self) -> float:
        return self.rows / self.calls if self.calls and self.rows else 1.0


@dataclass(frozen=True, slots=True)
class IndexDef:
    table: str  # schema.table
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        table = self.table.split(".", 1)[1]
        return f"idx_{table}_{'_'.join(self.columns)}"[:63]

    def ddl(self, concurrently: bool = False) -> str:
        schema, table = self.table.split(".", 1)
        columns = ", ".join(quote(c) for c in self.columns)
        how = "CONCURRENTLY " if concurrently else ""
        target = f"{quote(schema)}.{quote(table)}"
        return f"CREATE INDEX {how}{quote(self.name)} ON {target} ({columns})"

    def is_prefix_of(self, columns: tuple[str, ...]) -> bool:
        return columns[: len(self.columns)] == self.columns


def quote(name: str) -> str:
    return name if _PLAIN_NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'


@dataclass(slots=True)
class ExistingIndex:
    table: str
    name: str
    columns: tuple[str, ...]
    unique: bool
    primary: bool
    constraint: bool
    partial_or_expression: bool
    size_bytes: int
    scans: int
    definition: str


@dataclass(slots=True)
class ColumnStats:
    n_distinct: float  # as a count (pg_stats' negative fractions are resolved)
    null_frac: float
    correlation: float
    avg_width: int


@dataclass(slots=True)
class TableStats:
    rows: float
    pages: float
    seq_scans: int
    scans: int = 0  # sequential and index scans since statistics were reset
    churn: float = 0.0  # rows deleted or updated off-HOT since then: each touches every index


@dataclass(slots=True)
class Schema:
    catalog: Catalog
    existing: list[ExistingIndex]
    tables: dict[str, TableStats]
    columns: dict[tuple[str, str], ColumnStats]

    def distinct(self, table: str, column: str) -> float:
        stats = self.columns.get((table, column))
        return stats.n_distinct if stats else 200.0  # PostgreSQL's default guess

    def covered(self, index: IndexDef) -> bool:
        """An existing plain btree has these columns, or starts with them."""
        return any(
            e.table == index.table and not e.partial_or_expression and index.is_prefix_of(e.columns)
            for e in self.existing
        )


# --- candidates --------------------------------------------------------------
def tenant_columns(workload: list[WorkloadStatement]) -> dict[str, str]:
    """Per table, the column most statements pin with equality (the tenant key), if any."""
    weight: dict[str, dict[str, int]] = {}
    total: dict[str, int] = {}
    for statement in workload:
        assert statement.use is not None
        for use in statement.use.uses:
            total[use.table] = total.get(use.table, 0) + statement.calls
            for column in use.equality:
                per = weight.setdefault(use.table, {})
                per[column] = per.get(column, 0) + statement.calls
    tenants = {}
    for table, per in weight.items():
        column, calls = max(per.items(), key=lambda kv: (kv[1], kv[0] in TENANT_NAMES))
        if calls * 2 >= total[table] or column in TENANT_NAMES:
            tenants[table] = column
    return tenants


def candidates_for(use: TableUse, schema: Schema, tenant: str | None) -> set[tuple[str, ...]]:
    by_selectivity = sorted(use.equality, key=lambda c: -schema.distinct(use.table, c))
    orders = [by_selectivity]
    if tenant in use.equality:
        orders.append([tenant, *(c for c in by_selectivity if c != tenant)])
    found: set[tuple[str, ...]] = set()
    for column in {*use.equality, *use.range, *use.join, *use.order_by[:1]}:
        found.add((column,))
    for equality in orders:
        for width in range(1, min(len(equality), MAX_COLUMNS) + 1):
            found.add(tuple(equality[:width]))
        head = equality[: MAX_COLUMNS - 1]
        for column in use.range:
            found.add((*head, column))
        for sort in (use.order_by, use.group_by):
            if sort:
                found.add(tuple(dict.fromkeys([*head, *sort]))[:MAX_COLUMNS])
        for column in use.join:
            found.add(tuple(dict.fromkeys([column, *head]))[:MAX_COLUMNS])
            found.add(tuple(dict.fromkeys([*head, column]))[:MAX_COLUMNS])
    found.update(_covering(use, [c for c in found if len(c) > 1 or c[0] in use.equality]))
    found.update(_narrow(use))
    return {c for c in found if c}


def _narrow(use: TableUse) -> set[tuple[str, ...]]:
    """Every ordering of one to three predicate and sort columns: small indexes that,
    under a size budget, can save more per byte than the covering ones above."""
    columns = sorted({*use.filtered, *use.join, *use.order_by, *use.group_by})[:NARROW_POOL]
    found: set[tuple[str, ...]] = set()
    for width in range(1, NARROW_COLUMNS + 1):
        found.update(itertools.permutations(columns, width))
    return found


def _covering(use: TableUse, keys: list[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """Keys followed by the other columns the statement reads: an index-only scan."""
    if use.star or not use.referenced:
        return set()
    found = set()
    for key in keys:
        extra = sorted(use.referenced - set(key))
        if extra and len(key) + len(extra) <= MAX_COVERING_COLUMNS:
            found.add((*key, *extra))
    return found


def generate_candidates(workload: list[WorkloadStatement], schema: Schema) -> list[IndexDef]:
    tenants = tenant_columns(workload)
    found: set[IndexDef] = set()
    for statement in workload:
        assert statement.use is not None
        for use in statement.use.uses:
            for columns in candidates_for(use, schema, tenants.get(use.table)):
                found.add(IndexDef(use.table, columns))
    return sorted((c for c in found if not schema.covered(c)), key=lambda c: (c.table, c.columns))


# --- cost oracles -----------------------------------------------------------
class Planner(Protocol):
    method: str

    async def cost(self, statement: WorkloadStatement, indexes: frozenset[IndexDef]) -> float: ...

    async def size(self, index: IndexDef) -> int | None: ...


class CannotPlan(Exception):
    """This statement cannot be planned here (missing parameter types, a temp table…)."""


class HypoPGPlanner:
    """PostgreSQL's planner with hypothetical indexes: EXPLAIN only, nothing executes."""

    method = "hypopg"

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self._active: dict[IndexDef, int] = {}
        self._cache: dict[tuple[str, frozenset[IndexDef]], float] = {}
        self._refused: dict[IndexDef, str] = {}
        self._clean = False
        self.explains = 0

    async def cost(self, statement: WorkloadStatement, indexes: frozenset[IndexDef]) -> float:
        assert statement.use is not None
        relevant = frozenset(i for i in indexes if i.table in statement.use.tables)
        key = (statement.id, relevant)
        if key not in self._cache:
            await self._ensure(relevant, statement.use.tables)
            self._cache[key] = await self._plan_cost(statement)
        return self._cache[key]

    async def _ensure(self, wanted: frozenset[IndexDef], tables: set[str]) -> None:
        if not self._clean:  # hypothetical indexes live in the session, not the transaction
            await self._sql("SELECT hypopg_reset()")
            self._clean = True
        for index in [i for i in self._active if i.table in tables and i not in wanted]:
            oid = self._active.pop(index)
            await self._sql(f"SELECT hypopg_drop_index({int(oid)})")
        for index in wanted - self._active.keys():
            if index in self._refused:
                raise CannotPlan(self._refused[index])
            try:
                result = await self._sql(
                    "SELECT indexrelid FROM hypopg_create_index(%(ddl)s)", {"ddl": index.ddl()}
                )
            except CannotPlan as exc:  # e.g. a partitioned table HypoPG cannot index
                self._refused[index] = f"HypoPG cannot build {index.ddl()}: {exc}"
                raise CannotPlan(self._refused[index]) from None
            self._active[index] = int(result.scalar_one())

    async def _plan_cost(self, statement: WorkloadStatement) -> float:
        costs = []
        for text, parameters in statement.samples:
            sql = "EXPLAIN (FORMAT JSON) " + text
            if parameters is None:  # plain SQL text: no placeholders, % is literal
                sql, parameters = escape_percent(sql), {}
            elif parameters and not ("%(" in text or "%s" in text):
                continue  # another driver's placeholders: use the generic plan below
            costs.append(await self._explain(sql, parameters))
        if not costs:
            costs.append(await self._generic_cost(statement.text))
        return sum(costs) / len(costs)

    async def _explain(self, sql: str, parameters: Any) -> float:
        self.explains += 1
        raw = (await self._sql(sql, parameters)).scalar_one()
        plan = json.loads(raw) if isinstance(raw, str) else raw
        return float(plan[0]["Plan"]["Total Cost"])

    async def _sql(self, sql: str, parameters: Any = None) -> Any:
        """One statement in a savepoint: a failure is CannotPlan, never an aborted transaction."""
        try:
            await self.connection.exec_driver_sql("SAVEPOINT tenantry_advisor")
            result = await self.connection.exec_driver_sql(sql, parameters or {})
            await self.connection.exec_driver_sql("RELEASE SAVEPOINT tenantry_advisor")
        except DBAPIError as exc:
            await self.connection.exec_driver_sql("ROLLBACK TO SAVEPOINT tenantry_advisor")
            raise CannotPlan(str(exc.orig).strip().splitlines()[0]) from None
        return result

    async def _generic_cost(self, text: str) -> float:
        """The generic plan of a $n statement: PREPARE, then EXPLAIN EXECUTE with NULLs.

        Prepared afresh every time: a cached generic plan would not see new
        hypothetical indexes (HypoPG does not invalidate the plan cache).
        """
        count = max((int(n) for n in re.findall(r"\$(\d+)", text)), default=0)
        arguments = f"({', '.join(['NULL'] * count)})" if count else ""
        await self._sql("SET LOCAL plan_cache_mode = force_generic_plan")
        await self._sql(escape_percent(f"PREPARE tenantry_advisor_stmt AS {text}"))
        try:
            sql = f"EXPLAIN (FORMAT JSON) EXECUTE tenantry_advisor_stmt{arguments}"
            return await self._explain(sql, {})
        finally:
            await self._sql("DEALLOCATE tenantry_advisor_stmt")

    async def close(self) -> None:
        await self._sql("SELECT hypopg_reset()")
        self._active.clear()

    async def size(self, index: IndexDef) -> int | None:
        try:
            await self._ensure(frozenset({index}), {index.table})
            oid = self._active[index]
            result = await self._sql(f"SELECT hypopg_relation_size({int(oid)})")
        except CannotPlan:
            return None
        return int(result.scalar_one())


class HeuristicPlanner:
    """A small cost model from pg_stats and table sizes, used when HypoPG is missing.

    Costs are in the planner's units (seq_page_cost = 1, random_page_cost = 4,
    cpu_tuple_cost = 0.01, cpu_operator_cost = 0.0025), per table a statement reads:
    the cheaper of a sequential scan and the best index whose leading columns its
    equality predicates pin (then one range column, or its ORDER BY, which saves a sort).
    """

    method = "heuristic"

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    async def cost(self, statement: WorkloadStatement, indexes: frozenset[IndexDef]) -> float:
        assert statement.use is not None
        existing = [
            IndexDef(e.table, e.columns)
            for e in self.schema.existing
            if not e.partial_or_expression
        ]
        return sum(
            self._access(use, [*existing, *(i for i in indexes if i.table == use.table)])
            for use in statement.use.uses
        )

    def _access(self, use: TableUse, indexes: list[IndexDef]) -> float:
        table = self.schema.tables.get(use.table, TableStats(1000, 10, 0))
        rows, pages = max(table.rows, 1.0), max(table.pages, 1.0)
        matched = rows * self._selectivity(use, use.filtered)
        sort = self._sort_cost(matched) if use.order_by else 0.0
        best = pages + rows * (0.01 + 0.0025 * max(len(use.filtered), 1)) + sort
        for index in indexes:
            if index.table == use.table:
                best = min(best, self._index_cost(use, index, rows, pages))
        return best

    def _index_cost(self, use: TableUse, index: IndexDef, rows: float, pages: float) -> float:
        pinned: list[str] = []
        rest = list(index.columns)
        while rest and (rest[0] in use.equality or rest[0] in use.join):
            pinned.append(rest.pop(0))
        range_column = rest[0] if rest and rest[0] in use.range else None
        ordered = bool(use.order_by) and tuple(rest[: len(use.order_by)]) == tuple(use.order_by)
        if not pinned and not range_column and not ordered:
            return math.inf
        selectivity = self._selectivity(use, pinned) * (1 / 3 if range_column else 1.0)
        matched = rows * selectivity
        if ordered and use.limited:
            matched = min(matched, 100.0)
        correlation = self._correlation(use.table, index.columns[0])
        heap_pages = matched * (1 - correlation**2) * 4 + pages * selectivity * correlation**2
        sort = 0.0 if ordered else (self._sort_cost(matched) if use.order_by else 0.0)
        return 4 * math.log2(rows + 2) * 0.0025 + matched * 0.0075 + heap_pages + sort

    def _selectivity(self, use: TableUse, columns: Iterable[str]) -> float:
        selectivity = 1.0
        for column in columns:
            stats = self.schema.columns.get((use.table, column))
            if column in use.range and column not in use.equality:
                selectivity *= 1 / 3
            elif stats is not None:
                selectivity *= (1 - stats.null_frac) / max(stats.n_distinct, 1.0)
            else:
                selectivity *= 0.005
        return selectivity

    def _correlation(self, table: str, column: str) -> float:
        stats = self.schema.columns.get((table, column))
        return stats.correlation if stats else 0.0

    @staticmethod
    def _sort_cost(rows: float) -> float:
        return 2 * 0.0025 * rows * math.log2(rows + 2)

    async def size(self, index: IndexDef) -> int | None:
        table = self.schema.tables.get(index.table, TableStats(1000, 10, 0))
        width = sum(
            (s.avg_width if (s := self.schema.columns.get((index.table, c))) else 8)
            for c in index.columns
        )
        return int(max(table.rows, 1) * (width + 16) / 0.9) + 8192


# --- the search ------------------------------------------------------------
@dataclass(slots=True)
class Choice:
    index: IndexDef
    saved: float
    helped: list[str]


class WriteRates:
    """Rows each table's writes put into an index, in the workload's window.

    Every index costs the writes that keep it up to date, so a write-heavy table earns
    fewer indexes than the same reads on a read-only one. Per table, the larger of:
    - the monitor's INSERT/UPDATE/DELETE shapes (calls x rows per call): the same
      window as the reads an index saves, so the two compare directly. An INSERT
      adds an entry to every index and a DELETE leaves one for vacuum to remove from
      every index; an UPDATE touches only an index on a column it sets (else it can
      stay HOT and touch none).
    - pg_stat_user_tables, for writers the monitor never saw (another service, a
      batch job): rows updated off-HOT or deleted since the statistics were reset,
      brought into the window by the workload's reads of the table against the
      table's scans over the same period. Inserts are left out there: a table's
      initial load would make it look write-heavy for ever.
    """

    def __init__(self, workload: list[WorkloadStatement], tables: dict[str, TableStats]) -> None:
        self.every: dict[str, float] = {}  # rows that touch every index of the table
        self.updates: dict[str, list[tuple[set[str], float]]] = {}  # (SET columns, rows)
        reads: dict[str, float] = {}
        for statement in workload:
            use = statement.use
            if use is None:
                continue
            for table in {u.table for u in use.uses}:
                reads[table] = reads.get(table, 0.0) + statement.calls
            rows = statement.calls * statement.rows_per_call
            if use.written_table is None:
                continue
            if use.kind == "update":
                entry = (set(use.written_columns), rows)
                self.updates.setdefault(use.written_table, []).append(entry)
            elif use.kind in ("insert", "delete"):
                self.every[use.written_table] = self.every.get(use.written_table, 0.0) + rows
        self.unseen = {
            table: stats.churn * reads[table] / max(stats.scans, reads[table])
            for table, stats in tables.items()
            if stats.churn > 0 and reads.get(table)
        }

    def rows(self, index: IndexDef) -> float:
        columns = set(index.columns)
        updated = sum(n for cols, n in self.updates.get(index.table, ()) if cols & columns)
        seen = self.every.get(index.table, 0.0) + updated
        return max(seen, self.unseen.get(index.table, 0.0))


class Search:
    def __init__(
        self,
        planner: Planner,
        workload: list[WorkloadStatement],
        tables: dict[str, TableStats] | None = None,
    ) -> None:
        self.planner = planner
        self.workload = workload
        self.writes = WriteRates(workload, tables or {})  # every write, plannable or not
        self.skipped: dict[str, str] = {}
        self._sizes: dict[IndexDef, int | None] = {}

    async def baseline(self) -> dict[str, float]:
        costs = {}
        for statement in self.workload:
            try:
                costs[statement.id] = await self.planner.cost(statement, frozenset())
            except CannotPlan as exc:
                self.skipped[statement.id] = f"cannot be planned: {exc}"
        self.workload = [s for s in self.workload if s.id in costs]
        return costs

    def _served(self, index: IndexDef) -> list[WorkloadStatement]:
        return [s for s in self.workload if s.use and index.table in s.use.tables]

    def maintenance(self, index: IndexDef) -> float:
        """What keeping `index` up to date costs the table's writes (WriteRates)."""
        return self.writes.rows(index) * MAINTENANCE_COST_PER_ROW

    async def size(self, index: IndexDef) -> int | None:
        if index not in self._sizes:
            self._sizes[index] = await self.planner.size(index)
        return self._sizes[index]

    async def gain(
        self, index: IndexDef, chosen: frozenset[IndexDef], current: dict[str, float]
    ) -> tuple[float, list[str], dict[str, float]]:
        saved, helped, after = 0.0, [], {}
        for statement in self._served(index):
            try:
                cost = await self.planner.cost(statement, chosen | {index})
            except CannotPlan:
                continue
            after[statement.id] = cost
            delta = current[statement.id] - cost
            if delta > 1e-9:
                saved += statement.calls * delta
                helped.append(statement.id)
        return saved - self.maintenance(index), helped, after

    async def greedy(
        self,
        candidates: list[IndexDef],
        base: dict[str, float],
        budget: int,
        floor: float,
        max_bytes: float | None = None,
    ) -> list[Choice]:
        """At most `budget` indexes (and `max_bytes` of them), each saving more than `floor`.

        By count alone: greedy by cost saved. Under a size budget, the better of two
        greedy passes, by cost saved and by cost saved per byte: per byte alone can
        fill the disk with small indexes that each save little, by saving alone spends
        it on a wide covering index that narrow ones beat. Then swaps (`_improve`).
        """
        sized = Sized(self, max_bytes)
        passes = [await self._lazy(candidates, base, budget, floor, sized, per_byte=False)]
        if max_bytes is not None:
            passes.append(await self._lazy(candidates, base, budget, floor, sized, per_byte=True))
        totals = [await self.total(frozenset(p)) for p in passes]
        best = passes[totals.index(min(totals))]
        improved = await self._improve(best, candidates, budget, floor, sized)
        return await self._choices(improved, base, floor)

    async def _lazy(
        self,
        candidates: list[IndexDef],
        base: dict[str, float],
        budget: int,
        floor: float,
        sized: Sized,
        per_byte: bool,
    ) -> list[IndexDef]:
        """Lazy greedy: an index's saving only shrinks as others are chosen, so a stale
        heap entry is re-measured only when it reaches the top."""
        current = dict(base)
        chosen: list[IndexDef] = []
        heap: list[tuple[float, int, IndexDef, int]] = []
        for order, index in enumerate(candidates):
            saved = await self.alone(index, base)
            if saved > floor and await sized.fits([index]):
                heapq.heappush(heap, (-await sized.rank(index, saved, per_byte), order, index, 0))
        while heap and len(chosen) < budget:
            _, order, index, round_seen = heapq.heappop(heap)
            if not await sized.fits([*chosen, index]):
                continue  # the disk left only shrinks: it never fits again
            saved, _, after = await self.gain(index, frozenset(chosen), current)
            if round_seen != len(chosen):  # stale: back in at its present worth
                if saved > floor:
                    rank = await sized.rank(index, saved, per_byte)
                    heapq.heappush(heap, (-rank, order, index, len(chosen)))
                continue
            chosen.append(index)
            current.update(after)
            heap = [item for item in heap if not _redundant(item[2], chosen)]
            heapq.heapify(heap)
        return chosen

    async def alone(self, index: IndexDef, base: dict[str, float]) -> float:
        saved, _, _ = await self.gain(index, frozenset(), base)
        return saved

    async def _improve(
        self,
        chosen: list[IndexDef],
        candidates: list[IndexDef],
        budget: int,
        floor: float,
        sized: Sized,
    ) -> list[IndexDef]:
        """Swap one chosen index for another candidate, or add one to room left, while
        that lowers the workload's cost: greedy's first picks may crowd out a better set.
        The candidates tried are the strongest alone, by saving and by saving per byte."""
        pool = await self._pool(candidates, sized)
        for _ in range(MAX_SWAP_ROUNDS):
            move = await self._better(chosen, pool, budget, floor, sized)
            if move is None:
                break
            chosen = move
        return chosen

    async def _pool(self, candidates: list[IndexDef], sized: Sized) -> list[IndexDef]:
        base = {s.id: await self.planner.cost(s, frozenset()) for s in self.workload}
        saving = {c: await self.alone(c, base) for c in candidates}
        useful = [c for c in candidates if saving[c] > 0 and await sized.fits([c])]
        by_saving = sorted(useful, key=lambda c: -saving[c])[:SWAP_POOL]
        if sized.max_bytes is None:
            return by_saving
        ranks = {c: await sized.rank(c, saving[c], per_byte=True) for c in useful}
        by_byte = sorted(useful, key=lambda c: -ranks[c])[:SWAP_POOL]
        return list(dict.fromkeys([*by_saving, *by_byte]))

    async def _better(
        self,
        chosen: list[IndexDef],
        pool: list[IndexDef],
        budget: int,
        floor: float,
        sized: Sized,
    ) -> list[IndexDef] | None:
        """The first move that saves more than rounding: a swap, or an addition."""
        for into in pool:
            if into in chosen:
                continue
            trials = [[into if c == out else c for c in chosen] for out in chosen]
            if len(chosen) < budget:
                trials.append([*chosen, into])
            for trial in trials:
                others = [i for i in trial if i != into]
                if _redundant(into, others) or not await sized.fits(trial):
                    continue
                tables = {i.table for i in set(chosen) ^ set(trial)}
                gain = await self._cost(chosen, tables) - await self._cost(trial, tables)
                if gain > (floor if len(trial) > len(chosen) else 1e-6):
                    return trial
        return None

    async def _cost(self, indexes: list[IndexDef], tables: set[str]) -> float:
        """The workload's cost on `tables` only: all that a swap there can change."""
        chosen = frozenset(indexes)
        cost = sum(self.maintenance(i) for i in indexes if i.table in tables)
        for statement in self.workload:
            if statement.use and statement.use.tables & tables:
                try:
                    cost += statement.calls * await self.planner.cost(statement, chosen)
                except CannotPlan:
                    return math.inf
        return cost

    async def _choices(
        self, indexes: list[IndexDef], base: dict[str, float], floor: float
    ) -> list[Choice]:
        """Each index's own saving, measured in turn against those before it."""
        current, taken, choices = dict(base), frozenset[IndexDef](), []
        for index in indexes:
            saved, helped, after = await self.gain(index, taken, current)
            if saved > floor:
                choices.append(Choice(index, saved, helped))
                taken = taken | {index}
                current.update(after)
        return sorted(choices, key=lambda c: -c.saved)

    async def total(self, indexes: frozenset[IndexDef]) -> float:
        cost = 0.0
        for statement in self.workload:
            cost += statement.calls * await self.planner.cost(statement, indexes)
        return cost + sum(self.maintenance(i) for i in indexes)


class Sized:
    """The size budget: which sets fit, and how a candidate ranks in a greedy pass."""

    def __init__(self, search: Search, max_bytes: float | None) -> None:
        self.search = search
        self.max_bytes = max_bytes

    async def fits(self, indexes: list[IndexDef]) -> bool:
        if self.max_bytes is None:
            return True
        total = 0
        for index in indexes:
            size = await self.search.size(index)
            if size is None:  # not measurable: cannot be held to a budget
                return False
            total += size
        return total <= self.max_bytes

    async def rank(self, index: IndexDef, saved: float, per_byte: bool) -> float:
        if not per_byte:
            return saved
        return saved / max(await self.search.size(index) or 1, 1)


def _redundant(index: IndexDef, chosen: list[IndexDef]) -> bool:
    return any(c.table == index.table and index.is_prefix_of(c.columns) for c in chosen)


# --- the catalog -----------------------------------------------------------


async def load_schema(connection: AsyncConnection) -> Schema:
    columns: dict[str, list[str]] = {}
    rows: Any = await connection.exec_driver_sql(
        "SELECT n.nspname, c.relname, a.attname FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema') AND n.nspname NOT LIKE 'pg\\_%%' "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        {},
    )
    for schema, table, column in rows:
        columns.setdefault(f"{schema}.{table}", []).append(column)
    return Schema(
        Catalog(columns),
        await _existing_indexes(connection),
        await _table_stats(connection),
        await _column_stats(connection),
    )


async def _existing_indexes(connection: AsyncConnection) -> list[ExistingIndex]:
    rows: Any = await connection.exec_driver_sql(
        "SELECT n.nspname || '.' || t.relname, i.relname, "
        "ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, ord) "
        "      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord), "
        "x.indisunique, x.indisprimary, "
        "EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.oid), "
        "x.indpred IS NOT NULL OR x.indexprs IS NOT NULL OR am.amname <> 'btree', "
        "pg_relation_size(i.oid), COALESCE(s.idx_scan, 0), pg_get_indexdef(i.oid) "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "JOIN pg_am am ON am.oid = i.relam "
        "LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.oid "
        "WHERE t.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema') AND n.nspname NOT LIKE 'pg\\_%%' AND x.indisvalid",
        {},
    )
    return [
        ExistingIndex(r[0], r[1], tuple(r[2]), r[3], r[4], r[5], r[6], int(r[7]), int(r[8]), r[9])
        for r in rows
    ]


async def _table_stats(connection: AsyncConnection) -> dict[str, TableStats]:
    rows: Any = await connection.exec_driver_sql(
        "SELECT n.nspname || '.' || c.relname, GREATEST(c.reltuples, s.n_live_tup, 0), "
        "c.relpages, COALESCE(s.seq_scan, 0), COALESCE(s.seq_scan + s.idx_scan, s.seq_scan, 0), "
        "COALESCE(s.n_tup_upd - s.n_tup_hot_upd + s.n_tup_del, 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'",
        {},
    )
    return {
        r[0]: TableStats(float(r[1]), float(r[2]), int(r[3]), int(r[4]), float(r[5])) for r in rows
    }


async def _column_stats(connection: AsyncConnection) -> dict[tuple[str, str], ColumnStats]:
    rows: Any = await connection.exec_driver_sql(
        "SELECT s.schemaname || '.' || s.tablename, s.attname, s.n_distinct, s.null_frac, "
        "COALESCE(s.correlation, 0), s.avg_width, GREATEST(c.reltuples, 0) FROM pg_stats s "
        "JOIN pg_namespace n ON n.nspname = s.schemaname "
        "JOIN pg_class c ON c.relname = s.tablename AND c.relnamespace = n.oid "
        "WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')",
        {},
    )
    stats = {}
    for table, column, n_distinct, null_frac, correlation, width, reltuples in rows:
        distinct = n_distinct if n_distinct >= 0 else -n_distinct * max(reltuples, 1)
        stats[(table, column)] = ColumnStats(
            float(distinct), float(null_frac), float(correlation), int(width)
        )
    return stats


async def pg_stat_statements(
    connection: AsyncConnection, limit: int = 200
) -> list[WorkloadStatement]:
    """The database's own statement statistics, when the extension is installed here."""
    installed = await connection.exec_driver_sql(
        "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
    )
    if installed.first() is None:
        return []
    try:
        await connection.exec_driver_sql("SAVEPOINT tenantry_pgss")
        rows: Any = await connection.exec_driver_sql(
            "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "ORDER BY total_exec_time DESC LIMIT %(limit)s",
            {"limit": limit},
        )
        found = rows.all()
        await connection.exec_driver_sql("RELEASE SAVEPOINT tenantry_pgss")
    except DBAPIError:  # not in shared_preload_libraries, or no permission
        await connection.exec_driver_sql("ROLLBACK TO SAVEPOINT tenantry_pgss")
        return []
    statements = []
    for query, calls, total, count in found:
        try:
            fingerprint = pg.fingerprint(query)
        except pg.ParseError:
            continue
        statements.append(
            WorkloadStatement(
                fingerprint, query, int(calls), float(total), int(count), [], "pg_stat_statements"
            )
        )
    return statements


# --- existing-index findings --------------------------------------------------
def unused_indexes(schema: Schema) -> list[UnusedIndex]:
    return [
        UnusedIndex(
            table=e.table,
            index=e.name,
            columns=list(e.columns),
            size_bytes=e.size_bytes,
            reason="never used by a scan since statistics were last reset; "
            "it still costs every write",
            statement=f"DROP INDEX CONCURRENTLY {quote(e.name)}",
        )
        for e in schema.existing
        if e.scans == 0 and not (e.unique or e.primary or e.constraint)
    ]


def duplicate_indexes(schema: Schema) -> list[DuplicateIndex]:
    found = []
    plain = [e for e in schema.existing if not e.partial_or_expression]
    for e in plain:
        for other in plain:
            if e is other or e.table != other.table or e.unique or e.constraint:
                continue
            same = e.columns == other.columns
            if same and (e.name > other.name and not (other.unique or other.constraint)):
                continue  # report each identical pair once
            if same or other.columns[: len(e.columns)] == e.columns:
                found.append(
                    DuplicateIndex(
                        table=e.table,
                        index=e.name,
                        columns=list(e.columns),
                        covered_by=other.name,
                        size_bytes=e.size_bytes,
                        reason=(
                            f"same columns as {other.name}"
                            if same
                            else f"a prefix of {other.name} ({', '.join(other.columns)})"
                        ),
                        statement=f"DROP INDEX CONCURRENTLY {quote(e.name)}",
                    )
                )
                break
    return found


# --- the entry point -----------------------------------------------------------
async def enable_hypopg(connection: AsyncConnection) -> bool:
    """HypoPG for this transaction: already installed, or created here and rolled back later."""
    found = await connection.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'")
    if found.first() is not None:
        return True
    try:
        await connection.exec_driver_sql("SAVEPOINT tenantry_hypopg")
        await connection.exec_driver_sql("CREATE EXTENSION hypopg")
        await connection.exec_driver_sql("RELEASE SAVEPOINT tenantry_hypopg")
        return True
    except DBAPIError:
        await connection.exec_driver_sql("ROLLBACK TO SAVEPOINT tenantry_hypopg")
        return False


def prepare_workload(
    statements: list[WorkloadStatement], schema: Schema
) -> tuple[list[WorkloadStatement], dict[str, str]]:
    kept, skipped = [], {}
    for statement in statements:
        statement.use = analyze(statement.text, schema.catalog)
        if statement.use is None:
            skipped[statement.id] = "not a SELECT, INSERT, UPDATE or DELETE"
        elif not statement.use.tables:
            skipped[statement.id] = "reads no user table"
        elif statement.calls <= 0:
            skipped[statement.id] = "never called"
        else:
            kept.append(statement)
    return kept, skipped


async def analyze_indexes(
    engine: AsyncEngine,
    workload: list[WorkloadStatement],
    *,
    max_indexes: int = 5,
    max_mb: float | None = None,
    min_improvement: float = 0.01,
    use_hypopg: bool = True,
    timeout_ms: int = 10_000,
) -> IndexAdvice:
    """Up to `max_indexes` indexes and, when `max_mb` is given, at most that many MB of them."""
    max_bytes = _size_budget(max_mb)
    if engine.dialect.name != "postgresql":
        raise InvalidInput(
            f"index advice needs PostgreSQL; this server's database is {engine.dialect.name}",
            code="UNSUPPORTED_DATABASE",
            details={"field": "database", "rule": "postgresql-only"},
        )
    async with engine.connect() as connection:
        try:
            await connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            return await _advise(
                connection, workload, Limits(max_indexes, max_bytes, min_improvement), use_hypopg
            )
        finally:
            await connection.rollback()  # drops hypothetical indexes and a transient HypoPG


@dataclass(frozen=True, slots=True)
class Limits:
    max_indexes: int
    max_bytes: float | None  # None: bounded by count only
    min_improvement: float  # each index saves at least this share of the workload's cost


def _size_budget(max_mb: float | None) -> float | None:
    if max_mb is None:
        return None
    if not (math.isfinite(max_mb) and max_mb > 0):
        raise InvalidInput(
            f"the size budget must be a positive number of MB, not {max_mb}",
            details={"field": "max_mb", "rule": "> 0"},
        )
    return max_mb * 1024 * 1024


async def _advise(
    connection: AsyncConnection,
    workload: list[WorkloadStatement],
    limits: Limits,
    use_hypopg: bool,
) -> IndexAdvice:
    schema = await load_schema(connection)
    seen = {s.id for s in workload}
    extra = [s for s in await pg_stat_statements(connection) if s.id not in seen]
    statements, skipped = prepare_workload([*workload, *extra], schema)
    hypopg = use_hypopg and await enable_hypopg(connection)
    planner: Planner = HypoPGPlanner(connection) if hypopg else HeuristicPlanner(schema)
    search = Search(planner, statements, schema.tables)
    base = await search.baseline()
    skipped.update(search.skipped)
    before = sum(s.calls * base[s.id] for s in search.workload)
    candidates = generate_candidates(search.workload, schema)
    floor = max(before * limits.min_improvement, 1e-6)
    chosen = []
    if before > 0:
        chosen = await search.greedy(candidates, base, limits.max_indexes, floor, limits.max_bytes)
    after = await search.total(frozenset(c.index for c in chosen)) if chosen else before
    recommendations = [await _recommendation(choice, search, schema, before) for choice in chosen]
    if isinstance(planner, HypoPGPlanner):
        await planner.close()
    return IndexAdvice(
        method=planner.method,
        method_note=(
            "each recommendation was measured as a hypothetical index (HypoPG) with the planner"
            if hypopg
            else "HEURISTIC: HypoPG is not available, so costs come from a model built on "
            "pg_stats and table sizes, not from the planner"
        ),
        statements_analysed=len(search.workload),
        candidates_considered=len(candidates),
        workload_cost_before=round(before, 2),
        workload_cost_after=round(after, 2),
        estimated_improvement=round(1 - after / before, 4) if before else 0.0,
        recommendations=recommendations,
        unused_indexes=unused_indexes(schema),
        duplicate_indexes=duplicate_indexes(schema),
        skipped_statements=[SkippedStatement(k, v) for k, v in skipped.items()],
    )


async def _recommendation(
    choice: Choice, search: Search, schema: Schema, before: float
) -> Recommendation:
    share = choice.saved / before if before else 0.0
    index = choice.index
    stats = schema.tables.get(index.table)
    return Recommendation(
        table=index.table,
        columns=list(index.columns),
        reason=_reason(choice, search, stats),
        priority="high" if share >= 0.2 else "medium" if share >= 0.05 else "low",
        estimated_improvement=round(share, 4),
        estimated_size_bytes=await search.size(index),
        statements=choice.helped,
        create_statement=index.ddl(concurrently=True),
    )


def _reason(choice: Choice, search: Search, stats: TableStats | None) -> str:
    uses: list[TableUse] = []
    for statement in search.workload:
        if statement.id in choice.helped and statement.use:
            uses.extend(u for u in statement.use.uses if u.table == choice.index.table)
    parts = []
    for label, attribute in (
        ("equality on", "equality"),
        ("join on", "join"),
        ("range on", "range"),
    ):
        columns = sorted(
            {c for u in uses for c in getattr(u, attribute) if c in choice.index.columns}
        )
        if columns:
            parts.append(f"{label} {', '.join(columns)}")
    ordered = sorted({c for u in uses for c in u.order_by if c in choice.index.columns})
    if ordered:
        parts.append(f"ORDER BY {', '.join(ordered)}")
    size = f" on a table of ~{int(stats.rows):,} rows" if stats else ""
    if stats and stats.seq_scans:
        size += f" scanned sequentially {stats.seq_scans:,} times"
    return f"serves {len(choice.helped)} statement(s) ({'; '.join(parts) or 'its columns'}){size}"
