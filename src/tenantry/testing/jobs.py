"""The job-backend contract: what Tenantry's `JobService` needs of a `JobBackend`.

Each check is a plain `async def check_*(backend) -> None` that drives the backend
through a `JobService` (as Tenantry uses it) and raises `AssertionError` on a breach;
`JOB_BACKEND_CHECKS` lists them all. The backend must be new and empty, built on
Tenantry's six queues (`tenantry.jobs.QUEUE_NAMES`), workers not started. A check
stops the workers it started; closing the backend is the caller's. Checks wait on
real time (a retry backoff, a delay, a cron schedule firing each second), so the
whole suite takes 15-30 seconds.

Run it against your own backend from your pytest file (with pytest-asyncio in
auto mode, or mark the test `@pytest.mark.asyncio`)::

    import pytest
    from tenantry.jobs import QUEUE_NAMES
    from tenantry.testing.jobs import JOB_BACKEND_CHECKS, JobBackendCheck

    @pytest.mark.parametrize("check", JOB_BACKEND_CHECKS, ids=lambda c: c.__name__)
    async def test_my_backend_keeps_the_contract(check: JobBackendCheck) -> None:
        backend = MyBackend(queues=QUEUE_NAMES)
        try:
            await check(backend)
        finally:
            await backend.close()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from tenantry.context import current_company
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.jobs.backends import JobBackend, PermanentJobError, QueueStats
from tenantry.jobs.registry import HandlerRegistry, JobContext
from tenantry.jobs.service import JobService
from tenantry.settings import Settings, load_settings

T = TypeVar("T")
JobBackendCheck = Callable[[JobBackend], Awaitable[None]]


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool] = bool,
    within: float = 15.0,
    interval: float = 0.05,
) -> T:
    """Poll `probe` until `accept(value)`; fail with the last value after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {within}s; last value: {value!r}")
        await asyncio.sleep(interval)


def contract_settings() -> Settings:
    """The settings the checks count on (one attempt unless asked, report concurrency 2),
    set explicitly so the caller's environment cannot change them."""
    return load_settings(
        storage_provider="local",
        job_attempts=1,
        job_backoff_ms=200,
        job_max_data_bytes=4096,
        job_shutdown_timeout_seconds=5,
        job_concurrency_report=2,
    )


class JobHarness:
    """A `JobService` on one backend, with its own registry of test handlers."""

    def __init__(self, backend: JobBackend, settings: Settings | None = None) -> None:
        self.registry = HandlerRegistry()
        self.handler = self.registry.handler
        self.service = JobService(settings or contract_settings(), backend, self.registry)

    async def state(self, queue: str, job_id: str) -> str:
        return (await self.service.get_job_status(queue, job_id)).state

    async def wait_state(self, queue: str, job_id: str, state: str, within: float = 15) -> None:
        await eventually(lambda: self.state(queue, job_id), lambda s: s == state, within)


@asynccontextmanager
async def _harness(backend: JobBackend) -> AsyncIterator[JobHarness]:
    jobs = JobHarness(backend)
    try:
        yield jobs
    finally:
        await jobs.service.stop_workers(5)


