"""`InProcessBackend`: BullMQ's behaviour in the event loop of one process, for
running without Redis. Same options and states; not durable: jobs live in memory.

Fair across companies as the BullMQ backend is (tenantry/jobs/fairness.py): waiting
jobs are kept per company and the next one to run is taken round robin by weight,
skipping companies at their concurrency or rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import traceback
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from tenantry.errors import Conflict, NotFound
from tenantry.jobs.backends.base import (
    JobBackend,
    JobCounts,
    JobRecord,
    PermanentJobError,
    Processor,
    QueueFigures,
    ScheduleRecord,
    WorkerSettings,
    age_seconds,
    now_ms,
    telemetry_of,
)
from tenantry.jobs.fairness import UNLIMITED, CompanyLimits, FairSettings, Limits


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
    waiting: dict[str, None] = field(default_factory=dict)  # ids in arrival order
    # Fair scheduling: each company's waiting ids, the round robin of companies with
    # waiting jobs, the rest of a turn cut short, running jobs and recent starts.
    staged: dict[str, deque[str]] = field(default_factory=dict)
    ring: deque[str] = field(default_factory=deque)
    credit: dict[str, int] = field(default_factory=dict)
    active: Counter[str] = field(default_factory=Counter)
    starts: dict[str, deque[int]] = field(default_factory=dict)
    # Every job of a company (company views cost the company's jobs, not the queue's).
    index: dict[str, dict[str, None]] = field(default_factory=dict)
    delayed: dict[str, int] = field(default_factory=dict)  # id -> due (epoch ms)
    paused: bool = False
    completed_total: int = 0  # jobs finished since the queue began (the figures' totals)
    failed_total: int = 0
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

    @property
    def telemetry_metadata(self) -> str | None:
        return telemetry_of(self._job.options)

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
        self.fair = FairSettings()
        self._limits: dict[tuple[str, str], CompanyLimits] = {}

    def configure_fairness(self, settings: FairSettings) -> None:
        self.fair = settings

    async def set_company_limits(self, queue: str, company_id: str, limits: Limits) -> None:
        self._limits[(queue, company_id)] = CompanyLimits.of(limits)
        self._q(queue).wake.set()

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

    @staticmethod
    def _company(job: _Job) -> str:
        company = job.data.get("companyId")
        return company if isinstance(company, str) else ""

    def _make_waiting(self, q: _Queue, job: _Job, front: bool = False) -> None:
        job.state = "waiting"
        q.delayed.pop(job.id, None)
        if front:
            q.waiting = {job.id: None, **q.waiting}
        else:
            q.waiting[job.id] = None
        if self.fair.enabled:
            company = self._company(job)
            staged = q.staged.get(company)
            if staged is None:
                staged = q.staged[company] = deque()
                q.ring.append(company)
            if front:
                staged.appendleft(job.id)
            else:
                staged.append(job.id)
        q.wake.set()

    def _unstage(self, q: _Queue, job: _Job) -> None:
        company = self._company(job)
        staged = q.staged.get(company)
        if staged is None or job.id not in staged:
            return
        staged.remove(job.id)
        if not staged:
            self._drop_company(q, company)

    def _drop_company(self, q: _Queue, company: str) -> None:
        del q.staged[company]
        q.credit.pop(company, None)
        with contextlib.suppress(ValueError):
            q.ring.remove(company)

    def _next(self, queue: str, q: _Queue) -> tuple[str | None, int | None]:
        """The next job to run (round robin by weight, within limits), or None and when
        a rate-limited company may start again (epoch ms), if that is what holds it."""
        if not self.fair.enabled:
            return (next(iter(q.waiting)) if q.waiting else None), None
        now = now_ms()
        soonest: int | None = None
        idle = 0
        while q.ring and idle < len(q.ring):
            company = q.ring[0]
            limits = self._limits.get((queue, company), UNLIMITED)
            blocked = limits.concurrency is not None and q.active[company] >= limits.concurrency
            if limits.per_minute is not None and not blocked:
                starts = q.starts.setdefault(company, deque())
                while starts and starts[0] <= now - 60_000:
                    starts.popleft()
                if len(starts) >= limits.per_minute:
                    blocked = True
                    free_at = starts[0] + 60_000 if starts else now + 60_000
                    soonest = free_at if soonest is None else min(soonest, free_at)
            if blocked:
                q.ring.rotate(-1)
                idle += 1
                continue
            staged = q.staged[company]
            job_id = staged.popleft()
            credit = min(q.credit.get(company, limits.weight), limits.weight) - 1
            if not staged:
                self._drop_company(q, company)
            elif credit > 0:
                q.credit[company] = credit  # keeps its place for the rest of its turn
            else:
                q.credit.pop(company, None)
                q.ring.rotate(-1)
            if limits.per_minute is not None:
                q.starts.setdefault(company, deque()).append(now)
            return job_id, None
        return None, soonest

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
            del q.waiting[job.id]
            self._unstage(q, job)
        index = q.index.get(self._company(job))
        if index is not None:
            index.pop(job.id, None)

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
        q.index.setdefault(self._company(job), {})[job_id] = None
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

    def _company_in_state(self, q: _Queue, state: str, company_id: str) -> list[_Job]:
        if state == "paused" and not q.paused:
            return []
        wanted = "waiting" if state == "paused" else state
        ids = q.index.get(company_id, {})
        jobs = [q.jobs[i] for i in ids if i in q.jobs and q.jobs[i].state == wanted]
        if wanted in ("completed", "failed"):
            jobs.sort(key=lambda job: job.finished_at or 0, reverse=True)
        elif wanted == "delayed":
            jobs.sort(key=lambda job: job.due_at)
        return jobs

    async def company_counts(self, queue: str, company_id: str) -> JobCounts:
        q = self._q(queue)
        counts = dict.fromkeys(("waiting", "active", "completed", "failed", "delayed"), 0)
        for job_id in q.index.get(company_id, {}):
            job = q.jobs.get(job_id)
            if job is not None and job.state in counts:
                counts[job.state] += 1
        return JobCounts(**counts, paused=counts["waiting"] if q.paused else 0)

    async def company_jobs(
        self, queue: str, state: str, start: int, end: int, company_id: str
    ) -> list[JobRecord]:
        jobs = self._company_in_state(self._q(queue), state, company_id)
        return [self._record(queue, job) for job in jobs[start : end + 1]]

    async def counts(self, queue: str) -> JobCounts:
        q = self._q(queue)
        counts = dict.fromkeys(("waiting", "active", "completed", "failed", "delayed"), 0)
        for job in q.jobs.values():
            counts[job.state] += 1
        return JobCounts(**counts, paused=counts["waiting"] if q.paused else 0)

    async def figures(self, queues: Sequence[str]) -> dict[str, QueueFigures]:
        return {queue: self._figures(self._q(queue), now_ms()) for queue in queues}

    def _figures(self, q: _Queue, now: int) -> QueueFigures:
        # `waiting` is in arrival order, so its first job has waited longest (a job a
        # shutdown put back in front too); due delayed jobs wait for the timer.
        due = [at for at in q.delayed.values() if at <= now]
        first = next(iter(q.waiting), None)
        since = list(due)
        if first is not None:
            job = q.jobs[first]
            since.append(job.created_at + int(job.options.get("delay") or 0))
        return QueueFigures(
            waiting=len(q.waiting) + len(due),
            oldest_waiting_age_seconds=age_seconds(now, min(since, default=None)),
            completed_total=q.completed_total,
            failed_total=q.failed_total,
        )

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
            job_id, free_at = self._next(queue, q)
            if job_id is None:  # every company with waiting jobs is at a limit
                q.wake.clear()
                timeout = None if free_at is None else max(free_at - now_ms(), 1) / 1000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(q.wake.wait(), timeout)
                continue
            del q.waiting[job_id]
            job = q.jobs[job_id]
            q.active[self._company(job)] += 1
            task = asyncio.create_task(self._run(queue, q, job))
            q.running.add(task)
            task.add_done_callback(q.finished)

    async def _run(self, queue: str, q: _Queue, job: _Job) -> None:
        assert self._processor is not None
        job.state, job.processed_at = "active", now_ms()
        company = self._company(job)  # its slot was taken when it was picked (_dispatch)
        try:
            result = await self._processor(queue, _LocalActiveJob(job))
        except asyncio.CancelledError:
            # Stopped at shutdown: back to waiting, as a stalled BullMQ job would be.
            self._make_waiting(q, job, front=True)
            raise
        except Exception as exc:
            self._failed(q, job, exc)
        else:
            job.attempts_made += 1
            job.state, job.result, job.finished_at = "completed", result, now_ms()
            q.completed_total += 1
            self._apply_retention(q, "completed", job.options.get("removeOnComplete"))
        finally:
            q.active[company] -= 1
            if q.active[company] <= 0:
                del q.active[company]

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
        q.failed_total += 1
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
