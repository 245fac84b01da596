"""The outbox keeps jobs enqueued while Redis is down and relays them when it is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantry import db as database
from tenantry.jobs.backends import REDIS_DOWN, BullMQBackend
from tenantry.jobs.outbox import JobOutbox
from tenantry.settings import async_database_url
from tests.faults.servers import OwnRedis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def outbox(database_url: str) -> AsyncIterator[JobOutbox]:
    await asyncio.to_thread(database.upgrade, async_database_url(database_url))
    db = database.Database(async_database_url(database_url))
    yield JobOutbox(db, batch_size=3)
    await db.dispose()


async def add_or_keep(
    backend: BullMQBackend, outbox: JobOutbox, queue: str, data: dict[str, Any], job_id: str
) -> str:
    """What JobService.add does: the engine first, the outbox when Redis is unreachable."""
    options = {"jobId": job_id, "attempts": 1}
    try:
        return await asyncio.wait_for(backend.add(queue, "noop", data, options), 1.0)
    except (*REDIS_DOWN, TimeoutError):
        return await outbox.put(queue, "noop", data, options)


async def test_jobs_enqueued_during_an_outage_reach_the_queue_once(
    own_redis: OwnRedis, outbox: JobOutbox
) -> None:
    backend = BullMQBackend(own_redis.url, queues=("email",))
    try:
        assert await add_or_keep(backend, outbox, "email", {"n": 0}, "before") == "before"

        own_redis.stop()
        during = [f"during-{i}" for i in range(8)]
        for i, job_id in enumerate(during):
            assert await add_or_keep(backend, outbox, "email", {"n": i}, job_id) == job_id
        assert await outbox.pending() == 8
        waiting = await outbox.get("email", "during-3")
        assert waiting is not None and waiting.state == "waiting" and waiting.data == {"n": 3}
        assert await outbox.get("report", "during-3") is None  # another queue's id

        async def enqueue(queue: str, name: str, data: Any, options: Any) -> str:
            return await asyncio.wait_for(backend.add(queue, name, data, options), 1.0)

        # Still down: nothing is relayed, nothing is lost.
        assert await outbox.relay(enqueue) == 0
        assert await outbox.pending() == 8

        own_redis.start()
        relayed = 0
        while await outbox.pending():
            relayed += await outbox.relay(enqueue)
        assert relayed == 8
        for i, job_id in enumerate(during):
            job = await backend.get("email", job_id)
            assert job is not None and job.data == {"n": i}
        # Relaying a job that already reached the queue does not duplicate it.
        await enqueue("email", "noop", {"n": 3}, {"jobId": "during-3"})
        counts = await backend.counts("email")
        assert counts.waiting == 9
    finally:
        await backend.close()
