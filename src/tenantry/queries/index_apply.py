"""Applying the advisor's indexes for real, then keeping only those that made it faster.

Dexter's `--create`, with the checks a shared database needs:
- only a statement the advisor recommends right now is applied, and what runs is the
  recommendation's own DDL (built from its `IndexDef`), never the client's text;
- `CREATE INDEX CONCURRENTLY` on an autocommit connection of its own (it cannot run
  in a transaction, and it must not block the table's writes), under one PostgreSQL
  advisory lock: one build or verification at a time across every process;
- refused before anything is built: partitioned tables (PostgreSQL 15 cannot build
  their indexes concurrently) and tables the role does not own;
- a build that fails can leave an INVALID index (pg_index.indisvalid = false): it is
  dropped at once on a fresh connection, or else by the next verification round;
- after `verify_seconds` the monitor's figures since the build are judged
  (index_verdict.py) and the index is kept or dropped concurrently.
Every step is a row of the audit log (index_changes.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tenantry.db import Database, utcnow
from tenantry.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    ServiceUnavailable,
    TenantryError,
)
from tenantry.queries.advisor import IndexDef, quote
from tenantry.queries.index_changes import (
    AWAITING_VERDICT,
    BUILDING,
    BUILT,
    FAILED,
    GONE,
    INVALID_DROPPED,
    MAY_LEAVE_INVALID,
    REQUESTED,
    VERIFIED_DROPPED,
    VERIFIED_KEPT,
    VERIFY_EXTENDED,
    IndexChange,
    IndexChangeLog,
    Target,
)
from tenantry.queries.index_verdict import ShapeFigures, Verdict, judge
from tenantry.queries.results import Recommendation

log = logging.getLogger("tenantry.queries")

# pg_try_advisory_lock's key for "an index is being built or verified" ("tenantry").
LOCK_KEY = 0x74656E616E747279
VERIFIER = "tenantry (verification)"
BUILD_APPLICATION_NAME = "tenantry index build"

Recommend = Callable[[], Awaitable[list[Recommendation]]]
ShapeSource = Callable[[], Awaitable[dict[str, ShapeFigures]]]


@dataclass(frozen=True, slots=True)
class ApplyPolicy:
    enabled: bool = False  # QUERY_APPLY_INDEXES
    verify_seconds: float = 3600.0  # how long an index serves before it is judged
    min_calls: int = 100  # calls of the helped shapes needed since, else wait longer
    min_improvement: float = 0.1  # the share of time it must save to be kept
    build_timeout_ms: int = 0  # statement_timeout of a build; 0: none
    drop_lock_timeout_ms: int = 5000  # how long a drop may wait for other transactions


@dataclass(frozen=True, slots=True)
class AppliedIndex:
    index_name: str
    table: str
    statement: str  # what was executed
    changes: list[IndexChange]  # this apply's rows, in order


def canonical(statement: str) -> str | None:
    """One CREATE INDEX as PostgreSQL's parser reads it (whitespace, case, quoting and
    CONCURRENTLY aside); None when it is not exactly one CREATE INDEX."""
    try:
        parsed = parse_sql(statement)
    except ParseError:
        return None
    if len(parsed) != 1 or not isinstance(parsed[0].stmt, ast.IndexStmt):
        return None
    index = parsed[0].stmt
    index.concurrent = True  # always built concurrently, however it was written
    return str(RawStream()(index))


class IndexApplier:
    def __init__(
        self,
        db: Database,
        recommend: Recommend,
        shapes: ShapeSource,
        policy: ApplyPolicy = ApplyPolicy(),
    ) -> None:
        self.db = db
        self.recommend = recommend
        self.shapes = shapes
        self.policy = policy
        self.log = IndexChangeLog(db)
        self._ddl: AsyncEngine | None = None

    def _engine(self) -> AsyncEngine:
        """Unmonitored and autocommit: DDL is not workload; CONCURRENTLY needs no transaction."""
        if self._ddl is None:
            self._ddl = create_async_engine(
                self.db.url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
        return self._ddl

    async def close(self) -> None:
        if self._ddl is not None:
            await self._ddl.dispose()

    # --- applying ---------------------------------------------------------------
    async def apply(self, statement: str, actor: str) -> AppliedIndex:
        self._check_possible()
        wanted = canonical(statement)
        if wanted is None:
            raise _not_recommended("it is not one CREATE INDEX statement")
        async with self._exclusive() as held:
            if not held:
                raise Conflict(
                    "another index is being built or verified right now; try again when it is done",
                    code="APPLY_BUSY",
                )
            await self._sweep()  # an invalid index an earlier build left must not block this
            recommendation = await self._recommended(wanted)
            return await self._apply(recommendation, actor)

    def _check_possible(self) -> None:
        if not self.policy.enabled:
            raise Forbidden(
                "applying indexes is switched off: set QUERY_APPLY_INDEXES=true to allow it",
                code="APPLY_DISABLED",
            )
        if self.db.dialect != "postgresql":
            raise InvalidInput(
                f"applying indexes needs PostgreSQL; this server's database is {self.db.dialect}",
                code="UNSUPPORTED_DATABASE",
                details={"field": "database", "rule": "postgresql-only"},
            )

    async def _recommended(self, wanted: str) -> Recommendation:
        current = await self.recommend()
        for recommendation in current:
            if canonical(recommendation.create_statement) == wanted:
                return recommendation
        raise _not_recommended(
            "it is not one of the current recommendations",
            [r.create_statement for r in current],
        )

    async def _apply(self, recommendation: Recommendation, actor: str) -> AppliedIndex:
        index = IndexDef(recommendation.table, tuple(recommendation.columns))
        target = Target(index.ddl(concurrently=True), index.name, index.table)
        rows = [await self.log.record(target, REQUESTED, f"asked by {actor}", actor)]
        try:
            await self._check_target(index)
        except TenantryError as exc:
            await self.log.record(target, FAILED, f"refused: {exc.message}", actor)
            raise
        rows.append(await self.log.record(target, BUILDING, "CREATE INDEX CONCURRENTLY", actor))
        try:
            await self._build(target.statement)
        except DBAPIError as exc:
            raise await self._failed(target, index, exc, actor) from None
        before = await self._snapshot(recommendation.statements)
        detail = f"valid; judged after {self.policy.verify_seconds:g} s"
        rows.append(await self.log.record(target, BUILT, detail, actor, before=before))
        return AppliedIndex(index.name, index.table, target.statement, rows)

    async def _check_target(self, index: IndexDef) -> None:
        """What would fail half-way, refused before anything is built."""
        schema, table = index.table.split(".", 1)
        async with self._engine().connect() as conn:
            found = (
                await conn.exec_driver_sql(
                    "SELECT c.relkind, pg_has_role(current_user, c.relowner, 'USAGE'), "
                    "pg_get_userbyid(c.relowner), current_user, "
                    "ARRAY(SELECT i.inhrelid::regclass::text FROM pg_inherits i "
                    "      WHERE i.inhparent = c.oid ORDER BY 1), "
                    "(SELECT COALESCE(x.indisvalid::text, 'other') FROM pg_class o "
                    "   LEFT JOIN pg_index x ON x.indexrelid = o.oid "
                    " WHERE o.relnamespace = c.relnamespace AND o.relname = %(index)s) "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %(schema)s AND c.relname = %(table)s",
                    {"schema": schema, "table": table, "index": index.name},
                )
            ).first()
        if found is None:
            raise InvalidInput(f"table {index.table} does not exist", code="TABLE_NOT_FOUND")
        relkind, owns, owner, role, partitions, taken = tuple(found)
        if relkind == "p":
            raise _partitioned(index, list(partitions))
        if not owns:
            raise Forbidden(
                f"the database role {role} does not own {index.table} (its owner is {owner}), "
                "and only the owner may create an index on it: apply it as that role, or "
                f"GRANT {quote(owner)} TO {quote(role)}",
                code="INSUFFICIENT_PRIVILEGE",
                details={"table": index.table, "owner": owner, "role": role},
            )
        if taken is not None:  # 'true', 'false' (INVALID) or 'other' (not an index)
            what = {
                "true": "an index",
                "false": "an INVALID index (a build in progress or one that failed)",
            }.get(taken, "another relation")
            raise Conflict(
                f"{schema}.{index.name} already exists as {what}; drop it or rename it first",
                code="INDEX_EXISTS",
                details={"index": index.name, "state": taken},
            )

    async def _build(self, ddl: str) -> None:
        async with self._engine().connect() as conn:
            # Named, so an operator (or a test) finds the build in pg_stat_activity.
            await conn.exec_driver_sql(f"SET application_name = '{BUILD_APPLICATION_NAME}'")
            timeout = int(self.policy.build_timeout_ms)
            await conn.exec_driver_sql(f"SET statement_timeout = {timeout}")
            await _ddl(conn, ddl)

    async def _failed(
        self, target: Target, index: IndexDef, exc: DBAPIError, actor: str
    ) -> TenantryError:
        """The caller's error for a failed build, once the log says what it left."""
        dropped = await self._drop_invalid(index)
        left = {
            None: "it left no index",
            True: "the INVALID index it left was dropped",
            False: "it left an INVALID index that the next verification round drops",
        }[dropped]
        error = _build_error(exc, left)
        await self.log.record(target, FAILED, error.message, actor)
        if dropped:
            await self.log.record(target, INVALID_DROPPED, "left by the failed build", actor)
        return error

    async def _snapshot(self, shape_ids: list[str]) -> dict[str, Any]:
        figures = await self.shapes()
        empty = ShapeFigures(0, 0.0)
        return {
            "shapes": {s: figures.get(s, empty).as_json(buckets=True) for s in shape_ids},
        }

    # --- dropping -----------------------------------------------------------------
    async def _drop_invalid(self, index: IndexDef) -> bool | None:
        """Drop `index` if it exists INVALID: None, there was none; else whether it went."""
        if await self._valid(index) is not False:
            return None
        return await self._drop(index)

    async def _valid(self, index: IndexDef) -> bool | None:
        """pg_index.indisvalid of `index`; None when there is no such index."""
        schema, _ = index.table.split(".", 1)
        try:
            async with self._engine().connect() as conn:
                found = await conn.exec_driver_sql(
                    "SELECT x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                    "JOIN pg_namespace n ON n.oid = i.relnamespace "
                    "WHERE n.nspname = %(schema)s AND i.relname = %(name)s",
                    {"schema": schema, "name": index.name},
                )
                row = found.first()
        except DBAPIError as exc:
            log.warning("index apply: cannot read %s's state: %s", index.name, exc)
            return False  # unknown: a drop IF EXISTS is harmless
        return None if row is None else bool(row[0])

    async def _drop(self, index: IndexDef) -> bool:
        schema, _ = index.table.split(".", 1)
        ddl = f"DROP INDEX CONCURRENTLY IF EXISTS {quote(schema)}.{quote(index.name)}"
        try:
            async with self._engine().connect() as conn:
                await conn.exec_driver_sql(
                    f"SET lock_timeout = {int(self.policy.drop_lock_timeout_ms)}"
                )
                await _ddl(conn, ddl)
        except DBAPIError as exc:
            log.warning("index apply: %s failed: %s", ddl, str(exc.orig).splitlines()[0])
            return False
        return True

    # --- verifying ----------------------------------------------------------------
    async def verify(self, now: datetime | None = None) -> list[IndexChange]:
        """One round: drop what failed builds left, judge the indexes that are due.

        Every process runs rounds; the advisory lock lets one at a time through, and
        the log's latest row per index says what is left to do, so each verdict is
        made once. Returns the rows this round recorded.
        """
        if not self.policy.enabled or self.db.dialect != "postgresql":
            return []
        async with self._exclusive() as held:
            if not held:
                return []
            recorded = await self._sweep()
            moment = now or utcnow()
            for story in (await self.log.stories()).values():
                if story[-1].step in AWAITING_VERDICT:
                    recorded.extend(await self._judge(story, moment))
            return recorded

    async def _sweep(self) -> list[IndexChange]:
        recorded = []
        for story in (await self.log.stories()).values():
            latest = story[-1]
            if latest.step not in MAY_LEAVE_INVALID:
                continue
            index = _index_of(latest)
            if await self._drop_invalid(index):
                target = Target(latest.statement, latest.index_name, latest.table)
                detail = f"left by the build that stopped at '{latest.step}'"
                recorded.append(await self.log.record(target, INVALID_DROPPED, detail, VERIFIER))
        return recorded

    async def _judge(self, story: list[IndexChange], now: datetime) -> list[IndexChange]:
        latest = story[-1]
        built = next(c for c in reversed(story) if c.step == BUILT)
        since = latest.at if latest.step == VERIFY_EXTENDED else built.at
        window = timedelta(seconds=self.policy.verify_seconds)
        if now < since + window:
            return []
        target = Target(latest.statement, latest.index_name, latest.table)
        index = _index_of(latest)
        if await self._valid(index) is None:
            return [await self.log.record(target, GONE, "dropped outside Tenantry", VERIFIER)]
        before = {
            s: ShapeFigures.from_json(f) for s, f in (built.before or {}).get("shapes", {}).items()
        }
        current = await self.shapes()
        after = {s: current[s].since(b) for s, b in before.items() if s in current}
        verdict = judge(
            before,
            after,
            min_calls=self.policy.min_calls,
            min_improvement=self.policy.min_improvement,
        )
        figures = _figures(before, after, verdict)
        if verdict.decision == "wait":
            detail = f"{verdict.reason}; judged again in {self.policy.verify_seconds:g} s"
            return [await self.log.record(target, VERIFY_EXTENDED, detail, VERIFIER, **figures)]
        if verdict.decision == "keep":
            return [
                await self.log.record(target, VERIFIED_KEPT, verdict.reason, VERIFIER, **figures)
            ]
        if not await self._drop(index):
            return []  # another transaction held it past the lock timeout: next round
        return [
            await self.log.record(target, VERIFIED_DROPPED, verdict.reason, VERIFIER, **figures)
        ]

    # --- the lock -------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[bool]:
        """The advisory lock, on a session of its own (without a transaction, so builds
        do not wait for it); whether it was free. It goes with its session: a process that
        dies mid-build does not keep it."""
        async with self._engine().connect() as conn:
            held = (
                await conn.exec_driver_sql(
                    "SELECT pg_try_advisory_lock(%(key)s)", {"key": LOCK_KEY}
                )
            ).scalar_one()
            try:
                yield bool(held)
            finally:
                if held:
                    with contextlib.suppress(DBAPIError):
                        await conn.exec_driver_sql(
                            "SELECT pg_advisory_unlock(%(key)s)", {"key": LOCK_KEY}
                        )


