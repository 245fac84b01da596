"""`MemoizedStore`: reads from an in-memory copy of every flag; listeners hear each copy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tenantry.errors import NotFound
from tenantry.resilience.flags import Flag
from tenantry.resilience.stores.base import AuditEntry, Change, FlagStore

SnapshotListener = Callable[[list[Flag]], None]


class MemoizedStore:
    """An in-memory copy of every flag; `refresh()` reloads it from the wrapped store."""

    def __init__(self, inner: FlagStore) -> None:
        self.inner = inner
        self._flags: dict[str, Flag] = {}
        self._listeners: list[SnapshotListener] = []
        self._refresh_lock = asyncio.Lock()

    def add_listener(self, listener: SnapshotListener) -> None:
        self._listeners.append(listener)

    async def refresh(self) -> list[Flag]:
        async with self._refresh_lock:
            flags = await self.inner.all()
            self._replace({flag.key: flag for flag in flags})
            return flags

    async def all(self) -> list[Flag]:
        return [self._flags[key] for key in sorted(self._flags)]

    async def get(self, key: str) -> Flag | None:
        return self._flags.get(key)

    async def create(self, flag: Flag, *, actor: str) -> Flag:
        created = await self.inner.create(flag, actor=actor)
        self._replace({**self._flags, created.key: created})
        return created

    async def update(self, key: str, change: Change, *, actor: str, action: str) -> Flag:
        try:
            updated = await self.inner.update(key, change, actor=actor, action=action)
        except NotFound:
            self._forget(key)
            raise
        self._replace({**self._flags, key: updated})
        return updated

    async def delete(self, key: str, *, actor: str) -> Flag:
        try:
            deleted = await self.inner.delete(key, actor=actor)
        except NotFound:
            self._forget(key)
            raise
        self._forget(key)
        return deleted

    async def audit(self, key: str, limit: int = 100) -> list[AuditEntry]:
        return await self.inner.audit(key, limit)

    def _forget(self, key: str) -> None:
        if key in self._flags:
            self._replace({k: v for k, v in self._flags.items() if k != key})

    def _replace(self, flags: dict[str, Flag]) -> None:
        self._flags = flags  # one reference swap: readers never see a half-built dict
        ordered = [flags[key] for key in sorted(flags)]
        for listener in self._listeners:
            listener(ordered)
