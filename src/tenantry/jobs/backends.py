"""The engines under the job service, behind one small interface Tenantry owns.

- `BullMQBackend`: the official `bullmq` package on Redis. Same keys and Lua
  scripts as Node BullMQ, so Node producers, workers and Bull Board share the queues.
  Durable: a job survives a crashed worker (its lock expires, the stalled-job check
  puts it back) and a restarted API.
- `InProcessBackend`: the same behaviour in the event loop of one process, for
  running without Redis. Not durable: jobs live in memory.

Both take job options in BullMQ's shape (attempts, backoff, delay, jobId,
removeOnComplete/removeOnFail) and report the same states, so one contract test
suite runs against both (tests/jobs/test_contract.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol
from zoneinfo import ZoneInfo

from croniter import croniter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tenantry.errors import Conflict, NotFound

log = logging.getLogger("tenantry.jobs")


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
    id: str
    queue: str
    name: str
    data: dict[str, Any]
    pattern: str | None = None
    every_ms: int | None = None
    tz: str | None = None
    next_run_at: int | None = None  # epoch milliseconds


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

    async def update_progress(self, progress: int | dict[str, Any]) -> None: ...
    async def log(self, line: str) -> None: ...


Processor = Callable[[str, ActiveJob], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    concurrency: dict[str, int]  # queue -> jobs run at once
    lock_duration_ms: int = 30000
    stalled_interval_ms: int = 30000
    # How often a job may be recovered from a dead worker before it is failed instead.
    max_stalled_count: int = 1


def now_ms() -> int:
    return int(time.time() * 1000)


def backoff_delay(backoff: dict[str, Any] | None, attempts_made: int) -> int:
    """BullMQ's exponential backoff: delay * 2^(attempts_made - 1) milliseconds."""
    if not backoff:
        return 0
    delay = int(backoff.get("delay", 0))
    if backoff.get("type") == "fixed":
        return delay
    return delay * (1 << max(attempts_made - 1, 0))


def next_cron_run(pattern: str, tz: str | None, after_ms: int) -> int:
    """The next run of a cron pattern after `after_ms`, evaluated as BullMQ does
    (a 6-field pattern has seconds first)."""
    zone = ZoneInfo(tz) if tz else UTC
    base = datetime.fromtimestamp(after_ms / 1000, tz=zone)
    upcoming: datetime = croniter(pattern, base, second_at_beginning=True).get_next(datetime)
    return int(upcoming.timestamp() * 1000)


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
    async def counts(self, queue: str) -> dict[str, int]:
        """Jobs per state: waiting, active, completed, failed, delayed, paused."""

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


# --------------------------------------------------------------------------- BullMQ


class _BullActiveJob:
    def __init__(self, job: Any) -> None:
        self._job = job

    @property
    def id(self) -> str:
        return str(self._job.id)

    @property
    def name(self) -> str:
        return str(self._job.name)

    @property
    def data(self) -> dict[str, Any]:
        data = self._job.data
        return data if isinstance(data, dict) else {}

    @property
    def attempts_made(self) -> int:
        return int(self._job.attemptsMade)

    async def update_progress(self, progress: int | dict[str, Any]) -> None:
        await self._job.updateProgress(progress)

    async def log(self, line: str) -> None:
        await self._job.log(line)


# BullMQ's names for the lists/sets behind our states.
_BULL_TYPES = {
    "waiting": "waiting",
    "active": "active",
    "completed": "completed",
    "failed": "failed",
    "delayed": "delayed",
    "paused": "waiting",
}
_BULL_CLEAN_TYPES = {
    "completed": "completed",
    "failed": "failed",
    "delayed": "delayed",
    "waiting": "wait",
    "paused": "wait",
}


# How long a force-closed BullMQ worker gets to finish before its task is cancelled.
_FORCE_CLOSE_SECONDS = 5.0

# What "Redis is unreachable" looks like from redis-py (and so from bullmq).
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


def _producer_client(redis_url: str) -> Redis:
    return Redis.from_url(
        redis_url,
        decode_responses=True,  # what bullmq's own connections use
        single_connection_client=True,
        socket_connect_timeout=5,
        retry=Retry(ExponentialBackoff(cap=1, base=0.1), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, BusyLoadingError],
    )


