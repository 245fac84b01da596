"""`MemoizedStore`: reads from an in-memory copy of every flag and segment; listeners hear
each copy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tenantry.errors import NotFound
from tenantry.resilience.flags import Flag, Segment
from tenantry.resilience.stores.base import AuditEntry, Change, FlagStore

SnapshotListener = Callable[[list[Flag], list[Segment]], None]


class MemoizedStore:
    """An in-memory copy of every flag and segment; `refresh()` reloads it from the store."""

    def __init__(self, inner: FlagStore) -> None:
        self.inner = inner
        self._flags: dict[str, Flag] = {}
        self._segments: dict[int, Segment] = {}
        self._listeners: list[SnapshotListener] = []
        self._refresh_lock = asyncio.Lock()

    def add_listener(self, listener: SnapshotListener) -> None:
        self._listeners.append(listener)

    async def refresh(self) -> list[Flag]:
        async with self._refresh_lock:
            flags = await self.inner.all()
            segments = await self.inner.segments()
            self._replace({flag.key: flag for flag in flags}, {s.id: s for s in segments})
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

    async def segments(self) -> list[Segment]:
        return [self._segments[key] for key in sorted(self._segments)]

    async def put_segment(self, segment: Segment, *, actor: str) -> Segment:
        stored = await self.inner.put_segment(segment, actor=actor)
        self._replace(self._flags, {**self._segments, stored.id: stored})
        return stored

    async def delete_segment(self, segment_id: int, *, actor: str) -> Segment:
        deleted = await self.inner.delete_segment(segment_id, actor=actor)
        segments = {k: v for k, v in self._segments.items() if k != segment_id}
        self._replace(self._flags, segments)
        return deleted

    async def replace_many(
        self, flags: Sequence[Flag], segments: Sequence[Segment], *, actor: str, action: str
    ) -> list[Flag]:
        stored = await self.inner.replace_many(flags, segments, actor=actor, action=action)
        self._replace(
            {**self._flags, **{flag.key: flag for flag in stored}},
            {**self._segments, **{segment.id: segment for segment in segments}},
        )
        return stored

    def _forget(self, key: str) -> None:
        if key in self._flags:
            self._replace({k: v for k, v in self._flags.items() if k != key})

    def _replace(self, flags: dict[str, Flag], segments: dict[int, Segment] | None = None) -> None:
        # One reference swap each: readers never see a half-built dict.
        self._flags = flags
        if segments is not None:
            self._segments = segments
        ordered = [flags[key] for key in sorted(flags)]
        ordered_segments = [self._segments[key] for key in sorted(self._segments)]
        for listener in self._listeners:
            listener(ordered, ordered_segments)
