"""HTTP face of the job queues: /api/queues/*. Thin: every rule lives in JobService.

Admin key: every route, every company. Company key: stats, job lists and job
details of its own company only (another company's job is 404), and retrying its
own failed jobs; queue-wide actions (pause, clean, schedules, adding jobs) are admin.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from fastapi import Query, Request
from pydantic import ConfigDict, Field, field_validator, model_validator

from tenantry.auth import Principal
from tenantry.deps import AdminDep, PrincipalDep, Router, ServicesDep, services_of, try_first
from tenantry.jobs.backends import JobRecord, QueueFigures, QueueStats, ScheduleRecord
from tenantry.jobs.queues import (
    MAX_EVERY_MS,
    MAX_GRACE_SECONDS,
    MAX_LIST_INDEX,
    QUEUE_NAMES,
    SYSTEM_COMPANY,
    check_job_id,
)
from tenantry.schemas import ApiModel

router = Router(prefix="/api/queues", tags=["jobs"])

CompanyIdField = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A plain string, not an enum, so an unknown queue is a 404 naming the queues (not a 422).
QueueName = Annotated[
    str, PathParam(description=f"One of: {', '.join(QUEUE_NAMES)}.", examples=list(QUEUE_NAMES))
]


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


class JobOut(ApiModel):
    id: str
    queue: str
    name: str
    company_id: str | None
    state: str
    progress: Any
    attempts_made: int
    attempts: int
    failed_reason: str | None
    result: Any
    created_at: datetime | None
    processed_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: JobRecord) -> JobOut:
        return cls(
            id=job.id,
            queue=job.queue,
            name=job.name,
            company_id=job.company_id,
            state=job.state,
            progress=job.progress,
            attempts_made=job.attempts_made,
            attempts=job.attempts,
            failed_reason=job.failed_reason,
            result=job.result,
            created_at=_time(job.created_at),
            processed_at=_time(job.processed_at),
            finished_at=_time(job.finished_at),
        )


class JobDetail(JobOut):
    data: dict[str, Any]
    logs: list[str]
    stacktrace: list[str]


class JobCreate(ApiModel):
    name: str = Field(min_length=1, max_length=200)
    company_id: Annotated[str, CompanyIdField]
    data: dict[str, Any] = Field(default_factory=dict)
    options: JobCreateOptions | None = None


class JobCreateOptions(ApiModel):
    attempts: int | None = Field(None, ge=1, le=100)
    backoff_ms: int | None = Field(None, ge=0, le=86_400_000)
    delay_ms: int | None = Field(None, ge=0, le=366 * 86_400_000)
    job_id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[^:]+$")

    @field_validator("job_id")
    @classmethod
    def _not_reserved(cls, job_id: str | None) -> str | None:
        return job_id if job_id is None else check_job_id(job_id)


JobCreate.model_rebuild()


class JobCreated(ApiModel):
    id: str
    queue: str


class CleanRequest(ApiModel):
    state: Literal["completed", "failed", "delayed", "waiting", "paused"]
    grace_seconds: float = Field(0, ge=0, le=MAX_GRACE_SECONDS)
    limit: int = Field(1000, ge=0, le=100_000)


class CleanResult(ApiModel):
    removed: list[str]


class RetryResult(ApiModel):
    retried: int


class QueueState(ApiModel):
    queue: str
    is_paused: bool


class QueueStatsOut(ApiModel):
    """Jobs per state in one queue, and whether it is paused (`paused`: waiting while paused)."""

    model_config = ConfigDict(from_attributes=True)

    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int
    is_paused: bool
    waiting_jobs: int | None = Field(
        None,
        description="Jobs that could start now and have not, queue-wide: waiting (prioritized"
        " and staged too) plus delayed jobs past their due time; what an autoscaler reads."
        " Null in a company's view.",
    )
    oldest_waiting_age_seconds: float | None = Field(
        None,
        description="How long the job waiting longest has been due (0 when none waits),"
        " queue-wide. Null in a company's view.",
    )

    @classmethod
    def of(cls, stats: QueueStats, figures: QueueFigures | None = None) -> QueueStatsOut:
        out = cls.model_validate(stats)
        if figures is not None:
            out.waiting_jobs = figures.waiting
            out.oldest_waiting_age_seconds = figures.oldest_waiting_age_seconds
        return out


class ScheduleIn(ApiModel):
    pattern: str | None = Field(None, min_length=1, max_length=200)
    every: int | None = Field(
        None, ge=1000, le=MAX_EVERY_MS, description="Interval in milliseconds."
    )
    tz: str | None = Field(None, max_length=64)
    name: str | None = Field(None, min_length=1, max_length=200)
    company_id: Annotated[str | None, CompanyIdField] = None
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleIn:
        if (self.pattern is None) == (self.every is None):
            raise ValueError("give exactly one of pattern and every")
        return self


class ScheduleOut(ApiModel):
    id: str
    queue: str
    name: str
    pattern: str | None
    every: int | None
    tz: str | None
    data: dict[str, Any]
    next_run_at: datetime | None

    @classmethod
    def of(cls, record: ScheduleRecord) -> ScheduleOut:
        return cls(
            id=record.id,
            queue=record.queue,
            name=record.name,
            pattern=record.pattern,
            every=record.every_ms,
            tz=record.tz,
            data=record.data,
            next_run_at=_time(record.next_run_at),
        )


def _scope(principal: Principal, company_id: str | None) -> str | None:
    """None (every company) for the admin without a filter, else the one company."""
    if principal.is_admin and company_id is None:
        return None
    return principal.company_for(company_id)


@router.get("/stats", response_model=dict[str, QueueStatsOut])
async def queue_stats(
    services: ServicesDep,
    principal: PrincipalDep,
    company_id: Annotated[str | None, Query(alias="companyId", max_length=64)] = None,
) -> dict[str, QueueStatsOut]:
    """Jobs per state for every queue, by queue name (a company key: its own jobs only);
    the backlog figures are the whole queue's, so only in the unfiltered admin view."""
    scope = _scope(principal, company_id)
    stats = await services.jobs.get_all_queue_stats(scope)
    figures = await services.jobs.queue_figures() if scope is None else {}
    return {name: QueueStatsOut.of(queue, figures.get(name)) for name, queue in stats.items()}


