"""/api/degradation/*: rollout plans and scheduled flag changes, for the admin key only."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Depends, Path, Query, Response

from tenantry.auth import Principal
from tenantry.deps import AdminDep, Router, ServicesDep, admin_key
from tenantry.resilience.rollout_schemas import (
    PauseBody,
    PlanBody,
    PlanOut,
    ScheduleBody,
    ScheduleOut,
)
from tenantry.resilience.rollouts import RolloutRunner, ScheduleStatus

router = Router(prefix="/api/degradation", tags=["degradation"], dependencies=[Depends(admin_key)])
KeyPath = Annotated[str, Path(description="The flag key (percent-encoded).")]
ScheduleId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The scheduled change's id.")]


def _actor(principal: Principal) -> str:
    return principal.key_id or "admin"


def _rollouts(services: ServicesDep) -> RolloutRunner:
    return services.rollouts


RolloutsDep = Annotated[RolloutRunner, Depends(_rollouts)]


# --- plans ---------------------------------------------------------------------------------
@router.get("/rollout-plans")
async def list_rollout_plans(rollouts: RolloutsDep) -> list[PlanOut]:
    """Every flag's plan: active, paused (and why) or completed."""
    return [PlanOut.of(plan) for plan in await rollouts.plans()]


@router.get("/features/{key}/rollout-plan")
async def get_rollout_plan(key: KeyPath, rollouts: RolloutsDep) -> PlanOut:
    return PlanOut.of(await rollouts.plan(key))


@router.put("/features/{key}/rollout-plan")
async def put_rollout_plan(
    key: KeyPath, body: PlanBody, rollouts: RolloutsDep, admin: AdminDep
) -> PlanOut:
    """A new plan for the flag, replacing any; one starting now takes its first step at once.
    409 for a strategy flag without a rollout strategy."""
    plan = await rollouts.put_plan(
        key,
        [step.to_step() for step in body.steps],
        guards=body.guards.to_guards(),
        start_at=body.start_at,
        actor=_actor(admin),
    )
    return PlanOut.of(plan)


@router.delete("/features/{key}/rollout-plan", status_code=204)
async def delete_rollout_plan(key: KeyPath, rollouts: RolloutsDep, admin: AdminDep) -> Response:
    """The plan stops; the flag keeps the rollout it has."""
    await rollouts.delete_plan(key, actor=_actor(admin))
    return Response(status_code=204)


@router.post("/features/{key}/rollout-plan/pause")
async def pause_rollout_plan(
    key: KeyPath,
    rollouts: RolloutsDep,
    admin: AdminDep,
    body: Annotated[PauseBody | None, Body()] = None,
) -> PlanOut:
    reason = body.reason if body is not None else None
    return PlanOut.of(await rollouts.pause(key, actor=_actor(admin), reason=reason))


@router.post("/features/{key}/rollout-plan/resume")
async def resume_rollout_plan(key: KeyPath, rollouts: RolloutsDep, admin: AdminDep) -> PlanOut:
    """A paused plan goes on, its current step held afresh; 409 while a guard still trips."""
    return PlanOut.of(await rollouts.resume(key, actor=_actor(admin)))


# --- scheduled changes ---------------------------------------------------------------------
@router.get("/schedules")
async def list_schedules(
    rollouts: RolloutsDep,
    key: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    status: ScheduleStatus | None = None,
) -> list[ScheduleOut]:
    """Ordered by time; at most 1000."""
    return [ScheduleOut.of(change) for change in await rollouts.schedules(key, status)]


@router.post("/schedules", status_code=201)
async def create_schedule(
    body: ScheduleBody, rollouts: RolloutsDep, admin: AdminDep
) -> ScheduleOut:
    """Enable, disable or set the rollout of a flag at a time (within a tick of it)."""
    change = await rollouts.schedule(
        body.key, body.action, at=body.at, percentage=body.percentage, actor=_actor(admin)
    )
    return ScheduleOut.of(change)


@router.get("/schedules/{schedule_id}")
async def get_schedule(schedule_id: ScheduleId, rollouts: RolloutsDep) -> ScheduleOut:
    return ScheduleOut.of(await rollouts.get_schedule(schedule_id))


@router.delete("/schedules/{schedule_id}", status_code=204)
async def cancel_schedule(
    schedule_id: ScheduleId, rollouts: RolloutsDep, admin: AdminDep
) -> Response:
    """A pending change is cancelled (kept, as cancelled); 409 once it is made."""
    await rollouts.cancel(schedule_id, actor=_actor(admin))
    return Response(status_code=204)


__all__ = ["router"]
