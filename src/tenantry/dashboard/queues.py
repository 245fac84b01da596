"""Dashboard: queues (Bull Board's address, /admin/queues), jobs, schedules, actions."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tenantry.dashboard.auth import ActionDep, SessionDep
from tenantry.dashboard.views import render
from tenantry.deps import ServicesDep
from tenantry.jobs import queues as q

router = APIRouter(prefix="/admin/queues")

DONE = {
    "paused": "Queue paused.",
    "resumed": "Queue resumed.",
    "retried": "Job sent back to the queue.",
    "retried-failed": "Failed jobs sent back to the queue.",
    "cleaned": "Queue cleaned.",
}


def _back(path: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?done={done}", status_code=303)


@router.get("", response_class=HTMLResponse)
async def queues_page(
    request: Request, services: ServicesDep, session: SessionDep, done: str | None = None
) -> HTMLResponse:
    stats = await services.jobs.get_all_queue_stats()
    figures = await services.jobs.queue_figures()
    schedules = {name: await services.jobs.list_schedules(name) for name in q.QUEUE_NAMES}
    return render(
        request,
        "queues.html",
        session,
        page="queues",
        stats=stats,
        figures=figures,
        schedules=schedules,
        states=q.STATES,
        durable=services.jobs.durable,
        concurrency={name: d.concurrency for name, d in services.jobs.definitions.items()},
        flash=DONE.get(done or ""),
    )


@router.get("/{queue}", response_class=HTMLResponse)
async def queue_page(
    request: Request,
    queue: str,
    services: ServicesDep,
    session: SessionDep,
    state: str = "failed",
    done: str | None = None,
) -> HTMLResponse:
    q.check_queue(queue)
    jobs = await services.jobs.list_jobs(queue, state, 0, 49)
    stats = await services.jobs.queue_stats(queue)
    return render(
        request,
        "queue.html",
        session,
        page="queues",
        queue=queue,
        state=state,
        states=q.STATES,
        jobs=jobs,
        stats=stats,
        flash=DONE.get(done or ""),
    )


@router.get("/{queue}/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(
    request: Request,
    queue: str,
    job_id: str,
    services: ServicesDep,
    session: SessionDep,
    done: str | None = None,
) -> HTMLResponse:
    status = await services.jobs.get_job_status(queue, job_id)
    return render(
        request,
        "job.html",
        session,
        page="queues",
        queue=queue,
        job=status.job,
        logs=status.logs,
        data=json.dumps(status.job.data, indent=2, default=str),
        result=json.dumps(status.job.result, indent=2, default=str),
        flash=DONE.get(done or ""),
    )


@router.post("/{queue}/pause")
async def pause(queue: str, services: ServicesDep, _: ActionDep) -> RedirectResponse:
    await services.jobs.pause(queue)
    return _back("/admin/queues", "paused")


@router.post("/{queue}/resume")
async def resume(queue: str, services: ServicesDep, _: ActionDep) -> RedirectResponse:
    await services.jobs.resume(queue)
    return _back("/admin/queues", "resumed")


@router.post("/{queue}/retry-failed")
async def retry_failed(queue: str, services: ServicesDep, _: ActionDep) -> RedirectResponse:
    await services.jobs.retry_failed(queue)
    return _back(f"/admin/queues/{queue}", "retried-failed")


@router.post("/{queue}/clean")
async def clean(
    queue: str,
    services: ServicesDep,
    _: ActionDep,
    state: Annotated[str, Form()] = "completed",
    grace_seconds: Annotated[float, Form(alias="graceSeconds", ge=0, le=q.MAX_GRACE_SECONDS)] = 0,
) -> RedirectResponse:
    await services.jobs.clean(queue, state, grace_seconds)
    return _back(f"/admin/queues/{queue}", "cleaned")


@router.post("/{queue}/jobs/{job_id}/retry")
async def retry(queue: str, job_id: str, services: ServicesDep, _: ActionDep) -> RedirectResponse:
    await services.jobs.retry_job(queue, job_id)
    return _back(f"/admin/queues/{queue}/jobs/{job_id}", "retried")
