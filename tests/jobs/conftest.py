"""Fixtures for the job tests: a JobService on each backend, and a poller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tenantry.jobs import BullMQBackend, HandlerRegistry, InProcessBackend, JobService
from tenantry.jobs.queues import QUEUE_NAMES
from tenantry.settings import Settings, load_settings

T = TypeVar("T")


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


def job_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": f"sqlite:///{tmp_path / 'tenantry.db'}",
        "secret_key": "test-secret-key",
        "job_attempts": 1,
        "job_backoff_ms": 200,
        "job_max_data_bytes": 4096,
        "job_shutdown_timeout_seconds": 5,
    }
    values.update(overrides)
    return load_settings(**values)


class Harness:
    """A JobService on one backend, with a registry of test handlers."""

    def __init__(self, kind: str, service: JobService, registry: HandlerRegistry) -> None:
        self.kind = kind
        self.service = service
        self.registry = registry
        self.handler = registry.handler

    async def state(self, queue: str, job_id: str) -> str:
        return (await self.service.get_job_status(queue, job_id)).state

    async def wait_state(self, queue: str, job_id: str, state: str, within: float = 15) -> None:
        await eventually(lambda: self.state(queue, job_id), lambda s: s == state, within)


@pytest.fixture(params=["bullmq", "in-process"])
async def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """Each contract test runs on BullMQ (real Redis) and on the in-process backend."""
    backend: BullMQBackend | InProcessBackend
    if request.param == "bullmq":
        backend = BullMQBackend(request.getfixturevalue("redis_url"), "test", QUEUE_NAMES)
    else:
        backend = InProcessBackend(QUEUE_NAMES)
    registry = HandlerRegistry()
    service = JobService(job_settings(tmp_path), backend, registry)
    try:
        yield Harness(request.param, service, registry)
    finally:
        await service.stop_workers(5)
        await service.close()
