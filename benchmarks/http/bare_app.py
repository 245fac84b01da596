"""The bare counterpart: what a user would write with FastAPI and bullmq, no Tenantry.

    uvicorn benchmarks.http.bare_app:app   (BENCH_REDIS_URL names the Redis db)

The same three routes as `tenantry serve`, doing the same work without the layer: a
constant `/health`; a flag check that is a lookup in a dict (404 for an unknown key);
a job enqueue that validates the body with a pydantic model and calls bullmq's
`Queue.add` with the job options Tenantry sets (3 attempts, exponential backoff,
completed and failed jobs kept by count and age), so the ratio measures the layer and
not a retention policy. No authentication: it is the floor Tenantry is measured against.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bullmq import Queue
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
FLAGS: dict[str, bool] = {"bench-flag": True}
JOB_OPTIONS: dict[str, Any] = {
    "attempts": 3,
    "backoff": {"type": "exponential", "delay": 1000},
    "removeOnComplete": {"count": 1000, "age": 86400},
    "removeOnFail": {"count": 5000, "age": 604800},
}
queues: dict[str, Queue] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    queues["email"] = Queue("email", {"connection": REDIS, "prefix": "bull"})
    try:
        yield
    finally:
        for queue in queues.values():
            await queue.close()


app = FastAPI(lifespan=lifespan)


class JobIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    companyId: str = Field(min_length=1, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/degradation/features/{key}/check")
async def check(key: str, targetId: str | None = None) -> dict[str, Any]:
    enabled = FLAGS.get(key)
    if enabled is None:
        raise HTTPException(404, f"no flag {key!r}")
    return {"key": key, "targetId": targetId, "enabled": enabled}


@app.post("/api/queues/{queue}/jobs", status_code=201)
async def enqueue(queue: str, body: JobIn) -> dict[str, Any]:
    target = queues.get(queue)
    if target is None:
        raise HTTPException(404, f"no queue {queue!r}")
    job = await target.add(body.name, {**body.data, "companyId": body.companyId}, JOB_OPTIONS)
    return {"id": job.id, "queue": queue}
