"""The job queues for Prometheus: the backlog an autoscaler reads, and finished jobs.

The figures are the queues' own, read from the backend at each scrape (one script call
a queue on BullMQ): on Redis they are the deployment's, so every process reports the
same values; aggregate them with max(), never sum(). On the in-process backend they are
this process's queues. The totals on BullMQ are counted by Tenantry's workers, whatever
process runs them (BullMQ's `metrics` option), not by the process that is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenantry.jobs.backends import QueueFigures
from tenantry.jobs.service import JobService
from tenantry.metrics import Metrics

_SHARED = "whole queue, every company; the same in every process of a deployment (use max())"


class QueueCollector(Collector):
    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs
        self._figures: dict[str, QueueFigures] = {}

    async def refresh(self) -> None:
        try:
            self._figures = await self._jobs.queue_figures()
        except BaseException:
            self._figures = {}  # no figures rather than stale ones
            raise

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "tenantry_queue_waiting_jobs",
            f"Jobs that could start now and have not (delayed ones once due); {_SHARED}.",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "tenantry_queue_oldest_waiting_age_seconds",
            f"How long the job waiting longest has been due, 0 when none waits; {_SHARED}.",
            labels=["queue"],
        )
        completed = CounterMetricFamily(
            "tenantry_jobs_completed",
            f"Jobs completed since the queue began; {_SHARED}.",
            labels=["queue"],
        )
        failed = CounterMetricFamily(
            "tenantry_jobs_failed",
            f"Jobs failed for good (out of attempts) since the queue began; {_SHARED}.",
            labels=["queue"],
        )
        for queue, figures in self._figures.items():
            waiting.add_metric([queue], figures.waiting)
            oldest.add_metric([queue], figures.oldest_waiting_age_seconds)
            if figures.completed_total is not None:
                completed.add_metric([queue], figures.completed_total)
            if figures.failed_total is not None:
                failed.add_metric([queue], figures.failed_total)
        yield from (waiting, oldest, completed, failed)

    def describe(self) -> Iterator[Metric]:
        return iter(())


def register(metrics: Metrics, jobs: JobService) -> None:
    collector = QueueCollector(jobs)
    metrics.registry.register(collector)
    metrics.before_scrape("job queues", collector.refresh)
