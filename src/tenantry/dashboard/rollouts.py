"""Dashboard: a flag's rollout plan (create or replace, pause, resume, delete) and its
scheduled changes (schedule, cancel), on the flag's page.

Every form goes through `RolloutRunner` (`services.rollouts`), which validates it and
audits the change with the admin as actor; a refusal is shown beside the form that was
sent, with what was typed. The page lists the plan and the changes (`flags.render_flag`).

A plan moves by itself (a step is a new version), so its forms carry no version; they
carry when the plan shown was created instead, and replacing or deleting a plan that
was replaced (or deleted) since the page was loaded is refused. Pausing and resuming
need no such check: the runner refuses them unless the plan is active (or paused).

Times are typed and shown in UTC: an `<input type="datetime-local">` has no zone, and
the page says that what is typed there is read as UTC.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import StringConstraints

from tenantry.dashboard.auth import ActionDep
from tenantry.dashboard.durations import format_duration, parse_duration
from tenantry.dashboard.flags import ACTOR, Problem, flag_url, planned_token, render_flag
from tenantry.deps import ServicesDep
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.resilience.rollouts import (
    MAX_GUARDED_CIRCUITS,
    MAX_HOLD_SECONDS,
    MAX_REASON,
    MAX_STEPS,
    ErrorRateGuard,
    Guards,
    RolloutPlan,
    ScheduleAction,
    Step,
)
from tenantry.sessions import DashboardSession

router = APIRouter(prefix="/admin/flags")

MAX_STEPS_TEXT = 2_000  # the steps box
REPLACED = "The rollout plan changed since the page was loaded: review it below and try again."
# What a form names each field the runner may refuse (its `details["field"]`).
FORM_FIELDS = {
    "steps": "steps",
    "startAt": "startAt",
    "guards.circuits": "circuits",
    "guards.errorRate.circuit": "rateCircuit",
    "guards.errorRate.threshold": "rateThreshold",
    "guards.errorRate.minimumCalls": "rateMinimumCalls",
    "at": "at",
    "percentage": "percentage",
}
_STEP_LINE = re.compile(r"(\d{1,3})\s*%?(?:\s+(.*))?")
_INDEX = re.compile(r"\[(\d+)\]")


def _invalid(field_name: str, rule: str) -> InvalidInput:
    return InvalidInput(f"{field_name}: {rule}", details={"field": field_name})


# --- reading the forms ------------------------------------------------------------------
def _bad_step(number: int, rule: str) -> InvalidInput:
    return InvalidInput(f"step {number}: {rule}", details={"field": "steps"})


def parse_steps(text: str) -> list[Step]:
    """A step a line: a percentage, then how long it holds (`10 1h`, `50 30m`, `100`)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise _invalid("steps", "give at least one step, e.g. 10 1h")
    if len(lines) > MAX_STEPS:
        raise _invalid("steps", f"at most {MAX_STEPS} steps")
    steps = []
    for number, line in enumerate(lines, start=1):
        match = _STEP_LINE.fullmatch(line)
        if match is None:
            raise _bad_step(number, f"{line[:40]!r} is not a percentage and a hold (10 1h)")
        try:
            hold = parse_duration(match[2]) if match[2] else 0
        except ValueError as exc:
            raise _bad_step(number, str(exc)) from None
        steps.append(Step(int(match[1]), hold))
    return steps


