"""HTTP face of the query optimizer: /api/query-optimizer/*.

The admin key reaches everything; a company key may read its own metrics and
statistics (and only those).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from tenantry.auth import Principal
from tenantry.deps import AdminDep, PrincipalDep, ServicesDep
from tenantry.queries.explain import MAX_QUERY_LENGTH
from tenantry.schemas import ApiModel

router = APIRouter(prefix="/api/query-optimizer", tags=["queries"])

CompanyQuery = Annotated[
    str | None,
    Query(alias="companyId", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
]


class ExplainRequest(ApiModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_LENGTH, description="One SELECT.")


def _company(principal: Principal, requested: str | None) -> str | None:
    """Admin: the requested company or all; a company key: its own, and only its own."""
    if principal.is_admin:
        return requested
    return principal.company_for(requested)


@router.get("/metrics")
async def metrics(
    services: ServicesDep,
    principal: PrincipalDep,
    company_id: CompanyQuery = None,
    slow_only: Annotated[bool, Query(alias="slowOnly")] = False,
) -> dict[str, Any]:
    """Per statement shape: calls, total/mean, p50/p95/p99, rows, per company; the slow log.

    Plans (which carry the parameter values of one company's statement) only for the admin.
    """
    company = _company(principal, company_id)
    return await services.queries.metrics(company, slow_only, include_plans=principal.is_admin)


@router.get("/statistics")
async def statistics(
    services: ServicesDep, principal: PrincipalDep, company_id: CompanyQuery = None
) -> dict[str, Any]:
    """avg, p95, p99, cache hit rate and slow count, for one company or all."""
    return await services.queries.statistics(_company(principal, company_id))


@router.post("/explain")
async def explain(body: ExplainRequest, services: ServicesDep, _: AdminDep) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) one read-only SELECT, in a read-only transaction rolled back."""
    return await services.queries.explain_query(body.query)


@router.get("/indexes")
async def indexes(
    services: ServicesDep,
    _: AdminDep,
    max_indexes: Annotated[int, Query(alias="maxIndexes", ge=1, le=50)] = 5,
) -> dict[str, Any]:
    """Index recommendations for the recorded workload, plus unused and duplicate indexes."""
    return await services.queries.analyze_indexes(max_indexes)


@router.delete("/metrics", status_code=204)
async def reset_metrics(services: ServicesDep, _: AdminDep) -> None:
    """Forget every recorded figure (here and, with Redis, in every process)."""
    await services.queries.reset_metrics()


@router.get("/health")
async def health(services: ServicesDep, _: AdminDep) -> dict[str, Any]:
    return {"status": "ok", **await services.queries.health()}
