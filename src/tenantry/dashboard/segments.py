"""Dashboard: segments — named sets of constraints that flag strategies share.

Create, rename, edit constraints (the flag page's editor), and delete; a segment a
strategy still names is not deleted (409), and the page says which flags use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tenantry.dashboard.auth import ActionDep, SessionDep
from tenantry.dashboard.flags import (
    ACTOR,
    CONTEXT_FIELDS,
    MAX_FIELD,
    MAX_TEXT,
    OPERATORS,
    Problem,
    constraint_values,
    describe,
    parse_constraint,
)
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.resilience.flags import Segment
from tenantry.sessions import DashboardSession

router = APIRouter(prefix="/admin/segments")

DONE = {
    "created": "Segment created.",
    "saved": "Segment saved.",
    "deleted": "Segment deleted.",
}
MAX_ID = 2**31 - 1

Name = Annotated[str, Form(max_length=100)]
Description = Annotated[str, Form(max_length=1000)]


def _back(done: str, segment_id: int | None = None) -> RedirectResponse:
    anchor = f"#segment-{segment_id}" if segment_id is not None else ""
    return RedirectResponse(f"/admin/segments?done={done}{anchor}", status_code=303)


@router.get("", response_class=HTMLResponse)
async def segments_page(
    request: Request, services: ServicesDep, session: SessionDep, done: str | None = None
) -> HTMLResponse:
    return await _page(request, services, session, flash=DONE.get(done or ""))


async def _page(
    request: Request,
    services: ServicesDep,
    session: DashboardSession,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    flags = services.resilience.flags
    segments = flags.segments()
    users: dict[int, list[str]] = {segment.id: [] for segment in segments}
    for flag in await flags.all():
        named = {segment_id for strategy in flag.strategies for segment_id in strategy.segments}
        for segment_id in sorted(named):
            users.setdefault(segment_id, []).append(flag.key)
    return render(
        request,
        "segments.html",
        session,
        page="segments",
        status_code=status_code,
        segments=segments,
        users=users,
        next_id=max((segment.id for segment in segments), default=0) + 1,
        operators=OPERATORS,
        context_fields=CONTEXT_FIELDS,
        constraint_values=constraint_values,
        **context,
    )


async def _save(
    request: Request,
    services: ServicesDep,
    session: DashboardSession,
    form: str,
    build: Callable[[], Segment],
    *,
    done: str,
    typed: Mapping[str, Any] | None = None,
) -> Response:
    """Store the segment `build` makes; a refusal is shown beside `form`."""
    try:
        segment = build()
        await services.resilience.flags.put_segment(segment, actor=ACTOR)
    except (InvalidInput, Conflict, NotFound) as exc:
        problem = Problem(form, describe(exc), typed or {})
        return await _page(request, services, session, exc.status_code, problem=problem)
    return _back(done, segment.id)


@router.post("")
async def create_segment(
    request: Request,
    services: ServicesDep,
    session: ActionDep,
    name: Name,
    description: Description = "",
    segment_id: Annotated[str, Form(alias="id", max_length=12)] = "",
) -> Response:
    flags = services.resilience.flags

    def build() -> Segment:
        taken = {segment.id for segment in flags.segments()}
        if segment_id.strip():
            if not segment_id.strip().isdigit() or int(segment_id) > MAX_ID:
                raise InvalidInput("id: a whole number, 0-2147483647", details={"field": "id"})
            wanted = int(segment_id)
        else:
            wanted = max(taken, default=0) + 1
        if wanted in taken:
            raise Conflict(f"id: segment {wanted} exists already", details={"field": "id"})
        return Segment(wanted, name.strip(), (), description.strip())

    typed = {"id": segment_id, "name": name, "description": description}
    return await _save(request, services, session, "new", build, done="created", typed=typed)


@router.post("/{segment_id}")
async def edit_segment(
    request: Request,
    segment_id: int,
    services: ServicesDep,
    session: ActionDep,
    name: Name,
    description: Description = "",
) -> Response:
    def build() -> Segment:
        segment = services.resilience.flags.segment(segment_id)
        return replace(segment, name=name.strip(), description=description.strip())

    typed = {"name": name, "description": description}
    form = f"segment-{segment_id}"
    return await _save(request, services, session, form, build, done="saved", typed=typed)


@router.post("/{segment_id}/constraints")
async def add_constraint(
    request: Request,
    segment_id: int,
    services: ServicesDep,
    session: ActionDep,
    context_name: Annotated[str, Form(alias="contextName", max_length=MAX_FIELD)],
    operator: Annotated[str, Form(max_length=64)],
    values: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    inverted: Annotated[str | None, Form(max_length=10)] = None,
    case_insensitive: Annotated[str | None, Form(alias="caseInsensitive", max_length=10)] = None,
) -> Response:
    def build() -> Segment:
        segment = services.resilience.flags.segment(segment_id)
        constraint = parse_constraint(
            context_name, operator, values, inverted is not None, case_insensitive is not None
        )
        return replace(segment, constraints=(*segment.constraints, constraint))

    typed = {
        "contextName": context_name,
        "operator": operator,
        "values": values,
        "inverted": inverted is not None,
        "caseInsensitive": case_insensitive is not None,
    }
    form = f"constraint-{segment_id}"
    return await _save(request, services, session, form, build, done="saved", typed=typed)


@router.post("/{segment_id}/constraints/{position}/remove")
async def remove_constraint(
    request: Request,
    segment_id: int,
    position: int,
    services: ServicesDep,
    session: ActionDep,
) -> Response:
    def build() -> Segment:
        segment = services.resilience.flags.segment(segment_id)
        kept = tuple(c for n, c in enumerate(segment.constraints) if n != position)
        return replace(segment, constraints=kept)

    form = f"constraint-{segment_id}"
    return await _save(request, services, session, form, build, done="saved")


@router.post("/{segment_id}/delete")
async def delete_segment(
    request: Request, segment_id: int, services: ServicesDep, session: ActionDep
) -> Response:
    try:
        await services.resilience.flags.delete_segment(segment_id, actor=ACTOR)
    except (Conflict, NotFound) as exc:
        problem = Problem(f"segment-{segment_id}", exc.message)
        return await _page(request, services, session, exc.status_code, problem=problem)
    return _back("deleted")
