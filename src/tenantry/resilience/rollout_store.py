"""`DatabaseRolloutStore`: rollout plans and scheduled changes in the database.

Every move is one conditional UPDATE (`WHERE key/id = ? AND version = ?`) committed
with its audit entry, so of several processes moving the same plan at once exactly
one writes. The UPDATE is each transaction's first statement: on PostgreSQL a
concurrent one waits for the row and then matches nothing; on SQLite it takes the
write lock before anything is read, so no transaction writes from a stale read.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.db import Database, utcnow
from tenantry.resilience.models import FlagAuditRow, FlagScheduleRow, RolloutPlanRow
from tenantry.resilience.rollouts import (
    Audit,
    Guards,
    PlanStatus,
    RolloutPlan,
    ScheduleAction,
    ScheduledChange,
    ScheduleStatus,
    Step,
    plan_not_found,
)

DUE = (ScheduleStatus.PENDING.value, ScheduleStatus.APPLYING.value)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back what it was given (UTC) without its zone."""
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _plan_of(row: RolloutPlanRow) -> RolloutPlan:
    return RolloutPlan(
        key=row.flag_key,
        steps=tuple(Step.from_dict(step) for step in row.steps),
        start_at=cast(datetime, _aware(row.start_at)),
        guards=Guards.from_dict(row.guards or {}),
        status=PlanStatus(row.status),
        step=row.step,
        step_started_at=_aware(row.step_started_at),
        pending_since=_aware(row.pending_since),
        paused_reason=row.paused_reason,
        paused_at=_aware(row.paused_at),
        version=row.version,
        created_by=row.created_by,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


def _plan_values(plan: RolloutPlan) -> dict[str, Any]:
    """The columns a move may change (not the key, the author or the creation time)."""
    return {
        "steps": [step.to_dict() for step in plan.steps],
        "guards": plan.guards.to_dict(),
        "status": plan.status.value,
        "step": plan.step,
        "start_at": _utc(plan.start_at),
        "step_started_at": _utc(plan.step_started_at),
        "pending_since": _utc(plan.pending_since),
        "paused_reason": plan.paused_reason,
        "paused_at": _utc(plan.paused_at),
        "updated_at": _utc(plan.updated_at) or utcnow(),
    }


def _change_of(row: FlagScheduleRow) -> ScheduledChange:
    return ScheduledChange(
        id=row.id,
        key=row.flag_key,
        action=ScheduleAction(row.action),
        at=cast(datetime, _aware(row.at)),
        percentage=row.percentage,
        status=ScheduleStatus(row.status),
        error=row.error,
        version=row.version,
        claimed_at=_aware(row.claimed_at),
        applied_at=_aware(row.applied_at),
        created_by=row.created_by,
        created_at=_aware(row.created_at),
    )


def _audit_row(
    key: str, action: str, actor: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> FlagAuditRow:
    return FlagAuditRow(
        flag_key=key, action=action, actor=actor[:64], at=utcnow(), before=before, after=after
    )


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


class DatabaseRolloutStore:
    """Plans in `tenantry_flag_rollout_plans`, changes in `tenantry_flag_schedules`, their
    audit entries in the flags' audit log (`tenantry_feature_flag_audit`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- plans ---------------------------------------------------------------------------
    async def plans(self, status: PlanStatus | None = None) -> list[RolloutPlan]:
        query = select(RolloutPlanRow).order_by(RolloutPlanRow.flag_key)
        if status is not None:
            query = query.where(RolloutPlanRow.status == status.value)
        async with self._db.session() as session:
            return [_plan_of(row) for row in (await session.scalars(query)).all()]

    async def plan(self, key: str) -> RolloutPlan | None:
        async with self._db.session() as session:
            row = await session.get(RolloutPlanRow, key)
            return _plan_of(row) if row is not None else None

    async def put_plan(self, plan: RolloutPlan, *, actor: str) -> RolloutPlan:
        """Creates or replaces the flag's plan (version 1, or one on)."""
        try:
            return await self._put_plan(plan, actor)
        except IntegrityError:  # created by another process meanwhile: replace that one
            return await self._put_plan(plan, actor)

    async def _put_plan(self, plan: RolloutPlan, actor: str) -> RolloutPlan:
        async with self._db.session() as session:
            await self._lock_plan(session, plan.key)
            row = await session.get(RolloutPlanRow, plan.key, with_for_update=True)
            before = _plan_of(row) if row is not None else None
            stored = replace(plan, version=before.version + 1 if before is not None else 1)
            if row is None:
                row = RolloutPlanRow(flag_key=plan.key)
                session.add(row)
            for name, value in _plan_values(stored).items():
                setattr(row, name, value)
            row.version = stored.version
            row.created_by = actor[:64]
            row.created_at = _utc(plan.created_at) or utcnow()
            await session.flush()  # a concurrent insert of the same key fails here
            action = "plan-create" if before is None else "plan-replace"
            session.add(
                _audit_row(
                    plan.key,
                    action,
                    actor,
                    before.summary() if before is not None else None,
                    stored.summary(),
                )
            )
            return stored

    async def delete_plan(self, key: str, *, actor: str) -> RolloutPlan:
        async with self._db.session() as session:
            await self._lock_plan(session, key)
            row = await session.get(RolloutPlanRow, key, with_for_update=True)
            if row is None:
                raise plan_not_found(key)
            current = _plan_of(row)
            await session.delete(row)
            before = {**current.summary(), "status": current.status.value, "step": current.step}
            session.add(_audit_row(key, "plan-delete", actor, before, None))
            return current

    async def move_plan(
        self, current: RolloutPlan, moved: RolloutPlan, audit: Audit | None = None
    ) -> RolloutPlan | None:
        version = current.version + 1
        statement = (
            update(RolloutPlanRow)
            .where(
                RolloutPlanRow.flag_key == current.key, RolloutPlanRow.version == current.version
            )
            .values(**_plan_values(moved), version=version)
            .execution_options(synchronize_session=False)
        )
        async with self._db.session() as session:
            if _rowcount(await session.execute(statement)) != 1:
                return None
            if audit is not None:
                session.add(_audit_row(current.key, audit.action, audit.actor, None, audit.after))
        return replace(moved, version=version)

    async def step_applied(self, key: str, step: int) -> RolloutPlan | None:
        statement = (
            update(RolloutPlanRow)
            .where(
                RolloutPlanRow.flag_key == key,
                RolloutPlanRow.step == step,
                RolloutPlanRow.pending_since.is_not(None),
            )
            .values(pending_since=None, version=RolloutPlanRow.version + 1)
            .execution_options(synchronize_session=False)
        )
        async with self._db.session() as session:
            await session.execute(statement)
            row = await session.get(RolloutPlanRow, key)
            return _plan_of(row) if row is not None else None

    async def _lock_plan(self, session: AsyncSession, key: str) -> None:
        """SQLite: a no-op write first takes the write lock, so what is read next is what
        is written over (PostgreSQL locks the row: SELECT ... FOR UPDATE)."""
        if self._db.dialect == "sqlite":
            await session.execute(
                update(RolloutPlanRow)
                .where(RolloutPlanRow.flag_key == key)
                .values(version=RolloutPlanRow.version)
                .execution_options(synchronize_session=False)
            )

    # --- scheduled changes -----------------------------------------------------------------
    async def add_schedule(self, change: ScheduledChange, *, actor: str) -> ScheduledChange:
        row = FlagScheduleRow(
            flag_key=change.key,
            action=change.action.value,
            percentage=change.percentage,
            at=_utc(change.at),
            status=change.status.value,
            version=1,
            created_by=actor[:64],
            created_at=_utc(change.created_at) or utcnow(),
        )
        async with self._db.session() as session:
            session.add(row)
            await session.flush()
            stored = _change_of(row)
            session.add(_audit_row(change.key, "schedule-create", actor, None, stored.summary()))
            return stored

    async def schedule(self, schedule_id: int) -> ScheduledChange | None:
        async with self._db.session() as session:
            row = await session.get(FlagScheduleRow, schedule_id)
            return _change_of(row) if row is not None else None

    async def schedules(
        self, key: str | None = None, status: ScheduleStatus | None = None, limit: int = 1000
    ) -> list[ScheduledChange]:
        query = select(FlagScheduleRow).order_by(FlagScheduleRow.at, FlagScheduleRow.id)
        if key is not None:
            query = query.where(FlagScheduleRow.flag_key == key)
        if status is not None:
            query = query.where(FlagScheduleRow.status == status.value)
        async with self._db.session() as session:
            rows = (await session.scalars(query.limit(limit))).all()
            return [_change_of(row) for row in rows]

    async def due_schedules(self, now: datetime) -> list[ScheduledChange]:
        query = (
            select(FlagScheduleRow)
            .where(FlagScheduleRow.status.in_(DUE), FlagScheduleRow.at <= _utc(now))
            .order_by(FlagScheduleRow.at, FlagScheduleRow.id)
            .limit(1000)
        )
        async with self._db.session() as session:
            return [_change_of(row) for row in (await session.scalars(query)).all()]

    async def move_schedule(
        self, current: ScheduledChange, moved: ScheduledChange, audit: Audit | None = None
    ) -> ScheduledChange | None:
        version = current.version + 1
        statement = (
            update(FlagScheduleRow)
            .where(FlagScheduleRow.id == current.id, FlagScheduleRow.version == current.version)
            .values(
                status=moved.status.value,
                error=moved.error,
                claimed_at=_utc(moved.claimed_at),
                applied_at=_utc(moved.applied_at),
                version=version,
            )
            .execution_options(synchronize_session=False)
        )
        async with self._db.session() as session:
            if _rowcount(await session.execute(statement)) != 1:
                return None
            if audit is not None:
                session.add(_audit_row(current.key, audit.action, audit.actor, None, audit.after))
        return replace(moved, version=version)
