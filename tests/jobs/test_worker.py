"""`tenantry worker` as real processes on real Redis: crash recovery, graceful stop,
the idle-worker delayed-job regression, and several processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tenantry.jobs import BullMQBackend, JobService
from tenantry.jobs.queues import QUEUE_NAMES
from tests.jobs.conftest import eventually, job_settings

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "ai-processing"


class WorkerProcess:
    def __init__(self, process: subprocess.Popen[bytes], output: Path) -> None:
        self.process = process
        self.output = output

    @property
    def text(self) -> str:
        return self.output.read_text() if self.output.exists() else ""

    async def ready(self, within: float = 30) -> None:
        await eventually(
            lambda: asyncio.sleep(0, self.text), lambda t: "worker ready" in t, within=within
        )

    async def exited(self, within: float = 30) -> int:
        code = await eventually(
            lambda: asyncio.sleep(0, self.process.poll()), lambda c: c is not None, within=within
        )
        assert code is not None
        return code


@pytest.fixture
def worker_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TENANTRY_", "REDIS_", "JOB_", "SMTP_", "WEBHOOK_", "DATABASE_"))
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis_url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.db'}",
            "TENANTRY_DATA_DIR": str(tmp_path / "data"),
            "TENANTRY_SECRET_KEY": "test-secret-key",
            "TENANTRY_ADMIN_TOKEN": "test-admin-token-0123456789abcdef",
            "JOB_HANDLER_MODULES": "tests.jobs.worker_handlers",
            "JOB_CONCURRENCY_AI_PROCESSING": "1",
            # Short locks so a killed worker's job is recovered in seconds, not minutes.
            "JOB_LOCK_DURATION_MS": "1500",
            "JOB_STALLED_INTERVAL_MS": "500",
            "JOB_SHUTDOWN_TIMEOUT_SECONDS": "20",
        }
    )
    return env


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        output = tmp_path / f"worker-{len(started)}.log"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "tenantry", "worker", "--queues", QUEUE, *args],
                cwd=tmp_path,
                env={**worker_env, **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(process, output)
        started.append(worker)
        return worker

    yield start
    for worker in started:  # never leave a worker behind
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait(10)


@pytest.fixture
async def producer(redis_url: str, tmp_path: Path) -> AsyncIterator[JobService]:
    """Enqueues and inspects from the test; runs no worker of its own."""
    service = JobService(job_settings(tmp_path), BullMQBackend(redis_url, "bull", QUEUE_NAMES))
    try:
        yield service
    finally:
        await service.close()


def trail_lines(trail: Path) -> list[str]:
    return trail.read_text().splitlines() if trail.exists() else []


async def wait_for_line(trail: Path, prefix: str, count: int = 1, within: float = 30) -> None:
    await eventually(
        lambda: asyncio.sleep(0, trail_lines(trail)),
        lambda lines: sum(line.startswith(prefix) for line in lines) >= count,
        within=within,
    )


async def test_a_job_of_a_killed_worker_completes_after_restart(
    start_worker: Callable[..., WorkerProcess], producer: JobService, tmp_path: Path
) -> None:
    trail = tmp_path / "trail.txt"
    first = start_worker()
    await first.ready()
    job_id = await producer.add(QUEUE, "slow", {"seconds": 3, "trail": str(trail)}, "acme")
    await wait_for_line(trail, "start")
    first.process.kill()  # SIGKILL: no chance to clean up
    assert await first.exited() == -signal.SIGKILL
    assert (await producer.get_job_status(QUEUE, job_id)).state == "active"

    second = start_worker()
    await second.ready()
    status = await eventually(
        lambda: producer.get_job_status(QUEUE, job_id),
        lambda s: s.state == "completed",
        within=40,
    )
    second_pid = second.process.pid
    assert status.job.result == {"pid": second_pid}
    lines = trail_lines(trail)
    assert lines == [
        f"start {first.process.pid} acme",
        f"start {second_pid} acme",
        f"done {second_pid}",
    ]


async def test_sigterm_lets_the_active_job_finish_before_exit(
    start_worker: Callable[..., WorkerProcess], producer: JobService, tmp_path: Path
) -> None:
    trail = tmp_path / "trail.txt"
    worker = start_worker()
    await worker.ready()
    job_id = await producer.add(QUEUE, "slow", {"seconds": 2, "trail": str(trail)}, "acme")
    await wait_for_line(trail, "start")
    worker.process.send_signal(signal.SIGTERM)
    # Added after SIGTERM: must not be taken by the stopping worker.
    later = await producer.add(QUEUE, "slow", {"seconds": 0, "trail": str(trail)}, "acme")
    assert await worker.exited() == 0
    assert (await producer.get_job_status(QUEUE, job_id)).state == "completed"
    assert trail_lines(trail)[-1] == f"done {worker.process.pid}"
    assert (await producer.get_job_status(QUEUE, later)).state == "waiting"
    assert "finishing active jobs" in worker.text and "worker stopped" in worker.text


async def test_sigterm_stops_a_job_that_outlives_the_deadline(
    start_worker: Callable[..., WorkerProcess], producer: JobService, tmp_path: Path
) -> None:
    trail = tmp_path / "trail.txt"
    worker = start_worker(JOB_SHUTDOWN_TIMEOUT_SECONDS="1")
    await worker.ready()
    job_id = await producer.add(QUEUE, "slow", {"seconds": 60, "trail": str(trail)}, "acme")
    await wait_for_line(trail, "start")
    worker.process.send_signal(signal.SIGTERM)
    assert await worker.exited(within=20) == 0  # not the job's 60 s: stopped at the deadline
    assert not any(line.startswith("done") for line in trail_lines(trail))
    # Left locked, to be recovered by the next worker (at least once).
    assert (await producer.get_job_status(QUEUE, job_id)).state == "active"


async def test_an_idle_worker_runs_a_delayed_job_on_time(
    start_worker: Callable[..., WorkerProcess], producer: JobService, tmp_path: Path
) -> None:
    """Regression: with redis-py 8's 5 s socket timeout, an idle worker's blocking wait
    was cut and 8 s delayed jobs ran minutes late."""
    trail = tmp_path / "trail.txt"
    worker = start_worker()
    await worker.ready()
    await asyncio.sleep(6)  # idle longer than the 5 s read timeout
    job_id = await producer.add(
        QUEUE, "slow", {"seconds": 0, "trail": str(trail)}, "acme", delay_ms=8000
    )
    status = await eventually(
        lambda: producer.get_job_status(QUEUE, job_id),
        lambda s: s.state == "completed",
        within=30,
    )
    waited = (status.job.processed_at or 0) - status.job.created_at
    # Minutes late with the bug; the bound is the deadline above, for a loaded machine.
    assert 8000 <= waited < 30_000, f"ran {waited} ms after it was added (due at 8000)"


async def test_two_processes_share_the_queue_and_stop_together(
    start_worker: Callable[..., WorkerProcess], producer: JobService, tmp_path: Path
) -> None:
    trail = tmp_path / "trail.txt"
    parent = start_worker("--processes", "2")
    await eventually(
        lambda: asyncio.sleep(0, parent.text.count("worker ready")), lambda n: n == 2, within=40
    )
    ids = [
        await producer.add(QUEUE, "slow", {"seconds": 1, "trail": str(trail)}, "acme")
        for _ in range(4)
    ]
    for job_id in ids:
        await eventually(
            lambda job_id=job_id: producer.get_job_status(QUEUE, job_id),
            lambda s: s.state == "completed",
            within=30,
        )
    pids = {line.split()[1] for line in trail_lines(trail) if line.startswith("done")}
    assert len(pids) == 2  # concurrency 1 each: both processes took jobs
    assert str(parent.process.pid) not in pids
    parent.process.send_signal(signal.SIGTERM)
    assert await parent.exited() == 0
    assert parent.text.count("worker stopped") == 2


def test_worker_refuses_to_start_without_redis_or_with_an_unknown_queue(tmp_path: Path) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TENANTRY_", "REDIS_", "JOB_", "ENABLE_JOB"))
    }
    env["TENANTRY_DATA_DIR"] = str(tmp_path / "data")
    command = [sys.executable, "-m", "tenantry", "worker"]
    no_redis = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=60)
    assert no_redis.returncode == 2
    assert b"needs Redis" in no_redis.stderr

    env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    unknown = subprocess.run(
        [*command, "--queues", "email,sms"], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert unknown.returncode == 2
    assert b"sms" in unknown.stderr


async def test_a_worker_process_that_cannot_start_stops_the_whole_worker(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A supervisor sees the failure (exit 1) instead of a worker hanging half-started."""
    parent = start_worker("--processes", "2", JOB_HANDLER_MODULES="tests.jobs.no_such_module")
    assert await parent.exited(within=60) == 1
    assert "cannot import 'tests.jobs.no_such_module'" in parent.text
    assert "worker ready" not in parent.text
