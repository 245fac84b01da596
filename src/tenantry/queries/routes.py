"""HTTP face of the query optimizer: /api/query-optimizer/*.

The admin key reaches everything; a company key may read its own metrics and
statistics (and only those).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field

from tenantry.auth import Principal
from tenantry.deps import AdminDep, PrincipalDep, ServicesDep
from tenantry.queries.explain import MAX_QUERY_LENGTH
from tenantry.queries.results import (
    CompanyFigures,
    ExplainResult,
    Finding,
    QueryMetrics,
    ShapeMetrics,
)
from tenantry.schemas import ApiModel

if TYPE_CHECKING:
    from tenantry.queries.service import QueryOptimizer

router = APIRouter(prefix="/api/query-optimizer", tags=["queries"])

CompanyQuery = Annotated[
    str | None,
    Query(alias="companyId", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
]


class ExplainRequest(ApiModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_LENGTH, description="One SELECT.")


class _FromResult(ApiModel):
    """Built straight from a result dataclass of the same field names."""

    model_config = ConfigDict(from_attributes=True)


class FiguresOut(_FromResult):
    calls: int
    total_ms: float | None
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rows: int
    slow_count: int


class CompanyFiguresOut(FiguresOut):
    company_id: str | None

    @classmethod
    def of(cls, company: CompanyFigures) -> CompanyFiguresOut:
        return cls(company_id=company.company_id, **asdict(company.figures))


class ShapeOut(FiguresOut):
    shape_id: str
    statement: str | None
    dialect: str | None
    plan: Any
    companies: list[CompanyFiguresOut]

    @classmethod
    def of(cls, shape: ShapeMetrics) -> ShapeOut:
        # On the wire a shape's figures sit beside its id, not in an object of their own.
        return cls(
            shape_id=shape.shape_id,
            statement=shape.statement,
            dialect=shape.dialect,
            plan=shape.plan,
            companies=[CompanyFiguresOut.of(c) for c in shape.companies],
            **asdict(shape.figures),
        )


class SlowStatementOut(_FromResult):
    shape_id: str
    company_id: str | None
    duration_ms: float
    statement: str
    at: float
    plan: Any


class MetricsOut(ApiModel):
    source: str
    shapes: list[ShapeOut]
    slow_queries: list[SlowStatementOut]

    @classmethod
    def of(cls, metrics: QueryMetrics) -> MetricsOut:
        return cls(
            source=metrics.source,
            shapes=[ShapeOut.of(s) for s in metrics.shapes],
            slow_queries=[SlowStatementOut.model_validate(q) for q in metrics.slow_queries],
        )


class StatisticsOut(_FromResult):
    company_id: str | None
    source: str
    calls: int
    shapes: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    slow_count: int
    cache_hit_rate: float | None
    histogram_buckets: int


# Spills and nested loops name no table, and only a seq scan suggests an index: those
# keys are absent from such findings (not null), so the explain route drops unset fields.
_TABLE_KINDS = frozenset({"seq_scan", "misestimate"})


class FindingOut(ApiModel):
    kind: str
    table: str | None = None
    message: str
    suggested_index: str | None = None

    @classmethod
    def of(cls, finding: Finding) -> FindingOut:
        out = cls(kind=finding.kind, message=finding.message)
        if finding.kind in _TABLE_KINDS:
            out.table = finding.table
        if finding.kind == "seq_scan":
            out.suggested_index = finding.suggested_index
        return out


class ExplainOut(ApiModel):
    total_cost: float | None
    actual_time_ms: float | None
    planning_time_ms: float | None
    execution_time_ms: float | None
    findings: list[FindingOut]
    plan: dict[str, Any]

    @classmethod
    def of(cls, result: ExplainResult) -> ExplainOut:
        return cls(
            total_cost=result.total_cost,
            actual_time_ms=result.actual_time_ms,
            planning_time_ms=result.planning_time_ms,
            execution_time_ms=result.execution_time_ms,
            findings=[FindingOut.of(f) for f in result.findings],
            plan=result.plan,
        )

    def wire(self) -> dict[str, Any]:
        """The JSON the explain route answers, absent finding keys left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class RecommendationOut(_FromResult):
    table: str
    columns: list[str]
    reason: str
    priority: str
    estimated_improvement: float
    estimated_size_bytes: int | None
    statements: list[str]
    create_statement: str


class UnusedIndexOut(_FromResult):
    table: str
    index: str
    columns: list[str]
    size_bytes: int
    reason: str
    statement: str


class DuplicateIndexOut(_FromResult):
    table: str
    index: str
    columns: list[str]
    covered_by: str
    size_bytes: int
    reason: str
    statement: str


class SkippedStatementOut(_FromResult):
    shape_id: str
    reason: str


class IndexAdviceOut(_FromResult):
    method: str
    method_note: str
    statements_analysed: int
    candidates_considered: int
    workload_cost_before: float
    workload_cost_after: float
    estimated_improvement: float
    recommendations: list[RecommendationOut]
    unused_indexes: list[UnusedIndexOut]
    duplicate_indexes: list[DuplicateIndexOut]
    skipped_statements: list[SkippedStatementOut]


class CacheHealthOut(_FromResult):
    backend: str
    errors: int
    status: str


class ReplicaHealthOut(_FromResult):
    url: str
    up: bool
    reads: int
    failures: int


class HealthOut(_FromResult):
    status: Literal["ok"] = "ok"
    shapes: int
    slow_query_ms: float
    cache: CacheHealthOut
    replicas: list[ReplicaHealthOut]


async def health_details(queries: QueryOptimizer) -> dict[str, Any]:
    """The `queries` readiness check: the health route's figures, without its status."""
    health = HealthOut.model_validate(await queries.health())
    return health.model_dump(mode="json", by_alias=True, exclude={"status"})


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
) -> IndexAdviceOut:
    """Index recommendations for the recorded workload, plus unused and duplicate indexes."""
    return IndexAdviceOut.model_validate(await services.queries.analyze_indexes(max_indexes))


@router.delete("/metrics", status_code=204)
async def reset_metrics(services: ServicesDep, _: AdminDep) -> None:
    """Forget every recorded figure (here and, with Redis, in every process)."""
    await services.queries.reset_metrics()


@router.get("/health", response_model=HealthOut)
async def health(services: ServicesDep, _: AdminDep) -> HealthOut:
    return HealthOut.model_validate(await services.queries.health())
