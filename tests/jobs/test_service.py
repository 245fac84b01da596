"""JobService rules above any backend (validation, company confinement, a job without a
handler), each on BullMQ (real Redis) and in-process. The backend contract itself is
shipped in tenantry.testing.jobs and run in test_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantry.errors import InvalidInput, NotFound, PayloadTooLarge
from tenantry.jobs import BullMQBackend, InProcessBackend, JobContext
from tenantry.jobs.queues import QUEUE_NAMES
from tenantry.testing.jobs import JobHarness
from tests.jobs.conftest import eventually, job_settings


@pytest.mark.parametrize("pattern", ["not a cron", "61 * * * *", "* * * *", "0 0 30 2 *"])
async def test_an_invalid_cron_pattern_is_refused_naming_it(jobs: JobHarness, pattern: str) -> None:
    with pytest.raises(InvalidInput) as error:
        await jobs.service.schedule_recurring_job("cleanup", {}, pattern, id="bad")
    assert repr(pattern) in error.value.message
    assert error.value.details["field"] == "pattern"
    assert await jobs.service.list_schedules("cleanup") == []


async def test_a_company_sees_and_acts_on_only_its_own_jobs(jobs: JobHarness) -> None:
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
    assert stats["report"].failed == 1
    assert (await jobs.service.get_all_queue_stats())["report"].failed == 2
    await jobs.service.retry_job("report", acme, "acme")  # its own: allowed


async def test_oversized_data_unknown_queue_and_bad_company_are_refused(jobs: JobHarness) -> None:
    with pytest.raises(PayloadTooLarge) as too_large:
        await jobs.service.add("email", "big", {"blob": "x" * 5000}, "acme")
    assert too_large.value.details["limit"] == 4096
    with pytest.raises(NotFound):
        await jobs.service.add("sms", "x", {}, "acme")
    with pytest.raises(InvalidInput):
        await jobs.service.add("email", "x", {}, "../etc")
    with pytest.raises(InvalidInput):
        await jobs.service.list_jobs("email", "sleeping")
    assert (await jobs.service.queue_stats("email")).waiting == 0


async def test_reserved_ids_and_out_of_range_numbers_are_refused(jobs: JobHarness) -> None:
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
    assert (await service.queue_stats("email")).waiting == 0


async def test_a_job_without_a_handler_fails_with_a_clear_reason(jobs: JobHarness) -> None:
    await jobs.service.start_workers(["ai-processing"])
    job_id = await jobs.service.add("ai-processing", "summarise", {}, "acme", attempts=3)
    await jobs.wait_state("ai-processing", job_id, "failed")
    job = (await jobs.service.get_job_status("ai-processing", job_id)).job
    assert job.failed_reason == "no handler for job 'summarise' on queue 'ai-processing'"
    assert job.attempts_made == 1


@pytest.mark.parametrize("engine", ["bullmq", "in-process"])
async def test_finished_jobs_are_trimmed_to_the_retention_settings(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """JOB_KEEP_COMPLETED / JOB_KEEP_FAILED bound what finished jobs cost in Redis."""
    backend: BullMQBackend | InProcessBackend
    if engine == "bullmq":
        backend = BullMQBackend(request.getfixturevalue("redis_url"), "test", QUEUE_NAMES)
    else:
        backend = InProcessBackend(QUEUE_NAMES)
    jobs = JobHarness(backend, job_settings(tmp_path, job_keep_completed=2, job_keep_failed=1))

    ran: list[str] = []

    @jobs.handler("report")
    async def handle(job: JobContext) -> None:
        ran.append(job.id)
        if job.data["fail"]:
            raise RuntimeError("planned")

    try:
        await jobs.service.start_workers(["report"])
        for n in range(8):
            await jobs.service.add("report", "r", {"fail": n % 2 == 1}, "acme")
        stats = await eventually(
            lambda: jobs.service.queue_stats("report"),
            lambda s: len(ran) == 8 and s.waiting == 0 and s.active == 0,
        )
        assert (stats.completed, stats.failed) == (2, 1)
    finally:
        await jobs.service.stop_workers(5)
        await jobs.service.close()


def test_job_options_carry_retries_and_retention_as_bullmq_reads_them() -> None:
    from tenantry.jobs.queues import QueueDefinition

    definition = QueueDefinition("report", 2, 3, 500, 10, 3600, 20, 7200)
    assert definition.job_options() == {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 500},
        "removeOnComplete": {"count": 10, "age": 3600},
        "removeOnFail": {"count": 20, "age": 7200},
    }


async def test_in_process_retention_by_age_removes_what_finished_too_long_ago(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = {"now": 1_900_000_000_000}
    monkeypatch.setattr("tenantry.jobs.backends.memory.now_ms", lambda: clock["now"])
    settings = job_settings(
        tmp_path, job_keep_completed=100, job_keep_completed_seconds=60,
        job_keep_failed=100, job_keep_failed_seconds=60,
    )  # fmt: skip
    jobs = JobHarness(InProcessBackend(QUEUE_NAMES), settings)

    ran: list[str] = []

    @jobs.handler("report")
    async def handle(job: JobContext) -> None:
        ran.append(job.id)
        if job.data["fail"]:
            raise RuntimeError("planned")

    async def finish(count: int, fail: bool) -> None:
        expected = len(ran) + count
        for _ in range(count):
            await jobs.service.add("report", "r", {"fail": fail}, "acme")
        await eventually(
            lambda: jobs.service.queue_stats("report"),
            lambda s: len(ran) == expected and s.waiting == s.active == 0,
        )

    try:
        await jobs.service.start_workers(["report"])
        await finish(2, fail=False)
        await finish(2, fail=True)
        clock["now"] += 60_000  # exactly the age: still kept
        await finish(1, fail=False)
        await finish(1, fail=True)
        stats = await jobs.service.queue_stats("report")
        assert (stats.completed, stats.failed) == (3, 3)
        clock["now"] += 1  # a millisecond more: the first ones are too old
        await finish(1, fail=False)
        await finish(1, fail=True)
        stats = await jobs.service.queue_stats("report")
        assert (stats.completed, stats.failed) == (2, 2)
    finally:
        await jobs.service.stop_workers(5)
        await jobs.service.close()
