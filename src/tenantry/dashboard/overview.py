"""Dashboard: the overview page, and the sampler that feeds its charts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

from tenantry.background import Background, every
from tenantry.container import Services
from tenantry.dashboard.auth import SessionDep
from tenantry.dashboard.charts import bar_chart, line_chart
from tenantry.dashboard.history import History
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep
from tenantry.jobs.backends import QueueStats


async def sample(services: Services) -> dict[str, float]:
    """One sample of the figures the overview charts over time."""
    queues = await services.jobs.get_all_queue_stats()
    statistics = await services.queries.statistics()
    return {
        "completed": float(sum(q.completed for q in queues.values())),
        "failed": float(sum(q.failed for q in queues.values())),
        "p95": float(statistics.p95_ms or 0.0),
        "p99": float(statistics.p99_ms or 0.0),
    }


@asynccontextmanager
async def sampling(app: FastAPI) -> AsyncIterator[None]:
    """Runs beside the app (a router lifespan): samples every few seconds until shutdown."""
    services: Services = app.state.services
    history: History = app.state.dashboard_history
    history.interval_seconds = services.settings.dashboard_sample_seconds

    async def record() -> None:
        history.record(await sample(services))

    # The first sample waits one interval: a probe cut off by cancellation inside the
    # BullMQ client can outlive its cancel, so none runs during a quick start-stop.
    background = Background()
    background.start(
        every(history.interval_seconds, record, name="dashboard sample"), "dashboard-sampler"
    )
    try:
        yield
    finally:
        await background.stop()


router = APIRouter(prefix="/admin", lifespan=sampling)


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, services: ServicesDep, session: SessionDep) -> HTMLResponse:
    ready, checks = await services.health.run_all()
    queues = await services.jobs.get_all_queue_stats()
    hour_ago = time.time() - 3600
    slow = [q for q in (await services.queries.metrics()).slow_queries if q.at >= hour_ago]
    totals = await services.tenants.storage_totals()
    largest = (await services.tenants.list_companies(sort="storageBytes", limit=10)).companies
    history: History = request.app.state.dashboard_history
    return render(
        request,
        "overview.html",
        session,
        page="overview",
        ready=ready,
        checks=checks,
        totals=_queue_totals(queues),
        open_circuits=_open_circuits(services),
        slow=slow,
        storage_files=totals.files,
        storage_bytes=totals.bytes,
        jobs_chart=line_chart(history.rates("completed", "failed"), history.labels()[1:]),
        latency_chart=line_chart(history.series("p95", "p99"), history.labels(), " ms"),
        storage_chart=bar_chart(
            [(c.id, c.storage.bytes / 1_048_576) for c in largest], "{:.1f} MB"
        ),
    )


def _queue_totals(queues: dict[str, QueueStats]) -> dict[str, int]:
    return {
        "waiting": sum(q.waiting for q in queues.values()),
        "active": sum(q.active for q in queues.values()),
        "completed": sum(q.completed for q in queues.values()),
        "failed": sum(q.failed for q in queues.values()),
        "delayed": sum(q.delayed for q in queues.values()),
    }


def _open_circuits(services: Services) -> list[str]:
    return [
        b.name for b in services.resilience.breakers if b.state.value in ("open", "forced_open")
    ]
