"""JobService: the one object the rest of Tenantry talks to about background jobs.

    job_id = await services.jobs.send_email_job("acme", "a@b.c", "Hi", "welcome", {"name": "A"})
    status = await services.jobs.get_job_status("email", job_id)

Every job carries its company id in `data["companyId"]`; methods that take
`company_id=` act only on that company's jobs (another company's job is "not
found"), which is how a company key is confined on the HTTP API.

Queues are fair across companies, within each company's limits (jobs/fairness.py):
`limits=` is where a company's `QueueLimits` come from (the tenants service; default:
every company weight 1, unlimited); `apply_limits(company_id)` pushes changed limits
at once. A company's counts and lists read its own index of jobs, so they are exact
and cost that company's jobs, whatever the queue's size.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from tenantry.auth import validate_company_id
from tenantry.context import company_scope
from tenantry.errors import InvalidInput, NotFound, PayloadTooLarge, ServiceUnavailable
from tenantry.jobs import queues as q
from tenantry.jobs.backends import (
    REDIS_DOWN,
    ActiveJob,
    JobBackend,
    JobRecord,
    PermanentJobError,
    QueueFigures,
    QueueStats,
    ScheduleRecord,
    WorkerSettings,
)
from tenantry.jobs.fairness import FairSettings, LimitCache, Limits, LimitSource
from tenantry.jobs.outbox import Enqueue, JobOutbox
from tenantry.jobs.registry import Handler, HandlerRegistry, JobContext
from tenantry.jobs.types import ai, cleanup, email, export, notification, report
from tenantry.jobs.types.base import JobRequest
from tenantry.resilience.breaker import CallTimeoutError, CircuitOpenError
from tenantry.settings import ConfigError, Settings

if TYPE_CHECKING:
    from tenantry.tracing.tracer import Tracing

log = logging.getLogger("tenantry.jobs")
P = ParamSpec("P")
R = TypeVar("R")

CLEANABLE_STATES = ("completed", "failed", "delayed", "waiting", "paused")


@dataclass(slots=True)
class JobStatus:
    """`get_job_status`: the job as stored, plus its log lines."""

    job: JobRecord
    logs: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.job.state


def validate_cron(pattern: str, tz: str | None = None) -> None:
    """A 5- or 6-field cron pattern (seconds first, as BullMQ reads it) that fires at
    least once (not, say, February 30th), in a known time zone; or 422 naming it."""
    zone: tzinfo = UTC
    if tz is not None:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                f"tz {tz!r} is not a known IANA time zone",
                details={"field": "tz", "rule": "timezone", "value": tz},
            ) from None
    try:
        croniter(pattern, datetime.now(zone), second_at_beginning=True).get_next(datetime)
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueErrors
        raise InvalidInput(
            f"pattern {pattern!r} is not a valid cron expression: {exc}",
            details={"field": "pattern", "rule": "cron", "value": pattern},
        ) from None


def outage_is_503(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Redis unreachable: a ServiceUnavailable (503) naming it, rather than a 500.

    The backends raise Redis's own errors (the job outbox relies on seeing them)."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except REDIS_DOWN as exc:
            raise ServiceUnavailable(
                f"the job queues' Redis is unreachable: {exc}", details={"dependency": "redis"}
            ) from exc

    return guarded


class JobService:
    """The job queues: enqueue, inspect, retry, schedule, and run the workers.

    Runs the handlers of the `HandlerRegistry` it is given, on the `JobBackend` it is
    given (BullMQ on Redis, or in-process); per-company limits come from `limits`.
    """

    def __init__(
        self,
        settings: Settings,
        backend: JobBackend,
        registry: HandlerRegistry | None = None,
        outbox: JobOutbox | None = None,
        enqueue: Enqueue | None = None,
        limits: LimitSource | None = None,
        on_job_run: Callable[[str, float], None] | None = None,
    ) -> None:
        self.settings = settings
        # Told (company, milliseconds) after each job runs, however it ends: usage metering.
        self.on_job_run = on_job_run
        self.backend = backend
        # The handlers this service runs: the wiring's (Tenantry's and the app's), or a
        # caller's own; never a global one.
        self.registry = registry if registry is not None else HandlerRegistry()
        self.definitions = q.definitions(settings)
        self._workers_running = False
        # With Redis: jobs that cannot reach it wait in the database outbox (jobs/outbox.py),
        # and `enqueue` (the backend's add behind the `redis` circuit) is how they get there.
        self.outbox = outbox
        self.enqueue: Enqueue = enqueue or backend.add
        self.limits = LimitCache(limits, settings.job_limits_cache_seconds)
        self.tracing: Tracing | None = None  # spans for job runs, when set (the wiring)
        backend.configure_fairness(fair_settings(settings))

    @property
    def durable(self) -> bool:
        return self.backend.durable

    # --- enqueueing ------------------------------------------------------------
    def _options(self, queue: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
        options = self.definitions[queue].job_options()
        for key, value in (overrides or {}).items():
            if value is not None:
                options[key] = value
        return options

    def _check_size(self, data: dict[str, Any]) -> None:
        try:
            size = len(json.dumps(data, separators=(",", ":"), allow_nan=False).encode())
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"job data must be JSON: {exc}", details={"field": "data", "rule": "json"}
            ) from None
        limit = self.settings.job_max_data_bytes
        if size > limit:
            raise PayloadTooLarge(
                f"job data is {size} bytes; the limit is {limit} (JOB_MAX_DATA_BYTES)",
                details={"field": "data", "rule": "max_bytes", "limit": limit, "size": size},
            )

    @outage_is_503
    async def add(
        self,
        queue: str,
        name: str,
        data: dict[str, Any],
        company_id: str,
        *,
        attempts: int | None = None,
        backoff_ms: int | None = None,
        delay_ms: int | None = None,
        job_id: str | None = None,
    ) -> str:
        """Enqueue a job for a company; returns its id."""
        q.check_queue(queue)
        if company_id != q.SYSTEM_COMPANY:
            validate_company_id(company_id)
        payload = {**data, "companyId": company_id}
        self._check_size(payload)
        if job_id is not None:
            try:
                q.check_job_id(job_id)
            except ValueError as exc:
                raise InvalidInput(
                    f"jobId: {exc}", details={"field": "jobId", "rule": "reserved"}
                ) from None
        if job_id is None and self.outbox is not None:
            job_id = new_job_id()  # known before enqueueing, so an outboxed job keeps it
        overrides: dict[str, Any] = {"attempts": attempts, "delay": delay_ms, "jobId": job_id}
        if backoff_ms is not None:
            overrides["backoff"] = {"type": "exponential", "delay": backoff_ms}
        options = self._options(queue, overrides)
        if self.tracing is not None:
            # Where Node's bullmq-otel puts the enqueuing trace, so any worker continues it.
            metadata = self.tracing.job_metadata()
            if metadata is not None:
                options["telemetry"] = {"metadata": metadata}
        await self._note_limits(queue, company_id)
        try:
            return await self.enqueue(queue, name, payload, options)
        except (*REDIS_DOWN, CircuitOpenError, CallTimeoutError):
            if self.outbox is None:
                raise
            return await self.outbox.put(queue, name, payload, options)

    async def _note_limits(self, queue: str, company_id: str) -> None:
        """The company's limits where the dispatcher reads them (after a cache miss)."""
        limits, fresh = await self.limits.get(company_id, queue)
        if not fresh:
            return
        try:
            await self.backend.set_company_limits(queue, company_id, limits)
        except REDIS_DOWN:
            self.limits.forget(company_id)  # written on the next enqueue that reaches Redis

    @outage_is_503
    async def set_company_limits(self, queue: str, company_id: str, limits: Limits) -> None:
        """Apply `limits` to a company's jobs on `queue` now (what `apply_limits` writes)."""
        q.check_queue(queue)
        await self.backend.set_company_limits(queue, company_id, limits)

    async def apply_limits(self, company_id: str) -> None:
        """Re-read a company's limits from the limit source, on every queue, and apply them
        at once (the tenants service calls this when a plan or override changes)."""
        self.limits.forget(company_id)
        if self.limits.source is None:
            return
        for queue in q.QUEUE_NAMES:
            limits, _ = await self.limits.get(company_id, queue)
            await self.set_company_limits(queue, company_id, limits)

    async def dispatch_all(self) -> int:
        """Hand staged jobs to the run lists now, on every queue (the background loop's
        step: it feeds Node workers too); returns how many moved."""
        return sum([await self.backend.dispatch(name) for name in q.QUEUE_NAMES])

    async def submit(self, request: JobRequest, company_id: str, **options: Any) -> str:
        """Enqueue a job type's request (`tenantry.jobs.types.*.request(...)`)."""
        return await self.add(
            request.queue, request.name, request.payload.to_data(), company_id, **options
        )

    async def send_email_job(
        self,
        company_id: str,
        to: str | list[str],
        subject: str,
        template: str,
        data: dict[str, Any] | None = None,
    ) -> str:
        return await self.submit(email.request(to, subject, template, data), company_id)

    async def generate_report_job(
        self,
        company_id: str,
        report_type: str,
        start: date | str,
        end: date | str,
        format: str = "csv",
    ) -> str:
        return await self.submit(report.request(report_type, start, end, format), company_id)

    async def export_data_job(
        self, company_id: str, kind: str = "files", format: str = "csv"
    ) -> str:
        return await self.submit(export.request(kind, format), company_id)

    async def send_notification_job(
        self, company_id: str, url: str, event: str, payload: dict[str, Any] | None = None
    ) -> str:
        return await self.submit(notification.request(url, event, payload), company_id)

    async def ai_processing_job(
        self, company_id: str, task: str, input: dict[str, Any] | None = None
    ) -> str:
        return await self.submit(ai.request(task, input), company_id)

    async def cleanup_job(
        self, company_id: str = q.SYSTEM_COMPANY, older_than_seconds: int | None = None
    ) -> str:
        return await self.submit(cleanup.request(older_than_seconds), company_id)

    # --- inspecting ------------------------------------------------------------
    async def _job(self, queue: str, job_id: str, company_id: str | None) -> JobRecord:
        q.check_queue(queue)
        try:
            record = await self.backend.get(queue, job_id)
        except REDIS_DOWN:
            record = await self._outboxed(queue, job_id)
            if record is None:
                raise
        if record is None and self.outbox is not None:
            record = await self._outboxed(queue, job_id)
            if record is None:
                # The relay may have moved it from the outbox to Redis between the two
                # reads: a job only ever moves that way, so a second look finds it.
                record = await self.backend.get(queue, job_id)
        # Another company's job is reported exactly like a missing one.
        if record is None or (company_id is not None and record.company_id != company_id):
            raise NotFound(f"no job {job_id!r} in queue {queue!r}")
        return record

    @outage_is_503
    async def get_job_status(
        self, queue: str, job_id: str, company_id: str | None = None
    ) -> JobStatus:
        record = await self._job(queue, job_id, company_id)
        if record.outboxed:
            return JobStatus(record, ["waiting in the outbox until Redis answers"])
        return JobStatus(record, await self.backend.logs(queue, job_id))

    async def _outboxed(self, queue: str, job_id: str) -> JobRecord | None:
        return await self.outbox.get(queue, job_id) if self.outbox is not None else None

    @outage_is_503
    async def list_jobs(
        self,
        queue: str,
        state: str,
        start: int = 0,
        end: int = 49,
        company_id: str | None = None,
    ) -> list[JobRecord]:
        q.check_queue(queue)
        if state not in q.STATES:
            raise InvalidInput(
                f"state must be one of {', '.join(q.STATES)}",
                details={"field": "state", "allowed": list(q.STATES)},
            )
        if not 0 <= start <= end <= q.MAX_LIST_INDEX or end - start >= q.MAX_PAGE:
            raise InvalidInput(
                f"start and end must satisfy 0 <= start <= end <= {q.MAX_LIST_INDEX}, "
                f"at most {q.MAX_PAGE} jobs apart (end - start < {q.MAX_PAGE})",
                details={"field": "start,end", "rule": "range"},
            )
        if company_id is None:
            return await self.backend.list_jobs(queue, state, start, end)
        return await self.backend.company_jobs(queue, state, start, end, company_id)

    @outage_is_503
    async def queue_stats(self, queue: str, company_id: str | None = None) -> QueueStats:
        q.check_queue(queue)
        paused = await self.backend.is_paused(queue)
        if company_id is None:
            counts = await self.backend.counts(queue)
        else:
            counts = await self.backend.company_counts(queue, company_id)
        return QueueStats.of(counts, paused)

    async def get_all_queue_stats(self, company_id: str | None = None) -> dict[str, QueueStats]:
        """waiting, active, completed, failed, delayed, paused (and is_paused) per queue."""
        return {name: await self.queue_stats(name, company_id) for name in q.QUEUE_NAMES}

    @outage_is_503
    async def queue_figures(self) -> dict[str, QueueFigures]:
        """Every queue's backlog and finished totals, whole queues (every company): what
        autoscalers and alerts read; cheap at any size (jobs/backends/base.QueueFigures)."""
        return await self.backend.figures(q.QUEUE_NAMES)

    # --- acting ----------------------------------------------------------------
    @outage_is_503
    async def retry_job(self, queue: str, job_id: str, company_id: str | None = None) -> None:
        await self._job(queue, job_id, company_id)
        await self.backend.retry(queue, job_id)

    @outage_is_503
    async def retry_failed(self, queue: str) -> int:
        return await self.backend.retry_failed(q.check_queue(queue))

    @outage_is_503
    async def pause(self, queue: str) -> None:
        await self.backend.pause(q.check_queue(queue))

    @outage_is_503
    async def resume(self, queue: str) -> None:
        await self.backend.resume(q.check_queue(queue))

    @outage_is_503
    async def clean(
        self, queue: str, state: str, grace_seconds: float = 0, limit: int = 1000
    ) -> list[str]:
        q.check_queue(queue)
        if state not in CLEANABLE_STATES:
            raise InvalidInput(
                f"state must be one of {', '.join(CLEANABLE_STATES)} (active jobs are not cleaned)",
                details={"field": "state", "allowed": list(CLEANABLE_STATES)},
            )
        if not 0 <= grace_seconds <= q.MAX_GRACE_SECONDS or limit < 0:  # NaN fails too
            raise InvalidInput(
                f"graceSeconds must be 0-{q.MAX_GRACE_SECONDS} and limit >= 0",
                details={"field": "graceSeconds", "rule": "range"},
            )
        return await self.backend.clean(queue, state, int(grace_seconds * 1000), limit)

    # --- schedules -------------------------------------------------------------
    @outage_is_503
    async def schedule_recurring_job(
        self,
        queue: str,
        data: dict[str, Any],
        cron: str | None = None,
        *,
        id: str,
        every_ms: int | None = None,
        tz: str | None = None,
        name: str | None = None,
        company_id: str = q.SYSTEM_COMPANY,
    ) -> ScheduleRecord:
        """Create or replace the schedule `id`: running it again (every deploy) keeps one."""
        q.check_queue(queue)
        if (cron is None) == (every_ms is None):
            raise InvalidInput(
                "give exactly one of pattern (cron) and every",
                details={"field": "pattern", "rule": "one_of_pattern_every"},
            )
        if not id or len(id) > 200 or ":" in id:
            raise InvalidInput(
                "schedule id must be 1-200 characters without ':'", details={"field": "id"}
            )
        repeat: dict[str, Any] = {}
        if cron is not None:
            validate_cron(cron, tz)
            repeat["pattern"] = cron
        else:
            assert every_ms is not None
            if not 1000 <= every_ms <= q.MAX_EVERY_MS:
                raise InvalidInput(
                    f"every must be 1000-{q.MAX_EVERY_MS} ms (a rarer run is a cron pattern)",
                    details={"field": "every", "rule": "range"},
                )
            repeat["every"] = every_ms
        if tz:
            repeat["tz"] = tz
        if company_id != q.SYSTEM_COMPANY:
            validate_company_id(company_id)
        payload = {**data, "companyId": company_id}
        self._check_size(payload)
        options = self._options(queue, None)
        return await self.backend.upsert_schedule(queue, id, repeat, name or id, payload, options)

    @outage_is_503
    async def list_schedules(self, queue: str) -> list[ScheduleRecord]:
        return await self.backend.list_schedules(q.check_queue(queue))

    @outage_is_503
    async def get_schedule(self, queue: str, schedule_id: str) -> ScheduleRecord:
        record = await self.backend.get_schedule(q.check_queue(queue), schedule_id)
        if record is None:
            raise NotFound(f"no schedule {schedule_id!r} on queue {queue!r}")
        return record

    @outage_is_503
    async def remove_schedule(self, queue: str, schedule_id: str) -> None:
        if not await self.backend.remove_schedule(q.check_queue(queue), schedule_id):
            raise NotFound(f"no schedule {schedule_id!r} on queue {queue!r}")

    # --- running ---------------------------------------------------------------
    async def start_workers(self, queues: list[str] | None = None) -> None:
        """Process `queues` (default: all six) with each queue's concurrency."""
        if self._workers_running:
            return
        names = [q.check_queue(name) for name in (queues or list(q.QUEUE_NAMES))]
        settings = WorkerSettings(
            concurrency={name: self.definitions[name].concurrency for name in names},
            lock_duration_ms=self.settings.job_lock_duration_ms,
            stalled_interval_ms=self.settings.job_stalled_interval_ms,
            max_stalled_count=self.settings.job_max_stalled_count,
        )
        await self.backend.start_workers(self.run_job, settings)
        self._workers_running = True

    async def stop_workers(self, grace_seconds: float | None = None) -> None:
        """Stop taking jobs; active ones get `grace_seconds` (JOB_SHUTDOWN_TIMEOUT_SECONDS)."""
        if grace_seconds is None:
            grace_seconds = self.settings.job_shutdown_timeout_seconds
        await self.backend.stop_workers(grace_seconds)
        self._workers_running = False

    async def run_job(self, queue: str, job: ActiveJob) -> Any:
        """Run one job's handler with the job's company as the current company."""
        handler = self.registry.find(queue, job.name)
        if handler is None:
            raise PermanentJobError(f"no handler for job {job.name!r} on queue {queue!r}")
        company_id = job.data.get("companyId")
        if not isinstance(company_id, str):
            raise PermanentJobError("job data has no companyId")
        context = JobContext(queue, job, company_id, self.settings)
        with company_scope(company_id):
            if self.tracing is None:
                return await self._handle(handler, context)
            # A child of the span that enqueued it, wherever that ran (Node included).
            with self.tracing.job_span(queue, job.id, job.name, job.telemetry_metadata):
                return await self._handle(handler, context)

    async def _handle(self, handler: Handler, context: JobContext) -> Any:
        started = time.perf_counter()
        try:
            return await handler(context)
        except Exception as exc:
            log.warning(
                "job %s/%s (%s, company %s, attempt %d) failed: %s",
                context.queue, context.job.id, context.job.name, context.company_id,
                context.attempt, exc,
            )  # fmt: skip
            raise
        finally:
            if self.on_job_run is not None:
                self.on_job_run(context.company_id, (time.perf_counter() - started) * 1000)

    @outage_is_503
    async def health(self) -> dict[str, Any]:
        await self.backend.ping()
        details: dict[str, Any] = {"backend": self.backend.kind, "durable": self.durable}
        if self.outbox is not None:
            details["outboxPending"] = await self.outbox.pending()
        return details

    async def close(self) -> None:
        await self.backend.close()


