"""Where flags are kept: one small interface, two engines, and stacked decorators.

`FlagStore` is the contract (tests/resilience/test_flag_store_contract.py runs the
same suite against every implementation and stack). The engines:

- `DatabaseFlagStore` — the flag and audit tables, one transaction per change;
- `MemoryFlagStore` — a dict, for tests and embedded use.

Behaviour is added by wrapping, as Flipper does, rather than by growing one class:

- `GuardedStore` — every call through a circuit breaker (the `database` one), so an
  outage fails fast instead of hanging each request;
- `FailsafeStore` — a failed read answers the last good read; a failed write raises
  `ServiceUnavailable` (a change is never dropped silently);
- `MemoizedStore` — reads come from an in-memory copy, refreshed on demand (a Redis
  message, a timer); listeners hear every new copy.

The running service uses Memoized(Failsafe(Guarded(Database))).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.db import Database, utcnow
from tenantry.errors import Conflict, NotFound, ServiceUnavailable, TenantryError
from tenantry.resilience.breaker import Breaker
from tenantry.resilience.flags import Flag, Target, Variant
from tenantry.resilience.models import FlagAuditRow, FlagRow

log = logging.getLogger("tenantry.resilience")

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


def _conflict(key: str) -> Conflict:
    return Conflict(f"a feature flag {key!r} already exists", details={"key": key})


def _apply(current: Flag, change: Change) -> Flag | None:
    """The changed flag, one version on, or None when `change` altered nothing."""
    proposed = change(current)
    if proposed.same_definition(current):
        return None
    return Flag.from_dict({**proposed.to_dict(), "version": current.version + 1})


# --- engines -------------------------------------------------------------------
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
                raise _conflict(flag.key)
            created = Flag.from_dict({**flag.to_dict(), "version": 1})
            self._flags[flag.key] = created
            self._log(flag.key, "create", actor, None, created)
            return created

    async def update(self, key: str, change: Change, *, actor: str, action: str) -> Flag:
        async with self._lock:
            current = self._flags.get(key)
            if current is None:
                raise flag_not_found(key)
            updated = _apply(current, change)
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


def _flag_of(row: FlagRow) -> Flag:
    return Flag(
        key=row.key,
        description=row.description,
        enabled=row.enabled,
        target=Target(row.target),
        rollout=row.rollout,
        allow=frozenset(row.allow),
        block=frozenset(row.block),
        variants=tuple(
            Variant(v["name"], int(v["weight"]), v.get("payload")) for v in row.variants
        ),
        version=row.version,
    )


def _write(row: FlagRow, flag: Flag) -> None:
    data = flag.to_dict()
    row.description = flag.description
    row.enabled = flag.enabled
    row.target = flag.target.value
    row.rollout = flag.rollout
    row.allow = data["allow"]
    row.block = data["block"]
    row.variants = data["variants"]
    row.version = flag.version
    row.updated_at = utcnow()


class DatabaseFlagStore:
    """Flags in `tenantry_feature_flags`, changes in `tenantry_feature_flag_audit`.

    A change and its audit entry commit in one transaction; the flag row is locked
    (SELECT ... FOR UPDATE on PostgreSQL) so concurrent changes do not overwrite each other.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def all(self) -> list[Flag]:
        async with self._db.session() as session:
            rows = (await session.scalars(select(FlagRow).order_by(FlagRow.key))).all()
            return [_flag_of(row) for row in rows]

    async def get(self, key: str) -> Flag | None:
        async with self._db.session() as session:
            row = await session.get(FlagRow, key)
            return _flag_of(row) if row is not None else None

    async def create(self, flag: Flag, *, actor: str) -> Flag:
        created = Flag.from_dict({**flag.to_dict(), "version": 1})
        try:
            async with self._db.session() as session:
                if await session.get(FlagRow, flag.key) is not None:
                    raise _conflict(flag.key)
                row = FlagRow(key=flag.key, created_at=utcnow())
                _write(row, created)
                session.add(row)
                await session.flush()  # a concurrent insert of the same key fails here
                session.add(self._audit_row(flag.key, "create", actor, None, created))
        except IntegrityError:
            raise _conflict(flag.key) from None
        return created

    async def update(self, key: str, change: Change, *, actor: str, action: str) -> Flag:
        async with self._db.session() as session:
            await self._lock_for_write(session, key)
            row = await session.get(FlagRow, key, with_for_update=True)
            if row is None:
                raise flag_not_found(key)
            current = _flag_of(row)
            updated = _apply(current, change)
            if updated is None:
                return current
            _write(row, updated)
            session.add(self._audit_row(key, action, actor, current, updated))
            return updated

    async def delete(self, key: str, *, actor: str) -> Flag:
        async with self._db.session() as session:
            await self._lock_for_write(session, key)
            row = await session.get(FlagRow, key, with_for_update=True)
            if row is None:
                raise flag_not_found(key)
            current = _flag_of(row)
            await session.delete(row)
            session.add(self._audit_row(key, "delete", actor, current, None))
            return current

    async def audit(self, key: str, limit: int = 100) -> list[AuditEntry]:
        query = (
            select(FlagAuditRow)
            .where(FlagAuditRow.flag_key == key)
            .order_by(FlagAuditRow.id.desc())
            .limit(limit)
        )
        async with self._db.session() as session:
            rows = (await session.scalars(query)).all()
            return [
                AuditEntry(r.id, r.flag_key, r.action, r.actor, r.at, r.before, r.after)
                for r in rows
            ]

    async def _lock_for_write(self, session: AsyncSession, key: str) -> None:
        """SQLite ignores FOR UPDATE and its driver reads outside the transaction until the
        first write; a no-op write first takes SQLite's write lock, so read-modify-write is
        atomic across connections and processes (PostgreSQL locks the row instead)."""
        if self._db.dialect == "sqlite":
            await session.execute(
                update(FlagRow).where(FlagRow.key == key).values(version=FlagRow.version)
            )

    @staticmethod
    def _audit_row(
        key: str, action: str, actor: str, before: Flag | None, after: Flag | None
    ) -> FlagAuditRow:
        return FlagAuditRow(
            flag_key=key,
            action=action,
            actor=actor,
            at=utcnow(),
            before=before.to_dict() if before else None,
            after=after.to_dict() if after else None,
        )


