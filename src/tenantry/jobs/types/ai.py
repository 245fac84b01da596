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

from pydantic import Field

from tenantry.jobs.queues import AI_PROCESSING
from tenantry.jobs.registry import JobContext
from tenantry.jobs.types.base import JobPayload, JobRequest


class AiJob(JobPayload):
    """The job's name is its task; applications read `input` as they define it."""

    task: str = Field(min_length=1, max_length=200)
    input: dict[str, Any] = Field(default_factory=dict)


def request(task: str, input: dict[str, Any] | None = None) -> JobRequest:
    return JobRequest(AI_PROCESSING, task, AiJob.build(task=task, input=input or {}))


async def example_ai_task(job: JobContext) -> dict[str, Any]:
    """Echoes its input with a word count, reporting progress as a real handler would.

    Lenient on purpose (no `AiJob.of_job`): it stands in for whatever an application
    sends to the queue until the application's own handler replaces it."""
    task = job.data.get("task")
    payload = job.data.get("input") or {}
    text = str(payload.get("text", "")) if isinstance(payload, dict) else ""
    await job.log(f"example handler for task {task!r}; replace it")
    await job.progress(50)
    result = {"task": task, "words": len(text.split()), "example": True}
    await job.progress(100)
    return result
