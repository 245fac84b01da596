"""The ai-processing queue: an example handler that applications replace.

Tenantry does not call any model itself. Register your own handler for the queue
(or for one job name on it) and it takes the place of this one:

    from tenantry.jobs import JobContext, job_handler

    @job_handler("ai-processing", "summarise")
    async def summarise(job: JobContext) -> dict:
        text = job.data["input"]["text"]
        await job.progress(10)
        summary = await my_model.summarise(text)   # your client, behind a circuit breaker
        await job.progress(100)
        return {"summary": summary}

Keep such handlers idempotent: a job may run again after a worker crash.
"""

from __future__ import annotations

from typing import Any

from tenantry.jobs.queues import AI_PROCESSING
from tenantry.jobs.registry import JobContext, job_handler


@job_handler(AI_PROCESSING)
async def example_ai_task(job: JobContext) -> dict[str, Any]:
    """Echoes its input with a word count, reporting progress as a real handler would."""
    payload = job.data.get("input") or {}
    text = str(payload.get("text", "")) if isinstance(payload, dict) else ""
    await job.log(f"example handler for task {job.data.get('task')!r}; replace it")
    await job.progress(50)
    result = {"task": job.data.get("task"), "words": len(text.split()), "example": True}
    await job.progress(100)
    return result