class BullMQBackend(JobBackend):
    kind = "bullmq"
    durable = True

    def __init__(self, redis_url: str, prefix: str = "bull", queues: tuple[str, ...] = ()) -> None:
        from bullmq import Queue

        self.redis_url = redis_url
        self.prefix = prefix
        # One Queue (one connection) per queue name: Queue objects are the producer side.
        # Their clients give up within seconds when Redis is down (bullmq's own default
        # retries for minutes), so a request that enqueues gets a 503, not a hang.
        self._queues = {
            name: Queue(name, {"connection": _producer_client(redis_url), "prefix": prefix})
            for name in queues
        }
        self._workers: list[Any] = []
        self._runs: list[asyncio.Task[Any]] = []

    def _queue(self, name: str) -> Any:
        return self._queues[name]

    def _record(self, queue: str, job: Any, state: str) -> JobRecord:
        data = job.data if isinstance(job.data, dict) else {"value": job.data}
        return JobRecord(
            id=str(job.id),
            queue=queue,
            name=str(job.name),
            data=data,
            state=state,
            progress=job.progress,
            attempts_made=int(job.attemptsMade or 0),
            attempts=int(job.opts.get("attempts") or 1),
            failed_reason=job.failedReason or None,
            stacktrace=list(job.stacktrace or []),
            result=job.returnvalue,
            created_at=int(job.timestamp or 0),
            processed_at=int(job.processedOn) if job.processedOn else None,
            finished_at=int(job.finishedOn) if job.finishedOn else None,
            delay_ms=int(job.delay or 0),
        )

    async def _state(self, queue: str, job_id: str) -> str:
        state = str(await self._queue(queue).getJobState(job_id))
        return "waiting" if state in ("wait", "prioritized") else state

    async def add(
        self, queue: str, name: str, data: dict[str, Any], options: dict[str, Any]
    ) -> str:
        job = await self._queue(queue).add(name, data, options)
        return str(job.id)

    async def get(self, queue: str, job_id: str) -> JobRecord | None:
        # State first: the data read after it is at least as new (never "completed"
        # without its result). An id in no state is no job: its key, if any, is another
        # of the queue's (`bull:<queue>:meta`, a job's `:logs`), never read as a job.
        state = await self._state(queue, job_id)
        if state == "unknown":
            return None
        job = await self._queue(queue).getJob(job_id)
        if job is None:
            return None
        return self._record(queue, job, state)

    async def logs(self, queue: str, job_id: str) -> list[str]:
        result = await self._queue(queue).getJobLogs(job_id)
        return [str(line) for line in result["logs"]]

    async def list_jobs(self, queue: str, state: str, start: int, end: int) -> list[JobRecord]:
        q = self._queue(queue)
        if state == "paused" and not await q.isPaused():
            return []
        ascending = state not in ("completed", "failed")
        jobs = await q.getJobs([_BULL_TYPES[state]], start, end, ascending)
        return [self._record(queue, job, state) for job in jobs]

    async def counts(self, queue: str) -> dict[str, int]:
        q = self._queue(queue)
        raw = await q.getJobCounts(
            "waiting", "prioritized", "active", "completed", "failed", "delayed"
        )
        waiting = int(raw["waiting"]) + int(raw["prioritized"])
        paused = await q.isPaused()
        return {
            "waiting": waiting,
            "active": int(raw["active"]),
            "completed": int(raw["completed"]),
            "failed": int(raw["failed"]),
            "delayed": int(raw["delayed"]),
            "paused": waiting if paused else 0,
        }

    async def retry(self, queue: str, job_id: str) -> None:
        job = await self._queue(queue).getJob(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r} in queue {queue!r}")
        state = await self._state(queue, job_id)
        if state != "failed":
            raise Conflict(f"job {job_id!r} is {state}; only a failed job can be retried")
        await job.retry("failed")

    async def retry_failed(self, queue: str) -> int:
        q = self._queue(queue)
        failed = int((await q.getJobCounts("failed"))["failed"])
        await q.retryJobs({"state": "failed", "count": 1000})
        return failed

    async def pause(self, queue: str) -> None:
        await self._queue(queue).pause()

    async def resume(self, queue: str) -> None:
        await self._queue(queue).resume()

    async def is_paused(self, queue: str) -> bool:
        return bool(await self._queue(queue).isPaused())

    async def clean(self, queue: str, state: str, grace_ms: int, limit: int) -> list[str]:
        removed = await self._queue(queue).clean(grace_ms, limit, _BULL_CLEAN_TYPES[state])
        return [str(job_id) for job_id in removed]

    async def upsert_schedule(
        self,
        queue: str,
        schedule_id: str,
        repeat: dict[str, Any],
        name: str,
        data: dict[str, Any],
        options: dict[str, Any],
    ) -> ScheduleRecord:
        await self._queue(queue).upsertJobScheduler(schedule_id, repeat, name, data, options)
        record = await self.get_schedule(queue, schedule_id)
        assert record is not None
        return record

    def _schedule(self, queue: str, raw: dict[str, Any]) -> ScheduleRecord:
        template = raw.get("template") or {}
        data = template.get("data")
        return ScheduleRecord(
            id=str(raw["key"]),
            queue=queue,
            name=str(raw.get("name") or raw["key"]),
            data=data if isinstance(data, dict) else {},
            pattern=raw.get("pattern"),
            every_ms=raw.get("every"),
            tz=raw.get("tz"),
            next_run_at=int(raw["next"]) if raw.get("next") else None,
        )

    async def get_schedule(self, queue: str, schedule_id: str) -> ScheduleRecord | None:
        q = self._queue(queue)
        # bullmq 3.4 raises ValueError (instead of returning None) for a missing id.
        if not await q.isJobScheduler(schedule_id):
            return None
        raw = await q.getJobScheduler(schedule_id)
        return self._schedule(queue, raw) if raw else None

    async def list_schedules(self, queue: str) -> list[ScheduleRecord]:
        raws = await self._queue(queue).getJobSchedulers(0, -1, True)
        return [self._schedule(queue, raw) for raw in raws]

    async def remove_schedule(self, queue: str, schedule_id: str) -> bool:
        q = self._queue(queue)
        if not await q.isJobScheduler(schedule_id):
            return False
        await q.removeJobScheduler(schedule_id)
        return True

    async def start_workers(self, processor: Processor, settings: WorkerSettings) -> None:
        from bullmq import UnrecoverableError, Worker

        def processor_for(queue: str) -> Callable[[Any, str], Awaitable[Any]]:
            # Exactly two parameters: BullMQ passes an abort signal to a third.
            async def process(job: Any, _token: str) -> Any:
                try:
                    return await processor(queue, _BullActiveJob(job))
                except PermanentJobError as exc:
                    raise UnrecoverableError(str(exc)) from exc

            return process

        for queue, concurrency in settings.concurrency.items():
            worker = Worker(
                queue,
                processor_for(queue),
                {
                    "connection": self.redis_url,
                    "prefix": self.prefix,
                    "concurrency": concurrency,
                    "lockDuration": settings.lock_duration_ms,
                    "stalledInterval": settings.stalled_interval_ms,
                    "maxStalledCount": settings.max_stalled_count,
                    "autorun": False,
                },
            )
            worker.on("error", lambda err, *_: log.error("job worker error: %s", err))
            self._workers.append(worker)
            self._runs.append(asyncio.create_task(worker.run()))
        # Return once every worker is connected and polling: a worker closed before its
        # run() has connected would open its connections after close() and leak them.
        try:
            while not all(worker.running for worker in self._workers):
                failed = [run for run in self._runs if run.done()]
                if failed:
                    await failed[0]  # raises what stopped it (e.g. Redis unreachable)
                    raise RuntimeError("a job worker stopped while starting")
                await asyncio.sleep(0.005)
        except BaseException:
            await self.stop_workers(0)  # nothing half-started is left behind
            raise

    async def stop_workers(self, grace_seconds: float) -> None:
        workers, self._workers = self._workers, []
        runs, self._runs = self._runs, []
        if not workers:
            return
        # The Python package has no runner: closing gracefully waits for active jobs
        # (and never times out), so the deadline is enforced here, then force-close.
        closing = [asyncio.create_task(worker.close()) for worker in workers]
        _, pending = await asyncio.wait(closing, timeout=grace_seconds)
        if pending:
            log.warning("jobs still active after %.1fs; stopping them", grace_seconds)
            closing += [asyncio.create_task(worker.close(force=True)) for worker in workers]
        # A worker stopped while still connecting may never finish closing or its run():
        # after a bounded wait, cancel what is left rather than hang the shutdown.
        _, stuck = await asyncio.wait([*closing, *runs], timeout=_FORCE_CLOSE_SECONDS)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*closing, *runs, return_exceptions=True)

    async def ping(self) -> dict[str, Any]:
        first = next(iter(self._queues.values()))
        await first.client.ping()
        return {}

    async def close(self) -> None:
        await self.stop_workers(0)
        for q in self._queues.values():
            with contextlib.suppress(Exception):
                await q.close()


