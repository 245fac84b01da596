"""The audit log of indexes applied from the advisor: one row per step, never updated.

An index's story is its rows in id order: requested, building, then built (with the
monitor's figures of the shapes it should help, the "before") or failed; an invalid
index a failed build left is invalid-dropped; a built one is later verified-kept or
verified-dropped (with the "after"), or verify-extended while too few calls came in.
The latest row of an index says what is still to do, so any process can pick it up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db import Base, Database, utcnow

REQUESTED = "requested"
BUILDING = "building"
BUILT = "built"
FAILED = "failed"
INVALID_DROPPED = "invalid-dropped"
VERIFY_EXTENDED = "verify-extended"
VERIFIED_KEPT = "verified-kept"
VERIFIED_DROPPED = "verified-dropped"
GONE = "gone"  # dropped by someone else before it could be verified
STEPS = (
    REQUESTED,
    BUILDING,
    BUILT,
    FAILED,
    INVALID_DROPPED,
    VERIFY_EXTENDED,
    VERIFIED_KEPT,
    VERIFIED_DROPPED,
    GONE,
)
AWAITING_VERDICT = (BUILT, VERIFY_EXTENDED)
MAY_LEAVE_INVALID = (BUILDING, FAILED)  # a build that stopped can leave an invalid index


class IndexChangeRow(Base):
    __tablename__ = "tenantry_index_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    statement: Mapped[str] = mapped_column(Text)
    index_name: Mapped[str] = mapped_column(String(63), index=True)
    table_name: Mapped[str] = mapped_column(String(255))
    step: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    after: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True, slots=True)
class IndexChange:
    id: int
    statement: str
    index_name: str
    table: str
    step: str
    detail: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    actor: str
    at: datetime

    @classmethod
    def of(cls, row: IndexChangeRow) -> IndexChange:
        return cls(
            id=row.id,
            statement=row.statement,
            index_name=row.index_name,
            table=row.table_name,
            step=row.step,
            detail=row.detail,
            before=json.loads(row.before) if row.before else None,
            after=json.loads(row.after) if row.after else None,
            actor=row.actor,
            at=row.at,
        )


@dataclass(frozen=True, slots=True)
class Target:
    """The index a change is about: what every row of its story repeats."""

    statement: str
    index_name: str
    table: str


class IndexChangeLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        target: Target,
        step: str,
        detail: str,
        actor: str,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> IndexChange:
        assert step in STEPS, step
        row = IndexChangeRow(
            statement=target.statement,
            index_name=target.index_name,
            table_name=target.table,
            step=step,
            detail=detail,
            before=json.dumps(before) if before is not None else None,
            after=json.dumps(after) if after is not None else None,
            actor=actor,
            at=utcnow(),
        )
        async with self.db.session() as session:
            session.add(row)
        return IndexChange.of(row)

    async def recent(self, limit: int = 100) -> list[IndexChange]:
        """Newest first."""
        query = select(IndexChangeRow).order_by(IndexChangeRow.id.desc()).limit(limit)
        async with self.db.sessions() as session:
            return [IndexChange.of(r) for r in (await session.scalars(query)).all()]

    async def stories(self) -> dict[tuple[str, str], list[IndexChange]]:
        """Each index's rows in order, by (table, index name): names are unique per schema.

        Read whole: the log holds a handful of rows per index ever applied."""
        query = select(IndexChangeRow).order_by(IndexChangeRow.id)
        found: dict[tuple[str, str], list[IndexChange]] = {}
        async with self.db.sessions() as session:
            for row in (await session.scalars(query)).all():
                found.setdefault((row.table_name, row.index_name), []).append(IndexChange.of(row))
        return found