def load_handler_modules(settings: Settings) -> None:
    """Import the application's handler modules (JOB_HANDLER_MODULES) so they register."""
    for module in filter(None, (m.strip() for m in settings.job_handler_modules.split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise InvalidInput(
                f"JOB_HANDLER_MODULES: cannot import {module!r}: {exc}",
                details={"field": "JOB_HANDLER_MODULES", "value": module},
            ) from exc


def fair_settings(settings: Settings) -> FairSettings:
    """JOB_FAIR_*: fairness on or off, how deep BullMQ's `wait` is kept, a slot's grace."""
    definitions = q.definitions(settings)
    depth = {
        name: settings.job_fair_wait_depth or 2 * definition.concurrency
        for name, definition in definitions.items()
    }
    return FairSettings(
        enabled=settings.job_fair_scheduling,
        wait_depth=depth,
        grace_ms=settings.job_lock_duration_ms,
        dispatch_seconds=settings.job_fair_dispatch_seconds,
    )


def new_job_id() -> str:
    # A letter first: BullMQ refuses custom ids that look like its own integer ids.
    return f"j{uuid.uuid4().hex}"


CLEANUP_SCHEDULE_ID = "tenantry-cleanup"


def cleanup_cron(settings: Settings) -> str | None:
    """JOB_CLEANUP_CRON, checked now so a bad value stops start-up naming the variable."""
    cron = settings.job_cleanup_cron.strip()
    if not cron:
        return None
    try:
        validate_cron(cron)
    except InvalidInput as exc:
        raise ConfigError(f"JOB_CLEANUP_CRON: {exc.message}") from None
    return cron


async def schedule_cleanup(service: JobService, cron: str | None) -> None:
    """The recurring cleanup job; idempotent (one id), so safe on every start."""
    if cron is None:
        await service.backend.remove_schedule(q.CLEANUP, CLEANUP_SCHEDULE_ID)
        return
    await service.schedule_recurring_job(
        q.CLEANUP, {}, cron, id=CLEANUP_SCHEDULE_ID, name="cleanup"
    )
