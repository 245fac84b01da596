"""The query optimizer's HTTP schemas: its typed results (queries/results.py) as JSON.

Shared by the routes, the dashboard and the readiness check, so each renders a result
the same way.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from tenantry.queries.explain import MAX_QUERY_LENGTH
from tenantry.queries.results import (
    CompanyFigures,
    ExplainResult,
    Finding,
    QueryHealth,
    QueryMetrics,
    ShapeMetrics,
)
from tenantry.schemas import ApiModel

MAX_INDEX_STATEMENT_LENGTH = 10_000


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


class ApplyIndexRequest(ApiModel):
    statement: str = Field(
        min_length=1,
        max_length=MAX_INDEX_STATEMENT_LENGTH,
        description="A recommendation's createStatement, as GET /indexes lists it now.",
    )


class IndexChangeOut(_FromResult):
    id: int
    statement: str
    index_name: str
    table: str
    step: str
    detail: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    actor: str
    at: datetime


class AppliedIndexOut(_FromResult):
    index_name: str
    table: str
    statement: str
    changes: list[IndexChangeOut]


class IndexChangesOut(ApiModel):
    changes: list[IndexChangeOut]  # newest first


class CacheHealthOut(_FromResult):
    backend: str
    errors: int
    status: str


class ReplicaHealthOut(_FromResult):
    url: str
    state: Literal["up", "lagging", "down", "unknown"]
    up: bool
    lag_ms: float | None
    lag_bytes: int | None
    replay_lsn: str | None
    reads: int
    failures: int
    skipped_for_lag: int
    behind_writes: int
    error: str | None


class HealthOut(_FromResult):
    status: Literal["ok"] = "ok"
    shapes: int
    slow_query_ms: float
    cache: CacheHealthOut
    replicas: list[ReplicaHealthOut]
    primary_reads: int


def health_details(health: QueryHealth) -> dict[str, Any]:
    """The `queries` readiness check: the health route's figures, without its status."""
    out = HealthOut.model_validate(health)
    return out.model_dump(mode="json", by_alias=True, exclude={"status"})
