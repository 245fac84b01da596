"""Fair, limited, per-company queues (tenantry/jobs/fairness.py), on BullMQ (real Redis)
and in-process: no company starves another, limits hold across workers, a dead
worker's slot comes back, and a company's views are exact at any queue size."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tenantry.jobs import BullMQBackend, HandlerRegistry, JobContext, JobService
from tenantry.jobs.backends import bullmq as bullmq_backend
from tenantry.jobs.fairness import FairSettings
from tenantry.jobs.queues import QUEUE_NAMES
from tenantry.tenants.limits import QueueLimits, StaticLimits
from tenantry.testing.jobs import JobHarness
from tests.jobs.conftest import eventually, job_settings

ROOT = Path(__file__).resolve().parents[2]


def _limited(jobs: JobHarness, tmp_path: Path, limits: StaticLimits, **settings: object) -> None:
    """Give the harness a service with a limit source (same backend and registry)."""
    jobs.service = JobService(
        job_settings(tmp_path, **settings), jobs.service.backend, jobs.registry, limits=limits
    )


async def test_a_minnow_is_not_starved_by_a_whale(jobs: JobHarness) -> None:
    order: list[str] = []

    @jobs.handler("ai-processing")  # concurrency 3
    async def handle(job: JobContext) -> None:
        order.append(job.company_id)

    service = jobs.service
    await service.pause("ai-processing")
    for _ in range(500):
        await service.add("ai-processing", "t", {}, "whale")
    for _ in range(3):
        await service.add("ai-processing", "t", {}, "minnow")
    stats = await service.queue_stats("ai-processing", "minnow")
    assert (stats.waiting, stats.paused) == (3, 3)
    assert (await service.queue_stats("ai-processing")).waiting == 503
    await service.start_workers(["ai-processing"])
    await service.resume("ai-processing")
    await eventually(lambda: asyncio.sleep(0, order.count("minnow")), lambda n: n == 3)
    last_minnow = len(order) - 1 - order[::-1].index("minnow")
    whale_before = order[:last_minnow].count("whale")
    assert whale_before < 10 + 3, order[: last_minnow + 1]


async def test_a_job_dispatched_while_it_is_looked_up_is_still_found(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lookup reads a job's state, then whether it is staged: a dispatch between the
    # two (real, on Redis) moves it from staging into the queue, where a live job is.
    backend = BullMQBackend(redis_url, "test", QUEUE_NAMES)
    service = JobService(job_settings(tmp_path), backend, HandlerRegistry())
    try:
        ids = [await service.add("email", "m", {}, "whale") for _ in range(25)]
        staged = ids[-1]  # past the queue's depth of 20 (no worker): waiting for its turn
        assert await backend._is_staged("email", staged)
        looked_up = backend._is_staged

        async def dispatched_in_between(queue: str, job_id: str) -> bool:
            monkeypatch.setattr(backend, "fair", FairSettings(wait_depth={"email": 100}))
            assert await backend.dispatch(queue) == 5
            return await looked_up(queue, job_id)

        monkeypatch.setattr(backend, "_is_staged", dispatched_in_between)
        status = await service.get_job_status("email", staged, company_id="whale")
        assert (status.job.id, status.job.state) == (staged, "waiting")
    finally:
        await service.close()


@pytest.mark.parametrize("chunk", [7])
async def test_company_views_are_exact_beyond_the_chunk_of_one_read(
    jobs: JobHarness, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The index is read `COMPANY_CHUNK` ids at a time; patched down, 60 jobs take many
    # reads (the path a queue of 25,000 takes at the real size). No scan bound is left.
    monkeypatch.setattr(bullmq_backend, "COMPANY_CHUNK", chunk)
    service = jobs.service
    await service.pause("email")
    for _ in range(60):
        await service.add("email", "m", {}, "whale")
    minnow = [await service.add("email", "m", {"n": n}, "minnow") for n in range(3)]
    await service.add("email", "later", {}, "minnow", delay_ms=60_000)
    stats = await service.queue_stats("email", company_id="minnow")
    assert (stats.waiting, stats.delayed, stats.paused, stats.completed) == (3, 1, 3, 0)
    assert (await service.queue_stats("email", company_id="whale")).waiting == 60
    listed = await service.list_jobs("email", "waiting", company_id="minnow")
    assert [job.id for job in listed] == minnow
    page = await service.list_jobs("email", "waiting", 1, 2, company_id="minnow")
    assert [job.id for job in page] == minnow[1:]
    assert len(await service.list_jobs("email", "waiting", 0, 99, company_id="whale")) == 60
    assert len(await service.list_jobs("email", "waiting", 0, 99)) == 63  # staged ones too

    @jobs.handler("email")
    async def handle(job: JobContext) -> None:
        return None

    await service.start_workers(["email"])
    await service.resume("email")
    done = await eventually(
        lambda: service.queue_stats("email", company_id="minnow"), lambda s: s.completed == 3
    )
    assert (done.waiting, done.delayed) == (0, 1)
    # A removed job leaves the company's view (its index entry is pruned).
    await eventually(lambda: service.queue_stats("email"), lambda s: s.completed == 63)
    await service.clean("email", "completed")
    assert (await service.queue_stats("email", company_id="minnow")).completed == 0
    assert await service.list_jobs("email", "completed", company_id="whale") == []


async def test_cleaning_waiting_jobs_removes_staged_ones(jobs: JobHarness) -> None:
    service = jobs.service
    await service.pause("email")
    ids = [await service.add("email", "m", {}, "acme") for _ in range(30)]
    removed = await service.clean("email", "waiting")
    assert sorted(removed) == sorted(ids)
    assert (await service.queue_stats("email")).waiting == 0
    assert (await service.queue_stats("email", company_id="acme")).waiting == 0


async def test_weights_share_a_queue_in_proportion(jobs: JobHarness, tmp_path: Path) -> None:
    limits = StaticLimits(by_company={("heavy", "cleanup"): QueueLimits(weight=2)})
    _limited(jobs, tmp_path, limits)
    order: list[str] = []

    @jobs.handler("cleanup")  # concurrency 1: one job at a time, in dispatch order
    async def handle(job: JobContext) -> None:
        order.append(job.company_id)

    service = jobs.service
    await service.pause("cleanup")
    for _ in range(40):
        await service.add("cleanup", "c", {}, "heavy")
        await service.add("cleanup", "c", {}, "light")
    await service.start_workers(["cleanup"])
    await service.resume("cleanup")
    await eventually(lambda: asyncio.sleep(0, len(order)), lambda n: n >= 30)
    share = Counter(order[:30])
    assert 18 <= share["heavy"] <= 22, order[:30]


async def test_a_rate_limited_company_waits_and_is_never_failed(
    jobs: JobHarness, tmp_path: Path
) -> None:
    limits = StaticLimits(by_company={("acme", "report"): QueueLimits(per_minute=3)})
    _limited(jobs, tmp_path, limits)
    ran: list[str] = []

    @jobs.handler("report")
    async def handle(job: JobContext) -> None:
        ran.append(job.company_id)

    service = jobs.service
    await service.start_workers(["report"])
    for _ in range(5):
        await service.add("report", "r", {}, "acme")
    other = await service.add("report", "r", {}, "globex")
    await jobs.wait_state("report", other, "completed")  # others are not held back
    await eventually(
        lambda: service.queue_stats("report", company_id="acme"), lambda s: s.completed == 3
    )
    # Another company's job runs after: the worker had its chance at acme's two more.
    later = await service.add("report", "r", {}, "globex")
    await jobs.wait_state("report", later, "completed")
    stats = await service.queue_stats("report", company_id="acme")
    assert (stats.completed, stats.waiting, stats.failed) == (3, 2, 0)
    # A raised limit applies at once: the held jobs run.
    await service.set_company_limits("report", "acme", QueueLimits(per_minute=100))
    done = await eventually(
        lambda: service.queue_stats("report", company_id="acme"), lambda s: s.completed == 5
    )
    assert done.failed == 0


async def _peak_per_company(
    services: list[JobService], registry: HandlerRegistry, queue: str, per_company: int
) -> Counter[str]:
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    @registry.handler(queue)
    async def handle(job: JobContext) -> None:
        running[job.company_id] += 1
        peak[job.company_id] = max(peak[job.company_id], running[job.company_id])
        await asyncio.sleep(0.15)
        running[job.company_id] -= 1

    first = services[0]
    await first.pause(queue)
    for _ in range(per_company):
        await first.add(queue, "e", {}, "acme")
        await first.add(queue, "e", {}, "globex")
    for service in services:
        await service.start_workers([queue])
    await first.resume(queue)
    await eventually(
        lambda: first.queue_stats(queue), lambda s: s.completed == 2 * per_company, within=30
    )
    return peak


async def test_a_concurrency_limit_holds_across_two_workers(redis_url: str, tmp_path: Path) -> None:
    limits = StaticLimits(by_company={("acme", "export"): QueueLimits(concurrency=2)})
    registry = HandlerRegistry()
    services = [
        JobService(
            job_settings(tmp_path),
            BullMQBackend(redis_url, "test", QUEUE_NAMES),
            registry,
            limits=limits,
        )
        for _ in range(2)
    ]
    try:
        peak = await _peak_per_company(services, registry, "export", 12)  # 2 x concurrency 5
    finally:
        for service in services:
            await service.stop_workers(5)
            await service.close()
    assert peak["acme"] == 2
    assert peak["globex"] > 2  # the other company is not held back


async def test_a_concurrency_limit_holds_in_process(tmp_path: Path) -> None:
    from tenantry.jobs import InProcessBackend

    limits = StaticLimits(by_company={("acme", "export"): QueueLimits(concurrency=2)})
    registry = HandlerRegistry()
    service = JobService(
        job_settings(tmp_path), InProcessBackend(QUEUE_NAMES), registry, limits=limits
    )
    try:
        peak = await _peak_per_company([service], registry, "export", 8)
    finally:
        await service.stop_workers(5)
        await service.close()
    assert peak["acme"] == 2
    assert peak["globex"] > 2


KILLED_WORKER = """
import asyncio, sys
from pathlib import Path
from tenantry.jobs import BullMQBackend, HandlerRegistry, JobService
from tenantry.jobs.queues import QUEUE_NAMES
from tenantry.tenants.limits import QueueLimits, StaticLimits
from tests.jobs.conftest import job_settings