async def check_a_job_waits_until_a_worker_runs_it(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        ran: list[dict[str, Any]] = []

        @jobs.handler("report")
        async def handle(job: JobContext) -> dict[str, Any]:
            ran.append(job.data)
            return {"rows": 3}

        job_id = await jobs.service.add("report", "build", {"x": 1}, "acme")
        status = await jobs.service.get_job_status("report", job_id)
        assert status.state == "waiting"
        assert status.job.data == {"x": 1, "companyId": "acme"}
        assert status.job.company_id == "acme"
        assert ran == []

        await jobs.service.start_workers(["report"])
        await jobs.wait_state("report", job_id, "completed")
        done = (await jobs.service.get_job_status("report", job_id)).job
        assert done.result == {"rows": 3}
        assert done.attempts_made == 1
        assert done.created_at <= (done.processed_at or 0) <= (done.finished_at or 0)
        assert ran == [{"x": 1, "companyId": "acme"}]


async def check_progress_logs_and_company_context_are_visible(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        release = asyncio.Event()
        seen_company: list[str | None] = []

        @jobs.handler("export")
        async def handle(job: JobContext) -> str:
            seen_company.append(current_company.get())
            await job.log("step one")
            await job.progress(40)
            await release.wait()
            await job.progress({"done": 10, "total": 10})
            return "ok"

        await jobs.service.start_workers(["export"])
        job_id = await jobs.service.add("export", "dump", {}, "globex")
        status = await eventually(
            lambda: jobs.service.get_job_status("export", job_id), lambda s: s.job.progress == 40
        )
        assert status.state == "active"
        assert status.logs == ["step one"]
        assert seen_company == ["globex"]
        release.set()
        await jobs.wait_state("export", job_id, "completed")
        finished = await jobs.service.get_job_status("export", job_id)
        assert finished.job.progress == {"done": 10, "total": 10}
        assert finished.job.result == "ok"


async def check_stats_count_every_state(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:

        @jobs.handler("email")
        async def handle(job: JobContext) -> None:
            if job.data.get("fail"):
                raise RuntimeError("nope")

        await jobs.service.add("email", "a", {}, "acme")
        await jobs.service.add("email", "b", {"fail": True}, "acme")
        await jobs.service.add("email", "c", {}, "acme", delay_ms=60_000)
        stats = await jobs.service.get_all_queue_stats()
        assert set(stats) == {
            "email", "report", "ai-processing", "export", "notification", "cleanup"
        }  # fmt: skip
        assert stats["email"] == QueueStats(
            waiting=2, active=0, completed=0, failed=0, delayed=1, paused=0, is_paused=False
        )
        await jobs.service.start_workers(["email"])
        counts = await eventually(
            lambda: jobs.service.queue_stats("email"),
            lambda s: s.completed == 1 and s.failed == 1,
        )
        assert counts.waiting == 0 and counts.delayed == 1


async def check_retries_back_off_exponentially(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        starts: list[float] = []

        @jobs.handler("notification")
        async def flaky(job: JobContext) -> int:
            starts.append(time.monotonic())
            if len(starts) < 3:
                raise RuntimeError(f"failure {len(starts)}")
            return job.attempt

        await jobs.service.start_workers(["notification"])
        job_id = await jobs.service.add("notification", "n", {}, "acme", attempts=3, backoff_ms=300)
        await eventually(lambda: jobs.state("notification", job_id), lambda s: s == "delayed")
        await jobs.wait_state("notification", job_id, "completed")
        job = (await jobs.service.get_job_status("notification", job_id)).job
        assert job.attempts_made == 3
        assert job.result == 3
        first_gap, second_gap = starts[1] - starts[0], starts[2] - starts[1]
        assert first_gap >= 0.3 * 0.95  # backoff 300 ms, then doubled
        assert second_gap >= 0.6 * 0.95


async def check_a_job_fails_after_its_last_attempt_with_reason_and_stack(
    backend: JobBackend,
) -> None:
    async with _harness(backend) as jobs:

        @jobs.handler("report")
        async def broken(job: JobContext) -> None:
            raise ValueError("bad report")

        await jobs.service.start_workers(["report"])
        job_id = await jobs.service.add("report", "r", {}, "acme", attempts=2, backoff_ms=0)
        await jobs.wait_state("report", job_id, "failed")
        job = (await jobs.service.get_job_status("report", job_id)).job
        assert job.attempts_made == 2
        assert job.failed_reason == "bad report"
        assert any("ValueError" in frame for frame in job.stacktrace)


async def check_a_permanent_error_is_not_retried(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        calls = 0

        @jobs.handler("report")
        async def invalid(job: JobContext) -> None:
            nonlocal calls
            calls += 1
            raise PermanentJobError("input can never work")

        await jobs.service.start_workers(["report"])
        job_id = await jobs.service.add("report", "r", {}, "acme", attempts=5, backoff_ms=0)
        await jobs.wait_state("report", job_id, "failed")
        assert calls == 1
        assert (await jobs.service.get_job_status("report", job_id)).job.failed_reason == (
            "input can never work"
        )


async def check_retry_one_failed_job_and_all_failed_jobs(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        healthy = False

        @jobs.handler("export")
        async def handle(job: JobContext) -> str:
            if not healthy:
                raise RuntimeError("downstream is down")
            return "exported"

        await jobs.service.start_workers(["export"])
        ids = [await jobs.service.add("export", "e", {"n": n}, "acme") for n in range(3)]
        for job_id in ids:
            await jobs.wait_state("export", job_id, "failed")

        healthy = True
        await jobs.service.retry_job("export", ids[0])
        await jobs.wait_state("export", ids[0], "completed")
        # Only a failed job can be retried.
        await _raises(Conflict, jobs.service.retry_job("export", ids[0]))

        assert await jobs.service.retry_failed("export") == 2
        for job_id in ids[1:]:
            await jobs.wait_state("export", job_id, "completed")
        assert (await jobs.service.queue_stats("export")).failed == 0
        await _raises(NotFound, jobs.service.retry_job("export", "does-not-exist"))


async def check_pause_holds_jobs_and_resume_releases_them(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:

        @jobs.handler("email")
        async def handle(job: JobContext) -> str:
            return "sent"

        await jobs.service.start_workers(["email"])
        await jobs.service.pause("email")
        job_id = await jobs.service.add("email", "m", {}, "acme")
        await asyncio.sleep(1.0)
        assert await jobs.state("email", job_id) == "waiting"
        stats = await jobs.service.queue_stats("email")
        assert stats.is_paused is True and stats.paused == 1
        assert [job.id for job in await jobs.service.list_jobs("email", "paused")] == [job_id]

        await jobs.service.resume("email")
        await jobs.wait_state("email", job_id, "completed")
        assert (await jobs.service.queue_stats("email")).is_paused is False


async def check_clean_removes_finished_jobs_older_than_the_grace(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:

        @jobs.handler("cleanup")
        async def handle(job: JobContext) -> None:
            return None

        await jobs.service.start_workers(["cleanup"])
        ids = [await jobs.service.add("cleanup", "c", {}, "acme") for _ in range(3)]
        for job_id in ids:
            await jobs.wait_state("cleanup", job_id, "completed")

        assert await jobs.service.clean("cleanup", "completed", grace_seconds=3600) == []
        removed = await jobs.service.clean("cleanup", "completed", grace_seconds=0)
        assert sorted(removed) == sorted(ids)
        assert (await jobs.service.queue_stats("cleanup")).completed == 0
        await _raises(NotFound, jobs.service.get_job_status("cleanup", ids[0]))
        await _raises(InvalidInput, jobs.service.clean("cleanup", "active"))


async def check_delayed_jobs_run_after_their_delay(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:

        @jobs.handler("report")
        async def handle(job: JobContext) -> None:
            return None

        await jobs.service.start_workers(["report"])
        job_id = await jobs.service.add("report", "later", {}, "acme", delay_ms=1500)
        assert await jobs.state("report", job_id) == "delayed"
        await jobs.wait_state("report", job_id, "completed")
        job = (await jobs.service.get_job_status("report", job_id)).job
        assert (job.processed_at or 0) - job.created_at >= 1500


async def check_concurrency_is_per_queue(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        running = 0
        peak = 0

        @jobs.handler("report")  # report: concurrency 2
        async def handle(job: JobContext) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.3)
            running -= 1

        ids = [await jobs.service.add("report", "r", {}, "acme") for _ in range(6)]
        await jobs.service.start_workers(["report"])
        for job_id in ids:
            await jobs.wait_state("report", job_id, "completed")
        assert peak == 2


async def check_cron_schedules_are_idempotent_and_run(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        runs: list[dict[str, Any]] = []

        @jobs.handler("cleanup")
        async def handle(job: JobContext) -> None:
            runs.append(job.data)

        for _ in range(3):  # a deploy running it again must not add a schedule
            record = await jobs.service.schedule_recurring_job(
                "cleanup", {"scope": "all"}, "* * * * * *", id="every-second"
            )
        assert record.pattern == "* * * * * *"
        schedules = await jobs.service.list_schedules("cleanup")
        assert [s.id for s in schedules] == ["every-second"]
        assert (await jobs.service.queue_stats("cleanup")).delayed <= 1

        await jobs.service.start_workers(["cleanup"])
        await eventually(lambda: asyncio.sleep(0, len(runs)), lambda n: n >= 2, within=10)
        assert runs[0] == {"scope": "all", "companyId": "_system"}

        await jobs.service.remove_schedule("cleanup", "every-second")
        assert await jobs.service.list_schedules("cleanup") == []
        await _raises(NotFound, jobs.service.get_schedule("cleanup", "every-second"))
        await asyncio.sleep(0.5)
        settled = len(runs)
        await asyncio.sleep(2.2)
        assert len(runs) == settled


async def check_interval_schedules_and_replacing_a_schedule(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        first = await jobs.service.schedule_recurring_job(
            "report", {"v": 1}, id="digest", every_ms=60_000, company_id="acme"
        )
        assert first.every_ms == 60_000 and first.next_run_at is not None
        replaced = await jobs.service.schedule_recurring_job(
            "report", {"v": 2}, "0 9 * * 1", id="digest", tz="Europe/Paris", company_id="acme"
        )
        schedules = await jobs.service.list_schedules("report")
        assert len(schedules) == 1
        assert schedules[0].pattern == "0 9 * * 1" and schedules[0].tz == "Europe/Paris"
        assert schedules[0].data == {"v": 2, "companyId": "acme"}
        assert replaced.next_run_at is not None and replaced.next_run_at > time.time() * 1000


async def check_a_job_id_makes_adding_idempotent(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        first = await jobs.service.add("email", "m", {"n": 1}, "acme", job_id="welcome-42")
        again = await jobs.service.add("email", "m", {"n": 2}, "acme", job_id="welcome-42")
        assert first == again == "welcome-42"
        assert (await jobs.service.queue_stats("email")).waiting == 1
        assert (await jobs.service.get_job_status("email", first)).job.data["n"] == 1


async def check_stopping_lets_the_active_job_finish(backend: JobBackend) -> None:
    async with _harness(backend) as jobs:
        started = asyncio.Event()

        @jobs.handler("export")
        async def slow(job: JobContext) -> str:
            started.set()
            await asyncio.sleep(0.8)
            return "finished"

        await jobs.service.start_workers(["export"])
        job_id = await jobs.service.add("export", "slow", {}, "acme")
        await asyncio.wait_for(started.wait(), 10)
        await jobs.service.stop_workers(grace_seconds=10)
        status = await jobs.service.get_job_status("export", job_id)
        assert status.state == "completed" and status.job.result == "finished"


async def check_a_companys_views_are_exact(backend: JobBackend) -> None:
    """A company's counts and lists hold exactly its own jobs, in every state,
    however many jobs other companies have before and after them."""
    async with _harness(backend) as jobs:
        service = jobs.service
        await service.pause("email")
        for _ in range(120):
            await service.add("email", "m", {}, "whale")
        mine = [await service.add("email", "m", {"n": n}, "minnow") for n in range(3)]
        for _ in range(20):
            await service.add("email", "m", {}, "whale")
        later = await service.add("email", "m", {}, "minnow", delay_ms=60_000)
        stats = await service.queue_stats("email", company_id="minnow")
        assert (stats.waiting, stats.delayed, stats.paused, stats.active) == (3, 1, 3, 0)
        waiting = await service.list_jobs("email", "waiting", company_id="minnow")
        assert [job.id for job in waiting] == mine
        assert [job.id for job in await service.list_jobs("email", "paused", 2, 5, "minnow")] == (
            mine[2:]
        )
        delayed = await service.list_jobs("email", "delayed", company_id="minnow")
        assert [job.id for job in delayed] == [later]
        assert await service.list_jobs("email", "waiting", company_id="nobody") == []
        whale = await service.queue_stats("email", company_id="whale")
        assert (whale.waiting, whale.delayed) == (140, 0)
        assert (await service.queue_stats("email")).waiting == 143


async def _raises(error: type[Exception], call: Awaitable[object]) -> None:
    # The suite runs outside pytest too, so no pytest.raises.
    try:
        await call
    except error:
        return
    raise AssertionError(f"expected {error.__name__}")


JOB_BACKEND_CHECKS: tuple[JobBackendCheck, ...] = (
    check_a_job_waits_until_a_worker_runs_it,
    check_progress_logs_and_company_context_are_visible,
    check_stats_count_every_state,
    check_retries_back_off_exponentially,
    check_a_job_fails_after_its_last_attempt_with_reason_and_stack,
    check_a_permanent_error_is_not_retried,
    check_retry_one_failed_job_and_all_failed_jobs,
    check_pause_holds_jobs_and_resume_releases_them,
    check_clean_removes_finished_jobs_older_than_the_grace,
    check_delayed_jobs_run_after_their_delay,
    check_concurrency_is_per_queue,
    check_cron_schedules_are_idempotent_and_run,
    check_interval_schedules_and_replacing_a_schedule,
    check_a_job_id_makes_adding_idempotent,
    check_stopping_lets_the_active_job_finish,
    check_a_companys_views_are_exact,
)
