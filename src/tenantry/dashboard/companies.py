"""Dashboard: the companies, a page at a time, ranked by storage or by their last 24 hours
of jobs, query time or API requests (the top companies)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tenantry.dashboard.auth import SessionDep
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep

router = APIRouter(prefix="/admin/companies")
PAGE = 50
SORTS = {
    "storageBytes": "Storage",
    "jobs": "Jobs (24 h)",
    "queryTime": "Query time (24 h)",
    "apiRequests": "API requests (24 h)",
    "id": "Name",
}
Sort = Literal["storageBytes", "jobs", "queryTime", "apiRequests", "id"]


@router.get("", response_class=HTMLResponse)
async def companies_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    sort: Sort = "storageBytes",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    page = await services.tenants.list_companies(sort=sort, cursor=cursor, limit=PAGE)
    return render(
        request,
        "companies.html",
        session,
        page="companies",
        companies=page.companies,
        next_cursor=page.next_cursor,
        sort=sort,
        sorts=SORTS,
    )
