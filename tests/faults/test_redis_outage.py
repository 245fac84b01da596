"""Redis stopped, then restarted, under load: cached reads answer from the database,
flag checks answer from the last snapshot, and every job enqueued during the outage
waits in the database outbox and is processed once Redis is back — none lost."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.app import create_app
from tenantry.jobs import JobContext, job_handler
from tenantry.settings import load_settings
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.faults.report import record
from tests.faults.servers import OwnRedis

# Job ids the idempotent handler has seen, and how many times it ran in all.
PROCESSED: set[str] = set()
EXECUTIONS: Counter[str] = Counter()


@job_handler("ai-processing", "fault-count")
async def count_once(job: JobContext) -> dict[str, Any]:
    """Idempotent: its effect (an id in a set) is the same however often it runs."""
    EXECUTIONS[job.id] += 1
    PROCESSED.add(job.id)
    return {"n": job.data.get("n")}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def revenue(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT 42"))).scalar_one())


async def test_redis_outage_loses_nothing(
    tmp_path: Path, postgres_url: str, own_redis: OwnRedis
) -> None:
    PROCESSED.clear()
    EXECUTIONS.clear()
    settings = load_settings(
        data_dir=tmp_path / "data",
        upload_dir=tmp_path / "uploads",
        database_url=postgres_url,
        redis_url=own_redis.url,
        admin_token=ADMIN_TOKEN,
        job_workers_in_app=True,
        circuit_breakers={"redis": {"failureThreshold": 2, "timeout": 1000, "callTimeout": 1000}},
    )
    app = create_app(settings)
    figures: dict[str, Any] = {}
    enqueued: list[str] = []
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        services = app.state.services
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:

            async def one_round(n: int, tally: Counter[str]) -> None:
                value = await services.queries.optimized_read("acme", "revenue", revenue, 60)
                tally["read ok" if value == 42 else "read wrong"] += 1
                check = await http.get(
                    "/api/degradation/features/vision-analysis/check",
                    params={"targetId": "acme"},
                    headers=ADMIN,
                )
                tally[f"flag {check.status_code}"] += 1
                body = {"name": "fault-count", "companyId": "acme", "data": {"n": n}}
                added = await http.post("/api/queues/ai-processing/jobs", json=body, headers=ADMIN)
                tally[f"enqueue {added.status_code}"] += 1
                if added.status_code == 201:
                    enqueued.append(added.json()["id"])

            async def phase(name: str, seconds: float) -> None:
                tally: Counter[str] = Counter()
                deadline = time.monotonic() + seconds
                n = 0
                while time.monotonic() < deadline:
                    await one_round(n, tally)
                    n += 1
                figures[name] = dict(tally)

            await phase("before", 2)
            own_redis.stop()
            await phase("outage", 5)
            figures["outboxedDuringOutage"] = await services.jobs.outbox.pending()
            own_redis.start()
            await phase("after", 2)

            for _ in range(450):  # up to 90 s for the outbox relay and the workers
                if not set(enqueued) - PROCESSED:
                    break
                await asyncio.sleep(0.2)

    lost = set(enqueued) - PROCESSED
    figures.update(
        enqueued=len(enqueued),
        processed=len(PROCESSED & set(enqueued)),
        lost=len(lost),
        ranMoreThanOnce=sum(1 for count in EXECUTIONS.values() if count > 1),
    )
    record("redis-outage", figures)
    outage = figures["outage"]
    assert outage.get("read ok", 0) > 0 and "read wrong" not in outage
    assert set(outage) == {"read ok", "flag 200", "enqueue 201"}, outage
    assert figures["outboxedDuringOutage"] > 0
    assert not lost, f"{len(lost)} jobs lost"
