"""`GuardedStore`: every call of a wrapped store through a circuit breaker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tenantry.resilience.breaker import Breaker
from tenantry.resilience.flags import Flag
from tenantry.resilience.stores.base import AuditEntry, Change, FlagStore


class GuardedStore:
    """Every call through `breaker`; TenantryErrors (404, 409) are answers, not failures."""

    def __init__(self, inner: FlagStore, breaker: Breaker) -> None:
        self.inner = inner
        self.breaker = breaker

    async def _run(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return await self.breaker.call_async(fn, *args, **kwargs)

    async def all(self) -> list[Flag]:
        flags: list[Flag] = await self._run(self.inner.all)
        return flags

    async def get(self, key: str) -> Flag | None:
        flag: Flag | None = await self._run(self.inner.get, key)
        return flag

    async def create(self, flag: Flag, *, actor: str) -> Flag:
        created: Flag = await self._run(self.inner.create, flag, actor=actor)
        return created

    async def update(self, key: str, change: Change, *, actor: str, action: str) -> Flag:
        updated: Flag = await self._run(self.inner.update, key, change, actor=actor, action=action)
        return updated

    async def delete(self, key: str, *, actor: str) -> Flag:
        deleted: Flag = await self._run(self.inner.delete, key, actor=actor)
        return deleted

    async def audit(self, key: str, limit: int = 100) -> list[AuditEntry]:
        entries: list[AuditEntry] = await self._run(self.inner.audit, key, limit)
        return entries
