"""Dashboard: feature flags — toggle, rollout, allow and block lists, variants, audit log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tenantry.dashboard.auth import ActionDep, SessionDep
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep

router = APIRouter(prefix="/admin/flags")
ACTOR = "admin (dashboard)"

DONE = {
    "enabled": "Flag enabled.",
    "disabled": "Flag disabled.",
    "rollout": "Rollout changed.",
    "allow": "Added to the allow list.",
    "block": "Added to the block list.",
    "removed": "Removed from the list.",
}


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """What an audit entry changed, as `field: old → new` (the whole flag would be noise)."""
    before, after = before or {}, after or {}
    keys = [
        k for k in sorted({*before, *after}) if k != "version" and before.get(k) != after.get(k)
    ]
    return "; ".join(f"{k}: {before.get(k, '—')} → {after.get(k, '—')}" for k in keys) or "—"


def _back(key: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/flags/{key}?done={done}", status_code=303)


@router.get("", response_class=HTMLResponse)
async def flags_page(
    request: Request, services: ServicesDep, session: SessionDep, done: str | None = None
) -> HTMLResponse:
    flags = await services.resilience.flags.all()
    return render(
        request, "flags.html", session, page="flags", flags=flags, flash=DONE.get(done or "")
    )


@router.get("/{key}", response_class=HTMLResponse)
async def flag_page(
    request: Request,
    key: str,
    services: ServicesDep,
    session: SessionDep,
    done: str | None = None,
) -> HTMLResponse:
    flag = await services.resilience.flags.get(key)
    audit = await services.resilience.flags.audit(key, limit=50)
    return render(
        request,
        "flag.html",
        session,
        page="flags",
        flag=flag,
        audit=audit,
        changes=changes,
        flash=DONE.get(done or ""),
    )


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
