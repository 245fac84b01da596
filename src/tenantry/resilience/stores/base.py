"""The flag-store contract: `FlagStore`, its audit entries, and the errors it raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tenantry.errors import Conflict, NotFound
from tenantry.resilience.flags import Flag

Change = Callable[[Flag], Flag]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    key: str
    action: str
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class FlagStore(Protocol):
    async def all(self) -> list[Flag]:
        """Every flag, ordered by key."""
        ...

    async def get(self, key: str) -> Flag | None: ...

    async def create(self, flag: Flag, *, actor: str) -> Flag:
        """Adds `flag` (version 1) and its audit entry; `Conflict` when the key exists."""
        ...

    async def update(self, key: str, change: Change, *, actor: str, action: str) -> Flag:
        """Applies `change` to the current flag atomically; audits it unless it changed nothing.

        `NotFound` when there is no such flag.
        """
        ...

    async def delete(self, key: str, *, actor: str) -> Flag:
        """Removes the flag (its audit log stays); `NotFound` when there is none."""
        ...

    async def audit(self, key: str, limit: int = 100) -> list[AuditEntry]:
        """The newest `limit` audit entries for `key`, newest first."""
        ...


def flag_not_found(key: str) -> NotFound:
    return NotFound(f"no feature flag {key!r}", details={"key": key})


def flag_conflict(key: str) -> Conflict:
    return Conflict(f"a feature flag {key!r} already exists", details={"key": key})


def apply_change(current: Flag, change: Change) -> Flag | None:
    """The changed flag, one version on, or None when `change` altered nothing."""
    proposed = change(current)
    if proposed.same_definition(current):
        return None
    return Flag.from_dict({**proposed.to_dict(), "version": current.version + 1})