# --- decorators ----------------------------------------------------------------
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


class FailsafeStore:
    """Reads survive an outage with the last good answer; writes fail loudly (503).

    The last good answer follows every successful read and write through this store,
    so an outage never brings back a flag as it was before a change.
    """

    def __init__(self, inner: FlagStore) -> None:
        self.inner = inner
        self._last: dict[str, Flag] | None = None
        self.degraded = False

    async def all(self) -> list[Flag]:
        try:
            flags = await self.inner.all()
        except TenantryError:
            raise
        except Exception as exc:
            last = self._fallback(exc)
            return [last[key] for key in sorted(last)]
        self._last, self.degraded = {flag.key: flag for flag in flags}, False
        return flags

    async def get(self, key: str) -> Flag | None:
        try:
            flag = await self.inner.get(key)
        except TenantryError:
            raise
        except Exception as exc:
            return self._fallback(exc).get(key)
        self._remember(key, flag)
        return flag

    async def create(self, flag: Flag, *, actor: str) -> Flag:
        created = await self._write(self.inner.create(flag, actor=actor))
        self._remember(created.key, created)
        return created

    async def update(self, key: str, change: Change, *, actor: str, action: str) -> Flag:
        updated = await self._write(self.inner.update(key, change, actor=actor, action=action))
        self._remember(key, updated)
        return updated

    async def delete(self, key: str, *, actor: str) -> Flag:
        deleted = await self._write(self.inner.delete(key, actor=actor))
        self._remember(key, None)
        return deleted

    async def audit(self, key: str, limit: int = 100) -> list[AuditEntry]:
        try:
            return await self.inner.audit(key, limit)
        except TenantryError:
            raise
        except Exception as exc:
            raise _unavailable(exc) from exc

    async def _write(self, operation: Awaitable[Flag]) -> Flag:
        try:
            return await operation
        except TenantryError:
            raise
        except Exception as exc:
            raise _unavailable(exc, "the change was not saved") from exc

    def _remember(self, key: str, flag: Flag | None) -> None:
        if self._last is None:
            return
        if flag is None:
            self._last.pop(key, None)
        else:
            self._last[key] = flag

    def _fallback(self, exc: Exception) -> dict[str, Flag]:
        if self._last is None:
            raise _unavailable(exc) from exc
        if not self.degraded:
            log.warning("flag store unreachable (%s); answering from the last snapshot", exc)
        self.degraded = True
        return self._last


def _unavailable(exc: Exception, consequence: str = "") -> ServiceUnavailable:
    message = "the feature-flag store is unavailable"
    if consequence:
        message += f"; {consequence}"
    return ServiceUnavailable(
        message, details={"cause": type(exc).__name__}, headers={"Retry-After": "5"}
    )


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
