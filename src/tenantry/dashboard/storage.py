"""Dashboard: storage used per company and category (a page of companies at a time,
largest first), and the newest files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tenantry.dashboard.auth import SessionDep
from tenantry.dashboard.charts import bar_chart
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep

router = APIRouter(prefix="/admin/storage")
PAGE = 25


@router.get("", response_class=HTMLResponse)
async def storage_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    page = await services.tenants.list_companies(sort="storageBytes", cursor=cursor, limit=PAGE)
    usage = await services.storage.usage_of([c.id for c in page.companies])
    return render(
        request,
        "storage.html",
        session,
        page="storage",
        usage=usage,
        next_cursor=page.next_cursor,
        recent=await services.storage.recent_files(limit=25),
        provider=services.storage.backend.name,
        chart=bar_chart([(u.company_id, u.total_size / 1_048_576) for u in usage], "{:.1f} MB"),
    )
