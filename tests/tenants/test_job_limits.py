"""A company's plan reaches its queues: concurrency per company, on both job backends,
through the running service (the wiring passes the tenants service as the limit source),
and jobs run are metered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgi_lifespan import LifespanManager

from tenantry.app import create_app
from tenantry.jobs import JobContext, job_handler
from tests.jobs.conftest import eventually

RUNNING: dict[str, int] = {}
PEAK: dict[str, int] = {}


@job_handler("ai-processing", "tenant-limit-probe")
async def probe(job: JobContext) -> None:
    RUNNING[job.company_id] = RUNNING.get(job.company_id, 0) + 1
    PEAK[job.company_id] = max(PEAK.get(job.company_id, 0), RUNNING[job.company_id])
    await asyncio.sleep(0.15)
    RUNNING[job.company_id] -= 1


@pytest.fixture(params=["in-process", "bullmq"])
async def app(request: pytest.FixtureRequest, settings_factory: Any) -> AsyncIterator[Any]:
    overrides: dict[str, Any] = {"job_concurrency_ai_processing": 6}
    if request.param == "bullmq":
        overrides.update(redis_url=request.getfixturevalue("redis_url"), job_workers_in_app=True)
    application = create_app(settings_factory(**overrides))
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=60):
        yield application


async def test_a_companys_job_concurrency_comes_from_its_plan(app: Any) -> None:
    services = app.state.services
    RUNNING.clear()
    PEAK.clear()
    await services.tenants.put_company("acme", limits={"jobConcurrency": {"ai-processing": 1}})
    await services.tenants.put_company("globex", plan="enterprise")
    ids = [
        await services.jobs.add("ai-processing", "tenant-limit-probe", {}, company)
        for company in ["acme"] * 4 + ["globex"] * 4
    ]
    for job_id in ids:
        await eventually(
            lambda job_id=job_id: services.jobs.get_job_status("ai-processing", job_id),
            lambda status: status.state == "completed",
            within=30,
        )
    assert PEAK["acme"] == 1  # held to its one slot, across every worker
    assert PEAK["globex"] > 1  # unlimited: not held back by acme's limit
    await services.tenants.meter.flush()
    hours = await services.tenants.meter.hours("acme")
    assert sum(h.usage.jobs_run for h in hours) == 4
    assert sum(h.usage.job_ms for h in hours) >= 4 * 150


async def test_static_limits_per_company_and_queue_with_a_default() -> None:
    from tenantry.tenants.limits import QueueLimits, StaticLimits

    special, default = QueueLimits(weight=3, concurrency=1), QueueLimits(per_minute=5)
    limits = StaticLimits(default=default, by_company={("acme", "email"): special})
    assert await limits.queue_limits("acme", "email") == special
    assert await limits.queue_limits("acme", "report") == default
    assert await limits.queue_limits("globex", "email") == default
    assert await StaticLimits().queue_limits("acme", "email") == QueueLimits()


def test_queue_limits_refuse_negative_numbers_and_allow_zero() -> None:
    from tenantry.tenants.limits import QueueLimits

    assert QueueLimits(concurrency=0, per_minute=0).per_minute == 0  # nothing may start
    for bad in ({"concurrency": -1}, {"per_minute": -1}, {"weight": 0}):
        with pytest.raises(ValueError):
            QueueLimits(**bad)  # type: ignore[arg-type]
