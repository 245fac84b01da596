"""`MemoryFlagStore`: flags in a dict, for tests and embedded use."""

from __future__ import annotations

import asyncio

from tenantry.db import utcnow
from tenantry.resilience.flags import Flag
from tenantry.resilience.stores.base import (
    AuditEntry,
    Change,
    apply_change,
    flag_conflict,
    flag_not_found,
)


class MemoryFlagStore:
    """Flags in a dict. A lock makes each change atomic like a transaction."""

    def __init__(self) -> None:
        self._flags: dict[str, Flag] = {}
        self._audit: list[AuditEntry] = []
        self._lock = asyncio.Lock()

    async def all(self) -> list[Flag]:
        return [self._flags[key] for key in sorted(self._flags)]

    async def get(self, key: str) -> Flag | None:
        return self._flags.get(key)

    async def create(self, flag: Flag, *, actor: str) -> Flag:
        async with self._lock:
            if flag.key in self._flags:
                raise flag_conflict(flag.key)
            created = Flag.from_dict({**flag.to_dict(), "version": 1})
            self._flags[flag.key] = created
            self._log(flag.key, "create", actor, None, created)
            return created

    async def update(self, key: str, change: Change, *, actor: str, action: str) -> Flag:
        async with self._lock:
            current = self._flags.get(key)
            if current is None:
                raise flag_not_found(key)
            updated = apply_change(current, change)
            if updated is None:
                return current
            self._flags[key] = updated
            self._log(key, action, actor, current, updated)
            return updated

    async def delete(self, key: str, *, actor: str) -> Flag:
        async with self._lock:
            current = self._flags.pop(key, None)
            if current is None:
                raise flag_not_found(key)
            self._log(key, "delete", actor, current, None)
            return current

    async def audit(self, key: str, limit: int = 100) -> list[AuditEntry]:
        entries = [entry for entry in reversed(self._audit) if entry.key == key]
        return entries[:limit]

    def _log(
        self, key: str, action: str, actor: str, before: Flag | None, after: Flag | None
    ) -> None:
        self._audit.append(
            AuditEntry(
                id=len(self._audit) + 1,
                key=key,
                action=action,
                actor=actor,
                at=utcnow(),
                before=before.to_dict() if before else None,
                after=after.to_dict() if after else None,
            )
        )
