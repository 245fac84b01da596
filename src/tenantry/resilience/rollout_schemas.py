"""HTTP models of rollout plans and scheduled flag changes (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, Field

from tenantry.resilience.rollouts import (
    MAX_GUARDED_CIRCUITS,
    MAX_HOLD_SECONDS,
    MAX_REASON,
    MAX_STEPS,
    ErrorRateGuard,
    Guards,
    PlanStatus,
    RolloutPlan,
    ScheduleAction,
    ScheduledChange,
    ScheduleStatus,
    Step,
)
from tenantry.schemas import ApiModel

Percentage = Annotated[int, Field(ge=0, le=100, description="0-100")]
CircuitName = Annotated[str, Field(min_length=1, max_length=100)]


class StepModel(ApiModel):
    percentage: Percentage
    hold_seconds: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_HOLD_SECONDS,
            description="How long the step holds before the next (after the last: completed).",
        ),
    ] = 0

    def to_step(self) -> Step:
        return Step(self.percentage, self.hold_seconds)

    @classmethod
    def of(cls, step: Step) -> StepModel:
        return cls(percentage=step.percentage, hold_seconds=step.hold_seconds)


class ErrorRateModel(ApiModel):
    """Pause when the circuit's failure rate over its sliding window reaches `threshold` %."""

    circuit: CircuitName
    threshold: Annotated[float, Field(gt=0, le=100, description="A percentage.")]
    minimum_calls: Annotated[int, Field(ge=1, le=1_000_000)] = 10


class GuardsModel(ApiModel):
    circuits: Annotated[
        list[CircuitName],
        Field(max_length=MAX_GUARDED_CIRCUITS, description="Pause when any is not closed."),
    ] = []
    error_rate: ErrorRateModel | None = None

    def to_guards(self) -> Guards:
        rate = self.error_rate
        return Guards(
            circuits=tuple(self.circuits),
            error_rate=(
                ErrorRateGuard(rate.circuit, rate.threshold, rate.minimum_calls) if rate else None
            ),
        )

    @classmethod
    def of(cls, guards: Guards) -> GuardsModel:
        rate = guards.error_rate
        return cls(
            circuits=list(guards.circuits),
            error_rate=(
                ErrorRateModel(
                    circuit=rate.circuit,
                    threshold=rate.threshold,
                    minimum_calls=rate.minimum_calls,
                )
                if rate
                else None
            ),
        )


class PlanBody(ApiModel):
    steps: Annotated[list[StepModel], Field(min_length=1, max_length=MAX_STEPS)]
    guards: GuardsModel = GuardsModel()
    start_at: AwareDatetime | None = Field(
        None, description="When the first step is taken (default: now)."
    )


class PauseBody(ApiModel):
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON)] | None = None


class PlanOut(ApiModel):
    key: str
    status: PlanStatus
    steps: list[StepModel]
    guards: GuardsModel
    start_at: datetime
    current_step: int | None = Field(description="The index of the step taken last.")
    current_percentage: int | None
    step_started_at: datetime | None
    next_step_at: datetime | None = Field(
        description="When the next step is taken (or the plan completes), while active."
    )
    pending: bool = Field(description="The current step is taken but not yet on the flag.")
    paused_reason: str | None
    paused_at: datetime | None
    created_by: str
    created_at: datetime | None
    updated_at: datetime | None
    version: int

    @classmethod
    def of(cls, plan: RolloutPlan) -> PlanOut:
        current = plan.current
        return cls(
            key=plan.key,
            status=plan.status,
            steps=[StepModel.of(step) for step in plan.steps],
            guards=GuardsModel.of(plan.guards),
            start_at=plan.start_at,
            current_step=plan.step if plan.step >= 0 else None,
            current_percentage=current.percentage if current is not None else None,
            step_started_at=plan.step_started_at,
            next_step_at=plan.next_move_at,
            pending=plan.pending_since is not None,
            paused_reason=plan.paused_reason,
            paused_at=plan.paused_at,
            created_by=plan.created_by,
            created_at=plan.created_at,
            updated_at=plan.updated_at,
            version=plan.version,
        )


class ScheduleBody(ApiModel):
    key: Annotated[str, Field(min_length=1, max_length=100, description="The flag key.")]
    action: ScheduleAction
    at: AwareDatetime
    percentage: Percentage | None = Field(None, description="For action 'rollout' only.")


class ScheduleOut(ApiModel):
    id: int
    key: str
    action: ScheduleAction
    at: datetime
    percentage: int | None
    status: ScheduleStatus
    error: str | None
    applied_at: datetime | None
    created_by: str
    created_at: datetime | None

    @classmethod
    def of(cls, change: ScheduledChange) -> ScheduleOut:
        return cls(
            id=change.id,
            key=change.key,
            action=change.action,
            at=change.at,
            percentage=change.percentage,
            status=change.status,
            error=change.error,
            applied_at=change.applied_at,
            created_by=change.created_by,
            created_at=change.created_at,
        )
