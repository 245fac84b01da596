"""Workers SIGKILLed again and again while 1,000 jobs run: every job completes, none lost."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from tenantry.jobs import JobService
from tests.faults.report import record
from tests.jobs.conftest import eventually
from tests.jobs.test_worker import (  # noqa: F401  (fixtures, used by name)
    QUEUE,
    WorkerProcess,
    producer,
    start_worker,
    worker_env,
)

JOBS = 1000
KILLS = 5


async def test_repeatedly_killed_workers_lose_no_job(
    start_worker: Callable[..., WorkerProcess],  # noqa: F811
    producer: JobService,  # noqa: F811
    tmp_path: Path,
) -> None:
    trail = tmp_path / "trail.txt"
    ids = [
        await producer.add(
            QUEUE, "tick", {"trail": str(trail), "seconds": 0.05}, "acme", attempts=3
        )
        for _ in range(JOBS)
    ]
    kills = 0
    for _ in range(KILLS):
        worker = start_worker(JOB_CONCURRENCY_AI_PROCESSING="5", JOB_MAX_STALLED_COUNT="10")
        await worker.ready()
        await asyncio.sleep(1.5)
        worker.process.kill()  # SIGKILL mid-batch: active jobs are left locked
        assert await worker.exited() == -signal.SIGKILL
        kills += 1
    finisher = start_worker(JOB_CONCURRENCY_AI_PROCESSING="5", JOB_MAX_STALLED_COUNT="10")
    await finisher.ready()
    counts = await eventually(
        lambda: producer.backend.counts(QUEUE),
        lambda c: c.completed + c.failed == JOBS,
        within=180,
    )
    done = trail.read_text().splitlines()
    record(
        "worker-kills",
        {
            "jobs": JOBS,
            "workersKilled": kills,
            "completed": counts.completed,
            "failed": counts.failed,
            "lost": len(set(ids) - set(done)),
            "handlerRuns": len(done),
            "ranMoreThanOnce": len(done) - len(set(done)),
        },
    )
    failed = await producer.list_jobs(QUEUE, "failed")
    assert counts.failed == 0, [job.failed_reason for job in failed]
    assert set(done) == set(ids)