# --------------------------------------------------------------------------- in-process


@dataclass(slots=True)
class _Job:
    id: str
    name: str
    data: dict[str, Any]
    options: dict[str, Any]
    created_at: int
    state: str = "waiting"
    progress: Any = 0
    attempts_made: int = 0
    failed_reason: str | None = None
    stacktrace: list[str] = field(default_factory=list)
    result: Any = None
    processed_at: int | None = None
    finished_at: int | None = None
    delay_ms: int = 0
    due_at: int = 0
    logs: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Schedule:
    record: ScheduleRecord
    options: dict[str, Any]


@dataclass
class _Queue:
    jobs: dict[str, _Job] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # FIFO: ids in arrival order
    delayed: dict[str, int] = field(default_factory=dict)  # id -> due (epoch ms)
    paused: bool = False
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    schedules: dict[str, _Schedule] = field(default_factory=dict)
    running: set[asyncio.Task[Any]] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def finished(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        self.wake.set()


class _LocalActiveJob:
    def __init__(self, job: _Job) -> None:
        self._job = job

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def name(self) -> str:
        return self._job.name

    @property
    def data(self) -> dict[str, Any]:
        return self._job.data

    @property
    def attempts_made(self) -> int:
        return self._job.attempts_made

    async def update_progress(self, progress: int | dict[str, Any]) -> None:
        self._job.progress = progress

    async def log(self, line: str) -> None:
        self._job.logs.append(line)


class InProcessBackend(JobBackend):
    """Runs jobs in this process's event loop. Same API and states; not durable."""

    kind = "in-process"
    durable = False

    def __init__(self, queues: tuple[str, ...] = ()) -> None:
        self._queues = {name: _Queue() for name in queues}
        self._timer_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._processor: Processor | None = None
        self._concurrency: dict[str, int] = {}
        self._closing = False

    # --- helpers -------------------------------------------------------------
    def _q(self, name: str) -> _Queue:
        return self._queues[name]

    def _record(self, queue: str, job: _Job) -> JobRecord:
        return JobRecord(
            id=job.id,
            queue=queue,
            name=job.name,
            data=job.data,
            state=job.state,
            progress=job.progress,
            attempts_made=job.attempts_made,
            attempts=int(job.options.get("attempts") or 1),
            failed_reason=job.failed_reason,
            stacktrace=list(job.stacktrace),
            result=job.result,
            created_at=job.created_at,
            processed_at=job.processed_at,
            finished_at=job.finished_at,
            delay_ms=job.delay_ms,
        )

    def _make_waiting(self, q: _Queue, job: _Job) -> None:
        job.state = "waiting"
        q.delayed.pop(job.id, None)
        q.waiting.append(job.id)
        q.wake.set()

    def _make_delayed(self, q: _Queue, job: _Job, delay_ms: int) -> None:
        job.state = "delayed"
        job.delay_ms = delay_ms
        job.due_at = now_ms() + delay_ms
        q.delayed[job.id] = job.due_at
        self._timer_wake.set()

    def _in_state(self, q: _Queue, state: str) -> list[_Job]:
        if state == "waiting":
            return [q.jobs[job_id] for job_id in q.waiting]
        if state == "paused":
            return [q.jobs[job_id] for job_id in q.waiting] if q.paused else []
        if state == "delayed":
            return [q.jobs[job_id] for job_id in sorted(q.delayed, key=q.delayed.__getitem__)]
        jobs = [job for job in q.jobs.values() if job.state == state]
        if state in ("completed", "failed"):
            jobs.sort(key=lambda job: job.finished_at or 0, reverse=True)
        return jobs

    def _remove(self, q: _Queue, job: _Job) -> None:
        q.jobs.pop(job.id, None)
        q.delayed.pop(job.id, None)
        if job.id in q.waiting:
            q.waiting.remove(job.id)

    def _apply_retention(self, q: _Queue, state: str, keep: Any) -> None:
        if keep is True:
            keep = {"count": 0}
        if not isinstance(keep, dict):
            return
        finished = self._in_state(q, state)  # newest first
        count = keep.get("count")
        age = keep.get("age")
        oldest_allowed = now_ms() - int(age) * 1000 if age is not None else None
        for index, job in enumerate(finished):
            too_many = count is not None and index >= int(count)
            too_old = oldest_allowed is not None and (job.finished_at or 0) < oldest_allowed
            if too_many or too_old:
                self._remove(q, job)

    # --- producing and inspecting ---------------------------------------------
    async def add(
        self, queue: str, name: str, data: dict[str, Any], options: dict[str, Any]
    ) -> str:
        q = self._q(queue)
        job_id = str(options.get("jobId") or next(q.ids))
        if job_id in q.jobs:
            return job_id
        job = _Job(job_id, name, data, dict(options), created_at=now_ms())
        q.jobs[job_id] = job
        delay = int(options.get("delay") or 0)
        if delay > 0:
            self._make_delayed(q, job, delay)
        else:
            self._make_waiting(q, job)
        return job_id

    async def get(self, queue: str, job_id: str) -> JobRecord | None:
        job = self._q(queue).jobs.get(job_id)
        return self._record(queue, job) if job else None

    async def logs(self, queue: str, job_id: str) -> list[str]:
        job = self._q(queue).jobs.get(job_id)
        return list(job.logs) if job else []

    async def list_jobs(self, queue: str, state: str, start: int, end: int) -> list[JobRecord]:
        jobs = self._in_state(self._q(queue), state)
        stop = None if end < 0 else end + 1
        return [self._record(queue, job) for job in jobs[start:stop]]

    async def counts(self, queue: str) -> dict[str, int]:
        q = self._q(queue)
        counts = dict.fromkeys(("waiting", "active", "completed", "failed", "delayed"), 0)
        for job in q.jobs.values():
            counts[job.state] += 1
        counts["paused"] = counts["waiting"] if q.paused else 0
        return counts

    async def retry(self, queue: str, job_id: str) -> None:
        q = self._q(queue)
        job = q.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r} in queue {queue!r}")
        if job.state != "failed":
            raise Conflict(f"job {job_id!r} is {job.state}; only a failed job can be retried")
        self._reset_for_retry(job)
        self._make_waiting(q, job)

    def _reset_for_retry(self, job: _Job) -> None:
        job.failed_reason, job.finished_at, job.processed_at, job.result = None, None, None, None

    async def retry_failed(self, queue: str) -> int:
        q = self._q(queue)
        failed = sorted(self._in_state(q, "failed"), key=lambda job: job.finished_at or 0)
        for job in failed:
            self._reset_for_retry(job)
            self._make_waiting(q, job)
        return len(failed)

    async def pause(self, queue: str) -> None:
        self._q(queue).paused = True

    async def resume(self, queue: str) -> None:
        q = self._q(queue)
        q.paused = False
        q.wake.set()

    async def is_paused(self, queue: str) -> bool:
        return self._q(queue).paused

    async def clean(self, queue: str, state: str, grace_ms: int, limit: int) -> list[str]:
        q = self._q(queue)
        cutoff = now_ms() - grace_ms
        removed: list[str] = []
        for job in self._in_state(q, state):
            stamp = job.finished_at if state in ("completed", "failed") else job.created_at
            if (stamp or 0) <= cutoff and (limit <= 0 or len(removed) < limit):
                self._remove(q, job)
                removed.append(job.id)
        return removed

    # --- schedules -------------------------------------------------------------
    def _next_run(self, record: ScheduleRecord, after_ms: int) -> int:
        if record.pattern:
            return next_cron_run(record.pattern, record.tz, after_ms)
        assert record.every_ms
        # Like BullMQ, `every` runs are aligned to multiples of the interval.
        return (after_ms // record.every_ms + 1) * record.every_ms

    async def upsert_schedule(
        self,
        queue: str,
        schedule_id: str,
        repeat: dict[str, Any],
        name: str,
        data: dict[str, Any],
        options: dict[str, Any],
    ) -> ScheduleRecord:
        q = self._q(queue)
        record = ScheduleRecord(
            id=schedule_id,
            queue=queue,
            name=name,
            data=data,
            pattern=repeat.get("pattern"),
            every_ms=repeat.get("every"),
            tz=repeat.get("tz"),
        )
        existing = q.schedules.get(schedule_id)
        same_timing = existing is not None and (
            (existing.record.pattern, existing.record.every_ms, existing.record.tz)
            == (record.pattern, record.every_ms, record.tz)
        )
        record.next_run_at = (
            existing.record.next_run_at
            if same_timing and existing
            else self._next_run(record, now_ms())
        )
        q.schedules[schedule_id] = _Schedule(record, dict(options))
        self._timer_wake.set()
        return record

    async def get_schedule(self, queue: str, schedule_id: str) -> ScheduleRecord | None:
        schedule = self._q(queue).schedules.get(schedule_id)
        return schedule.record if schedule else None

    async def list_schedules(self, queue: str) -> list[ScheduleRecord]:
        schedules = [s.record for s in self._q(queue).schedules.values()]
        return sorted(schedules, key=lambda record: record.next_run_at or 0)

    async def remove_schedule(self, queue: str, schedule_id: str) -> bool:
        return self._q(queue).schedules.pop(schedule_id, None) is not None

    # --- running -------------------------------------------------------------
    async def start_workers(self, processor: Processor, settings: WorkerSettings) -> None:
        self._processor = processor
        self._closing = False
        self._concurrency = dict(settings.concurrency)
        for queue in settings.concurrency:
            self._tasks.append(asyncio.create_task(self._dispatch(queue)))
        self._tasks.append(asyncio.create_task(self._timer()))

    async def _dispatch(self, queue: str) -> None:
        q = self._q(queue)
        limit = self._concurrency[queue]
        while not self._closing:
            if q.paused or not q.waiting or len(q.running) >= limit:
                q.wake.clear()
                await q.wake.wait()
                continue
            job = q.jobs[q.waiting.pop(0)]
            task = asyncio.create_task(self._run(queue, q, job))
            q.running.add(task)
            task.add_done_callback(q.finished)

    async def _run(self, queue: str, q: _Queue, job: _Job) -> None:
        assert self._processor is not None
        job.state, job.processed_at = "active", now_ms()
        try:
            result = await self._processor(queue, _LocalActiveJob(job))
        except asyncio.CancelledError:
            # Stopped at shutdown: back to waiting, as a stalled BullMQ job would be.
            job.state = "waiting"
            q.waiting.insert(0, job.id)
            raise
        except Exception as exc:
            self._failed(q, job, exc)
        else:
            job.attempts_made += 1
            job.state, job.result, job.finished_at = "completed", result, now_ms()
            self._apply_retention(q, "completed", job.options.get("removeOnComplete"))

    def _failed(self, q: _Queue, job: _Job, exc: Exception) -> None:
        job.attempts_made += 1
        job.failed_reason = str(exc) or type(exc).__name__
        job.stacktrace.append("".join(traceback.format_exception(exc)))
        attempts = int(job.options.get("attempts") or 1)
        permanent = isinstance(exc, PermanentJobError)
        if job.attempts_made < attempts and not permanent:
            delay = backoff_delay(job.options.get("backoff"), job.attempts_made)
            if delay > 0:
                self._make_delayed(q, job, delay)
            else:
                self._make_waiting(q, job)
            return
        job.state, job.finished_at = "failed", now_ms()
        self._apply_retention(q, "failed", job.options.get("removeOnFail"))

    async def _timer(self) -> None:
        """Promotes due delayed jobs and fires due schedules; sleeps until the next one."""
        while not self._closing:
            now = now_ms()
            upcoming: list[int] = []
            for queue, q in self._queues.items():
                for job_id, due in list(q.delayed.items()):
                    if due <= now:
                        self._make_waiting(q, q.jobs[job_id])
                    else:
                        heapq.heappush(upcoming, due)
                for schedule in q.schedules.values():
                    record = schedule.record
                    assert record.next_run_at is not None
                    if record.next_run_at <= now:
                        await self._fire(queue, schedule)
                    assert record.next_run_at is not None
                    heapq.heappush(upcoming, record.next_run_at)
            wait = (upcoming[0] - now_ms()) / 1000 if upcoming else 3600.0
            self._timer_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), max(wait, 0.001))

    async def _fire(self, queue: str, schedule: _Schedule) -> None:
        record = schedule.record
        assert record.next_run_at is not None
        options = {**schedule.options, "jobId": f"repeat:{record.id}:{record.next_run_at}"}
        await self.add(queue, record.name, dict(record.data), options)
        record.next_run_at = self._next_run(record, max(now_ms(), record.next_run_at))

    async def stop_workers(self, grace_seconds: float) -> None:
        self._closing = True
        for q in self._queues.values():
            q.wake.set()
        self._timer_wake.set()
        running = [task for q in self._queues.values() for task in q.running]
        if running:
            _, pending = await asyncio.wait(running, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def ping(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        await self.stop_workers(0)
