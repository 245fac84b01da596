"""Queries for Prometheus: slow statements, and how far behind each read replica is.

Read at scrape time from what the monitor and the lag poller already hold, so neither
the statement path nor the read path touches Prometheus. Both are this process's: its
slow statements (Prometheus sums the processes) and its own poller's view of the lag
(each process polls; aggregate the lag with max()).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenantry.queries.service import QueryOptimizer


def replica_label(url: str) -> str:
    """`host:port/db` of a replica's URL (its password is hidden already; its user is noise)."""
    return url.rpartition("@")[2]


class QueryCollector(Collector):
    def __init__(self, queries: QueryOptimizer) -> None:
        self._queries = queries

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "tenantry_slow_queries",
            "SQL statements slower than SLOW_QUERY_MS, run by this process since it started.",
            value=self._queries.monitor.slow_total,
        )
        lag = GaugeMetricFamily(
            "tenantry_replica_lag_seconds",
            "How far a read replica's replay is behind the primary (absent while it is"
            " down), as this process's poller sees it (use max()).",
            labels=["replica"],
        )
        up = GaugeMetricFamily(
            "tenantry_replica_up",
            "1 while a read replica answers this process's lag poll, else 0.",
            labels=["replica"],
        )
        for replica in self._queries.replicas.health():
            label = replica_label(replica.url)
            up.add_metric([label], float(replica.up))
            if replica.lag_ms is not None:
                lag.add_metric([label], replica.lag_ms / 1000)
        yield from (lag, up)

    def describe(self) -> Iterator[Metric]:
        return iter(())


def register(registry: CollectorRegistry, queries: QueryOptimizer) -> None:
    registry.register(QueryCollector(queries))
