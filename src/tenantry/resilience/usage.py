"""Flag usage: how often each flag was evaluated, yes and no, per hour, over every process.

Counting is per process and nearly free: `EvaluationCounts.wrap` puts each compiled
check of the snapshot inside a wrapper that adds one to a `[no, yes]` list in its
closure (an on/off flag's wrapper replaces the constant check altogether, so it costs
one list increment, no extra call). `FlagService` installs the wrapped checks, and its
`evaluate` counts through `EvaluationCounts.count`. Nothing on that path takes a lock,
reads the clock or does I/O.

`FlagUsage.flush()` (every TENANTRY_FLAG_USAGE_FLUSH_SECONDS, and at shutdown) takes
what was counted since the last flush (subtracting what it read, so a count made while
it reads is kept for the next one), files it under the current hour, and adds it to
one row per flag per hour (`tenantry_flag_usage_hourly`) with an additive upsert, so
every process adds to the same figures. The same write moves each counted flag's
last-evaluated time forward (`tenantry_flag_usage_last`: the time of the flush that
stored its counts, so it is at most one flush interval late). A failed write keeps
what it did not store for the next flush: nothing is lost while the database is down,
and memory stays bounded (one entry per flag per hour, never older than the retention
period, at most `max_pending`). Hours older than TENANTRY_FLAG_USAGE_RETENTION_DAYS
are pruned (once an hour).

The stored figures are what every process had flushed; this process's last seconds
are not in them until its next flush. Under threads an increment may race another and
be lost (`+= 1` is not atomic): the figures are usage statistics, not billing.

`FlagUsageRecords` is the SQL, one method per statement group, so the wiring puts it
behind the `database` circuit like every other database write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, DateTime, String, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db import Base, Database
from tenantry.errors import InvalidInput, ServiceUnavailable
from tenantry.resilience.flags import Check, Flag, _off, _on
from tenantry.resilience.models import FlagAuditRow
from tenantry.resilience.stale import StaleReport, stale_report

log = logging.getLogger("tenantry.resilience")
# The row that says since when usage has been recorded (flag keys never start with '#').
RECORDING_KEY = "#recording"
Clock = Callable[[], datetime]


class FlagUsageRow(Base):
    """How often one flag was evaluated in one hour, summed over every process."""

    __tablename__ = "tenantry_flag_usage_hourly"

    flag_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True, index=True)
    yes: Mapped[int] = mapped_column(BigInteger, default=0)
    no: Mapped[int] = mapped_column(BigInteger, default=0)


class FlagLastEvaluatedRow(Base):
    """When a flag was first and last evaluated (as of the flushes that stored it)."""

    __tablename__ = "tenantry_flag_usage_last"

    flag_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def this_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def not_recorded() -> ServiceUnavailable:
    return ServiceUnavailable(
        "flag usage is not recorded by this process", code="FLAG_USAGE_NOT_RECORDED"
    )


def _hour_of(slot: tuple[str, datetime]) -> datetime:
    return slot[1]


# --- counting (the hot path) ---------------------------------------------------------
def counted(check: Check, counts: list[int]) -> Check:
    """`check`, adding one to counts[1] for each yes and to counts[0] for each no."""
    if check is _on:

        def on(_target_id: str | None) -> bool:
            counts[1] += 1
            return True

        return on
    if check is _off:

        def off(_target_id: str | None) -> bool:
            counts[0] += 1
            return False

        return off

    def counted_check(target_id: str | None) -> bool:
        if check(target_id):
            counts[1] += 1  # a branch, not counts[result]: a bool index is the slow path
            return True
        counts[0] += 1
        return False

    return counted_check


class EvaluationCounts:
    """This process's evaluations per flag since the last drain: one [no, yes] per flag."""

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}
        self._active: frozenset[str] = frozenset()

    def wrap(self, checks: Mapping[str, Check]) -> dict[str, Check]:
        """`checks` counted; a flag keeps its counter across snapshots."""
        self._active = frozenset(checks)
        return {key: counted(check, self._counter(key)) for key, check in checks.items()}

    def count(self, key: str, enabled: bool) -> None:
        """One evaluation of `key` (a flag not in the snapshot is not counted)."""
        counts = self._counts.get(key)
        if counts is not None:
            counts[1 if enabled else 0] += 1

    def drain(self) -> dict[str, tuple[int, int]]:
        """(yes, no) per flag evaluated since the last drain, and zero again.

        What was read is subtracted, not overwritten: an evaluation counted meanwhile
        (from another thread) stays for the next drain. A flag no longer in the
        snapshot loses its counter once drained.
        """
        drained: dict[str, tuple[int, int]] = {}
        for key, counts in list(self._counts.items()):
            no, yes = counts[0], counts[1]
            if yes or no:
                counts[0] -= no
                counts[1] -= yes
                drained[key] = (yes, no)
            if key not in self._active and not (counts[0] or counts[1]):
                del self._counts[key]
        return drained

    def peek(self) -> dict[str, tuple[int, int]]:
        """(yes, no) per flag counted and not drained yet."""
        return {key: (c[1], c[0]) for key, c in self._counts.items() if c[0] or c[1]}

    def _counter(self, key: str) -> list[int]:
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0, 0]
        return counts


