"""Usage per company per hour: API requests, jobs run and their time, query calls and
their time (the anchor is Citus's `citus_stat_tenants`).

Counting is in-process and costs a dict update; `flush()` (every few seconds, and at
shutdown) adds what was counted to one row per company per hour in the database, so
every process adds to the same figures and a restart loses at most the last few
seconds. Rows older than the retention period are removed as it flushes. Query
figures are drained from the query monitor at each flush (`sources`), not counted
per statement here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tenantry.db import Database
from tenantry.tenants.records import UsageRow

log = logging.getLogger("tenantry.tenants")
UsageSort = Literal["jobs", "queryTime", "apiRequests"]
_SORT_COLUMNS = {"jobs": "jobs_run", "queryTime": "query_ms", "apiRequests": "api_requests"}
# A source of per-company figures gathered elsewhere, e.g. the query monitor's:
# {company: (calls, milliseconds)}, reset as it is read.
QuerySource = Callable[[], dict[str, tuple[int, float]]]


@dataclass(slots=True)
class Usage:
    api_requests: int = 0
    jobs_run: int = 0
    job_ms: float = 0.0
    query_calls: int = 0
    query_ms: float = 0.0

    def add(self, other: Usage) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True, slots=True)
class HourUsage:
    hour: datetime
    usage: Usage


@dataclass(frozen=True, slots=True)
class RankedCompany:
    company_id: str
    value: float


def this_hour(now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)


class UsageMeter:
    def __init__(
        self,
        db: Database,
        *,
        retention_hours: int = 24 * 30,
        query_sources: Iterable[QuerySource] = (),
        max_companies: int = 100_000,
    ) -> None:
        self.db = db
        self.retention = timedelta(hours=retention_hours)
        self.query_sources = list(query_sources)
        self.max_companies = max_companies
        self._pending: dict[tuple[str, datetime], Usage] = {}
        self._totals: dict[str, Usage] = {}  # since start, for Prometheus (prometheus.py)

    # --- counting (hot path: no I/O) -------------------------------------------------
    def api_request(self, company_id: str) -> None:
        self._usage(company_id).api_requests += 1

    def job_run(self, company_id: str, milliseconds: float) -> None:
        usage = self._usage(company_id)
        usage.jobs_run += 1
        usage.job_ms += milliseconds

    def _usage(self, company_id: str) -> Usage:
        key = (company_id, this_hour())
        usage = self._pending.get(key)
        if usage is None:
            if len(self._pending) >= self.max_companies:
                key = ("other", key[1])  # bounded memory between two flushes
                usage = self._pending.get(key)
            if usage is None:
                usage = self._pending[key] = Usage()
        return usage

    # --- storing -------------------------------------------------------------------
    async def flush(self) -> None:
        """Add what was counted since the last flush to the hourly rows; prune old ones."""
        for source in self.query_sources:
            for company_id, (calls, ms) in source().items():
                usage = self._usage(company_id)
                usage.query_calls += calls
                usage.query_ms += ms
        pending, self._pending = self._pending, {}
        for (company, _), usage in pending.items():
            total = self._totals.get(company)
            if total is None:
                if len(self._totals) >= self.max_companies:
                    company = "other"
                total = self._totals.setdefault(company, Usage())
            total.add(usage)
        if pending:
            try:
                await self._write(pending)
            except BaseException:
                for key, usage in pending.items():  # kept for the next flush, not lost
                    self._pending.setdefault(key, Usage()).add(usage)
                raise
        async with self.db.session() as session:
            cutoff = this_hour() - self.retention
            await session.execute(delete(UsageRow).where(UsageRow.hour < cutoff))

    async def close(self) -> None:
        """The last flush, at shutdown: a database that is down costs these seconds of
        figures, not the shutdown."""
        try:
            await self.flush()
        except Exception as exc:
            log.warning("usage of the last seconds not stored at shutdown: %s", exc)

    async def _write(self, pending: dict[tuple[str, datetime], Usage]) -> None:
        names = [f.name for f in fields(Usage)]
        rows = [
            {"company_id": company, "hour": hour, **{n: getattr(u, n) for n in names}}
            for (company, hour), u in sorted(pending.items())
        ]
        async with self.db.session() as session:
            insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
            statement = insert(UsageRow)
            statement = statement.on_conflict_do_update(
                index_elements=["company_id", "hour"],
                set_={n: getattr(UsageRow, n) + getattr(statement.excluded, n) for n in names},
            )
            await session.execute(statement, rows)

    # --- reading -------------------------------------------------------------------
    def totals(self) -> dict[str, Usage]:
        """This process's figures per company since it started (as of the last flush)."""
        return dict(self._totals)

    async def hours(self, company_id: str, hours: int = 24) -> list[HourUsage]:
        """The company's hourly figures, oldest first, for the last `hours` hours."""
        since = this_hour() - timedelta(hours=hours - 1)
        async with self.db.session() as session:
            rows = (
                await session.scalars(
                    select(UsageRow)
                    .where(UsageRow.company_id == company_id, UsageRow.hour >= since)
                    .order_by(UsageRow.hour)
                )
            ).all()
        return [
            HourUsage(
                _aware(row.hour),
                Usage(row.api_requests, row.jobs_run, row.job_ms, row.query_calls, row.query_ms),
            )
            for row in rows
        ]

    async def top(
        self, sort: UsageSort, *, hours: int = 24, limit: int = 50, offset: int = 0
    ) -> list[RankedCompany]:
        """Companies ranked by what they used in the last `hours` hours, largest first."""
        column = getattr(UsageRow, _SORT_COLUMNS[sort])
        since = this_hour() - timedelta(hours=hours - 1)
        total = func.sum(column).label("total")
        query = (
            select(UsageRow.company_id, total)
            .where(UsageRow.hour >= since)
            .group_by(UsageRow.company_id)
            .order_by(total.desc(), UsageRow.company_id)
            .limit(limit)
            .offset(offset)
        )
        async with self.db.session() as session:
            result = (await session.execute(query)).all()
        return [RankedCompany(company_id, float(value or 0)) for company_id, value in result]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
