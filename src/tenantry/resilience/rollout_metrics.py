"""Rollout plans for Prometheus: which are paused (a guard tripped, or an operator).

Read from the plan store before each scrape: plans are the deployment's, so every
process reports the same values (aggregate with max()). One series a flag with an
unfinished plan (active 0, paused 1); a completed plan has none.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenantry.metrics import Metrics
from tenantry.resilience.rollouts import PlanStatus, RolloutRunner


class RolloutCollector(Collector):
    def __init__(self, rollouts: RolloutRunner) -> None:
        self._rollouts = rollouts
        self._paused: dict[str, bool] = {}

    async def refresh(self) -> None:
        try:
            plans = await self._rollouts.plans()
        except BaseException:
            self._paused = {}  # no figures rather than stale ones
            raise
        self._paused = {
            plan.key: plan.status is PlanStatus.PAUSED
            for plan in plans
            if plan.status is not PlanStatus.COMPLETED
        }

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "tenantry_flag_rollout_paused",
            "1 while a flag's rollout plan is paused, 0 while it runs; the same in every"
            " process (use max()).",
            labels=["flag"],
        )
        for flag, paused in sorted(self._paused.items()):
            family.add_metric([flag], float(paused))
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


def register(metrics: Metrics, rollouts: RolloutRunner) -> None:
    collector = RolloutCollector(rollouts)
    metrics.registry.register(collector)
    metrics.before_scrape("rollout plans", collector.refresh)
