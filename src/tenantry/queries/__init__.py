"""Queries: every statement timed per shape and company, a tenant-scoped read cache,
safe EXPLAIN, and index advice measured with hypothetical indexes."""

from tenantry.queries.advisor import WorkloadStatement, analyze_indexes
from tenantry.queries.cache import ReadCache
from tenantry.queries.explain import check_read_only, explain_query
from tenantry.queries.monitor import QueryMonitor
from tenantry.queries.service import QueryOptimizer

__all__ = [
    "QueryMonitor",
    "QueryOptimizer",
    "ReadCache",
    "WorkloadStatement",
    "analyze_indexes",
    "check_read_only",
    "explain_query",
]
