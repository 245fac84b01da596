"""Progressive rollouts and scheduled flag changes, run by every process from the database.

A *rollout plan* walks one flag's rollout through steps — 10 % for an hour, then 50 %
for an hour, then 100 % — and pauses, saying why, when one of its guards trips: a
linked circuit is not closed, or a linked circuit's failure rate over its sliding
window reaches a threshold. A *scheduled change* enables, disables or sets the rollout
of a flag at a time. `RolloutRunner.tick()` moves both; every process runs it.

How the processes agree, and why a restart resumes:

- The state lives in the database alone (the store); a process keeps none between
  ticks. Holds count from when a step was taken (`step_started_at`), so a restarted
  process continues the plan where it was.
- A move is claimed by a conditional write on the plan's (or change's) version, and
  the claim commits with its audit entry: of the processes ticking at once, one
  moves; the others' writes match nothing. The claimer then applies the change
  through `FlagService` (audited like every change, actor "rollout-plan" or
  "schedule") and marks it applied. A claimer that dies in between leaves the step
  pending; after `retry_after` any process applies it again (setting a rollout, or
  enabling, twice is one change: the store audits only what changed).
- A flag's scheduled changes are made in their order (time, then id): a change waits
  while an earlier one of its flag is not made, here or in another process, so two
  due at once cannot land the other way round (an enable over the disable after it).
- A plan moves at most one step a tick, and a step is held its full time from when it
  was taken: after an outage a plan goes on from its step, never leaps to 100 %.
- Guards are read where the tick runs (a breaker is per process; with Redis, their
  states are shared): the plan pauses when any process sees a guard trip, and stays
  paused, in every process, until resumed through the API. Resuming restarts the
  current step's hold, since the paused time proved nothing.

A plan sets only the rollout: a disabled flag stays off at every step (schedule an
enable, or enable it, to start the ramp for real).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from tenantry.db import utcnow
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.resilience.breaker import State
from tenantry.resilience.flags import Flag
from tenantry.resilience.registry import BreakerRegistry
from tenantry.resilience.service import ROLLOUT_STRATEGIES, FlagService

log = logging.getLogger("tenantry.resilience")

PLAN_ACTOR = "rollout-plan"
SCHEDULE_ACTOR = "schedule"
MAX_STEPS = 20
MAX_HOLD_SECONDS = 90 * 24 * 3600
MAX_GUARDED_CIRCUITS = 20
MAX_AHEAD = timedelta(days=3660)  # how far ahead a plan's start or a change may be set
PAST_TOLERANCE = timedelta(seconds=60)  # a change "now" from a clock a little behind
MAX_REASON = 200
# A circuit that is not closed has failed recently: open, forced open, or still on trial.
UNHEALTHY = frozenset({State.OPEN, State.FORCED_OPEN, State.HALF_OPEN})


class PlanStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"


class ScheduleAction(StrEnum):
    ENABLE = "enable"
    DISABLE = "disable"
    ROLLOUT = "rollout"


class ScheduleStatus(StrEnum):
    PENDING = "pending"
    APPLYING = "applying"  # claimed by a process; retried after `retry_after` if left so
    DONE = "done"
    FAILED = "failed"  # the flag is gone, or the change cannot apply to it
    CANCELLED = "cancelled"


# --- the model --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Step:
    """Set the rollout to `percentage`, then hold it `hold_seconds` before the next step
    (after the last step's hold, the plan is completed)."""

    percentage: int
    hold_seconds: int = 0

    @property
    def hold(self) -> timedelta:
        return timedelta(seconds=self.hold_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {"percentage": self.percentage, "holdSeconds": self.hold_seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        return cls(int(data["percentage"]), int(data.get("holdSeconds", 0)))


@dataclass(frozen=True, slots=True)
class ErrorRateGuard:
    """Trips when `circuit`'s failure rate over its sliding window reaches `threshold` %,
    counted once the window holds `minimum_calls` calls. The circuit needs a window
    (CIRCUIT_BREAKERS {"name": {"slidingWindowSize": 100}}); it also trips when that
    circuit is not closed (its window restarts when it opens)."""

    circuit: str
    threshold: float
    minimum_calls: int = 10

    def to_dict(self) -> dict[str, Any]:
        return {
            "circuit": self.circuit,
            "threshold": self.threshold,
            "minimumCalls": self.minimum_calls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorRateGuard:
        return cls(data["circuit"], float(data["threshold"]), int(data.get("minimumCalls", 10)))


@dataclass(frozen=True, slots=True)
class Guards:
    circuits: tuple[str, ...] = ()
    error_rate: ErrorRateGuard | None = None

    @property
    def watched(self) -> tuple[str, ...]:
        """Every circuit whose state can pause the plan."""
        extra = (self.error_rate.circuit,) if self.error_rate is not None else ()
        return tuple(dict.fromkeys((*self.circuits, *extra)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "circuits": list(self.circuits),
            "errorRate": self.error_rate.to_dict() if self.error_rate is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Guards:
        rate = data.get("errorRate")
        return cls(
            tuple(data.get("circuits") or ()),
            ErrorRateGuard.from_dict(rate) if rate else None,
        )


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """A flag's plan as stored: its steps and guards, and where it is.

    `step` is the index of the step taken last (-1: not started); `pending_since` is
    set from claiming a step until its percentage reached the flag.
    """

    key: str
    steps: tuple[Step, ...]
    start_at: datetime
    guards: Guards = Guards()
    status: PlanStatus = PlanStatus.ACTIVE
    step: int = -1
    step_started_at: datetime | None = None
    pending_since: datetime | None = None
    paused_reason: str | None = None
    paused_at: datetime | None = None
    version: int = 1
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def current(self) -> Step | None:
        return self.steps[self.step] if self.step >= 0 else None

    @property
    def next_move_at(self) -> datetime | None:
        """When an active plan takes its next step (or completes); None when it will not."""
        if self.status is not PlanStatus.ACTIVE:
            return None
        if self.step < 0 or self.step_started_at is None:
            return self.start_at
        return self.step_started_at + self.steps[self.step].hold

    def summary(self) -> dict[str, Any]:
        """The plan's definition, as its audit entries show it."""
        return {
            "steps": [step.to_dict() for step in self.steps],
            "guards": self.guards.to_dict(),
            "startAt": self.start_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ScheduledChange:
    id: int
    key: str
    action: ScheduleAction
    at: datetime
    percentage: int | None = None
    status: ScheduleStatus = ScheduleStatus.PENDING
    error: str | None = None
    version: int = 1
    claimed_at: datetime | None = None
    applied_at: datetime | None = None
    created_by: str = ""
    created_at: datetime | None = None

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schedule": self.id, "action": self.action.value}
        if self.percentage is not None:
            data["percentage"] = self.percentage
        data["at"] = self.at.isoformat()
        return data


class RolloutStore(Protocol):
    """Where plans and scheduled changes live (`rollout_store.DatabaseRolloutStore`).

    Every `move_*` writes only if the stored version is still the given one's, and
    commits its audit entry (when given) with it: the one way a plan or change moves.
    """

    async def plans(self, status: PlanStatus | None = None) -> list[RolloutPlan]: ...
    async def plan(self, key: str) -> RolloutPlan | None: ...
    async def put_plan(self, plan: RolloutPlan, *, actor: str) -> RolloutPlan: ...
    async def delete_plan(self, key: str, *, actor: str) -> RolloutPlan: ...
    async def move_plan(
        self, current: RolloutPlan, moved: RolloutPlan, audit: Audit | None = None
    ) -> RolloutPlan | None: ...
    async def step_applied(self, key: str, step: int) -> RolloutPlan | None:
        """Clears `pending_since` if the plan is still at `step`; the plan as it is now."""
        ...

    async def add_schedule(self, change: ScheduledChange, *, actor: str) -> ScheduledChange: ...
    async def schedule(self, schedule_id: int) -> ScheduledChange | None: ...
    async def schedules(
        self, key: str | None = None, status: ScheduleStatus | None = None, limit: int = 1000
    ) -> list[ScheduledChange]: ...
    async def due_schedules(self, now: datetime) -> list[ScheduledChange]: ...
    async def move_schedule(
        self, current: ScheduledChange, moved: ScheduledChange, audit: Audit | None = None
    ) -> ScheduledChange | None: ...


@dataclass(frozen=True, slots=True)
class Audit:
    """An entry of the flag's audit log, written with the move it describes."""

    action: str
    actor: str
    after: dict[str, Any]


# --- deciding (pure: the stored state and the time) ---------------------------------------
class Move(StrEnum):
    ADVANCE = "advance"  # take the next step
    REAPPLY = "reapply"  # a claimed step never reached the flag: apply it again
    COMPLETE = "complete"  # the last step has been held


@dataclass(frozen=True, slots=True)
class Decision:
    move: Move
    step: int


def decide(plan: RolloutPlan, now: datetime, retry_after: timedelta) -> Decision | None:
    """What an active plan does at `now`; None: nothing yet."""
    if plan.status is not PlanStatus.ACTIVE:
        return None
    if plan.step < 0 or plan.step_started_at is None:
        return Decision(Move.ADVANCE, 0) if now >= plan.start_at else None
    if plan.pending_since is not None:
        if now - plan.pending_since >= retry_after:
            return Decision(Move.REAPPLY, plan.step)
        return None
    if now < plan.step_started_at + plan.steps[plan.step].hold:
        return None
    if plan.step == len(plan.steps) - 1:
        return Decision(Move.COMPLETE, plan.step)
    return Decision(Move.ADVANCE, plan.step + 1)


def tripped(guards: Guards, breakers: BreakerRegistry) -> str | None:
    """Why the guards stop the plan in this process now, or None. A circuit this process
    does not have (created later by `execute`) cannot be seen, so it does not trip."""
    for name in guards.watched:
        if name in breakers:
            state = breakers[name].state
            if state in UNHEALTHY:
                return f"circuit {name!r} is {state.value.replace('_', '-')}"
    rate = guards.error_rate
    if rate is not None and rate.circuit in breakers:
        stats = breakers[rate.circuit].window_stats()
        calls, failure_rate = stats["numberOfCalls"], stats["failureRate"]
        counted = failure_rate is not None and calls >= rate.minimum_calls
        if counted and failure_rate >= rate.threshold:
            return (
                f"failure rate of circuit {rate.circuit!r} is {failure_rate:.1f} % over "
                f"its last {calls} calls (threshold {rate.threshold:g} %)"
            )
    return None


def schedule_due(change: ScheduledChange, now: datetime, retry_after: timedelta) -> bool:
    if change.status is ScheduleStatus.PENDING:
        return change.at <= now
    if change.status is ScheduleStatus.APPLYING and change.claimed_at is not None:
        return now - change.claimed_at >= retry_after
    return False


# --- validation (InvalidInput naming the field, as on the wire) -----------------------------
def _invalid(field: str, rule: str) -> InvalidInput:
    return InvalidInput(f"{field}: {rule}", details={"field": field})


def validate_steps(steps: Sequence[Step]) -> tuple[Step, ...]:
    if not 1 <= len(steps) <= MAX_STEPS:
        raise _invalid("steps", f"1-{MAX_STEPS} steps")
    for index, step in enumerate(steps):
        if not 0 <= step.percentage <= 100:
            raise _invalid(f"steps[{index}].percentage", "a whole percentage, 0-100")
        if not 0 <= step.hold_seconds <= MAX_HOLD_SECONDS:
            raise _invalid(f"steps[{index}].holdSeconds", f"0-{MAX_HOLD_SECONDS} seconds")
    return tuple(steps)


def validate_guards(guards: Guards, breakers: BreakerRegistry) -> Guards:
    """Guards naming circuits this process knows: a misspelt one would never trip."""
    if len(guards.circuits) > MAX_GUARDED_CIRCUITS:
        raise _invalid("guards.circuits", f"at most {MAX_GUARDED_CIRCUITS} circuits")
    known = ", ".join(breakers.names)
    for index, name in enumerate(guards.circuits):
        if name not in breakers:
            raise _invalid(f"guards.circuits[{index}]", f"no circuit {name!r} (known: {known})")
    rate = guards.error_rate
    if rate is None:
        return replace(guards, circuits=tuple(dict.fromkeys(guards.circuits)))
    if rate.circuit not in breakers:
        raise _invalid("guards.errorRate.circuit", f"no circuit {rate.circuit!r} (known: {known})")
    window = breakers[rate.circuit].config.sliding_window_size
    if window is None:
        raise _invalid(
            "guards.errorRate.circuit",
            f"circuit {rate.circuit!r} keeps no failure rate: give it a sliding window "
            '(CIRCUIT_BREAKERS {"%s": {"slidingWindowSize": 100}})' % rate.circuit,
        )
    if not 0 < rate.threshold <= 100:
        raise _invalid("guards.errorRate.threshold", "a percentage above 0, at most 100")
    if not 1 <= rate.minimum_calls <= window:
        raise _invalid(
            "guards.errorRate.minimumCalls", f"1 to the circuit's window size ({window})"
        )
    return replace(guards, circuits=tuple(dict.fromkeys(guards.circuits)))


def _moment(value: datetime, field: str, now: datetime, *, past_ok: bool) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _invalid(field, "a date and time with its UTC offset (e.g. 2027-01-31T09:00:00Z)")
    try:
        moment = value.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, or 9999 west of it
        raise _invalid(field, "a date and time between years 1 and 9999 in UTC") from None
    if moment > now + MAX_AHEAD:
        raise _invalid(field, "at most 10 years ahead")
    if not past_ok and moment < now - PAST_TOLERANCE:
        raise _invalid(field, "is in the past")
    return moment


def _check_rollout_target(flag: Flag) -> None:
    """A strategy flag's rollout lives in its rollout strategies: it needs one (409)."""
    if not flag.simple and not any(s.name in ROLLOUT_STRATEGIES for s in flag.strategies):
        raise Conflict(
            f"{flag.key!r} has no rollout strategy to set; change its strategies instead",
            details={"key": flag.key},
            code="NO_ROLLOUT_STRATEGY",
        )


def plan_not_found(key: str) -> NotFound:
    return NotFound(f"no rollout plan for {key!r}", details={"key": key}, code="NO_ROLLOUT_PLAN")


def schedule_not_found(schedule_id: int) -> NotFound:
    return NotFound(f"no scheduled change {schedule_id}", details={"schedule": schedule_id})


# --- the runner -------------------------------------------------------------------------------
class RolloutRunner:
    """Plans and scheduled changes: managed through the API, moved by `tick()`.

    `clock` is read once a tick (and for each API change); tests give their own.
    """

    def __init__(
        self,
        store: RolloutStore,
        flags: FlagService,
        breakers: BreakerRegistry,
        *,
        clock: Callable[[], datetime] = utcnow,
        retry_after: float = 30.0,
    ) -> None:
        self.store = store
        self.flags = flags
        self.breakers = breakers
        self.clock = clock
        self.retry_after = timedelta(seconds=retry_after)

    # --- plans --------------------------------------------------------------------------
    async def plans(self) -> list[RolloutPlan]:
        return await self.store.plans()

    async def plan(self, key: str) -> RolloutPlan:
        plan = await self.store.plan(key)
        if plan is None:
            await self.flags.get(key)  # 404 naming the flag when there is none
            raise plan_not_found(key)
        return plan

    async def put_plan(
        self,
        key: str,
        steps: Iterable[Step],
        *,
        actor: str,
        guards: Guards = Guards(),
        start_at: datetime | None = None,
    ) -> RolloutPlan:
        """A new plan for the flag (replacing any, from its first step). One starting now
        takes its first step at once (or pauses at once, when a guard trips already)."""
        now = self.clock()
        flag = await self.flags.get(key)
        checked_steps = validate_steps(list(steps))
        checked_guards = validate_guards(guards, self.breakers)
        start = now if start_at is None else _moment(start_at, "startAt", now, past_ok=True)
        _check_rollout_target(flag)
        plan = RolloutPlan(
            key=key,
            steps=checked_steps,
            start_at=start,
            guards=checked_guards,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        stored = await self.store.put_plan(plan, actor=actor)
        return await self._move_now(stored, now)

    async def delete_plan(self, key: str, *, actor: str) -> RolloutPlan:
        """The plan stops where it is; the flag keeps its current rollout."""
        await self.plan(key)  # 404 for an unknown flag or plan
        return await self.store.delete_plan(key, actor=actor)

    async def pause(self, key: str, *, actor: str, reason: str | None = None) -> RolloutPlan:
        said = f"paused by {actor}" + (f": {reason[:MAX_REASON]}" if reason else "")
        for _ in range(5):
            plan = await self.plan(key)
            if plan.status is not PlanStatus.ACTIVE:
                raise Conflict(
                    f"the rollout plan of {key!r} is {plan.status.value}, not active",
                    details={"key": key, "status": plan.status.value},
                    code="PLAN_NOT_ACTIVE",
                )
            paused = await self._pause(plan, said, self.clock(), actor)
            if paused is not None:
                return paused
        raise _busy(key)

    async def resume(self, key: str, *, actor: str) -> RolloutPlan:
        """A paused plan goes on, its current step held afresh; 409 while a guard trips."""
        for _ in range(5):
            plan = await self.plan(key)
            if plan.status is not PlanStatus.PAUSED:
                raise Conflict(
                    f"the rollout plan of {key!r} is {plan.status.value}, not paused",
                    details={"key": key, "status": plan.status.value},
                    code="PLAN_NOT_PAUSED",
                )
            reason = tripped(plan.guards, self.breakers)
            if reason is not None:
                raise Conflict(
                    f"cannot resume the rollout plan of {key!r}: {reason}",
                    details={"key": key, "reason": reason},
                    code="GUARD_TRIPPED",
                )
            now = self.clock()
            resumed = replace(
                plan,
                status=PlanStatus.ACTIVE,
                paused_reason=None,
                paused_at=None,
                step_started_at=now if plan.step >= 0 else None,
                updated_at=now,
            )
            audit = Audit("plan-resume", actor, {"step": plan.step})
            moved = await self.store.move_plan(plan, resumed, audit)
            if moved is not None:
                return await self._move_now(moved, now)
        raise _busy(key)

    # --- scheduled changes ----------------------------------------------------------------
    async def schedule(
        self,
        key: str,
        action: ScheduleAction,
        *,
        at: datetime,
        actor: str,
        percentage: int | None = None,
    ) -> ScheduledChange:
        now = self.clock()
        moment = _moment(at, "at", now, past_ok=False)
        if action is ScheduleAction.ROLLOUT:
            if percentage is None or not 0 <= percentage <= 100:
                raise _invalid("percentage", "a whole percentage, 0-100, for a rollout")
        elif percentage is not None:
            raise _invalid("percentage", f"only for a rollout, not {action.value!r}")
        flag = await self.flags.get(key)
        if action is ScheduleAction.ROLLOUT:
            _check_rollout_target(flag)
        change = ScheduledChange(
            id=0,
            key=key,
            action=action,
            at=moment,
            percentage=percentage,
            created_by=actor,
            created_at=now,
        )
        return await self.store.add_schedule(change, actor=actor)

    async def schedules(
        self, key: str | None = None, status: ScheduleStatus | None = None
    ) -> list[ScheduledChange]:
        """Ordered by time (and id); at most 1000."""
        return await self.store.schedules(key, status)

    async def get_schedule(self, schedule_id: int) -> ScheduledChange:
        change = await self.store.schedule(schedule_id)
        if change is None:
            raise schedule_not_found(schedule_id)
        return change

    async def cancel(self, schedule_id: int, *, actor: str) -> ScheduledChange:
        """A pending change is not made; 409 once it is made (or being made)."""
        for _ in range(5):
            change = await self.get_schedule(schedule_id)
            if change.status is not ScheduleStatus.PENDING:
                raise Conflict(
                    f"scheduled change {schedule_id} is {change.status.value}, not pending",
                    details={"schedule": schedule_id, "status": change.status.value},
                    code="SCHEDULE_NOT_PENDING",
                )
            cancelled = replace(change, status=ScheduleStatus.CANCELLED)
            audit = Audit("schedule-cancel", actor, change.summary())
            moved = await self.store.move_schedule(change, cancelled, audit)
            if moved is not None:
                return moved
        raise Conflict(
            f"scheduled change {schedule_id} is changing; try again",
            details={"schedule": schedule_id},
            code="BUSY",
        )

    # --- the loop's step ----------------------------------------------------------------------
    async def tick(self) -> None:
        """One round: every active plan and every due change, each on its own (one that
        fails is logged and left for the next round, and so are its flag's later ones)."""
        now = self.clock()
        for plan in await self.store.plans(PlanStatus.ACTIVE):
            try:
                await self._run_plan(plan, now)
            except Exception as exc:
                log.warning("rollout plan of %r: %s: %s", plan.key, type(exc).__name__, exc)
        waiting: set[str] = set()  # flags with an earlier change not made yet
        for change in await self.store.due_schedules(now):  # in order: time, then id
            if change.key in waiting:
                continue
            try:
                finished = await self._run_schedule(change, now)
            except Exception as exc:
                finished = False
                log.warning(
                    "scheduled change %d of %r: %s: %s",
                    change.id,
                    change.key,
                    type(exc).__name__,
                    exc,
                )
            if not finished:
                waiting.add(change.key)

    async def _move_now(self, plan: RolloutPlan, now: datetime) -> RolloutPlan:
        """A plan just stored, moved at once if due; what fails is the next tick's to retry
        (the plan is stored: the caller is not told it failed)."""
        try:
            return await self._run_plan(plan, now) or plan
        except Exception as exc:
            log.warning("rollout plan of %r: %s: %s", plan.key, type(exc).__name__, exc)
        try:
            return await self.store.plan(plan.key) or plan
        except Exception:
            return plan

    async def _run_plan(self, plan: RolloutPlan, now: datetime) -> RolloutPlan | None:
        """The plan after this round's move, or None when it did not move (here)."""
        if plan.status is not PlanStatus.ACTIVE:
            return None
        reason = tripped(plan.guards, self.breakers)
        if reason is not None:
            return await self._pause(plan, reason, now, PLAN_ACTOR)
        decision = decide(plan, now, self.retry_after)
        if decision is None:
            return None
        if decision.move is Move.COMPLETE:
            completed = replace(plan, status=PlanStatus.COMPLETED, updated_at=now)
            step = plan.steps[plan.step]
            audit = Audit("plan-complete", PLAN_ACTOR, {"step": plan.step, **step.to_dict()})
            return await self.store.move_plan(plan, completed, audit)
        if decision.move is Move.ADVANCE:
            step = plan.steps[decision.step]
            taken = replace(
                plan, step=decision.step, step_started_at=now, pending_since=now, updated_at=now
            )
            details = {"step": decision.step, "of": len(plan.steps), **step.to_dict()}
            claimed = await self.store.move_plan(
                plan, taken, Audit("plan-step", PLAN_ACTOR, details)
            )
        else:  # re-claimed, so that one process retries
            claimed = await self.store.move_plan(plan, replace(plan, pending_since=now))
        if claimed is None:
            return None  # another process moved it first
        return await self._apply_step(claimed, now)

    async def _apply_step(self, plan: RolloutPlan, now: datetime) -> RolloutPlan | None:
        percentage = plan.steps[plan.step].percentage
        try:
            await self.flags.set_rollout(plan.key, percentage, actor=PLAN_ACTOR)
        except (NotFound, Conflict, InvalidInput) as exc:  # it cannot apply: say so
            reason = f"step {plan.step} ({percentage} %) cannot be applied: {exc.message}"
            return await self._pause(plan, reason, now, PLAN_ACTOR)
        # Anything else (the database away): left pending, applied again after retry_after.
        applied = await self.store.step_applied(plan.key, plan.step)
        log.info("rollout plan of %r: step %d, %d %%", plan.key, plan.step, percentage)
        return applied

    async def _pause(
        self, plan: RolloutPlan, reason: str, now: datetime, actor: str
    ) -> RolloutPlan | None:
        paused = replace(
            plan, status=PlanStatus.PAUSED, paused_reason=reason, paused_at=now, updated_at=now
        )
        moved = await self.store.move_plan(
            plan, paused, Audit("plan-pause", actor, {"step": plan.step, "reason": reason})
        )
        if moved is not None:
            log.warning("rollout plan of %r paused at step %d: %s", plan.key, plan.step, reason)
        return moved

    async def _run_schedule(self, change: ScheduledChange, now: datetime) -> bool:
        """Whether the change is finished (made, or failed for good) by this call."""
        if not schedule_due(change, now, self.retry_after):
            return False  # being made by a process, not yet retried
        first = change.status is ScheduleStatus.PENDING
        claimed = await self.store.move_schedule(
            change,
            replace(change, status=ScheduleStatus.APPLYING, claimed_at=now),
            Audit("schedule-apply", SCHEDULE_ACTOR, change.summary()) if first else None,
        )
        if claimed is None:
            return False  # another process has it
        try:
            await self._apply_change(claimed)
        except (NotFound, Conflict, InvalidInput) as exc:
            failed = replace(claimed, status=ScheduleStatus.FAILED, error=exc.message)
            audit = Audit(
                "schedule-fail", SCHEDULE_ACTOR, {**change.summary(), "error": exc.message}
            )
            await self.store.move_schedule(claimed, failed, audit)
            log.warning("scheduled change %d of %r failed: %s", change.id, change.key, exc)
            return True
        done = replace(claimed, status=ScheduleStatus.DONE, applied_at=now)
        await self.store.move_schedule(claimed, done)
        return True

    async def _apply_change(self, change: ScheduledChange) -> Flag:
        if change.action is ScheduleAction.ENABLE:
            return await self.flags.enable(change.key, actor=SCHEDULE_ACTOR)
        if change.action is ScheduleAction.DISABLE:
            return await self.flags.disable(change.key, actor=SCHEDULE_ACTOR)
        assert change.percentage is not None
        return await self.flags.set_rollout(change.key, change.percentage, actor=SCHEDULE_ACTOR)


def _busy(key: str) -> Conflict:
    return Conflict(
        f"the rollout plan of {key!r} is changing; try again", details={"key": key}, code="BUSY"
    )


__all__ = [
    "ErrorRateGuard",
    "Guards",
    "PlanStatus",
    "RolloutPlan",
    "RolloutRunner",
    "RolloutStore",
    "ScheduleAction",
    "ScheduleStatus",
    "ScheduledChange",
    "Step",
    "decide",
    "schedule_due",
    "tripped",
]
