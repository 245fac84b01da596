"""The cleanup queue: remove old finished jobs, expired temporary files and what
unfinished uploads left behind (half-written files, multipart uploads cut off).

Idempotent by nature: removing what is already gone changes nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tenantry.jobs.backends import PermanentJobError
from tenantry.jobs.queues import CLEANUP, QUEUE_NAMES
from tenantry.jobs.registry import JobContext, job_handler
from tenantry.tempfiles import remove_expired_files


def temp_dir(job: JobContext) -> Path:
    return job.settings.job_temp_dir or job.settings.data_dir / "tmp"


def _age_override(value: Any) -> int | None:
    """`olderThanSeconds` from the job's data: a whole number of seconds, 0 or more.

    A negative age would reach into the future and remove uploads still under way.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PermanentJobError(f"olderThanSeconds must be a whole number >= 0, not {value!r}")
    return value


@job_handler(CLEANUP)
async def cleanup(job: JobContext) -> dict[str, Any]:
    settings = job.settings
    services = job.require_services()
    override = _age_override(job.data.get("olderThanSeconds"))
    completed_age = settings.job_keep_completed_seconds if override is None else override
    failed_age = settings.job_keep_failed_seconds if override is None else override
    removed_jobs = 0
    for index, queue in enumerate(QUEUE_NAMES):
        removed_jobs += len(await services.jobs.clean(queue, "completed", completed_age, 0))
        removed_jobs += len(await services.jobs.clean(queue, "failed", failed_age, 0))
        await job.progress(int((index + 1) / (len(QUEUE_NAMES) + 1) * 100))
    max_age = settings.job_temp_max_age_seconds if override is None else override
    removed_files = await asyncio.to_thread(remove_expired_files, temp_dir(job), max_age)
    await job.log(f"removed {removed_jobs} finished job(s) and {removed_files} temporary file(s)")
    # Last: if the storage provider is down, the rest is done and the job fails, visibly.
    upload_age = settings.storage_incomplete_upload_max_age_seconds if override is None else max_age
    removed_uploads = await services.storage.remove_incomplete_uploads(upload_age)
    await job.log(f"removed {removed_uploads} unfinished upload(s)")
    await job.progress(100)
    return {
        "jobsRemoved": removed_jobs,
        "filesRemoved": removed_files,
        "incompleteUploadsRemoved": removed_uploads,
    }
