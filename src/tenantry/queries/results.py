"""What the query optimizer answers: frozen results with snake_case attributes.

The HTTP schemas (camelCase) are built from these in `queries/schemas.py`; the
dashboard and the export job read them by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


# --- figures and the slow log ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Figures:
    """Calls and latencies (ms) of a statement shape, or of one company's part of it."""

    calls: int
    total_ms: float | None
    mean_ms: float | None  # None before the first call
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rows: int
    slow_count: int


@dataclass(frozen=True, slots=True)
class CompanyFigures:
    company_id: str | None  # None: statements run outside any company's scope
    figures: Figures


@dataclass(frozen=True, slots=True)
class ShapeMetrics:
    shape_id: str
    statement: str | None  # None when no process still knows the shape's text
    dialect: str | None
    figures: Figures
    plan: Any  # PostgreSQL's JSON plan of a slow call, when plans were asked for
    companies: list[CompanyFigures]  # busiest first


@dataclass(frozen=True, slots=True)
class SlowStatement:
    shape_id: str
    company_id: str | None
    duration_ms: float
    statement: str
    at: float  # Unix time
    plan: Any


@dataclass(frozen=True, slots=True)
class QueryMetrics:
    source: str  # "redis": every process's figures; "process": this one's only
    shapes: list[ShapeMetrics]  # by total time, longest first
    slow_queries: list[SlowStatement]  # newest first


@dataclass(frozen=True, slots=True)
class QueryStatistics:
    company_id: str | None
    source: str
    calls: int
    shapes: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    slow_count: int
    cache_hit_rate: float | None  # None before the cache served anything
    histogram_buckets: int


# --- EXPLAIN -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # seq_scan, misestimate, sort_spill, hash_spill, nested_loop
    message: str
    table: str | None = None  # seq_scan and misestimate only
    suggested_index: str | None = None  # seq_scan only


@dataclass(frozen=True, slots=True)
class ExplainResult:
    total_cost: float | None
    actual_time_ms: float | None
    planning_time_ms: float | None
    execution_time_ms: float | None
    findings: list[Finding]
    plan: dict[str, Any]  # the root node of PostgreSQL's JSON plan, as it gave it


# --- index advice ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Recommendation:
    table: str
    columns: list[str]
    reason: str
    priority: str  # high, medium or low
    estimated_improvement: float  # share of the workload's cost saved
    estimated_size_bytes: int | None
    statements: list[str]  # the shape ids it helps
    create_statement: str


@dataclass(frozen=True, slots=True)
class UnusedIndex:
    table: str
    index: str
    columns: list[str]
    size_bytes: int
    reason: str
    statement: str


@dataclass(frozen=True, slots=True)
class DuplicateIndex:
    table: str
    index: str
    columns: list[str]
    covered_by: str
    size_bytes: int
    reason: str
    statement: str


@dataclass(frozen=True, slots=True)
class SkippedStatement:
    shape_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class IndexAdvice:
    method: str
    method_note: str
    statements_analysed: int
    candidates_considered: int
    workload_cost_before: float
    workload_cost_after: float
    estimated_improvement: float
    recommendations: list[Recommendation]
    unused_indexes: list[UnusedIndex]
    duplicate_indexes: list[DuplicateIndex]
    skipped_statements: list[SkippedStatement]


# --- health ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CacheHealth:
    backend: str
    errors: int
    status: str  # "up", or "down (…); reads go to the database"


@dataclass(frozen=True, slots=True)
class ReplicaHealth:
    url: str  # password hidden
    state: str  # up, lagging (over REPLICA_MAX_LAG_MS), down, unknown (not polled lately)
    up: bool  # it answers (up or lagging)
    lag_ms: float | None  # None while down
    lag_bytes: int | None
    replay_lsn: str | None  # e.g. "0/3000148"
    reads: int
    failures: int  # reads it failed to connect for (the next replica, or the primary, answered)
    skipped_for_lag: int  # reads it was too far behind for
    behind_writes: int  # reads it had not yet replayed the company's last write for
    error: str | None


@dataclass(frozen=True, slots=True)
class QueryHealth:
    shapes: int
    slow_query_ms: float
    cache: CacheHealth
    replicas: list[ReplicaHealth]
    primary_reads: int  # optimized_read loads the primary answered (replicas off, unfit, down)
