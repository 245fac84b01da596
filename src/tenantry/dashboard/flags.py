"""Dashboard: feature flags — toggle, rollout, allow and block lists, variants, audit log;
strategies with their constraints and segments, dependencies, a "try it" evaluation, and
Unleash documents in and out. The flag's rollout plan and scheduled changes are shown here
too; their forms are `dashboard.rollouts`.

Every edit is a whole new list of strategies (or dependencies) handed to
`FlagService.update`, which validates it strictly; the form that was sent shows the
refusal beside it. Forms carry the flag's version, so an edit made from a page that
another change has since overtaken (indexes would point at other strategies) is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tenantry.dashboard.auth import ActionDep, SessionDep
from tenantry.dashboard.durations import format_duration
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep
from tenantry.errors import Conflict, InvalidInput, NotFound, TenantryError
from tenantry.resilience.constraints import Constraint, Operator
from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import Dependency, Flag, Strategy, Target
from tenantry.resilience.rollouts import (
    MAX_REASON,
    PlanStatus,
    RolloutPlan,
    ScheduleAction,
    ScheduledChange,
    ScheduleStatus,
    tripped,
)
from tenantry.resilience.strategies import STRATEGIES, TENANTRY_ROLLOUTS
from tenantry.resilience.unleash import simple_strategies
from tenantry.sessions import DashboardSession

router = APIRouter(prefix="/admin/flags")
ACTOR = "admin (dashboard)"

DONE = {
    "enabled": "Flag enabled.",
    "disabled": "Flag disabled.",
    "rollout": "Rollout changed.",
    "allow": "Added to the allow list.",
    "block": "Added to the block list.",
    "removed": "Removed from the list.",
    "strategies": "Strategies saved.",
    "dependencies": "Dependencies saved.",
    "converted": "The flag is now decided by strategies (they decide as its rollout did).",
    "simple": "The flag is now decided by its rollout.",
    "imported": "Document imported.",
    "plan-saved": "Rollout plan saved.",
    "plan-paused": "Rollout plan paused.",
    "plan-resumed": "Rollout plan resumed: the current step is held afresh.",
    "plan-deleted": "Rollout plan deleted: the flag keeps its current rollout.",
    "scheduled": "Change scheduled.",
    "schedule-cancelled": "Scheduled change cancelled.",
}

# --- form limits and choices -------------------------------------------------------------
MAX_TEXT = 10_000  # a values or parameters box
MAX_FIELD = 1_000  # one short input
MAX_LINES = 1_000  # values, parameters or properties in one box
MAX_DOCUMENT = 2 * 1024 * 1024  # an uploaded or pasted Unleash document
OPERATORS = [operator.value for operator in Operator]
SINGLE_VALUE = ("NUM_", "DATE_", "SEMVER_", "REGEX")  # one value, not a list
CONTEXT_FIELDS = [
    "userId",
    "companyId",
    "sessionId",
    "remoteAddress",
    "environment",
    "appName",
    "currentTime",
]
PARAMETERS: dict[str, tuple[str, ...]] = {
    "default": (),
    "userWithId": ("userIds",),
    "flexibleRollout": ("rollout", "stickiness", "groupId"),
    "gradualRolloutUserId": ("percentage", "groupId"),
    "gradualRolloutSessionId": ("percentage", "groupId"),
    "gradualRolloutRandom": ("percentage",),
    "remoteAddress": ("IPs",),
    "applicationHostname": ("hostNames",),
    "companyRollout": ("rollout", "groupId"),
    "userRollout": ("rollout", "groupId"),
}
STRATEGY_NAMES = sorted(STRATEGIES, key=lambda name: (name != "default", name))
STALE = "This flag changed since the page was loaded: review it below and try again."


@dataclass(frozen=True)
class Problem:
    """A refused form: which one (`form`), why, and what was typed (to fill it back in)."""

    form: str
    message: str
    values: Mapping[str, Any] = field(default_factory=dict)


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """What an audit entry changed, as `field: old → new` (the whole flag would be noise)."""
    before, after = before or {}, after or {}
    keys = [
        k for k in sorted({*before, *after}) if k != "version" and before.get(k) != after.get(k)
    ]
    return "; ".join(f"{k}: {before.get(k, '—')} → {after.get(k, '—')}" for k in keys) or "—"


_PLACE = re.compile(r"(strategies|constraints|dependencies|segments)\[(\d+)\]")
_SINGULAR = {
    "strategies": "strategy",
    "constraints": "constraint",
    "dependencies": "dependency",
    "segments": "segment",
}


def describe(exc: TenantryError) -> str:
    """The service's message, its field path said as the page numbers things (from 1)."""
    path, sep, rule = exc.message.partition(": ")
    if not sep or not _PLACE.search(path):
        return exc.message
    place = _PLACE.sub(lambda m: f"{_SINGULAR[m[1]]} {int(m[2]) + 1}", path).replace(".", ", ")
    return f"{place}: {rule}"


