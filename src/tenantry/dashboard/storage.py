"""Dashboard: storage used per company and category, and the newest files."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tenantry.dashboard.auth import SessionDep
from tenantry.dashboard.charts import bar_chart
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep

router = APIRouter(prefix="/admin/storage")


@router.get("", response_class=HTMLResponse)
async def storage_page(
    request: Request, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    usage = await services.storage.usage_by_company()
    return render(
        request,
        "storage.html",
        session,
        page="storage",
        usage=usage,
        recent=await services.storage.recent_files(limit=25),
        provider=services.storage.backend.name,
        chart=bar_chart([(u.company_id, u.total_size / 1_048_576) for u in usage], "{:.1f} MB"),
    )
