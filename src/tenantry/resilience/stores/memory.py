"""`MemoryFlagStore`: flags in a dict, for tests and embedded use."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tenantry.db import utcnow
from tenantry.resilience.flags import Flag, Segment
from tenantry.resilience.stores.base import (
    AuditEntry,
    Change,
    apply_change,
    flag_conflict,
    flag_not_found,
    replaced,
    segment_key,
    segment_not_found,
)


class MemoryFlagStore:
    """Flags in a dict. A lock makes each change atomic like a transaction."""

    def __init__(self) -> None:
        self._flags: dict[str, Flag] = {}
        self._segments: dict[int, Segment] = {}
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

    async def segments(self) -> list[Segment]:
        return [self._segments[key] for key in sorted(self._segments)]

    async def put_segment(self, segment: Segment, *, actor: str) -> Segment:
        async with self._lock:
            self._put_segment(segment, actor, "segment")
            return segment

    async def delete_segment(self, segment_id: int, *, actor: str) -> Segment:
        async with self._lock:
            current = self._segments.pop(segment_id, None)
            if current is None:
                raise segment_not_found(segment_id)
            self._log(segment_key(segment_id), "segment-delete", actor, current, None)
            return current

    async def replace_many(
        self, flags: Sequence[Flag], segments: Sequence[Segment], *, actor: str, action: str
    ) -> list[Flag]:
        async with self._lock:  # nothing below can fail half-way: all or nothing
            for segment in segments:
                self._put_segment(segment, actor, action)
            stored = []
            for flag in flags:
                current = self._flags.get(flag.key)
                new = replaced(current, flag)
                if new is None:
                    stored.append(flag if current is None else current)
                    continue
                self._flags[flag.key] = new
                self._log(flag.key, action, actor, current, new)
                stored.append(new)
            return stored

    def _put_segment(self, segment: Segment, actor: str, action: str) -> None:
        current = self._segments.get(segment.id)
        if current != segment:
            self._segments[segment.id] = segment
            self._log(segment_key(segment.id), action, actor, current, segment)

    def _log(
        self,
        key: str,
        action: str,
        actor: str,
        before: Flag | Segment | None,
        after: Flag | Segment | None,
    ) -> None:
        self._audit.append(
            AuditEntry(
                id=len(self._audit) + 1,
                key=key,
                action=action,
                actor=actor,
                at=utcnow(),
                before=_data(before),
                after=_data(after),
            )
        )


def _data(item: Flag | Segment | None) -> dict[str, Any] | None:
    return item.to_dict() if item is not None else None