async def _ddl(conn: AsyncConnection, ddl: str) -> None:
    # No parameters: a '%' in a quoted name stays as written.
    await conn.execution_options(no_parameters=True)
    await conn.exec_driver_sql(ddl)


def _index_of(change: IndexChange) -> IndexDef:
    """The IndexDef a logged statement was built from (it is always the advisor's own DDL)."""
    parsed = parse_sql(change.statement)[0].stmt
    assert isinstance(parsed, ast.IndexStmt)
    columns = tuple(str(p.name) for p in parsed.indexParams or ())
    return IndexDef(change.table, columns)


def _figures(
    before: dict[str, ShapeFigures], after: dict[str, ShapeFigures], verdict: Verdict
) -> dict[str, dict[str, Any]]:
    return {
        "before": {"shapes": {s: f.as_json(buckets=False) for s, f in before.items()}},
        "after": {
            "shapes": {s: f.as_json(buckets=False) for s, f in after.items()},
            "calls": verdict.calls_after,
            "pricedBeforeMs": _round(verdict.before_ms),
            "spentMs": _round(verdict.after_ms),
            "ratio": _round(verdict.ratio, 4),
            "decision": verdict.decision,
        },
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _not_recommended(why: str, current: list[str] | None = None) -> InvalidInput:
    return InvalidInput(
        f"statement: {why}; send a createStatement that GET /api/query-optimizer/indexes "
        "lists now (the advice follows the workload, and an index that exists is no longer "
        "recommended)",
        code="NOT_A_RECOMMENDATION",
        details={"field": "statement", "rule": "a current recommendation", "current": current},
    )


def _partitioned(index: IndexDef, partitions: list[str]) -> InvalidInput:
    columns = ", ".join(quote(c) for c in index.columns)
    return InvalidInput(
        f"{index.table} is a partitioned table, and PostgreSQL 15 cannot CREATE INDEX "
        "CONCURRENTLY on one; nothing was built. Build it without blocking writes by hand: "
        f"CREATE INDEX {quote(index.name)} ON ONLY {index.table} ({columns}); then, for each "
        f"partition, CREATE INDEX CONCURRENTLY on it ({columns}) and ALTER INDEX "
        f"{quote(index.name)} ATTACH PARTITION <that index>",
        code="PARTITIONED_TABLE",
        details={"table": index.table, "partitions": partitions},
    )


def _build_error(exc: DBAPIError, left: str) -> TenantryError:
    """PostgreSQL's failure as the caller's error: its SQLSTATE, never its text (which
    can quote the data), and what the failure left behind."""
    state = getattr(exc.orig, "sqlstate", None)
    details = {"sqlstate": state}
    if exc.connection_invalidated or state is None or state[:2] == "08" or state[:3] == "57P":
        return ServiceUnavailable(
            "the connection building the index was lost (its server process was terminated, "
            f"or the network or server went away) before the build finished; {left}",
            code="INDEX_BUILD_INTERRUPTED",
            details=details,
        )
    if state in ("57014", "55P03"):
        return ServiceUnavailable(
            "the build was cancelled (QUERY_APPLY_BUILD_TIMEOUT_MS, a lock timeout or "
            f"pg_cancel_backend; long transactions on the table make it wait); {left}",
            code="INDEX_BUILD_CANCELLED",
            details=details,
        )
    if state == "42501":
        return Forbidden(
            f"the database role may not create this index (SQLSTATE 42501); {left}",
            code="INSUFFICIENT_PRIVILEGE",
            details=details,
        )
    return InvalidInput(
        f"PostgreSQL refused the build (SQLSTATE {state}); {left}",
        code="INDEX_BUILD_FAILED",
        details=details,
    )
