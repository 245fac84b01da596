"""`tenantry worker`: runs the job handlers against the Redis queues.

    tenantry worker [--queues email,report] [--processes N]

Each process runs one BullMQ worker per queue with that queue's concurrency.
SIGTERM (or SIGINT) stops taking new jobs, lets the active ones finish for up to
JOB_SHUTDOWN_TIMEOUT_SECONDS, then exits. A worker killed outright (SIGKILL, OOM)
leaves its active jobs locked; once the lock expires (JOB_LOCK_DURATION_MS) the
stalled-job check of any running worker puts them back to run again: delivery is
at least once, so handlers must be idempotent.

With `--processes N` a parent process starts N worker processes, passes SIGTERM
on to them and waits for them; the BullMQ package has no runner of its own.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from multiprocessing import connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from tenantry import db as database
from tenantry.jobs.queues import QUEUE_NAMES
from tenantry.settings import Settings, load_settings

if TYPE_CHECKING:
    from tenantry.jobs.service import JobService

log = logging.getLogger("tenantry.jobs")


class WorkerConfigError(Exception):
    """The worker cannot start with this configuration; the message says why."""


def parse_queues(value: str | None) -> list[str]:
    if not value:
        return list(QUEUE_NAMES)
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUE_NAMES]
    if unknown or not names:
        raise WorkerConfigError(
            f"unknown queue(s) {', '.join(unknown) or value!r}; "
            f"the queues are {', '.join(QUEUE_NAMES)}"
        )
    return names


def check_settings(settings: Settings) -> None:
    if not settings.enable_job_queues or not settings.effective_redis_url:
        raise WorkerConfigError(
            "tenantry worker needs Redis (REDIS_URL or REDIS_HOST) and ENABLE_JOB_QUEUES=true; "
            "without Redis, jobs run inside `tenantry serve`"
        )


async def run_worker(settings: Settings, queues: list[str]) -> None:
    """One worker process: build the services, process `queues` until SIGTERM/SIGINT."""
    from tenantry.logs import configure_logging
    from tenantry.wiring import build_services

    configure_logging(settings.log_level, settings.log_format)

    stop = stop_on_signals()
    settings = worker_settings(settings)
    async with AsyncExitStack() as stack:
        services = await build_services(settings, stack)
        await work(services.jobs, settings, queues, stop)
    print("tenantry worker stopped", flush=True)


def worker_settings(settings: Settings) -> Settings:
    # The API's own in-app workers stay off here: this process is the worker.
    return settings.model_copy(update={"job_workers_in_app": False})


def stop_on_signals() -> asyncio.Event:
    """An event SIGTERM and SIGINT set, from now on (so one during start-up counts)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def work(
    jobs: JobService, settings: Settings, queues: list[str], stop: asyncio.Event
) -> None:
    """Process `queues` until `stop`, then let the active jobs finish (within the bound)."""
    await jobs.start_workers(queues)
    log.info("worker processing %s", ", ".join(queues))
    print(f"tenantry worker ready: {', '.join(queues)}", flush=True)
    await stop.wait()
    print("tenantry worker stopping: finishing active jobs", flush=True)
    await jobs.stop_workers(settings.job_shutdown_timeout_seconds)


def _child(queues: list[str]) -> None:
    # The parent has migrated the database once: N children migrating at once would race.
    settings = load_settings(auto_migrate=False)
    asyncio.run(run_worker(settings, queues))


def run_processes(settings: Settings, queues: list[str], processes: int) -> int:
    """Run `processes` worker processes; returns the exit code."""
    check_settings(settings)
    if processes <= 1:
        asyncio.run(run_worker(settings, queues))
        return 0
    if settings.auto_migrate:
        database.upgrade(settings.effective_database_url)
    context = multiprocessing.get_context("spawn")
    children: list[BaseProcess] = [
        context.Process(target=_child, args=(queues,), name=f"tenantry-worker-{index}")
        for index in range(processes)
    ]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.start()
    return supervise(children, lambda: stopping)


def supervise(children: list[BaseProcess], stopping: Callable[[], bool]) -> int:
    """Wait for the children. One that dies unasked (a crash at start-up, say) stops the
    others, so the whole worker exits non-zero for its supervisor to restart it."""
    running = list(children)
    failed = False
    while running:
        ended = connection.wait([child.sentinel for child in running])
        for child in [c for c in running if c.sentinel in ended]:
            child.join()
            running.remove(child)
            if child.exitcode != 0 and not stopping() and not failed:
                failed = True
                print(f"{child.name} exited with {child.exitcode}; stopping the others", flush=True)
                for other in running:
                    other.terminate()  # SIGTERM: they finish their active jobs
    return 1 if failed or any(child.exitcode != 0 for child in children) else 0


if __name__ == "__main__":  # pragma: no cover - `tenantry worker` is the entry point
    sys.exit(run_processes(load_settings(), parse_queues(None), 1))
