"""Usage per company for Prometheus, with bounded cardinality: the top N companies by
each figure get their own label, every other company is summed as `other`.

Figures are this process's, since it started (Prometheus sums the processes); they are
gauges, not counters, because a company can leave the top N and fold into `other`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tenantry.tenants.metering import Usage, UsageMeter

_HELP = {
    "api_requests": "API requests",
    "jobs_run": "jobs run",
    "job_ms": "milliseconds spent running jobs",
    "query_calls": "SQL statements",
    "query_ms": "milliseconds spent in SQL statements",
}


class TopCompanies(Collector):
    def __init__(self, meter: UsageMeter, top: int = 20) -> None:
        self.meter = meter
        self.top = top

    def collect(self) -> Iterator[GaugeMetricFamily]:
        totals = self.meter.totals()
        for field in fields(Usage):
            name = field.name
            family = GaugeMetricFamily(
                f"tenantry_company_{name}",
                f"{_HELP[name]} per company since this process started: the top "
                f'{self.top}, the rest as company="other"',
                labels=["company"],
            )
            ranked = sorted(totals.items(), key=lambda item: getattr(item[1], name), reverse=True)
            for company, usage in ranked[: self.top]:
                family.add_metric([company], float(getattr(usage, name)))
            rest = sum(float(getattr(usage, name)) for _, usage in ranked[self.top :])
            family.add_metric(["other"], rest)
            yield family


def register(registry: CollectorRegistry, meter: UsageMeter, top: int) -> None:
    registry.register(TopCompanies(meter, top))
