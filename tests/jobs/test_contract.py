"""The shipped job-backend contract (tenantry.testing.jobs) on BullMQ (real Redis) and
in-process, as a user runs it against their own backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tenantry.jobs import QUEUE_NAMES, BullMQBackend, InProcessBackend, JobBackend
from tenantry.testing.jobs import JOB_BACKEND_CHECKS, JobBackendCheck


@pytest.fixture(params=["bullmq", "in-process"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[JobBackend]:
    made: JobBackend
    if request.param == "bullmq":
        made = BullMQBackend(request.getfixturevalue("redis_url"), "test", QUEUE_NAMES)
    else:
        made = InProcessBackend(QUEUE_NAMES)
    try:
        yield made
    finally:
        await made.close()


@pytest.mark.parametrize("check", JOB_BACKEND_CHECKS, ids=lambda check: check.__name__)
async def test_job_backend_contract(backend: JobBackend, check: JobBackendCheck) -> None:
    await check(backend)
