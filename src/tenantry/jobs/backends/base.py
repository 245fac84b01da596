"""The interface between the job service and an engine, and the types both speak.

Job options are in BullMQ's shape (attempts, backoff, delay, jobId,
removeOnComplete/removeOnFail) and states are BullMQ's, whatever the engine, so one
contract suite (`tenantry.testing.jobs`) runs against every implementation.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol

from tenantry.jobs.fairness import FairSettings, Limits


class PermanentJobError(Exception):
    """Raised by a handler when retrying cannot help (bad input): the job fails at once."""


@dataclass(slots=True)
class JobRecord:
    """A job as stored: what `get_job_status` and the HTTP API show."""

    id: str
    queue: str
    name: str
    data: dict[str, Any]
    state: str
    progress: Any = 0
    attempts_made: int = 0
    attempts: int = 1
    failed_reason: str | None = None
    stacktrace: list[str] = field(default_factory=list)
    result: Any = None
    created_at: int = 0  # epoch milliseconds, as BullMQ stores them
    processed_at: int | None = None
    finished_at: int | None = None
    delay_ms: int = 0
    # Still in the database outbox (enqueued while Redis was unreachable).
    outboxed: bool = False

    @property
    def company_id(self) -> str | None:
        company = self.data.get("companyId") if isinstance(self.data, dict) else None
        return company if isinstance(company, str) else None


@dataclass(slots=True)
class ScheduleRecord:
    """A recurring job: its cron pattern or interval, its data, and its next run."""

    id: str
    queue: str
    name: str
    data: dict[str, Any]
    pattern: str | None = None
    every_ms: int | None = None
    tz: str | None = None
    next_run_at: int | None = None  # epoch milliseconds


@dataclass(frozen=True, slots=True)
class JobCounts:
    """Jobs per state in one queue (BullMQ's states, whatever the engine).

    `waiting` counts prioritized jobs too; `paused` is the waiting jobs while the
    queue is paused, 0 while it runs.
    """

    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int

    def in_state(self, state: str) -> int:
        """The count of one state by name, for a page that loops over the states."""
        if state not in _COUNTED_STATES:
            raise ValueError(f"unknown job state {state!r}")
        return int(getattr(self, state))


_COUNTED_STATES = frozenset(f.name for f in fields(JobCounts))


@dataclass(frozen=True, slots=True)
class QueueStats(JobCounts):
    """A queue's counts, and whether it is paused: what `JobService.queue_stats` answers."""

    is_paused: bool

    @classmethod
    def of(cls, counts: JobCounts, is_paused: bool) -> QueueStats:
        return cls(**asdict(counts), is_paused=is_paused)


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """What an autoscaler and the alerts read of one whole queue (every company).

    `waiting`: jobs that could start now and have not: waiting, prioritized, staged
    for their company's turn, and delayed jobs past their due time (a delayed job not
    yet due is not waiting). `oldest_waiting_age_seconds`: how long the one waiting
    longest has been due (its creation plus its delay option), 0 when none waits.
    `completed_total`/`failed_total`: jobs finished since the queue began (a failed
    job is one out of attempts), or None where the engine does not count them.
    """

    waiting: int
    oldest_waiting_age_seconds: float
    completed_total: int | None = None
    failed_total: int | None = None


def age_seconds(now: int, since_ms: int | None) -> float:
    """Seconds from `since_ms` to `now` (epoch ms), 0 for none or a clock ahead of us."""
    return max(now - since_ms, 0) / 1000 if since_ms is not None else 0.0


class ActiveJob(Protocol):
    """The job a handler is running: its data, and a way to report progress and log."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def attempts_made(self) -> int: ...
    @property
    def telemetry_metadata(self) -> str | None:
        """The trace it was enqueued in: BullMQ's `opts.telemetry.metadata` (docs/tracing.md)."""
        ...

    async def update_progress(self, progress: int | dict[str, Any]) -> None: ...
    async def log(self, line: str) -> None: ...


def telemetry_of(options: dict[str, Any]) -> str | None:
    """`telemetry.metadata` of job options in BullMQ's shape, if it is a string."""
    telemetry = options.get("telemetry")
    metadata = telemetry.get("metadata") if isinstance(telemetry, dict) else None
    return metadata if isinstance(metadata, str) else None


Processor = Callable[[str, ActiveJob], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    concurrency: dict[str, int]  # queue -> jobs run at once
    lock_duration_ms: int = 30000
    stalled_interval_ms: int = 30000
    # How often a job may be recovered from a dead worker before it is failed instead.
    max_stalled_count: int = 1


def now_ms() -> int:
    # Rounded as the bullmq package stamps its jobs: truncating put a cutoff taken in the
    # same millisecond as a job's creation 1 ms before it, so "clean all" missed that job.
    return round(time.time() * 1000)


class JobBackend(ABC):
    """What the job service needs from an engine."""

    kind: ClassVar[str]
    durable: ClassVar[bool]

    @abstractmethod
    async def add(
        self, queue: str, name: str, data: dict[str, Any], options: dict[str, Any]
    ) -> str:
        """Enqueue a job; returns its id (an existing job with the same jobId is kept)."""

    @abstractmethod
    async def get(self, queue: str, job_id: str) -> JobRecord | None: ...

    @abstractmethod
    async def logs(self, queue: str, job_id: str) -> list[str]: ...

    @abstractmethod
    async def list_jobs(self, queue: str, state: str, start: int, end: int) -> list[JobRecord]:
        """Jobs in one state, `start`..`end` inclusive; finished jobs newest first."""

    @abstractmethod
    async def counts(self, queue: str) -> JobCounts:
        """Jobs per state: waiting, active, completed, failed, delayed, paused."""

    async def figures(self, queues: Sequence[str]) -> dict[str, QueueFigures]:
        """Each queue's backlog (QueueFigures). This default costs two calls a queue, the
        counts and the next waiting job, and leaves due delayed jobs and totals out;
        Tenantry's engines answer exactly, the BullMQ one in one script call a queue."""
        figures = {}
        for queue in queues:
            counts = await self.counts(queue)
            first = await self.list_jobs(queue, "waiting", 0, 0)
            since = first[0].created_at + first[0].delay_ms if first else None
            figures[queue] = QueueFigures(counts.waiting, age_seconds(now_ms(), since))
        return figures

    # --- fairness and company views (jobs/fairness.py): defaults for other engines ---
    def configure_fairness(self, settings: FairSettings) -> None:
        """How to schedule across companies (JobService passes its settings). An engine
        without fairness keeps its own order."""
        return None

    async def set_company_limits(self, queue: str, company_id: str, limits: Limits) -> None:
        """Where the dispatcher reads a company's limits on a queue (none here: ignored)."""
        return None

    async def dispatch(self, queue: str) -> int:
        """Hand staged jobs to the run list now (fair engines); returns how many moved."""
        return 0

    async def company_counts(self, queue: str, company_id: str) -> JobCounts:
        """One company's jobs per state. This default scans the whole queue (exact, but
        costing the queue's size); Tenantry's engines keep an index per company."""
        counts = {
            state: len(await self._scan_company(queue, state, company_id))
            for state in ("waiting", "active", "completed", "failed", "delayed")
        }
        paused = await self.is_paused(queue)
        return JobCounts(**counts, paused=counts["waiting"] if paused else 0)

    async def company_jobs(
        self, queue: str, state: str, start: int, end: int, company_id: str
    ) -> list[JobRecord]:
        """One company's jobs in one state, `start`..`end` of its own (default: a scan)."""
        return (await self._scan_company(queue, state, company_id))[start : end + 1]

    async def _scan_company(self, queue: str, state: str, company_id: str) -> list[JobRecord]:
        found: list[JobRecord] = []
        offset, chunk = 0, 1000
        while True:
            page = await self.list_jobs(queue, state, offset, offset + chunk - 1)
            found += [job for job in page if job.company_id == company_id]
            if len(page) < chunk:
                return found
            offset += chunk

    @abstractmethod
    async def retry(self, queue: str, job_id: str) -> None:
        """Move one failed job back to waiting (`Conflict` if it has not failed)."""

    @abstractmethod
    async def retry_failed(self, queue: str) -> int:
        """Move every failed job back to waiting; returns how many."""

    @abstractmethod
    async def pause(self, queue: str) -> None: ...

    @abstractmethod
    async def resume(self, queue: str) -> None: ...

    @abstractmethod
    async def is_paused(self, queue: str) -> bool: ...

    @abstractmethod
    async def clean(self, queue: str, state: str, grace_ms: int, limit: int) -> list[str]:
        """Remove jobs in `state` older than `grace_ms`; returns their ids."""

    @abstractmethod
    async def upsert_schedule(
        self,
        queue: str,
        schedule_id: str,
        repeat: dict[str, Any],
        name: str,
        data: dict[str, Any],
        options: dict[str, Any],
    ) -> ScheduleRecord:
        """Create or replace a schedule by id (so running it again changes nothing)."""

    @abstractmethod
    async def get_schedule(self, queue: str, schedule_id: str) -> ScheduleRecord | None: ...

    @abstractmethod
    async def list_schedules(self, queue: str) -> list[ScheduleRecord]: ...

    @abstractmethod
    async def remove_schedule(self, queue: str, schedule_id: str) -> bool: ...

    @abstractmethod
    async def start_workers(self, processor: Processor, settings: WorkerSettings) -> None:
        """Start processing the queues named in `settings.concurrency`."""

    @abstractmethod
    async def stop_workers(self, grace_seconds: float) -> None:
        """Stop taking jobs; let active ones finish for up to `grace_seconds`, then stop them."""

    @abstractmethod
    async def ping(self) -> dict[str, Any]: ...

    @abstractmethod
    async def close(self) -> None: ...