# --- reading the forms ------------------------------------------------------------------
def _invalid(field_name: str, rule: str) -> InvalidInput:
    return InvalidInput(f"{field_name}: {rule}", details={"field": field_name})


def split_values(text: str) -> tuple[str, ...]:
    """One value a line, or comma-separated on one line; blanks dropped."""
    parts = text.splitlines() if "\n" in text.strip() else text.split(",")
    values = tuple(part.strip() for part in parts if part.strip())
    if len(values) > MAX_LINES:
        raise _invalid("values", f"at most {MAX_LINES} values")
    return values


def parse_constraint(
    context_name: str, operator: str, values: str, inverted: bool, case_insensitive: bool
) -> Constraint:
    """A constraint from the editor: a list of values, or one for NUM/DATE/SEMVER/REGEX."""
    name = context_name.strip()
    if not name:
        raise _invalid("contextName", "name the context field the constraint tests")
    if operator.startswith(SINGLE_VALUE):
        value = values.strip()
        return Constraint(name, operator, None, value or None, inverted, case_insensitive)
    return Constraint(name, operator, split_values(values), None, inverted, case_insensitive)


def parse_pairs(text: str, field_name: str) -> dict[str, str]:
    """`name=value` lines (blank lines skipped) as a dict."""
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name or len(name) > 100:
            raise _invalid(field_name, f"each line is name=value (not {line.strip()[:60]!r})")
        pairs[name] = value.strip()
    if len(pairs) > MAX_LINES:
        raise _invalid(field_name, f"at most {MAX_LINES} lines")
    return pairs


def default_parameters(name: str, key: str) -> dict[str, str]:
    """What a new strategy starts with: everyone in, for the rollouts."""
    if name == "flexibleRollout":
        return {"rollout": "100", "stickiness": "default", "groupId": key}
    if name in TENANTRY_ROLLOUTS:
        return {"rollout": "100", "groupId": key}
    if name in ("gradualRolloutUserId", "gradualRolloutSessionId"):
        return {"percentage": "100", "groupId": key}
    if name == "gradualRolloutRandom":
        return {"percentage": "100"}
    return {parameter: "" for parameter in PARAMETERS.get(name, ())}


def parameters_text(parameters: Mapping[str, str]) -> str:
    return "\n".join(f"{name}={value}" for name, value in parameters.items())


def constraint_values(constraint: Constraint) -> str:
    if constraint.values is not None:
        return ", ".join(constraint.values)
    return constraint.value or ""


def simple_rollout(flag: Flag) -> int | None:
    """The rollout of a simple flag that decides as `flag`'s strategies do, or None.

    Only one unconstrained `default` (100 %), or one rollout below 100 % sticky on the
    flag's target field and grouped by its key, has one (a rollout of 100 % leaves out
    callers without that field, which a simple flag's 100 % lets in).
    """
    if len(flag.strategies) != 1:
        return None
    strategy = flag.strategies[0]
    if strategy.constraints or strategy.segments or strategy.variants is not None:
        return None
    if strategy.name == "default":
        return 100
    sticky = TENANTRY_ROLLOUTS.get(strategy.name)
    if strategy.name == "flexibleRollout":
        sticky = strategy.parameters.get("stickiness")
    if sticky != flag.target.context_field or strategy.group_id not in (None, flag.key):
        return None
    rollout = strategy.parameters.get("rollout", "")
    return int(rollout) if rollout.isdigit() and int(rollout) < 100 else None


