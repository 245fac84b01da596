"""Queue figures for autoscalers and alerts (QueueFigures), on both backends: the backlog
counts every waiting job (staged per company, prioritized, delayed once due), the oldest
one's age is read from the next in line, and finished jobs are counted."""

from __future__ import annotations

import re
from typing import Any

import pytest
from httpx import AsyncClient

from tenantry.jobs.backends import QueueFigures, now_ms
from tenantry.jobs.registry import JobContext
from tenantry.testing.jobs import JobHarness, eventually
from tests.conftest import ADMIN
from tests.dashboard.conftest import log_in


async def figures_between(jobs: JobHarness) -> tuple[int, dict[str, QueueFigures], int]:
    before = now_ms()
    figures = await jobs.service.queue_figures()
    return before, figures, now_ms()


async def test_an_empty_queue_has_no_backlog(jobs: JobHarness) -> None:
    figures = await jobs.service.queue_figures()
    assert set(figures) == {"email", "report", "ai-processing", "export", "notification", "cleanup"}
    assert figures["report"] == QueueFigures(0, 0.0, 0, 0)


async def test_the_backlog_counts_staged_prioritized_and_due_jobs(jobs: JobHarness) -> None:
    service = jobs.service
    first = await service.add("email", "a", {}, "acme")
    for n in range(24):  # past the wait depth: most stay staged for their company's turn
        await service.add("email", "b", {"n": n}, "globex" if n % 2 else "acme")
    await service.backend.add("email", "p", {"companyId": "acme"}, {"priority": 1})
    await service.add("email", "later", {}, "acme", delay_ms=3_600_000)  # not due: not waiting
    await service.add("email", "soon", {}, "acme", delay_ms=1)  # due at once
    created = (await service.get_job_status("email", first)).job.created_at

    before, figures, after = await eventually(
        lambda: figures_between(jobs), lambda f: f[1]["email"].waiting == 27
    )
    email = figures["email"]
    assert (await service.queue_stats("email")).waiting in (26, 27)  # `soon`: delayed or waiting
    # The first job added is the oldest: its age is measured from its creation.
    assert (before - created) / 1000 <= email.oldest_waiting_age_seconds <= (after - created) / 1000
    assert figures["report"].waiting == 0


async def test_finished_jobs_are_counted(jobs: JobHarness) -> None:
    @jobs.handler("export")
    async def handle(job: JobContext) -> None:
        if job.data.get("fail"):
            raise RuntimeError("nope")

    for data in ({}, {}, {"fail": True}):
        await jobs.service.add("export", "x", dict(data), "acme")
    await jobs.service.start_workers(["export"])

    def settled(figures: dict[str, Any]) -> bool:
        return figures["export"].completed_total == 2 and figures["export"].failed_total == 1

    figures = await eventually(jobs.service.queue_figures, settled)
    assert figures["export"].waiting == 0 and figures["export"].oldest_waiting_age_seconds == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_api_and_the_queues_page_show_the_backlog(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    assert (await client.post("/api/queues/report/pause", headers=ADMIN)).status_code == 200
    job = {"name": "r", "companyId": "acme", "data": {}}
    assert (await client.post("/api/queues/report/jobs", json=job, headers=ADMIN)).is_success

    stats = (await client.get("/api/queues/stats", headers=ADMIN)).json()
    assert stats["report"]["waitingJobs"] == 1 and stats["email"]["waitingJobs"] == 0
    assert stats["report"]["oldestWaitingAgeSeconds"] >= 0
    assert stats["email"]["oldestWaitingAgeSeconds"] == 0
    # Whole-queue figures are not a company's to see.
    own = (await client.get("/api/queues/stats", headers=company_keys["acme"])).json()
    assert own["report"]["waiting"] == 1 and own["report"]["waitingJobs"] is None

    await log_in(client)
    page = (await client.get("/admin/queues")).text
    row = re.search(r'<tr data-queue="report">.*?</tr>', page, re.S)
    assert row and re.search(r'class="num queue-backlog">1<', row.group(0))
    assert "Oldest waiting" in page
