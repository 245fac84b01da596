"""Dashboard: flag usage — the stale-flag report, every flag's evaluations, and one flag's
evaluations hour by hour (`?flag=`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tenantry.dashboard.auth import SessionDep
from tenantry.dashboard.charts import line_chart
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep

router = APIRouter(prefix="/admin/flag-usage")
HOURS = 24


@router.get("", response_class=HTMLResponse)
async def flag_usage_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    days: Annotated[int | None, Query(ge=1, le=3650)] = None,
    flag: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> HTMLResponse:
    flags = services.resilience.flags
    report = await flags.stale_flags(days)
    usage = chart = None
    if flag is not None:
        usage = await flags.usage_of(flag, HOURS)  # an unknown flag: the 404 page
        chart = line_chart(
            {"yes": [hour.yes for hour in usage.hours], "no": [hour.no for hour in usage.hours]},
            [hour.hour.strftime("%d %b %H:00") for hour in usage.hours],
        )
    return render(
        request,
        "stale.html",
        session,
        page="flag-usage",
        report=report,
        usage=usage,
        chart=chart,
        hours=HOURS,
        flush_seconds=services.settings.flag_usage_flush_seconds,
    )
