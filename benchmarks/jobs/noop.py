"""The no-op handler `tenantry worker` loads (JOB_HANDLER_MODULES) in the drain benchmark."""

from __future__ import annotations

from tenantry.jobs import JobContext, job_handler


@job_handler("email", "noop")
async def noop(job: JobContext) -> None:
    return None
