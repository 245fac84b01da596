"""How far behind the primary each read replica is: polled in the background, cached.

Every `poll_seconds` (REPLICA_POLL_MS) the monitor asks the primary where its WAL
is written to (`pg_current_wal_lsn()`) and each replica how far it has replayed
(`pg_last_wal_replay_lsn()`), on small connection pools of its own (these are not
the application's statements, so no monitor times them). The read path decides on
these cached figures without a round trip of its own.

Lag in bytes is the primary's position less the replica's. Lag in time is how long
ago the primary first stood past what the replica has replayed: the age of the
oldest primary position (sampled at each poll where it moved) that the replica has
not reached. An idle primary therefore shows no lag, however old the replica's last
transaction; a replica whose replay is paused while writes go on shows a lag that
grows from the first write it missed. Both are exact to one poll interval and on
this process's clock, so the servers' clocks do not matter. Only a replica behind
every position the monitor has seen (it was behind before the monitor started)
falls back on `now() - pg_last_xact_replay_timestamp()`.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from dataclasses import dataclass

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_PRIMARY = text("SELECT pg_current_wal_lsn()::text")
_WRITTEN = text("SELECT pg_current_wal_insert_lsn()::text")
_REPLICA = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
    " extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000"
)


def parse_lsn(value: str) -> int:
    high, _, low = value.partition("/")
    return int(high, 16) << 32 | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(slots=True)
class ReplicaLag:
    """What the last poll (or a failed read since) says of one replica."""

    up: bool = False
    replay_lsn: int | None = None
    lag_bytes: int | None = None
    lag_ms: float | None = None
    checked_at: float = -math.inf  # monotonic time of the last poll it answered
    error: str | None = "not polled yet"

    def down(self, error: str) -> None:
        """Not used again until a poll reaches it (after a restart it may replay from
        an older restart point, so what it had replayed before no longer holds)."""
        self.up, self.replay_lsn, self.error = False, None, error


class LagMonitor:
    def __init__(
        self,
        primary_url: str,
        replica_urls: list[str],
        *,
        timeout: float = 1.0,
        history_seconds: float = 600.0,
    ) -> None:
        self.timeout = timeout
        self.history_seconds = history_seconds
        # The primary's pool also serves `written()`, once per write: room for a burst.
        self._primary = _probe_engine(primary_url, pool_size=2, max_overflow=8)
        self._replicas = [_probe_engine(url) for url in replica_urls]
        self.lags = [ReplicaLag() for _ in replica_urls]
        self._samples: list[tuple[int, float]] = []  # (primary LSN, monotonic time), rising
        self.primary_lsn: int | None = None

    async def written(self) -> int:
        """Where the primary's WAL ends now: read after a commit, it covers that commit.

        The insert position, not `pg_current_wal_lsn()` (the write position): with
        synchronous_commit off a commit returns before its WAL is written, so only the
        insert position is sure to be past it. (At an exact page boundary it points past
        the page header; a mark then waits for the next WAL record, or its expiry.)
        """
        return await self._lsn(_WRITTEN)

    async def poll(self) -> None:
        """One round: the primary's position first (a replica is measured against it),
        then every replica's at once."""
        await self._poll_primary()
        await asyncio.gather(
            *(
                self._poll(engine, lag)
                for engine, lag in zip(self._replicas, self.lags, strict=True)
            )
        )

    async def _poll_primary(self) -> None:
        try:
            lsn = await self._lsn(_PRIMARY)
        except Exception:  # the primary's own outage is /ready's to report; lags age on
            return
        self._sample(lsn, time.monotonic())

    async def _lsn(self, query: TextClause) -> int:
        async with asyncio.timeout(self.timeout), self._primary.connect() as connection:
            return parse_lsn(str(await connection.scalar(query)))

    def _sample(self, lsn: int, now: float) -> None:
        self.primary_lsn = lsn
        if not self._samples or lsn > self._samples[-1][0]:
            self._samples.append((lsn, now))
        horizon = now - self.history_seconds
        while len(self._samples) > 1 and self._samples[1][1] < horizon:
            self._samples.pop(0)  # the newest position before the horizon stays

    async def _poll(self, engine: AsyncEngine, lag: ReplicaLag) -> None:
        try:
            async with asyncio.timeout(self.timeout), engine.connect() as connection:
                result = await connection.execute(_REPLICA)
                in_recovery, replayed, since_replay_ms = result.one()
        except Exception as exc:
            lag.down(_reason(exc))
            return
        if not in_recovery or replayed is None:
            lag.down("not a standby (pg_is_in_recovery() is false)")
            return
        now = time.monotonic()
        lag.replay_lsn = parse_lsn(replayed)
        lag.lag_ms = self._lag_ms(lag.replay_lsn, now, since_replay_ms)
        lag.lag_bytes = max(0, (self.primary_lsn or 0) - lag.replay_lsn)
        lag.up, lag.error, lag.checked_at = True, None, now

    def _lag_ms(self, replayed: int, now: float, since_replay_ms: float | None) -> float:
        first_missed = bisect.bisect_right(self._samples, replayed, key=lambda s: s[0])
        if first_missed == len(self._samples):
            return 0.0  # it has replayed everything the primary had written when sampled
        lag = (now - self._samples[first_missed][1]) * 1000
        if first_missed == 0 and since_replay_ms is not None:
            lag = max(lag, float(since_replay_ms))  # behind all this process has seen
        return round(lag, 1)

    async def dispose(self) -> None:
        for engine in (self._primary, *self._replicas):
            await engine.dispose()


def _reason(exc: Exception) -> str:
    first_line = next(iter(str(exc).splitlines()), "")
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def _probe_engine(url: str, pool_size: int = 1, max_overflow: int = 0) -> AsyncEngine:
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=max_overflow, isolation_level="AUTOCOMMIT"
    )
