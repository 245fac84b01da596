"""Usage per company for Prometheus, with bounded cardinality: the top N companies by
each figure get their own label, every other company is summed as `other`.

Figures are this process's, since it started (Prometheus sums the processes); they are
gauges, not counters, because a company can leave the top N and fold into `other`.

Storage quota use is the deployment's (read from the database before each scrape): the
same in every process, so aggregate it with max(); only the N nearest are reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenantry.metrics import Metrics
from tenantry.tenants.metering import Usage, UsageMeter
from tenantry.tenants.service import QuotaUse, TenantService

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


class StorageQuotaCollector(Collector):
    def __init__(self, tenants: TenantService, top: int) -> None:
        self._tenants = tenants
        self.top = top
        self._uses: list[QuotaUse] = []

    async def refresh(self) -> None:
        try:
            self._uses = await self._tenants.nearest_quotas(self.top)
        except BaseException:
            self._uses = []  # no figures rather than stale ones
            raise

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "tenantry_company_storage_quota_ratio",
            f"Storage used over the quota (the fuller of bytes and files; 1 = full) of the"
            f" {self.top} companies nearest theirs; the same in every process (use max()).",
            labels=["company"],
        )
        for use in self._uses:
            family.add_metric([use.company_id], use.ratio)
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


def register_quota(metrics: Metrics, tenants: TenantService, top: int) -> None:
    collector = StorageQuotaCollector(tenants, top)
    metrics.registry.register(collector)
    metrics.before_scrape("storage quotas", collector.refresh)
