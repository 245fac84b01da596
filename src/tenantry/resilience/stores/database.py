"""`DatabaseFlagStore`: flags and their audit log in the database, one transaction a change."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.db import Database, utcnow
from tenantry.resilience.flags import Flag, Segment
from tenantry.resilience.models import FlagAuditRow, FlagRow, SegmentRow
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


def _flag_of(row: FlagRow) -> Flag:
    return Flag.from_dict(
        {
            "key": row.key,
            "description": row.description,
            "enabled": row.enabled,
            "target": row.target,
            "rollout": row.rollout,
            "allow": row.allow,
            "block": row.block,
            "variants": row.variants,
            "strategies": row.strategies,
            "dependencies": row.dependencies,
            "version": row.version,
        }
    )


def _segment_of(row: SegmentRow) -> Segment:
    return Segment.from_dict(
        {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "constraints": row.constraints,
        }
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
    row.strategies = data["strategies"]
    row.dependencies = data["dependencies"]
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
                    raise flag_conflict(flag.key)
                row = FlagRow(key=flag.key, created_at=utcnow())
                _write(row, created)
                session.add(row)
                await session.flush()  # a concurrent insert of the same key fails here
                session.add(self._audit_row(flag.key, "create", actor, None, created))
        except IntegrityError:
            raise flag_conflict(flag.key) from None
        return created

    async def update(self, key: str, change: Change, *, actor: str, action: str) -> Flag:
        async with self._db.session() as session:
            await self._lock_for_write(session, key)
            row = await session.get(FlagRow, key, with_for_update=True)
            if row is None:
                raise flag_not_found(key)
            current = _flag_of(row)
            updated = apply_change(current, change)
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

    async def segments(self) -> list[Segment]:
        async with self._db.session() as session:
            rows = (await session.scalars(select(SegmentRow).order_by(SegmentRow.id))).all()
            return [_segment_of(row) for row in rows]

    async def put_segment(self, segment: Segment, *, actor: str) -> Segment:
        async with self._db.session() as session:
            await self._put_segment(session, segment, actor, "segment")
            return segment

    async def delete_segment(self, segment_id: int, *, actor: str) -> Segment:
        async with self._db.session() as session:
            row = await session.get(SegmentRow, segment_id, with_for_update=True)
            if row is None:
                raise segment_not_found(segment_id)
            current = _segment_of(row)
            await session.delete(row)
            session.add(
                self._audit_row(segment_key(segment_id), "segment-delete", actor, current, None)
            )
            return current

    async def replace_many(
        self, flags: Sequence[Flag], segments: Sequence[Segment], *, actor: str, action: str
    ) -> list[Flag]:
        async with self._db.session() as session:  # one transaction: all or nothing
            if self._db.dialect == "sqlite":  # SQLite's write lock first (see _lock_for_write)
                await session.execute(update(FlagRow).values(version=FlagRow.version))
            for segment in segments:
                await self._put_segment(session, segment, actor, action)
            rows = await self._rows_for_update(session, [flag.key for flag in flags])
            stored = []
            for flag in flags:
                row = rows.get(flag.key)
                current = _flag_of(row) if row is not None else None
                new = replaced(current, flag)
                if new is None:
                    stored.append(current or flag)
                    continue
                if row is None:
                    row = FlagRow(key=flag.key, created_at=utcnow())
                    session.add(row)
                _write(row, new)
                session.add(self._audit_row(flag.key, action, actor, current, new))
                stored.append(new)
            return stored

    @staticmethod
    async def _rows_for_update(session: AsyncSession, keys: list[str]) -> dict[str, FlagRow]:
        """The rows of `keys`, locked, a few hundred per query (an import holds thousands)."""
        rows: dict[str, FlagRow] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            query = select(FlagRow).where(FlagRow.key.in_(chunk)).with_for_update()
            rows.update((row.key, row) for row in (await session.scalars(query)).all())
        return rows

    async def _put_segment(
        self, session: AsyncSession, segment: Segment, actor: str, action: str
    ) -> None:
        row = await session.get(SegmentRow, segment.id, with_for_update=True)
        current = _segment_of(row) if row is not None else None
        if current == segment:
            return
        if row is None:
            row = SegmentRow(id=segment.id)
            session.add(row)
        data = segment.to_dict()
        row.name, row.description = segment.name, segment.description
        row.constraints, row.updated_at = data["constraints"], utcnow()
        session.add(self._audit_row(segment_key(segment.id), action, actor, current, segment))

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
        key: str,
        action: str,
        actor: str,
        before: Flag | Segment | None,
        after: Flag | Segment | None,
    ) -> FlagAuditRow:
        return FlagAuditRow(
            flag_key=key,
            action=action,
            actor=actor,
            at=utcnow(),
            before=before.to_dict() if before else None,
            after=after.to_dict() if after else None,
        )
