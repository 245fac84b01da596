"""Fixtures for the job tests: a JobService on each backend, and a poller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tenantry.jobs import BullMQBackend, InProcessBackend
from tenantry.jobs.queues import QUEUE_NAMES
from tenantry.settings import Settings, load_settings
from tenantry.testing.jobs import JobHarness, eventually

__all__ = ["eventually", "job_settings"]  # eventually: the shipped poller, used across tests


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


@pytest.fixture(params=["bullmq", "in-process"])
async def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobHarness]:
    """A JobService on BullMQ (real Redis), then on the in-process backend."""
    backend: BullMQBackend | InProcessBackend
    if request.param == "bullmq":
        backend = BullMQBackend(request.getfixturevalue("redis_url"), "test", QUEUE_NAMES)
    else:
        backend = InProcessBackend(QUEUE_NAMES)
    harness = JobHarness(backend, job_settings(tmp_path))
    try:
        yield harness
    finally:
        await harness.service.stop_workers(5)
        await harness.service.close()
