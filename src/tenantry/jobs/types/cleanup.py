"""The cleanup queue: remove old finished jobs, expired temporary files and what
unfinished uploads left behind (half-written files, multipart uploads cut off).

Idempotent by nature: removing what is already gone changes nothing. Tenantry
schedules it itself (JOB_CLEANUP_CRON, `jobs.service.schedule_cleanup`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field, field_validator

from tenantry.jobs.queues import CLEANUP, QUEUE_NAMES
from tenantry.jobs.registry import JobContext
from tenantry.jobs.types.base import JobPayload, JobRequest
from tenantry.settings import Settings
from tenantry.tempfiles import remove_expired_files

NAME = "cleanup"


class CleanupJob(JobPayload):
    """`olderThanSeconds` replaces every configured age (0: remove all that is finished)."""

    older_than_seconds: int | None = Field(None)

    @field_validator("older_than_seconds", mode="before")
    @classmethod
    def _age(cls, value: Any) -> Any:
        # A negative age would reach into the future and remove uploads still under way.
        whole = isinstance(value, int) and not isinstance(value, bool)
        if value is not None and not (whole and value >= 0):
            raise ValueError(f"olderThanSeconds must be a whole number >= 0, not {value!r}")
        return value


def request(older_than_seconds: int | None = None) -> JobRequest:
    return JobRequest(CLEANUP, NAME, CleanupJob.build(older_than_seconds=older_than_seconds))


class JobCleaner(Protocol):
    """What cleanup needs of the job service."""

    async def clean(
        self, queue: str, state: str, grace_seconds: float = 0, limit: int = 1000
    ) -> list[str]: ...


class UploadSweeper(Protocol):
    """What cleanup needs of the storage service."""

    async def remove_incomplete_uploads(self, older_than_seconds: float) -> int: ...


@dataclass(frozen=True, slots=True)
class CleanupAges:
    """How old (seconds) each kind of leftover must be before it goes."""

    completed_jobs: int = 3600
    failed_jobs: int = 604800
    temp_files: int = 86400
    incomplete_uploads: int = 86400

    @classmethod
    def from_settings(cls, settings: Settings) -> CleanupAges:
        return cls(
            completed_jobs=settings.job_keep_completed_seconds,
            failed_jobs=settings.job_keep_failed_seconds,
            temp_files=settings.job_temp_max_age_seconds,
            incomplete_uploads=settings.storage_incomplete_upload_max_age_seconds,
        )


def temp_dir(settings: Settings) -> Path:
    return settings.job_temp_dir or settings.data_dir / "tmp"


@dataclass(frozen=True, slots=True)
class Cleanup:
    """The cleanup handler."""

    jobs: JobCleaner
    storage: UploadSweeper
    temp_dir: Path
    ages: CleanupAges

    async def __call__(self, job: JobContext) -> dict[str, Any]:
        override = CleanupJob.of_job(job.data).older_than_seconds
        ages = self.ages
        completed_age = ages.completed_jobs if override is None else override
        failed_age = ages.failed_jobs if override is None else override
        removed_jobs = 0
        for index, queue in enumerate(QUEUE_NAMES):
            removed_jobs += len(await self.jobs.clean(queue, "completed", completed_age, 0))
            removed_jobs += len(await self.jobs.clean(queue, "failed", failed_age, 0))
            await job.progress(int((index + 1) / (len(QUEUE_NAMES) + 1) * 100))
        max_age = ages.temp_files if override is None else override
        removed_files = await asyncio.to_thread(remove_expired_files, self.temp_dir, max_age)
        await job.log(
            f"removed {removed_jobs} finished job(s) and {removed_files} temporary file(s)"
        )
        # Last: if the storage provider is down, the rest is done and the job fails, visibly.
        upload_age = ages.incomplete_uploads if override is None else max_age
        removed_uploads = await self.storage.remove_incomplete_uploads(upload_age)
        await job.log(f"removed {removed_uploads} unfinished upload(s)")
        await job.progress(100)
        return {
            "jobsRemoved": removed_jobs,
            "filesRemoved": removed_files,
            "incompleteUploadsRemoved": removed_uploads,
        }