def parse_moment(text: str, field_name: str) -> datetime | None:
    """A `datetime-local` value (or ISO 8601), read as UTC when it names no offset."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _invalid(field_name, "a date and time, e.g. 2027-01-31T09:00 (UTC)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_guards(
    circuits: list[str], rate_circuit: str, rate_threshold: str, rate_minimum_calls: str
) -> Guards:
    error_rate = None
    if rate_circuit:
        try:
            threshold = float(rate_threshold)
        except ValueError:
            raise _invalid("guards.errorRate.threshold", "a percentage, e.g. 5") from None
        try:
            minimum = int(rate_minimum_calls) if rate_minimum_calls.strip() else 10
        except ValueError:
            raise _invalid("guards.errorRate.minimumCalls", "a whole number of calls") from None
        error_rate = ErrorRateGuard(rate_circuit, threshold, minimum)
    return Guards(tuple(circuits), error_rate)


def parse_percentage(text: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit():
        raise _invalid("percentage", "a whole percentage, 0-100")
    return int(text.strip())


def describe(exc: InvalidInput | Conflict | NotFound) -> tuple[str, str | None]:
    """The refusal as the page says it (steps numbered from 1), and the form field it is
    about (the runner's `details["field"]`, said as the form names it), if any."""
    given = exc.details.get("field") if isinstance(exc.details, Mapping) else None
    if not isinstance(given, str):
        return exc.message, None
    path = _INDEX.sub("", given)
    form_field = FORM_FIELDS.get(path) or FORM_FIELDS.get(path.partition(".")[0])
    index = _INDEX.search(given)
    if not given.startswith("steps[") or index is None:
        return exc.message, form_field
    number, rule = int(index[1]) + 1, exc.message.partition(": ")[2]
    if given.endswith(".holdSeconds"):  # the rule says seconds; the form takes durations
        return f"step {number}, hold: at most {format_duration(MAX_HOLD_SECONDS)}", form_field
    return f"step {number}, {given.rpartition('.')[2]}: {rule}", form_field


# --- answering a form -----------------------------------------------------------------------
async def _act(
    request: Request,
    services: ServicesDep,
    session: DashboardSession,
    key: str,
    form: str,
    action: Callable[[], Awaitable[object]],
    done: str,
    typed: Mapping[str, Any] | None = None,
) -> Response:
    """Run `action`; its refusal re-renders the flag page with the reason beside `form`."""
    try:
        await action()
    except (InvalidInput, Conflict, NotFound) as exc:
        flag = await services.resilience.flags.get(key)  # an unknown flag: a plain 404
        message, field_name = describe(exc)
        problem = Problem(form, message, typed or {})
        status = exc.status_code
        return await render_flag(
            request, services, session, flag, status, problem=problem, problem_field=field_name
        )
    anchor = "schedules" if form == "schedule" else "rollout-plan"
    return RedirectResponse(f"{flag_url(key)}?done={done}#{anchor}", status_code=303)


async def _same_plan(services: ServicesDep, key: str, planned: str) -> RolloutPlan | None:
    """The plan, if it is the one the page showed (`planned`: its creation, or blank)."""
    try:
        plan: RolloutPlan | None = await services.rollouts.plan(key)
    except NotFound:
        plan = None
    if planned_token(plan) != planned:
        raise Conflict(REPLACED, details={"key": key}, code="PLAN_CHANGED")
    return plan


FlagKey = Annotated[str, Path(max_length=100)]
Short = Annotated[str, Form(max_length=100)]
Circuit = Annotated[str, StringConstraints(max_length=100)]


# --- the plan --------------------------------------------------------------------------------
@router.post("/{key}/rollout-plan")
async def save_plan(
    request: Request,
    key: FlagKey,
    services: ServicesDep,
    session: ActionDep,
    steps: Annotated[str, Form(max_length=MAX_STEPS_TEXT)],
    planned: Short = "",
    start_at: Annotated[str, Form(alias="startAt", max_length=40)] = "",
    circuits: Annotated[list[Circuit] | None, Form(max_length=MAX_GUARDED_CIRCUITS)] = None,
    rate_circuit: Annotated[str, Form(alias="rateCircuit", max_length=100)] = "",
    rate_threshold: Annotated[str, Form(alias="rateThreshold", max_length=20)] = "",
    rate_minimum_calls: Annotated[str, Form(alias="rateMinimumCalls", max_length=20)] = "",
) -> Response:
    """Create the flag's plan, or replace it (from its first step); one starting now (a
    blank start) takes its first step at once."""
    typed = {
        "steps": steps,
        "startAt": start_at,
        "circuits": circuits or [],
        "rateCircuit": rate_circuit,
        "rateThreshold": rate_threshold,
        "rateMinimumCalls": rate_minimum_calls,
    }

    async def action() -> RolloutPlan:
        parsed = parse_steps(steps)
        guards = parse_guards(circuits or [], rate_circuit, rate_threshold, rate_minimum_calls)
        start = parse_moment(start_at, "startAt")
        await _same_plan(services, key, planned)
        return await services.rollouts.put_plan(
            key, parsed, guards=guards, start_at=start, actor=ACTOR
        )

    return await _act(request, services, session, key, "rollout-plan", action, "plan-saved", typed)


@router.post("/{key}/rollout-plan/{change}")
async def change_plan(
    request: Request,
    key: FlagKey,
    change: Literal["pause", "resume", "delete"],
    services: ServicesDep,
    session: ActionDep,
    planned: Short = "",
    reason: Annotated[str, Form(max_length=MAX_REASON)] = "",
) -> Response:
    """Pause (saying why), resume (refused while a guard trips), or delete the plan (the
    flag keeps its current rollout)."""
    rollouts = services.rollouts

    async def action() -> object:
        if change == "pause":
            return await rollouts.pause(key, actor=ACTOR, reason=reason.strip() or None)
        if change == "resume":
            return await rollouts.resume(key, actor=ACTOR)
        await _same_plan(services, key, planned)
        return await rollouts.delete_plan(key, actor=ACTOR)

    done = {"pause": "plan-paused", "resume": "plan-resumed", "delete": "plan-deleted"}[change]
    typed = {"reason": reason}
    return await _act(request, services, session, key, "rollout-state", action, done, typed)


# --- scheduled changes -----------------------------------------------------------------------
@router.post("/{key}/schedules")
async def schedule(
    request: Request,
    key: FlagKey,
    services: ServicesDep,
    session: ActionDep,
    action: Annotated[ScheduleAction, Form()],
    at: Annotated[str, Form(max_length=40)] = "",
    percentage: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Enable, disable or set the rollout of the flag at a time (typed as UTC)."""
    typed = {"action": action.value, "at": at, "percentage": percentage}

    async def make() -> object:
        moment = parse_moment(at, "at")
        if moment is None:
            raise _invalid("at", "choose a date and time (UTC)")
        return await services.rollouts.schedule(
            key, action, at=moment, percentage=parse_percentage(percentage), actor=ACTOR
        )

    return await _act(request, services, session, key, "schedule", make, "scheduled", typed)


@router.post("/{key}/schedules/{schedule_id}/cancel")
async def cancel_schedule(
    request: Request,
    key: FlagKey,
    schedule_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    services: ServicesDep,
    session: ActionDep,
) -> Response:
    """A pending change is not made; one made (or being made) is refused."""
    rollouts = services.rollouts

    async def action() -> object:
        change = await rollouts.get_schedule(schedule_id)
        if change.key != key:  # another flag's: not this page's to cancel
            raise NotFound(f"no scheduled change {schedule_id} of {key!r}")
        return await rollouts.cancel(schedule_id, actor=ACTOR)

    return await _act(request, services, session, key, "schedule", action, "schedule-cancelled")