async def main():
    registry = HandlerRegistry()

    @registry.handler("export")
    async def hang(job):
        print("started", flush=True)
        await asyncio.sleep(3600)

    limits = StaticLimits(by_company={("acme", "export"): QueueLimits(concurrency=1)})
    settings = job_settings(Path(sys.argv[2]), job_lock_duration_ms=1000,
                            job_stalled_interval_ms=1000)
    service = JobService(settings, BullMQBackend(sys.argv[1], "test", QUEUE_NAMES), registry,
                         limits=limits)
    await service.add("export", "first", {}, "acme")
    await service.start_workers(["export"])
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_killed_workers_company_slot_is_recovered(redis_url: str, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(KILLED_WORKER)
    child = subprocess.Popen(  # noqa: ASYNC220  (started once; read line by line below)
        [sys.executable, str(script), redis_url, str(tmp_path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        assert line.strip() == "started"
    finally:
        child.send_signal(signal.SIGKILL)  # mid-job: its lock and slot are left behind
        child.wait(10)

    registry = HandlerRegistry()
    ran: list[str] = []

    @registry.handler("export")
    async def handle(job: JobContext) -> None:
        ran.append(job.name)

    limits = StaticLimits(by_company={("acme", "export"): QueueLimits(concurrency=1)})
    settings = job_settings(tmp_path, job_lock_duration_ms=1000, job_stalled_interval_ms=1000)
    service = JobService(settings, BullMQBackend(redis_url, "test", QUEUE_NAMES), registry,
                         limits=limits)  # fmt: skip
    try:
        second = await service.add("export", "second", {}, "acme")
        await service.start_workers(["export"])
        await eventually(lambda: service.get_job_status("export", second),
                         lambda s: s.state == "completed", within=20)  # fmt: skip
        # The killed worker's job was recovered by the stalled check and ran too.
        await eventually(lambda: asyncio.sleep(0, sorted(ran)), lambda r: r == ["first", "second"])
    finally:
        await service.stop_workers(5)
        await service.close()