# --- what is read back -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HourCount:
    hour: datetime
    yes: int
    no: int


@dataclass(frozen=True, slots=True)
class FlagUsageReport:
    """One flag's evaluations, hour by hour (oldest first, every hour, zeros included)."""

    key: str
    hours: tuple[HourCount, ...]
    first_evaluated: datetime | None
    last_evaluated: datetime | None

    @property
    def yes(self) -> int:
        return sum(hour.yes for hour in self.hours)

    @property
    def no(self) -> int:
        return sum(hour.no for hour in self.hours)


# --- the SQL (guarded by the `database` circuit in the wiring) -------------------------
class FlagUsageRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        counts: Mapping[tuple[str, datetime], tuple[int, int]],
        last: Mapping[str, datetime],
    ) -> None:
        """Add (yes, no) per (flag, hour); move each flag's first/last time out to `last`'s."""
        insert = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
        greatest = func.greatest if self._db.dialect == "postgresql" else func.max
        least = func.least if self._db.dialect == "postgresql" else func.min
        async with self._db.session() as session:
            if counts:
                rows = [
                    {"flag_key": key, "hour": hour, "yes": yes, "no": no}
                    for (key, hour), (yes, no) in sorted(counts.items())
                ]  # sorted: two processes lock the rows in the same order
                statement = insert(FlagUsageRow)
                statement = statement.on_conflict_do_update(
                    index_elements=["flag_key", "hour"],
                    set_={
                        "yes": FlagUsageRow.yes + statement.excluded.yes,
                        "no": FlagUsageRow.no + statement.excluded.no,
                    },
                )
                await session.execute(statement, rows)
            if last:
                times = [
                    {"flag_key": key, "first_at": at, "last_at": at}
                    for key, at in sorted(last.items())
                ]
                upsert = insert(FlagLastEvaluatedRow)
                upsert = upsert.on_conflict_do_update(
                    index_elements=["flag_key"],
                    set_={
                        "first_at": least(FlagLastEvaluatedRow.first_at, upsert.excluded.first_at),
                        "last_at": greatest(FlagLastEvaluatedRow.last_at, upsert.excluded.last_at),
                    },
                )
                await session.execute(upsert, times)

    async def prune(self, before: datetime) -> int:
        """Remove the hours before `before`; how many rows went."""
        async with self._db.session() as session:
            result = await session.execute(delete(FlagUsageRow).where(FlagUsageRow.hour < before))
            return int(getattr(result, "rowcount", 0) or 0)

    async def hours(self, key: str, since: datetime) -> list[HourCount]:
        query = (
            select(FlagUsageRow)
            .where(FlagUsageRow.flag_key == key, FlagUsageRow.hour >= since)
            .order_by(FlagUsageRow.hour)
        )
        async with self._db.session() as session:
            rows = (await session.scalars(query)).all()
        return [HourCount(_aware(row.hour), row.yes, row.no) for row in rows]

    async def totals(self, since: datetime) -> dict[str, tuple[int, int]]:
        """(yes, no) per flag over the hours from `since`."""
        query = (
            select(FlagUsageRow.flag_key, func.sum(FlagUsageRow.yes), func.sum(FlagUsageRow.no))
            .where(FlagUsageRow.hour >= since)
            .group_by(FlagUsageRow.flag_key)
        )
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
        return {key: (int(yes or 0), int(no or 0)) for key, yes, no in rows}

    async def evaluated(self) -> dict[str, tuple[datetime, datetime]]:
        """(first, last) evaluation time per flag, and RECORDING_KEY's: since when."""
        async with self._db.session() as session:
            rows = (await session.scalars(select(FlagLastEvaluatedRow))).all()
        return {row.flag_key: (_aware(row.first_at), _aware(row.last_at)) for row in rows}

    async def last_changes(self) -> dict[str, datetime]:
        """Each flag's last change, from the flag store's audit log (the same database)."""
        query = select(FlagAuditRow.flag_key, func.max(FlagAuditRow.at)).group_by(
            FlagAuditRow.flag_key
        )
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
        return {key: _aware(at) for key, at in rows if at is not None}


