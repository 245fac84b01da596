"""`FailsafeStore`: reads answered from the last good read in an outage; writes fail loudly."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from tenantry.errors import ServiceUnavailable, TenantryError
from tenantry.resilience.flags import Flag, Segment
from tenantry.resilience.stores.base import AuditEntry, Change, FlagStore

log = logging.getLogger("tenantry.resilience")
T = TypeVar("T")


class FailsafeStore:
    """Reads survive an outage with the last good answer; writes fail loudly (503).

    The last good answer follows every successful read and write through this store,
    so an outage never brings back a flag as it was before a change.
    """

    def __init__(self, inner: FlagStore) -> None:
        self.inner = inner
        self._last: dict[str, Flag] | None = None
        self._last_segments: list[Segment] | None = None
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

    async def segments(self) -> list[Segment]:
        try:
            segments = await self.inner.segments()
        except TenantryError:
            raise
        except Exception as exc:
            if self._last_segments is None:
                raise _unavailable(exc) from exc
            return list(self._last_segments)
        self._last_segments = segments
        return segments

    async def put_segment(self, segment: Segment, *, actor: str) -> Segment:
        stored = await self._write(self.inner.put_segment(segment, actor=actor))
        self._remember_segments([stored])
        return stored

    async def delete_segment(self, segment_id: int, *, actor: str) -> Segment:
        deleted = await self._write(self.inner.delete_segment(segment_id, actor=actor))
        if self._last_segments is not None:
            self._last_segments = [s for s in self._last_segments if s.id != segment_id]
        return deleted

    async def replace_many(
        self, flags: Sequence[Flag], segments: Sequence[Segment], *, actor: str, action: str
    ) -> list[Flag]:
        stored = await self._write(
            self.inner.replace_many(flags, segments, actor=actor, action=action)
        )
        for flag in stored:
            self._remember(flag.key, flag)
        self._remember_segments(segments)
        return stored

    def _remember_segments(self, segments: Sequence[Segment]) -> None:
        if self._last_segments is None:
            return
        by_id = {segment.id: segment for segment in self._last_segments}
        by_id.update((segment.id, segment) for segment in segments)
        self._last_segments = [by_id[key] for key in sorted(by_id)]

    async def _write(self, operation: Awaitable[T]) -> T:
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