@dataclass(frozen=True)
class StepRow:
    """One step of a plan as the page lists it: done, current, next or later."""

    number: int  # from 1
    percentage: int
    hold_seconds: int
    state: Literal["done", "current", "next", "later"]
    due: datetime | None = None  # when the next step is taken


def step_rows(plan: RolloutPlan) -> list[StepRow]:
    rows = []
    for index, step in enumerate(plan.steps):
        state: Literal["done", "current", "next", "later"] = "later"
        due = None
        if plan.status is PlanStatus.COMPLETED or index < plan.step:
            state = "done"
        elif index == plan.step:
            state = "current"
        elif index == plan.step + 1:
            state, due = "next", plan.next_move_at
        rows.append(StepRow(index + 1, step.percentage, step.hold_seconds, state, due))
    return rows


def steps_text(plan: RolloutPlan) -> str:
    """The plan's steps as its form takes them: `10 1h`, a step a line."""
    return "\n".join(
        f"{step.percentage} {format_duration(step.hold_seconds)}"
        if step.hold_seconds
        else str(step.percentage)
        for step in plan.steps
    )


def planned_token(plan: RolloutPlan | None) -> str:
    """What a plan's forms carry to name the plan they were shown: when it was created
    (a replaced plan is created anew; a step or a pause leaves it)."""
    return plan.created_at.isoformat() if plan is not None and plan.created_at else ""


FINISHED_SHOWN = 20  # the latest done, failed or cancelled changes the page lists


async def _rollout_view(services: ServicesDep, flag: Flag) -> dict[str, Any]:
    """The flag's plan and scheduled changes, and what the forms offer for them."""
    rollouts = services.rollouts
    breakers = services.resilience.breakers
    try:
        plan: RolloutPlan | None = await rollouts.plan(flag.key)
    except NotFound:
        plan = None
    changes = await rollouts.schedules(flag.key)
    waiting = (ScheduleStatus.PENDING, ScheduleStatus.APPLYING)
    upcoming = [change for change in changes if change.status in waiting]
    finished = [change for change in reversed(changes) if change.status not in waiting]
    scheduled: list[ScheduledChange] = upcoming + finished[:FINISHED_SHOWN]
    return {
        "plan": plan,
        "plan_steps": step_rows(plan) if plan is not None else [],
        "planned": planned_token(plan),
        "plan_text": steps_text(plan) if plan is not None else "",
        "would_pause": (
            tripped(plan.guards, breakers)
            if plan is not None and plan.status is not PlanStatus.COMPLETED
            else None
        ),
        "breakers": {breaker.name: breaker for breaker in breakers},
        "rate_circuits": [b.name for b in breakers if b.config.sliding_window_size is not None],
        "scheduled": scheduled,
        "schedule_actions": [action.value for action in ScheduleAction],
        "max_reason": MAX_REASON,
        "now": rollouts.clock(),
    }


def _strategy_at(flag: Flag, index: int) -> Strategy:
    if not 0 <= index < len(flag.strategies):
        raise _invalid("strategies", f"{flag.key!r} has no strategy {index + 1}")
    return flag.strategies[index]


def _with_strategy(flag: Flag, index: int, strategy: Strategy) -> dict[str, Any]:
    strategies = list(flag.strategies)
    strategies[index] = strategy
    return {"strategies": tuple(strategies)}


# --- pages --------------------------------------------------------------------------------
def flag_url(key: str) -> str:
    return f"/admin/flags/{quote(key, safe='')}"


def _back(key: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"{flag_url(key)}?done={done}", status_code=303)


@router.get("", response_class=HTMLResponse)
async def flags_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    done: str | None = None,
    count: int | None = None,
) -> HTMLResponse:
    flash = DONE.get(done or "")
    if done == "imported" and count is not None:
        flash = f"Document imported: {count} flag{'' if count == 1 else 's'}."
    return await _list_page(request, services, session, flash=flash)