# --- the recorder ----------------------------------------------------------------------
class FlagUsage:
    """Flushes `counts` to `records` and reads the shared figures back."""

    def __init__(
        self,
        records: FlagUsageRecords,
        counts: EvaluationCounts,
        *,
        retention_days: int = 30,
        stale_days: int = 30,
        max_pending: int = 100_000,
        clock: Clock = _now,
    ) -> None:
        self.records = records
        self.counts = counts
        self.retention = timedelta(days=retention_days)
        self.stale_days = stale_days
        self.max_pending = max_pending
        self.clock = clock
        self.dropped = 0  # evaluations given up on: older than retention, or over max_pending
        self._pending: dict[tuple[str, datetime], tuple[int, int]] = {}
        self._last: dict[str, datetime] = {}
        self._recording_noted = False
        self._pruned_hour: datetime | None = None

    # --- storing ---------------------------------------------------------------------
    async def flush(self) -> None:
        """Add what was counted since the last flush to the shared hourly figures.

        On failure what was not stored stays for the next flush, and the error is raised.
        """
        now = self.clock()
        hour = this_hour(now)
        for key, (yes, no) in self.counts.drain().items():
            pending_yes, pending_no = self._pending.get((key, hour), (0, 0))
            self._pending[key, hour] = (pending_yes + yes, pending_no + no)
            self._last[key] = now
        cutoff = hour - self.retention
        self._bound(cutoff)
        if not self._recording_noted:
            self._last.setdefault(RECORDING_KEY, now)
        pending, last = self._pending, self._last
        self._pending, self._last = {}, {}
        if pending or last:
            try:
                await self.records.add(pending, last)
            except BaseException:
                self._keep(pending, last)
                raise
            if RECORDING_KEY in last:
                self._recording_noted = True
        if self._pruned_hour != hour:
            await self.records.prune(cutoff)
            self._pruned_hour = hour

    async def close(self) -> None:
        """The last flush, at shutdown: a database that is down costs these seconds of
        figures, not the shutdown."""
        try:
            await self.flush()
        except Exception as exc:
            log.warning("flag usage of the last seconds not stored at shutdown: %s", exc)

    def _keep(
        self,
        pending: Mapping[tuple[str, datetime], tuple[int, int]],
        last: Mapping[str, datetime],
    ) -> None:
        for slot, (yes, no) in pending.items():
            now_yes, now_no = self._pending.get(slot, (0, 0))
            self._pending[slot] = (now_yes + yes, now_no + no)
        for key, at in last.items():
            current = self._last.get(key)
            self._last[key] = at if current is None else max(current, at)

    def _bound(self, cutoff: datetime) -> None:
        """No pending hour older than the retention period (it would be pruned at once),
        and at most `max_pending` (flag, hour) entries: the oldest go first."""
        old = {slot for slot in self._pending if slot[1] < cutoff}
        excess = len(self._pending) - len(old) - self.max_pending
        if excess > 0:
            young = sorted((slot for slot in self._pending if slot not in old), key=_hour_of)
            old.update(young[:excess])
        if not old:
            return
        lost = 0
        for slot in old:
            yes, no = self._pending.pop(slot)
            lost += yes + no
        self.dropped += lost
        log.warning(
            "flag usage: %d evaluations not stored (the database has been unavailable "
            "too long to keep them)",
            lost,
        )

    @property
    def pending(self) -> dict[tuple[str, datetime], tuple[int, int]]:
        """What failed flushes left for the next one: (yes, no) per (flag, hour)."""
        return dict(self._pending)

    # --- reading ---------------------------------------------------------------------
    async def report(self, key: str, hours: int = 24) -> FlagUsageReport:
        """`key`'s last `hours` hours, the current one included."""
        if hours < 1:
            raise InvalidInput("hours: at least 1", details={"field": "hours"})
        current = this_hour(self.clock())
        since = current - timedelta(hours=hours - 1)
        stored = {row.hour: row for row in await self.records.hours(key, since)}
        filled = tuple(
            stored.get(moment) or HourCount(moment, 0, 0)
            for moment in (since + timedelta(hours=n) for n in range(hours))
        )
        first, last = (await self.records.evaluated()).get(key, (None, None))
        return FlagUsageReport(key, filled, first, last)

    async def stale(self, flags: Iterable[Flag], days: int | None = None) -> StaleReport:
        """The stale-flag report over `flags` (see `tenantry.resilience.stale`)."""
        days = self.stale_days if days is None else days
        if days < 1:
            raise InvalidInput("days: at least 1", details={"field": "days"})
        now = self.clock()
        evaluated = await self.records.evaluated()
        recording = evaluated.pop(RECORDING_KEY, None)
        return stale_report(
            flags,
            last_changes=await self.records.last_changes(),
            last_evaluated={key: last for key, (_first, last) in evaluated.items()},
            totals=await self.records.totals(this_hour(now - timedelta(days=days))),
            recording_since=recording[0] if recording else None,
            days=days,
            now=now,
        )
