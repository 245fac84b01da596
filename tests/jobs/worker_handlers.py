"""Handlers the worker-process tests load through JOB_HANDLER_MODULES."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from tenantry.context import current_company
from tenantry.jobs import JobContext, job_handler


def note(path: str, line: str) -> None:
    with Path(path).open("a") as trail:
        trail.write(line + "\n")


@job_handler("ai-processing", "slow")
async def slow(job: JobContext) -> dict[str, Any]:
    """Writes 'start <pid>', sleeps, writes 'done <pid>': the trail shows who ran it."""
    note(job.data["trail"], f"start {os.getpid()} {current_company.get()}")
    await asyncio.sleep(float(job.data["seconds"]))
    note(job.data["trail"], f"done {os.getpid()}")
    return {"pid": os.getpid()}


@job_handler("ai-processing", "tick")
async def tick(job: JobContext) -> dict[str, Any]:
    """A short job that appends its id to a trail: idempotent in effect (a set of ids)."""
    await asyncio.sleep(float(job.data.get("seconds", 0.05)))
    note(job.data["trail"], job.id)
    return {}
