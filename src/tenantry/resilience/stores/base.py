"""The flag-store contract: `FlagStore`, its audit entries, and the errors it raises."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tenantry.errors import Conflict, NotFound
from tenantry.resilience.flags import Flag, Segment

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

    async def segments(self) -> list[Segment]:
        """Every segment, ordered by id."""
        ...

    async def put_segment(self, segment: Segment, *, actor: str) -> Segment:
        """Creates or replaces the segment of `segment.id`; audited under `segment_key(id)`."""
        ...

    async def delete_segment(self, segment_id: int, *, actor: str) -> Segment:
        """Removes the segment; `NotFound` when there is none."""
        ...

    async def replace_many(
        self, flags: Sequence[Flag], segments: Sequence[Segment], *, actor: str, action: str
    ) -> list[Flag]:
        """In one transaction: `segments` replace those of their ids, `flags` those of their
        keys (created at version 1, or one version on; unchanged ones untouched), each
        audited with `action`. All or nothing. Returns the stored flags."""
        ...


def segment_key(segment_id: int) -> str:
    """The audit key of a segment's changes (flag keys cannot start with '#')."""
    return f"#segment-{segment_id}"


def segment_not_found(segment_id: int) -> NotFound:
    return NotFound(f"no segment {segment_id}", details={"segment": segment_id})


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


def replaced(current: Flag | None, proposed: Flag) -> Flag | None:
    """`proposed` as stored over `current` (version 1 or one on), None when nothing changes."""
    if current is None:
        return Flag.from_dict({**proposed.to_dict(), "version": 1})
    return apply_change(current, lambda _flag: proposed)