async def _list_page(
    request: Request,
    services: ServicesDep,
    session: DashboardSession,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    flags = await services.resilience.flags.all()
    plans = [p for p in await services.rollouts.plans() if p.status is not PlanStatus.COMPLETED]
    return render(
        request,
        "flags.html",
        session,
        page="flags",
        status_code=status_code,
        flags=flags,
        plans=plans,
        live_url="/admin/flags",
        max_document=MAX_DOCUMENT,
        **context,
    )


@router.get("/export")
async def export(services: ServicesDep, _: SessionDep) -> Response:
    """Every flag and segment as an Unleash client-features document, to download."""
    document = services.resilience.flags.export_document()
    return Response(
        json.dumps(document, indent=2, ensure_ascii=False),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="tenantry-flags.json"'},
    )


@router.post("/import", response_class=HTMLResponse)
async def import_flags(
    request: Request,
    services: ServicesDep,
    session: ActionDep,
    file: Annotated[UploadFile | None, File()] = None,
    document: Annotated[str, Form(max_length=MAX_DOCUMENT)] = "",
) -> Response:
    """An Unleash document (a file, or pasted), all or nothing; a refusal shows its reason."""
    raw: bytes | str = document
    if file is not None and file.filename:
        raw = await file.read(MAX_DOCUMENT + 1)
    try:
        if len(raw) > MAX_DOCUMENT:
            raise _invalid("document", f"at most {MAX_DOCUMENT // 1024 // 1024} MB")
        if not raw.strip():
            raise _invalid("document", "choose a file or paste a document")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _invalid("document", f"not JSON ({exc})") from None
        count = await services.resilience.flags.import_document(data, actor=ACTOR)
    except (InvalidInput, Conflict) as exc:
        problem = Problem("import", exc.message, {"document": document})
        return await _list_page(request, services, session, exc.status_code, problem=problem)
    return RedirectResponse(f"/admin/flags?done=imported&count={count}", status_code=303)


@router.get("/{key}", response_class=HTMLResponse)
async def flag_page(
    request: Request,
    key: str,
    services: ServicesDep,
    session: SessionDep,
    done: str | None = None,
) -> HTMLResponse:
    flag = await services.resilience.flags.get(key)
    return await render_flag(request, services, session, flag, flash=DONE.get(done or ""))


async def render_flag(
    request: Request,
    services: ServicesDep,
    session: DashboardSession,
    flag: Flag,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    flags = services.resilience.flags
    audit = await flags.audit(flag.key, limit=50)
    segments = flags.segments()
    return render(
        request,
        "flag.html",
        session,
        page="flags",
        status_code=status_code,
        flag=flag,
        base=flag_url(flag.key),
        live_url=flag_url(flag.key),
        audit=audit,
        changes=changes,
        segments=segments,
        segment_names={segment.id: segment.name for segment in segments},
        parents=[f.key for f in await flags.all() if f.key != flag.key],
        strategy_names=STRATEGY_NAMES,
        parameter_hints=PARAMETERS,
        operators=OPERATORS,
        context_fields=CONTEXT_FIELDS,
        parameters_text=parameters_text,
        constraint_values=constraint_values,
        simple_rollout=simple_rollout(flag) if not flag.simple else None,
        **await _rollout_view(services, flag),
        **context,
    )


Edit = Callable[[Flag], Mapping[str, Any]]


async def _edit(
    request: Request,
    services: ServicesDep,
    session: DashboardSession,
    key: str,
    version: int,
    form: str,
    edit: Edit,
    *,
    done: str | None = None,
    typed: Mapping[str, Any] | None = None,
) -> Response:
    """Apply `edit` to the flag as `version` showed it; a refusal re-renders beside `form`.

    Audited as a change of "dependencies" or of "strategies" (every other form).
    """
    action = "dependencies" if form == "dependencies" else "strategies"
    flags = services.resilience.flags
    flag = await flags.get(key)
    if flag.version != version:
        problem = Problem(form, STALE, typed or {})
        return await render_flag(request, services, session, flag, 409, problem=problem)
    try:
        await flags.update(key, actor=ACTOR, action=action, **edit(flag))
    except (InvalidInput, Conflict) as exc:
        problem = Problem(form, describe(exc), typed or {})
        flag = await flags.get(key)
        return await render_flag(request, services, session, flag, exc.status_code, problem=problem)
    return _back(key, done or action)


Version = Annotated[int, Form()]
Short = Annotated[str, Form(max_length=MAX_FIELD)]
Text = Annotated[str, Form(max_length=MAX_TEXT)]
Checkbox = Annotated[str | None, Form(max_length=10)]


@router.post("/{key}/toggle")
async def toggle(key: str, services: ServicesDep, _: ActionDep) -> RedirectResponse:
    flags = services.resilience.flags
    if (await flags.get(key)).enabled:
        await flags.disable(key, actor=ACTOR)
        return RedirectResponse("/admin/flags?done=disabled", status_code=303)
    await flags.enable(key, actor=ACTOR)
    return RedirectResponse("/admin/flags?done=enabled", status_code=303)


@router.post("/{key}/rollout")
async def rollout(
    key: str,
    services: ServicesDep,
    _: ActionDep,
    percentage: Annotated[int, Form(ge=0, le=100)],
) -> RedirectResponse:
    await services.resilience.flags.set_rollout(key, percentage, actor=ACTOR)
    return _back(key, "rollout")


# --- strategies ----------------------------------------------------------------------------
@router.post("/{key}/use-strategies")
async def use_strategies(
    request: Request, key: str, services: ServicesDep, session: ActionDep, version: Version
) -> Response:
    """A simple flag becomes the strategies that decide exactly as its gates did."""

    def edit(flag: Flag) -> dict[str, Any]:
        if not flag.simple:
            raise _invalid("strategies", f"{flag.key!r} is decided by strategies already")
        variants = flag.variants
        if flag.target is Target.COMPANY and variants and variants[0].stickiness is None:
            # A simple flag's variants stick to its target id; say so, as the export does.
            variants = (replace(variants[0], stickiness="companyId"), *variants[1:])
        return {
            "strategies": simple_strategies(flag),
            "allow": frozenset(),
            "block": frozenset(),
            "variants": variants,
        }

    return await _edit(request, services, session, key, version, "convert", edit, done="converted")


@router.post("/{key}/use-simple")
async def use_simple(
    request: Request, key: str, services: ServicesDep, session: ActionDep, version: Version
) -> Response:
    """Back to the simple form, when one unconstrained strategy decides as a rollout would."""

    def edit(flag: Flag) -> dict[str, Any]:
        percentage = simple_rollout(flag)
        if percentage is None:
            raise _invalid(
                "strategies",
                "only one unconstrained default strategy, or one rollout below 100 % sticky "
                f"on {flag.target.context_field} and grouped by the flag's key, becomes a "
                "simple rollout",
            )
        return {
            "strategies": (),
            "rollout": percentage,
            "allow": frozenset(),
            "block": frozenset(),
        }

    return await _edit(request, services, session, key, version, "convert", edit, done="simple")


@router.post("/{key}/strategies")
async def add_strategy(
    request: Request,
    key: str,
    services: ServicesDep,
    session: ActionDep,
    version: Version,
    name: Annotated[str, Form(max_length=100)],
    parameters: Text = "",
) -> Response:
    def edit(flag: Flag) -> dict[str, Any]:
        if flag.simple:  # strategies would silently replace its rollout and lists
            raise _invalid("strategies", "turn the flag to strategies first (Use strategies)")
        given = parse_pairs(parameters, "parameters")
        strategy = Strategy(name, given or default_parameters(name, flag.key))
        return {"strategies": (*flag.strategies, strategy)}

    typed = {"name": name, "parameters": parameters}
    form = "add-strategy"
    return await _edit(request, services, session, key, version, form, edit, typed=typed)


@router.post("/{key}/strategies/{index}")
async def edit_strategy(
    request: Request,
    key: str,
    index: int,
    services: ServicesDep,
    session: ActionDep,
    version: Version,
    name: Annotated[str, Form(max_length=100)],
    parameters: Text = "",
) -> Response:
    def edit(flag: Flag) -> Mapping[str, Any]:
        strategy = _strategy_at(flag, index)
        changed = replace(strategy, name=name, parameters=parse_pairs(parameters, "parameters"))
        return _with_strategy(flag, index, changed)

    typed = {"name": name, "parameters": parameters}
    form = f"strategy-{index}"
    return await _edit(request, services, session, key, version, form, edit, typed=typed)


@router.post("/{key}/strategies/{index}/constraints")
async def add_constraint(
    request: Request,
    key: str,
    index: int,
    services: ServicesDep,
    session: ActionDep,
    version: Version,
    context_name: Annotated[str, Form(alias="contextName", max_length=MAX_FIELD)],
    operator: Annotated[str, Form(max_length=64)],
    values: Text = "",
    inverted: Checkbox = None,
    case_insensitive: Annotated[str | None, Form(alias="caseInsensitive", max_length=10)] = None,
) -> Response:
    def edit(flag: Flag) -> Mapping[str, Any]:
        strategy = _strategy_at(flag, index)
        constraint = parse_constraint(
            context_name, operator, values, inverted is not None, case_insensitive is not None
        )
        changed = replace(strategy, constraints=(*strategy.constraints, constraint))
        return _with_strategy(flag, index, changed)

    typed = {
        "contextName": context_name,
        "operator": operator,
        "values": values,
        "inverted": inverted is not None,
        "caseInsensitive": case_insensitive is not None,
    }
    form = f"constraint-{index}"
    return await _edit(request, services, session, key, version, form, edit, typed=typed)


@router.post("/{key}/strategies/{index}/constraints/{position}/remove")
async def remove_constraint(
    request: Request,
    key: str,
    index: int,
    position: int,
    services: ServicesDep,
    session: ActionDep,
    version: Version,
) -> Response:
    def edit(flag: Flag) -> Mapping[str, Any]:
        strategy = _strategy_at(flag, index)
        kept = tuple(c for n, c in enumerate(strategy.constraints) if n != position)
        return _with_strategy(flag, index, replace(strategy, constraints=kept))

    form = f"constraint-{index}"
    return await _edit(request, services, session, key, version, form, edit)


@router.post("/{key}/strategies/{index}/segments")
async def attach_segment(
    request: Request,
    key: str,
    index: int,
    services: ServicesDep,
    session: ActionDep,
    version: Version,
    segment: Annotated[int, Form()],
    detach: Checkbox = None,
) -> Response:
    def edit(flag: Flag) -> Mapping[str, Any]:
        strategy = _strategy_at(flag, index)
        kept = tuple(s for s in strategy.segments if s != segment)
        attached = kept if detach is not None else (*kept, segment)
        return _with_strategy(flag, index, replace(strategy, segments=attached))

    form = f"segment-{index}"
    return await _edit(request, services, session, key, version, form, edit)


@router.post("/{key}/strategies/{index}/{move}")  # after the routes it would match
async def move_strategy(
    request: Request,
    key: str,
    index: int,
    move: Literal["up", "down", "remove"],
    services: ServicesDep,
    session: ActionDep,
    version: Version,
) -> Response:
    def edit(flag: Flag) -> dict[str, Any]:
        _strategy_at(flag, index)
        strategies = list(flag.strategies)
        if move == "remove":
            if len(strategies) == 1:
                raise _invalid(
                    "strategies",
                    "a flag keeps at least one strategy: change this one, or go back to "
                    "a simple rollout",
                )
            del strategies[index]
        else:
            other = index - 1 if move == "up" else index + 1
            if 0 <= other < len(strategies):
                strategies[index], strategies[other] = strategies[other], strategies[index]
        return {"strategies": tuple(strategies)}

    form = f"strategy-{index}"
    return await _edit(request, services, session, key, version, form, edit)


# --- dependencies ----------------------------------------------------------------------------
@router.post("/{key}/dependencies")
async def add_dependency(
    request: Request,
    key: str,
    services: ServicesDep,
    session: ActionDep,
    version: Version,
    feature: Annotated[str, Form(max_length=100)],
    enabled: Annotated[Literal["yes", "no"], Form()] = "yes",
    variants: Text = "",
) -> Response:
    """Depend on `feature` (a dependency on it already there is replaced)."""

    def edit(flag: Flag) -> dict[str, Any]:
        named = split_values(variants)
        dependency = Dependency(feature, enabled == "yes", named or None)
        kept = tuple(d for d in flag.dependencies if d.feature != feature)
        return {"dependencies": (*kept, dependency)}

    typed = {"feature": feature, "enabled": enabled, "variants": variants}
    form = "dependencies"
    return await _edit(request, services, session, key, version, form, edit, typed=typed)


@router.post("/{key}/dependencies/{position}/remove")
async def remove_dependency(
    request: Request,
    key: str,
    position: int,
    services: ServicesDep,
    session: ActionDep,
    version: Version,
) -> Response:
    def edit(flag: Flag) -> dict[str, Any]:
        kept = tuple(d for n, d in enumerate(flag.dependencies) if n != position)
        return {"dependencies": kept}

    form = "dependencies"
    return await _edit(request, services, session, key, version, form, edit)


# --- try it --------------------------------------------------------------------------------
@router.post("/{key}/try", response_class=HTMLResponse)
async def try_flag(
    request: Request,
    key: str,
    services: ServicesDep,
    session: ActionDep,
    user_id: Annotated[str, Form(alias="userId", max_length=MAX_FIELD)] = "",
    company_id: Annotated[str, Form(alias="companyId", max_length=MAX_FIELD)] = "",
    session_id: Annotated[str, Form(alias="sessionId", max_length=MAX_FIELD)] = "",
    remote_address: Annotated[str, Form(alias="remoteAddress", max_length=MAX_FIELD)] = "",
    environment: Short = "",
    app_name: Annotated[str, Form(alias="appName", max_length=MAX_FIELD)] = "",
    current_time: Annotated[str, Form(alias="currentTime", max_length=MAX_FIELD)] = "",
    properties: Text = "",
) -> HTMLResponse:
    """How the flag decides for the context typed in (nothing is changed)."""
    flags = services.resilience.flags
    flag = await flags.get(key)
    typed = {
        "userId": user_id,
        "companyId": company_id,
        "sessionId": session_id,
        "remoteAddress": remote_address,
        "environment": environment,
        "appName": app_name,
        "currentTime": current_time,
        "properties": properties,
    }
    try:
        extra = parse_pairs(properties, "properties")
    except InvalidInput as exc:
        problem = Problem("try", exc.message, typed)
        return await render_flag(request, services, session, flag, 422, problem=problem)
    context = EvaluationContext.of(
        {name: value.strip() or None for name, value in typed.items() if name != "properties"}
        | {"properties": extra}
    )
    evaluation = flags.evaluate(key, context=context)
    return await render_flag(request, services, session, flag, tried=evaluation, try_values=typed)


# --- the simple form's lists (after the routes above: `{listing}` would match them) ---------
@router.post("/{key}/{listing}")
async def add_to_list(
    key: str,
    listing: Literal["allow", "block"],
    services: ServicesDep,
    _: ActionDep,
    target_id: Annotated[str, Form(alias="targetId", min_length=1, max_length=200)],
) -> RedirectResponse:
    flags = services.resilience.flags
    add = flags.allow if listing == "allow" else flags.block
    await add(key, target_id.strip(), actor=ACTOR)
    return _back(key, listing)


@router.post("/{key}/{listing}/remove")
async def remove_from_list(
    key: str,
    listing: Literal["allow", "block"],
    services: ServicesDep,
    _: ActionDep,
    target_id: Annotated[str, Form(alias="targetId", min_length=1, max_length=200)],
) -> RedirectResponse:
    flags = services.resilience.flags
    remove = flags.unallow if listing == "allow" else flags.unblock
    await remove(key, target_id, actor=ACTOR)
    return _back(key, "removed")
