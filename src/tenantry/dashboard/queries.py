"""Dashboard: statements by total time, the slow log, cache hit rates, replicas, index
advice (applied from here, behind a confirmation, when QUERY_APPLY_INDEXES is on) and
the audit log of applied indexes, EXPLAIN."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import SQLAlchemyError

from tenantry.dashboard.auth import ActionDep, SessionDep
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep
from tenantry.errors import TenantryError
from tenantry.queries.index_changes import IndexChange
from tenantry.queries.schemas import MAX_INDEX_STATEMENT_LENGTH, ExplainOut
from tenantry.queries.service import QueryOptimizer
from tenantry.sessions import DashboardSession

router = APIRouter(prefix="/admin/queries")
ACTOR = "admin (dashboard)"


async def _page(
    request: Request, services: ServicesDep, session: DashboardSession, **extra: Any
) -> HTMLResponse:
    optimizer = services.queries
    metrics = await optimizer.metrics()
    return render(
        request,
        "queries.html",
        session,
        page="queries",
        shapes=metrics.shapes[:25],
        slow=metrics.slow_queries[:20],
        statistics=await optimizer.statistics(),
        hit_rates=await optimizer.cache_hit_rates(),
        replicas=optimizer.replica_health(),
        primary_reads=optimizer.primary_reads,
        dialect=services.db.dialect,
        index_changes=await _changes(optimizer, 10),
        **extra,
    )


async def _changes(optimizer: QueryOptimizer, limit: int) -> list[IndexChange] | None:
    """The audit log's newest rows; None when the database cannot be read (the page still shows)."""
    try:
        return await optimizer.index_changes(limit)
    except SQLAlchemyError:
        return None


@router.get("", response_class=HTMLResponse)
async def queries_page(
    request: Request, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    return await _page(request, services, session)


@router.post("/explain", response_class=HTMLResponse)
async def explain(
    request: Request,
    services: ServicesDep,
    session: ActionDep,
    query: Annotated[str, Form(max_length=20_000)],
) -> HTMLResponse:
    """The plan, or why the statement was refused, shown under the EXPLAIN box."""
    try:
        plan = await services.queries.explain_query(query)
        # Shown as the API answers it, so what one reads here is what a script gets.
        result, error = json.dumps(ExplainOut.of(plan).wire(), indent=2, default=str), None
    except TenantryError as exc:
        result, error = None, exc.message
    return await _page(
        request,
        services,
        session,
        query=query,
        live_url="/admin/queries",
        explain_result=result,
        explain_error=error,
    )


@router.get("/indexes", response_class=HTMLResponse)
async def indexes_page(
    request: Request, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """Index advice runs on demand: it plans the whole recorded workload."""
    return await _indexes(request, services, session)


@router.post("/indexes/apply", response_class=HTMLResponse)
async def apply_index(
    request: Request,
    services: ServicesDep,
    session: ActionDep,
    statement: Annotated[str, Form(max_length=MAX_INDEX_STATEMENT_LENGTH)],
) -> HTMLResponse:
    """Build one recommendation (the form sits behind a confirmation), then the fresh advice."""
    try:
        applied = await services.queries.apply_index(statement, actor=ACTOR)
        notice, error = f"Built {applied.index_name} on {applied.table}; it is judged later.", None
    except TenantryError as exc:
        notice, error = None, exc.message
    return await _indexes(request, services, session, notice=notice, apply_error=error)


async def _indexes(
    request: Request, services: ServicesDep, session: DashboardSession, **extra: Any
) -> HTMLResponse:
    optimizer = services.queries
    try:
        advice, error = await optimizer.analyze_indexes(), None
    except TenantryError as exc:
        advice, error = None, exc.message
    return render(
        request,
        "indexes.html",
        session,
        page="queries",
        advice=advice,
        error=error,
        applying=optimizer.applying_indexes,
        changes=await _changes(optimizer, 50),
        **extra,
    )
