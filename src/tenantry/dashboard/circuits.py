"""Dashboard: every circuit breaker's state and figures; reset, force open, force close."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tenantry.dashboard.auth import ActionDep, SessionDep
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep
from tenantry.resilience.schemas import CircuitOut

router = APIRouter(prefix="/admin/circuits")

DONE = {
    "reset": "Circuit reset: closed, counters cleared.",
    "open": "Circuit forced open.",
    "close": "Circuit forced closed (disabled) until reset.",
}


@router.get("", response_class=HTMLResponse)
async def circuits_page(
    request: Request, services: ServicesDep, session: SessionDep, done: str | None = None
) -> HTMLResponse:
    circuits = [CircuitOut.of(breaker) for breaker in services.resilience.breakers]
    return render(
        request,
        "circuits.html",
        session,
        page="circuits",
        circuits=circuits,
        flash=DONE.get(done or ""),
    )


@router.post("/{name}/{action}")
async def act(
    name: str, action: Literal["reset", "open", "close"], services: ServicesDep, _: ActionDep
) -> RedirectResponse:
    breaker = services.resilience.breakers.get(name)
    if action == "reset":
        breaker.reset()
    elif action == "open":
        breaker.force_open("forced open from the dashboard")
    else:
        breaker.disable("forced closed from the dashboard")
    return RedirectResponse(f"/admin/circuits?done={action}", status_code=303)