@router.get("/health")
async def queue_health(services: ServicesDep, _: AdminDep) -> dict[str, Any]:
    """Which backend runs the jobs, and whether it is durable (survives a restart)."""
    return await services.jobs.health()


@router.get("/{queue}/jobs", response_model=list[JobOut])
async def list_jobs(
    queue: QueueName,
    services: ServicesDep,
    principal: PrincipalDep,
    state: Literal["waiting", "active", "completed", "failed", "delayed", "paused"] = "waiting",
    start: Annotated[int, Query(ge=0, le=MAX_LIST_INDEX)] = 0,
    end: Annotated[
        int, Query(ge=0, le=MAX_LIST_INDEX, description="Inclusive; at most 999 after start.")
    ] = 49,
    company_id: Annotated[str | None, Query(alias="companyId", max_length=64)] = None,
) -> list[JobOut]:
    jobs = await services.jobs.list_jobs(queue, state, start, end, _scope(principal, company_id))
    return [JobOut.of(job) for job in jobs]


# The hot route: every service enqueues (no route before it takes a POST on its path).
@try_first(router, "/{queue}/jobs", "POST", response_model=JobCreated, status_code=201)
async def add_job(queue: QueueName, body: JobCreate, request: Request, _: AdminDep) -> JobCreated:
    options = body.options or JobCreateOptions()
    # A hot route: the services without a ServicesDep to solve.
    job_id = await services_of(request).jobs.add(
        queue,
        body.name,
        body.data,
        body.company_id,
        attempts=options.attempts,
        backoff_ms=options.backoff_ms,
        delay_ms=options.delay_ms,
        job_id=options.job_id,
    )
    return JobCreated(id=job_id, queue=queue)


@router.get("/{queue}/jobs/{job_id}", response_model=JobDetail)
async def get_job(
    queue: QueueName, job_id: str, services: ServicesDep, principal: PrincipalDep
) -> JobDetail:
    status = await services.jobs.get_job_status(queue, job_id, _scope(principal, None))
    job = status.job
    return JobDetail(
        **JobOut.of(job).model_dump(), data=job.data, logs=status.logs, stacktrace=job.stacktrace
    )


@router.post("/{queue}/jobs/{job_id}/retry", response_model=JobOut)
async def retry_job(
    queue: QueueName, job_id: str, services: ServicesDep, principal: PrincipalDep
) -> JobOut:
    company = _scope(principal, None)
    await services.jobs.retry_job(queue, job_id, company)
    return JobOut.of((await services.jobs.get_job_status(queue, job_id, company)).job)


@router.post("/{queue}/retry-failed", response_model=RetryResult)
async def retry_failed(queue: QueueName, services: ServicesDep, _: AdminDep) -> RetryResult:
    return RetryResult(retried=await services.jobs.retry_failed(queue))


@router.post("/{queue}/pause", response_model=QueueState)
async def pause(queue: QueueName, services: ServicesDep, _: AdminDep) -> QueueState:
    await services.jobs.pause(queue)
    return QueueState(queue=queue, is_paused=True)


@router.post("/{queue}/resume", response_model=QueueState)
async def resume(queue: QueueName, services: ServicesDep, _: AdminDep) -> QueueState:
    await services.jobs.resume(queue)
    return QueueState(queue=queue, is_paused=False)


@router.post("/{queue}/clean", response_model=CleanResult)
async def clean(
    queue: QueueName, body: CleanRequest, services: ServicesDep, _: AdminDep
) -> CleanResult:
    removed = await services.jobs.clean(queue, body.state, body.grace_seconds, body.limit)
    return CleanResult(removed=removed)


@router.get("/{queue}/schedules", response_model=list[ScheduleOut])
async def list_schedules(queue: QueueName, services: ServicesDep, _: AdminDep) -> list[ScheduleOut]:
    return [ScheduleOut.of(record) for record in await services.jobs.list_schedules(queue)]


@router.get("/{queue}/schedules/{schedule_id}", response_model=ScheduleOut)
async def get_schedule(
    queue: QueueName, schedule_id: str, services: ServicesDep, _: AdminDep
) -> ScheduleOut:
    return ScheduleOut.of(await services.jobs.get_schedule(queue, schedule_id))


@router.put("/{queue}/schedules/{schedule_id}", response_model=ScheduleOut)
async def put_schedule(
    queue: QueueName, schedule_id: str, body: ScheduleIn, services: ServicesDep, _: AdminDep
) -> ScheduleOut:
    """Create or replace a schedule; PUTting the same one again changes nothing."""
    record = await services.jobs.schedule_recurring_job(
        queue,
        body.data,
        body.pattern,
        id=schedule_id,
        every_ms=body.every,
        tz=body.tz,
        name=body.name,
        company_id=body.company_id or SYSTEM_COMPANY,
    )
    return ScheduleOut.of(record)


@router.delete("/{queue}/schedules/{schedule_id}", status_code=204)
async def delete_schedule(
    queue: QueueName, schedule_id: str, services: ServicesDep, _: AdminDep
) -> None:
    await services.jobs.remove_schedule(queue, schedule_id)
