"""The tenant-scoped read cache: one flight per key, invalidation per company, hit rates.

One flight per key holds across processes too: within a process, concurrent
readers of a key share one load; across processes sharing Redis, the reader that
misses first claims the key, and the others poll for its value instead of all
running the same query (a thundering herd when a hot entry expires). A claim
lasts `claim_seconds` at most, so a reader that dies mid-load holds nobody up
for longer; one whose load fails releases its claim at once.

Values are stored as JSON (never pickle: a value read back from Redis must not be
able to run code), so what a loader returns must be JSON-serialisable and every
caller — the one that loaded it and the ones that hit — gets the same JSON types.

When the backend fails (Redis stopped, a network cut) the cache steps aside: the
loader runs against the database, the caller sees its result, the failure is
counted and Redis is left alone for `retry_after` seconds instead of being hit on
every read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenantry.auth import validate_company_id
from tenantry.queries.cache_backends.base import CacheBackend, matches

log = logging.getLogger("tenantry.queries")
T = TypeVar("T")


@dataclass(slots=True)
class CompanyCacheStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


class _LeaderCancelled(Exception):
    """The caller that was loading a key was cancelled; waiters load it themselves."""


class ReadCache:
    def __init__(
        self,
        backend: CacheBackend,
        *,
        retry_after: float = 1.0,
        claim_seconds: float = 5.0,
        poll_seconds: float = 0.01,
    ) -> None:
        self.backend = backend
        self.retry_after = retry_after
        self.claim_seconds = claim_seconds
        self.poll_seconds = poll_seconds
        self.stats: dict[str, CompanyCacheStats] = {}
        self.backend_errors = 0
        self._down_until = 0.0
        self._inflight: dict[tuple[str, str], asyncio.Future[Any]] = {}

    @property
    def degraded(self) -> bool:
        return time.monotonic() < self._down_until

    def _count(self, company: str, hit: bool) -> None:
        stats = self.stats.get(company)
        if stats is None:
            stats = self.stats[company] = CompanyCacheStats()
        if hit:
            stats.hits += 1
        else:
            stats.misses += 1

    async def read(
        self, company: str, name: str, loader: Callable[[], Awaitable[Any]], ttl: float
    ) -> Any:
        validate_company_id(company)
        key = (company, name)
        while True:
            leader = self._inflight.get(key)
            if leader is None:
                break
            try:
                value = await asyncio.shield(leader)
            except _LeaderCancelled:
                continue
            self._count(company, hit=True)  # served without running the loader
            return value
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await self._lead(company, name, loader, ttl)
        except asyncio.CancelledError:
            future.set_exception(_LeaderCancelled())
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            future.set_result(value)
            return value
        finally:
            if self._inflight.get(key) is future:  # not detached by an invalidation
                del self._inflight[key]

    async def _lead(
        self, company: str, name: str, loader: Callable[[], Awaitable[Any]], ttl: float
    ) -> Any:
        cached, epoch = await self._backend_get(company, name)
        token = None
        if cached is None and epoch is not None and ttl > 0:  # the value would be shared
            cached, epoch, token = await self._claim_or_wait(company, name, epoch)
        if cached is not None:
            self._count(company, hit=True)
            return json.loads(cached)
        try:
            return await self._load(company, name, loader, ttl, epoch)
        finally:
            if token is not None:
                await self._guard(self.backend.release(company, name, token))

    async def _claim_or_wait(
        self, company: str, name: str, epoch: int | None
    ) -> tuple[bytes | None, int | None, str | None]:
        """Claim loading `name` (a token), or wait for the value its claimant stores.

        Stops waiting after `claim_seconds` (the claimant died) or when the backend
        fails; the caller then loads the value itself.
        """
        deadline = time.monotonic() + self.claim_seconds
        while True:
            token = await self._guard(self.backend.claim(company, name, self.claim_seconds))
            if token is not None:
                # The last claimant may have stored its value and released between our
                # miss and this claim: look once more before loading it again.
                cached, epoch = await self._backend_get(company, name)
                if cached is not None:
                    await self._guard(self.backend.release(company, name, token))
                    return cached, epoch, None
                return None, epoch, token
            if self.degraded or time.monotonic() > deadline:
                return None, epoch, None
            await asyncio.sleep(self.poll_seconds)
            cached, epoch = await self._backend_get(company, name)
            if cached is not None or epoch is None:
                return cached, epoch, None

    async def _load(
        self,
        company: str,
        name: str,
        loader: Callable[[], Awaitable[Any]],
        ttl: float,
        epoch: int | None,
    ) -> Any:
        self._count(company, hit=False)
        encoded = json.dumps(await loader(), separators=(",", ":")).encode()
        if epoch is not None and ttl > 0:
            await self._guard(self.backend.put(company, name, encoded, ttl, epoch))
        return json.loads(encoded)

    async def invalidate(self, company: str, names: list[str]) -> int:
        validate_company_id(company)
        # A load already running may have read the data before the write it follows: a
        # read that starts after this must run its own, not share that one's value.
        for key in [k for k in self._inflight if k[0] == company and matches(k[1], names)]:
            del self._inflight[key]
        dropped = await self._guard(self.backend.invalidate(company, names), force=True)
        return dropped or 0

    async def _backend_get(self, company: str, name: str) -> tuple[bytes | None, int | None]:
        result = await self._guard(self.backend.get(company, name))
        return (None, None) if result is None else result

    async def _guard(self, operation: Awaitable[T], force: bool = False) -> T | None:
        """Runs a backend call; a failure marks the backend down instead of reaching the caller.

        Invalidations (`force`) are always attempted: skipping one could leave a stale value.
        """
        if self.degraded and not force:
            if asyncio.iscoroutine(operation):
                operation.close()
            return None
        try:
            return await operation
        except Exception as exc:  # Redis down, timeouts, protocol errors
            self.backend_errors += 1
            if not self.degraded:
                log.warning("query cache backend %s unavailable: %s", self.backend.name, exc)
            self._down_until = time.monotonic() + self.retry_after
            return None

    def hit_rate(self, company: str | None = None) -> float | None:
        if company is not None:
            stats = self.stats.get(company)
            return stats.hit_rate if stats else None
        total = CompanyCacheStats()
        for stats in self.stats.values():
            total.hits += stats.hits
            total.misses += stats.misses
        return total.hit_rate

    def reset_stats(self) -> None:
        self.stats.clear()
