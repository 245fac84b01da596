"""Read replicas: reads spread round-robin over those fit to answer, else the primary.

A replica is fit to answer a company's read when the lag monitor reached it lately
(within `stale_after`), its lag is at most `max_lag_ms`, and it has replayed that
company's last write (`WriteMarks`): so a company reads its own writes, whichever
process wrote them, even while replication lags. All of it is decided on cached
figures; the read path's only added call is the mark's lookup (a Redis GET, when
Redis holds the marks), made only when some replica is fit at all.

A replica that fails to connect is left alone until the monitor reaches it again and
the next one (finally the primary) answers instead; so does a read the replica
cancelled for a conflict with recovery. An error raised by the read itself (bad SQL,
a constraint) is the caller's and is not retried. Writes never come here.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantry.db import Database
from tenantry.queries.monitor import QueryMonitor
from tenantry.queries.replica_lag import LagMonitor, ReplicaLag, format_lsn
from tenantry.queries.results import ReplicaHealth
from tenantry.queries.write_marks import LSN_MAX, WriteMarks

log = logging.getLogger("tenantry.queries")
T = TypeVar("T")
# The gate: is reading from replicas on for this company? (a setting, or a feature flag)
ReplicaGate = Callable[[str | None], Awaitable[bool]]
_RECOVERY_CONFLICT = "40001"  # on a standby, only replay cancels a read with it


def _hide_password(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{tail}"


class Replica:
    def __init__(self, url: str, lag: ReplicaLag) -> None:
        self.db = Database(url)
        self.label = _hide_password(url)
        self.lag = lag  # kept up to date by the lag monitor
        self.reads = 0
        self.failures = 0
        self.skipped_for_lag = 0  # reads it was up for, but too far behind
        self.behind_writes = 0  # reads it was fit for, but had not replayed the company's write


class ReplicaRouter:
    def __init__(
        self,
        primary: Database,
        replica_urls: list[str],
        gate: ReplicaGate,
        marks: WriteMarks,
        *,
        monitor: QueryMonitor | None = None,
        max_lag_ms: float = 1000.0,
        poll_seconds: float = 0.2,
    ) -> None:
        self.primary = primary
        self.gate = gate
        self.marks = marks
        self.max_lag_ms = max_lag_ms
        self.poll_seconds = poll_seconds
        # Figures older than this (the monitor stalled) say nothing about now.
        self.stale_after = max(1.0, 5 * poll_seconds)
        self.lag = LagMonitor(primary.url, replica_urls) if replica_urls else None
        lags = self.lag.lags if self.lag is not None else []
        self.replicas = [Replica(url, lag) for url, lag in zip(replica_urls, lags, strict=True)]
        self.primary_reads = 0
        self._next = itertools.count()
        if monitor is not None:
            for replica in self.replicas:
                monitor.attach(replica.db.engine)

    async def poll(self) -> None:
        if self.lag is not None:
            await self.lag.poll()

    async def wrote(self, company: str) -> None:
        """After a write for `company` committed: its next reads go only to a replica that
        has replayed it. If the position cannot be read, they go to the primary."""
        if self.lag is None:
            return
        try:
            lsn = await self.lag.written()
        except Exception as exc:
            log.warning("could not read the primary's WAL position: %s", exc)
            lsn = LSN_MAX
        await self.marks.note(company, lsn)

    async def read(self, company: str | None, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        if self.replicas and await self.gate(company):
            for replica in await self._fit(company):
                ok, value = await self._try(replica, fn)
                if ok:
                    return value  # type: ignore[return-value]
        self.primary_reads += 1
        return await _run(self.primary.sessions, fn)

    async def _fit(self, company: str | None) -> list[Replica]:
        """The replicas fit to answer `company` now, in round-robin order."""
        now = time.monotonic()
        start = next(self._next)
        fit = []
        for offset in range(len(self.replicas)):
            replica = self.replicas[(start + offset) % len(self.replicas)]
            lag = replica.lag
            if not lag.up or now - lag.checked_at > self.stale_after or lag.lag_ms is None:
                continue
            if lag.lag_ms > self.max_lag_ms:
                replica.skipped_for_lag += 1
                continue
            fit.append(replica)
        mark = await self.marks.last(company) if fit and company is not None else None
        if mark is None:
            return fit
        caught_up = []
        for replica in fit:
            if (replica.lag.replay_lsn or 0) >= mark:
                caught_up.append(replica)
            else:
                replica.behind_writes += 1
        return caught_up

    async def _try(
        self, replica: Replica, fn: Callable[[AsyncSession], Awaitable[T]]
    ) -> tuple[bool, T | None]:
        try:
            value = await _run(replica.db.sessions, fn)
        except DBAPIError as exc:
            if _replica_is_down(exc):
                replica.failures += 1
                replica.lag.down(f"read failed: {exc.orig}")
                log.warning("read replica %s unavailable: %s", replica.label, exc.orig)
                return False, None
            if getattr(exc.orig, "sqlstate", None) == _RECOVERY_CONFLICT:
                return False, None  # replay cancelled it; the primary has no such conflict
            raise  # the read's own error (bad SQL, a timeout), not the replica's
        replica.reads += 1
        return True, value

    def health(self) -> list[ReplicaHealth]:
        now = time.monotonic()
        return [_health(r, now, self.stale_after, self.max_lag_ms) for r in self.replicas]

    async def dispose(self) -> None:
        for replica in self.replicas:
            await replica.db.dispose()
        if self.lag is not None:
            await self.lag.dispose()


def _health(replica: Replica, now: float, stale_after: float, max_lag_ms: float) -> ReplicaHealth:
    lag = replica.lag
    if not lag.up:
        state = "down"
    elif now - lag.checked_at > stale_after:
        state = "unknown"  # the monitor has not reached it lately
    elif lag.lag_ms is not None and lag.lag_ms > max_lag_ms:
        state = "lagging"
    else:
        state = "up"
    return ReplicaHealth(
        url=replica.label,
        state=state,
        up=state in ("up", "lagging"),
        lag_ms=lag.lag_ms if lag.up else None,
        lag_bytes=lag.lag_bytes if lag.up else None,
        replay_lsn=format_lsn(lag.replay_lsn) if lag.replay_lsn is not None else None,
        reads=replica.reads,
        failures=replica.failures,
        skipped_for_lag=replica.skipped_for_lag,
        behind_writes=replica.behind_writes,
        error=lag.error,
    )


def _replica_is_down(exc: DBAPIError) -> bool:
    """Connection failures (no SQLSTATE, class 08, 57P0x shutdowns), not query errors."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


async def _run(
    sessions: async_sessionmaker[AsyncSession], fn: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    async with sessions() as session:
        try:
            return await fn(session)
        finally:
            await session.rollback()  # a read leaves nothing behind
