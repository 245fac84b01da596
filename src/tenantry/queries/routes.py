"""HTTP face of the query optimizer: /api/query-optimizer/*.

The admin key reaches everything; a company key may read its own metrics and
statistics (and only those).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from tenantry.auth import Principal
from tenantry.deps import AdminDep, PrincipalDep, Router, ServicesDep
from tenantry.queries.schemas import (
    AppliedIndexOut,
    ApplyIndexRequest,
    ExplainOut,
    ExplainRequest,
    HealthOut,
    IndexAdviceOut,
    IndexChangesOut,
    MetricsOut,
    StatisticsOut,
)
from tenantry.schemas import CompanyQuery

router = Router(prefix="/api/query-optimizer", tags=["queries"])
API_ACTOR = "admin (api)"


def _company(principal: Principal, requested: str | None) -> str | None:
    """Admin: the requested company or all; a company key: its own, and only its own."""
    if principal.is_admin:
        return requested
    return principal.company_for(requested)


@router.get("/metrics", response_model=MetricsOut)
async def metrics(
    services: ServicesDep,
    principal: PrincipalDep,
    company_id: CompanyQuery = None,
    slow_only: Annotated[bool, Query(alias="slowOnly")] = False,
) -> MetricsOut:
    """Per statement shape: calls, total/mean, p50/p95/p99, rows, per company; the slow log.

    Plans (which carry the parameter values of one company's statement) only for the admin.
    """
    company = _company(principal, company_id)
    result = await services.queries.metrics(company, slow_only, include_plans=principal.is_admin)
    return MetricsOut.of(result)


@router.get("/statistics", response_model=StatisticsOut)
async def statistics(
    services: ServicesDep, principal: PrincipalDep, company_id: CompanyQuery = None
) -> StatisticsOut:
    """avg, p95, p99, cache hit rate and slow count, for one company or all."""
    return StatisticsOut.model_validate(
        await services.queries.statistics(_company(principal, company_id))
    )


@router.post("/explain", response_model=ExplainOut, response_model_exclude_unset=True)
async def explain(body: ExplainRequest, services: ServicesDep, _: AdminDep) -> ExplainOut:
    """EXPLAIN (ANALYZE, BUFFERS) one read-only SELECT, in a read-only transaction rolled back."""
    return ExplainOut.of(await services.queries.explain_query(body.query))


@router.get("/indexes", response_model=IndexAdviceOut)
async def indexes(
    services: ServicesDep,
    _: AdminDep,
    max_indexes: Annotated[int, Query(alias="maxIndexes", ge=1, le=50)] = 5,
    max_mb: Annotated[float | None, Query(alias="maxMb", gt=0, le=10_000_000)] = None,
) -> IndexAdviceOut:
    """Index recommendations for the recorded workload, plus unused and duplicate indexes;
    at most maxIndexes of them and, with maxMb (default QUERY_ADVISOR_MAX_MB), that many MB."""
    advice = await services.queries.analyze_indexes(max_indexes, max_mb)
    return IndexAdviceOut.model_validate(advice)


@router.post("/indexes/apply", response_model=AppliedIndexOut, status_code=201)
async def apply_index(
    body: ApplyIndexRequest, services: ServicesDep, _: AdminDep
) -> AppliedIndexOut:
    """Build one current recommendation with CREATE INDEX CONCURRENTLY (QUERY_APPLY_INDEXES);
    it is judged on real latencies after QUERY_APPLY_VERIFY_SECONDS and kept or dropped."""
    applied = await services.queries.apply_index(body.statement, actor=API_ACTOR)
    return AppliedIndexOut.model_validate(applied)


@router.get("/indexes/changes", response_model=IndexChangesOut)
async def index_changes(
    services: ServicesDep,
    _: AdminDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> IndexChangesOut:
    """The audit log of applied indexes, newest first: every step, with its figures."""
    changes = await services.queries.index_changes(limit)
    return IndexChangesOut.model_validate({"changes": changes}, from_attributes=True)


@router.delete("/metrics", status_code=204)
async def reset_metrics(services: ServicesDep, _: AdminDep) -> None:
    """Forget every recorded figure (here and, with Redis, in every process)."""
    await services.queries.reset_metrics()


@router.get("/health", response_model=HealthOut)
async def health(services: ServicesDep, _: AdminDep) -> HealthOut:
    return HealthOut.model_validate(await services.queries.health())
