"""The job-backend contract: every test runs on BullMQ (real Redis) and in-process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tenantry.context import current_company
from tenantry.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from tenantry.jobs import JobContext, PermanentJobError
from tests.jobs.conftest import Harness, eventually


async def test_a_job_waits_until_a_worker_runs_it(jobs: Harness) -> None:
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


async def test_progress_logs_and_company_context_are_visible(jobs: Harness) -> None:
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


async def test_stats_count_every_state(jobs: Harness) -> None:
    @jobs.handler("email")
    async def handle(job: JobContext) -> None:
        if job.data.get("fail"):
            raise RuntimeError("nope")

    await jobs.service.add("email", "a", {}, "acme")
    await jobs.service.add("email", "b", {"fail": True}, "acme")
    await jobs.service.add("email", "c", {}, "acme", delay_ms=60_000)
    stats = await jobs.service.get_all_queue_stats()
    assert set(stats) == {"email", "report", "ai-processing", "export", "notification", "cleanup"}
    assert stats["email"] == {
        "waiting": 2,
        "active": 0,
        "completed": 0,
        "failed": 0,
        "delayed": 1,
        "paused": 0,
        "isPaused": False,
    }
    await jobs.service.start_workers(["email"])
    counts = await eventually(
        lambda: jobs.service.queue_stats("email"),
        lambda s: s["completed"] == 1 and s["failed"] == 1,
    )
    assert counts["waiting"] == 0 and counts["delayed"] == 1


async def test_retries_back_off_exponentially(jobs: Harness) -> None:
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


async def test_a_job_fails_after_its_last_attempt_with_reason_and_stack(jobs: Harness) -> None:
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


async def test_a_permanent_error_is_not_retried(jobs: Harness) -> None:
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


async def test_retry_one_failed_job_and_all_failed_jobs(jobs: Harness) -> None:
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
    with pytest.raises(Conflict):  # only a failed job can be retried
        await jobs.service.retry_job("export", ids[0])

    assert await jobs.service.retry_failed("export") == 2
    for job_id in ids[1:]:
        await jobs.wait_state("export", job_id, "completed")
    assert (await jobs.service.queue_stats("export"))["failed"] == 0
    with pytest.raises(NotFound):
        await jobs.service.retry_job("export", "does-not-exist")


async def test_pause_holds_jobs_and_resume_releases_them(jobs: Harness) -> None:
    @jobs.handler("email")
    async def handle(job: JobContext) -> str:
        return "sent"

    await jobs.service.start_workers(["email"])
    await jobs.service.pause("email")
    job_id = await jobs.service.add("email", "m", {}, "acme")
    await asyncio.sleep(1.0)
    assert await jobs.state("email", job_id) == "waiting"
    stats = await jobs.service.queue_stats("email")
    assert stats["isPaused"] is True and stats["paused"] == 1
    assert [job.id for job in await jobs.service.list_jobs("email", "paused")] == [job_id]

    await jobs.service.resume("email")
    await jobs.wait_state("email", job_id, "completed")
    assert (await jobs.service.queue_stats("email"))["isPaused"] is False


async def test_clean_removes_finished_jobs_older_than_the_grace(jobs: Harness) -> None:
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
    assert (await jobs.service.queue_stats("cleanup"))["completed"] == 0
    with pytest.raises(NotFound):
        await jobs.service.get_job_status("cleanup", ids[0])
    with pytest.raises(InvalidInput):
        await jobs.service.clean("cleanup", "active")


async def test_delayed_jobs_run_after_their_delay(jobs: Harness) -> None:
    @jobs.handler("report")
    async def handle(job: JobContext) -> None:
        return None

    await jobs.service.start_workers(["report"])
    job_id = await jobs.service.add("report", "later", {}, "acme", delay_ms=1500)
    assert await jobs.state("report", job_id) == "delayed"
    await jobs.wait_state("report", job_id, "completed")
    job = (await jobs.service.get_job_status("report", job_id)).job
    assert (job.processed_at or 0) - job.created_at >= 1500


async def test_concurrency_is_per_queue(jobs: Harness) -> None:
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


async def test_cron_schedules_are_idempotent_and_run(jobs: Harness) -> None:
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
    assert (await jobs.service.queue_stats("cleanup"))["delayed"] <= 1

    await jobs.service.start_workers(["cleanup"])
    await eventually(lambda: asyncio.sleep(0, len(runs)), lambda n: n >= 2, within=10)
    assert runs[0] == {"scope": "all", "companyId": "_system"}

    await jobs.service.remove_schedule("cleanup", "every-second")
    assert await jobs.service.list_schedules("cleanup") == []
    with pytest.raises(NotFound):
        await jobs.service.get_schedule("cleanup", "every-second")
    await asyncio.sleep(0.5)
    settled = len(runs)
    await asyncio.sleep(2.2)
    assert len(runs) == settled


async def test_interval_schedules_and_replacing_a_schedule(jobs: Harness) -> None:
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


@pytest.mark.parametrize("pattern", ["not a cron", "61 * * * *", "* * * *", "0 0 30 2 *"])
async def test_an_invalid_cron_pattern_is_refused_naming_it(jobs: Harness, pattern: str) -> None:
    with pytest.raises(InvalidInput) as error:
        await jobs.service.schedule_recurring_job("cleanup", {}, pattern, id="bad")
    assert repr(pattern) in error.value.message
    assert error.value.details["field"] == "pattern"
    assert await jobs.service.list_schedules("cleanup") == []


async def test_a_company_sees_and_acts_on_only_its_own_jobs(jobs: Harness) -> None:
    @jobs.handler("report")
    async def handle(job: JobContext) -> None:
        raise RuntimeError("fail for retry")

    await jobs.service.start_workers(["report"])
    acme = await jobs.service.add("report", "r", {}, "acme")
    globex = await jobs.service.add("report", "r", {}, "globex")
    await jobs.wait_state("report", acme, "failed")
    await jobs.wait_state("report", globex, "failed")

    assert (await jobs.service.get_job_status("report", acme, "acme")).job.company_id == "acme"
    with pytest.raises(NotFound):
        await jobs.service.get_job_status("report", globex, "acme")
    with pytest.raises(NotFound):
        await jobs.service.retry_job("report", globex, "acme")
    listed = await jobs.service.list_jobs("report", "failed", company_id="acme")
    assert [job.id for job in listed] == [acme]
    assert {job.id for job in await jobs.service.list_jobs("report", "failed")} == {acme, globex}
    stats = await jobs.service.get_all_queue_stats(company_id="acme")
    assert stats["report"]["failed"] == 1
    assert (await jobs.service.get_all_queue_stats())["report"]["failed"] == 2
    await jobs.service.retry_job("report", acme, "acme")  # its own: allowed


async def test_oversized_data_unknown_queue_and_bad_company_are_refused(jobs: Harness) -> None:
    with pytest.raises(PayloadTooLarge) as too_large:
        await jobs.service.add("email", "big", {"blob": "x" * 5000}, "acme")
    assert too_large.value.details["limit"] == 4096
    with pytest.raises(NotFound):
        await jobs.service.add("sms", "x", {}, "acme")
    with pytest.raises(InvalidInput):
        await jobs.service.add("email", "x", {}, "../etc")
    with pytest.raises(InvalidInput):
        await jobs.service.list_jobs("email", "sleeping")
    assert (await jobs.service.queue_stats("email"))["waiting"] == 0


async def test_a_job_id_makes_adding_idempotent(jobs: Harness) -> None:
    first = await jobs.service.add("email", "m", {"n": 1}, "acme", job_id="welcome-42")
    again = await jobs.service.add("email", "m", {"n": 2}, "acme", job_id="welcome-42")
    assert first == again == "welcome-42"
    assert (await jobs.service.queue_stats("email"))["waiting"] == 1
    assert (await jobs.service.get_job_status("email", first)).job.data["n"] == 1


async def test_reserved_ids_and_out_of_range_numbers_are_refused(jobs: Harness) -> None:
    service = jobs.service
    for job_id in ("meta", "id", "events", "a:b"):
        with pytest.raises(InvalidInput) as refused:
            await service.add("email", "m", {}, "acme", job_id=job_id)
        assert refused.value.details["field"] == "jobId"
        with pytest.raises(NotFound):
            await service.get_job_status("email", job_id)
    for start, end in ((0, 2**63 - 1), (2**63 - 1, 2**63 - 1), (0, 1000)):
        with pytest.raises(InvalidInput):
            await service.list_jobs("email", "waiting", start, end)
    for grace in (1e308, float("inf"), float("nan")):
        with pytest.raises(InvalidInput) as refused:
            await service.clean("email", "completed", grace)
        assert refused.value.details["field"] == "graceSeconds"
    with pytest.raises(InvalidInput) as refused:
        await service.schedule_recurring_job("email", {}, id="often", every_ms=10**20)
    assert refused.value.details["field"] == "every"
    assert (await service.queue_stats("email"))["waiting"] == 0


async def test_a_job_without_a_handler_fails_with_a_clear_reason(jobs: Harness) -> None:
    await jobs.service.start_workers(["ai-processing"])
    job_id = await jobs.service.add("ai-processing", "summarise", {}, "acme", attempts=3)
    await jobs.wait_state("ai-processing", job_id, "failed")
    job = (await jobs.service.get_job_status("ai-processing", job_id)).job
    assert job.failed_reason == "no handler for job 'summarise' on queue 'ai-processing'"
    assert job.attempts_made == 1


async def test_stopping_lets_the_active_job_finish(jobs: Harness) -> None:
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
