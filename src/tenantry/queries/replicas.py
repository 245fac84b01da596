"""Read replicas: reads spread round-robin over them, the primary when they are down.

A replica that fails to connect is left alone for `retry_after` seconds and the
next one (finally the primary) answers instead; an error raised by the read itself
(bad SQL, a constraint) is the caller's and is not retried. Writes never come here.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantry.db import Database
from tenantry.queries.monitor import QueryMonitor

log = logging.getLogger("tenantry.queries")
T = TypeVar("T")
# The gate: is reading from replicas on for this company? (a setting, or a feature flag)
ReplicaGate = Callable[[str | None], Awaitable[bool]]


def _hide_password(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{tail}"


class Replica:
    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.label = _hide_password(url)
        self.down_until = 0.0
        self.reads = 0
        self.failures = 0

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.down_until


class ReplicaRouter:
    def __init__(
        self,
        primary: Database,
        replica_urls: list[str],
        gate: ReplicaGate,
        *,
        monitor: QueryMonitor | None = None,
        retry_after: float = 5.0,
    ) -> None:
        self.primary = primary
        self.gate = gate
        self.retry_after = retry_after
        self.replicas = [Replica(url) for url in replica_urls]
        self.primary_reads = 0
        self._next = itertools.count()
        if monitor is not None:
            for replica in self.replicas:
                monitor.attach(replica.db.engine)

    async def read(self, company: str | None, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        if self.replicas and await self.gate(company):
            start = next(self._next)
            for offset in range(len(self.replicas)):
                replica = self.replicas[(start + offset) % len(self.replicas)]
                if not replica.up:
                    continue
                ok, value = await self._try(replica, fn)
                if ok:
                    return value  # type: ignore[return-value]
        self.primary_reads += 1
        return await _run(self.primary.sessions, fn)

    async def _try(
        self, replica: Replica, fn: Callable[[AsyncSession], Awaitable[T]]
    ) -> tuple[bool, T | None]:
        try:
            value = await _run(replica.db.sessions, fn)
        except DBAPIError as exc:
            if not _replica_is_down(exc):
                raise  # the read's own error (bad SQL, a timeout), not the replica's
            replica.failures += 1
            replica.down_until = time.monotonic() + self.retry_after
            log.warning("read replica %s unavailable: %s", replica.label, exc.orig)
            return False, None
        replica.reads += 1
        return True, value

    def status(self) -> list[dict[str, Any]]:
        return [
            {"url": r.label, "up": r.up, "reads": r.reads, "failures": r.failures}
            for r in self.replicas
        ]

    async def dispose(self) -> None:
        for replica in self.replicas:
            await replica.db.dispose()


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
