"""`BullMQBackend`: the official `bullmq` package on Redis.

Same keys and Lua scripts as Node BullMQ, so Node producers, workers and Bull Board
share the queues. Durable: a job survives a crashed worker (its lock expires, the
stalled-job check puts it back) and a restarted API.

Fair across companies (tenantry/jobs/fairness.py): Tenantry's jobs are staged per
company and dispatched into BullMQ's `wait` by the scripts in `bullmq_fair`.

On a Redis Cluster (a `redis+cluster://` URL) each queue's BullMQ name is its name as a
hash tag, `{email}`, with the prefix unchanged: its keys are `bull:{email}:wait`,
`bull:{email}:<job id>`..., all in the slot of `email`, as BullMQ's scripts need, while
the six queues spread over the cluster's slots (BullMQ's advice for several queues; a
tag in the prefix, `{bull}`, would put every queue in one slot, on one master). A Node
producer or worker shares a queue by that name and prefix, on a cluster connection:
`new Queue('{email}', { prefix: 'bull', connection: new IORedis.Cluster([...]) })`.
On one server the names and keys are BullMQ's plain ones (`bull:email:wait`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tenantry import redis_clients
from tenantry.errors import Conflict, NotFound
from tenantry.jobs.backends import bullmq_fair
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
)
from tenantry.jobs.fairness import CompanyLimits, FairSettings, Limits
from tenantry.redis_clients import AnyRedis
from tenantry.redis_url import is_cluster_url, one_slot

log = logging.getLogger("tenantry.jobs")


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

    @property
    def telemetry_metadata(self) -> str | None:
        metadata = self._job.opts.get("tm")  # stored as Node BullMQ stores it (`_bull_options`)
        return metadata if isinstance(metadata, str) else None

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


# Options that take a job past the staging (BullMQ places it itself: delayed, prioritized...).
_UNSTAGED_OPTIONS = ("delay", "priority", "lifo", "parent", "deduplication", "repeat", "de")
# A company's index is read in chunks of this many ids (one script call each).
COMPANY_CHUNK = 1000

# Per-minute points BullMQ keeps of finished jobs (what Bull Board charts): a day. Its
# running totals beside them are what the figures read (`tenantry_jobs_*_total`).
_METRICS_POINTS = 24 * 60

# How long a force-closed BullMQ worker gets to finish before its task is cancelled.
_FORCE_CLOSE_SECONDS = 5.0

# What "Redis is unreachable" looks like from redis-py (and so from bullmq).
REDIS_DOWN = redis_clients.REDIS_DOWN


def _bull_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options as Node BullMQ stores them: `telemetry` is `tm` (metadata) and `omc`
    (omitContext) in the job's `opts`, which the Python package does not encode."""
    telemetry = options.get("telemetry")
    if not isinstance(telemetry, dict):
        return options
    stored = {key: value for key, value in options.items() if key != "telemetry"}
    if telemetry.get("metadata") is not None:
        stored["tm"] = telemetry["metadata"]
    if telemetry.get("omitContext") is not None:
        stored["omc"] = telemetry["omitContext"]
    return stored


def _producer_client(redis_url: str) -> AnyRedis:
    return redis_clients.client(
        redis_url,
        decode_responses=True,  # what bullmq's own connections use
        single_connection_client=True,
        socket_connect_timeout=5,
        retry=Retry(ExponentialBackoff(cap=1, base=0.1), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, BusyLoadingError],
    )


def _worker_connection(redis_url: str) -> str | AnyRedis:
    """A server URL as it is (bullmq makes its own clients from it); on a cluster, a
    client that rides out a failover: retried for about half a minute, 2 s apart at most."""
    if not is_cluster_url(redis_url):
        return redis_url
    return redis_clients.client(
        redis_url,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=2, base=0.1), 20),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, BusyLoadingError],
    )


async def _close_after_late_jobs(workers: list[Any]) -> None:
    """bullmq closes a worker's connections while a job it cancelled, or fetched as it
    closed, may still be recording its end, which reopens a connection nothing closes
    again (leaked until garbage collection): let those jobs finish (bounded), then close
    once more (closing twice is harmless)."""
    late = [task for worker in workers for task in worker.processing if not task.done()]
    if late:
        await asyncio.wait(late, timeout=_FORCE_CLOSE_SECONDS)
    for worker in workers:
        with contextlib.suppress(Exception):
            await worker.backend.close(force=True)


def _figures(now: int, answer: list[Any]) -> QueueFigures:
    waiting, since, completed, failed = (int(value) for value in answer)
    return QueueFigures(
        waiting=waiting,
        oldest_waiting_age_seconds=age_seconds(now, since if since >= 0 else None),
        completed_total=completed,
        failed_total=failed,
    )


class BullMQBackend(JobBackend):
    """The queues as BullMQ queues on Redis: the same keys and scripts as Node BullMQ."""

    kind = "bullmq"
    durable = True

    def __init__(self, redis_url: str, prefix: str = "bull", queues: tuple[str, ...] = ()) -> None:
        from bullmq import Queue

        self.redis_url = redis_url
        self.prefix = prefix
        cluster = is_cluster_url(redis_url)
        self.bull_names = {name: one_slot(name, cluster) for name in queues}  # see above
        # One Queue (one connection) per queue name: Queue objects are the producer side.
        # Their clients give up within seconds when Redis is down (bullmq's own default
        # retries for minutes), so a request that enqueues gets a 503, not a hang.
        self._queues = {
            name: Queue(bull, {"connection": _producer_client(redis_url), "prefix": prefix})
            for name, bull in self.bull_names.items()
        }
        self._workers: list[Any] = []
        self._runs: list[asyncio.Task[Any]] = []
        self.fair = FairSettings()
        self._scripts = {name: bullmq_fair.register(q.client) for name, q in self._queues.items()}
        self._kicks: dict[str, int] = {}
        self._kicking: dict[str, asyncio.Task[Any]] = {}
        self._dispatcher: asyncio.Task[Any] | None = None

    def _queue(self, name: str) -> Any:
        return self._queues[name]

    def _key(self, queue: str, name: str = "") -> str:
        return f"{self.prefix}:{self.bull_names[queue]}:{name}"

    def configure_fairness(self, settings: FairSettings) -> None:
        self.fair = settings

    # --- fairness ------------------------------------------------------------
    async def dispatch(self, queue: str) -> int:
        if not self.fair.enabled:
            return 0
        script = self._scripts[queue]["dispatch"]
        args = [now_ms(), self.fair.depth(queue), self.fair.grace_ms]
        return int(await script(keys=[self._key(queue)], args=args))

    async def set_company_limits(self, queue: str, company_id: str, limits: Limits) -> None:
        client = self._queue(queue).client
        plain = CompanyLimits.of(limits)
        if plain.is_default:
            await client.hdel(self._key(queue, "fair:limits"), company_id)
        else:
            await client.hset(self._key(queue, "fair:limits"), company_id, plain.encode())
        await self.dispatch(queue)  # a raised limit lets held jobs go at once

    def _kick(self, queue: str, every: int) -> None:
        """After every `every` jobs this worker finished, top `wait` up (one at a time)."""
        self._kicks[queue] = self._kicks.get(queue, 0) + 1
        if self._kicks[queue] < every:
            return
        running = self._kicking.get(queue)
        if running is not None and not running.done():
            return
        self._kicks[queue] = 0
        self._kicking[queue] = asyncio.create_task(self._quiet_dispatch(queue))

    async def _quiet_dispatch(self, queue: str) -> None:
        try:
            await self.dispatch(queue)
        except Exception as exc:  # the background loop tries again soon
            log.debug("dispatch on %s failed: %s", queue, exc)

    async def _dispatch_loop(self, queues: list[str]) -> None:
        while True:
            for queue in queues:
                await self._quiet_dispatch(queue)
            await asyncio.sleep(self.fair.dispatch_seconds)

    async def _release_slot(self, queue: str, job: Any) -> None:
        company = job.data.get("companyId") if isinstance(job.data, dict) else None
        if isinstance(company, str):
            key = self._key(queue, f"fair:a:{company}")
            with contextlib.suppress(Exception):  # the dispatcher drops it later anyway
                await self._queue(queue).client.zrem(key, str(job.id))

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
        options = _bull_options(options)
        company = data.get("companyId")
        if not isinstance(company, str):
            job = await self._queue(queue).add(name, data, options)
            return str(job.id)
        if any(options.get(option) for option in _UNSTAGED_OPTIONS):
            # BullMQ places it (delayed, prioritized...); it joins the company's index.
            job = await self._queue(queue).add(name, data, options)
            index = self._key(queue, f"fair:i:{company}")
            await self._queue(queue).client.zadd(index, {str(job.id): int(job.timestamp)})
            return str(job.id)
        from bullmq import Job

        q = self._queue(queue)
        job = Job(q, name, data, {**q.jobsOpts, **options})
        packed_args, json_data, packed_opts = q.scripts.addJobArgs(job)
        args = [
            packed_args, json_data, packed_opts, job.timestamp, company,
            "1" if self.fair.enabled else "0", self.fair.depth(queue), self.fair.grace_ms,
        ]  # fmt: skip
        return str(await self._scripts[queue]["add"](keys=[self._key(queue)], args=args))

    async def get(self, queue: str, job_id: str) -> JobRecord | None:
        # State first: the data read after it is at least as new (never "completed"
        # without its result). An id in no state is no job: its key, if any, is another
        # of the queue's (`bull:<queue>:meta`, a job's `:logs`), never read as a job;
        # unless it is staged (waiting for its company's turn).
        state = await self._state(queue, job_id)
        if state == "unknown":
            if await self._is_staged(queue, job_id):
                state = "waiting"
            else:
                # A dispatch may have moved it from staging into the queue between the
                # two reads: a job only ever moves that way, so a second look finds it.
                state = await self._state(queue, job_id)
                if state == "unknown":
                    return None
        job = await self._queue(queue).getJob(job_id)
        if job is None:
            return None
        return self._record(queue, job, state)

    async def _is_staged(self, queue: str, job_id: str) -> bool:
        key = self._key(queue, "fair:all")
        return await self._queue(queue).client.zscore(key, job_id) is not None

    async def _jobs_by_id(self, queue: str, ids: list[str]) -> dict[str, Any]:
        from bullmq import Job

        if not ids:
            return {}
        q = self._queue(queue)
        async with q.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self._key(queue, job_id))
            raws = await pipe.execute()
        pairs = zip(ids, raws, strict=True)
        return {job_id: Job.fromJSON(q, raw, job_id) for job_id, raw in pairs if raw}

    async def _staged_ids(self, queue: str, start: int, end: int) -> list[str]:
        if end < start:
            return []
        key = self._key(queue, "fair:all")
        return [str(i) for i in await self._queue(queue).client.zrange(key, start, end)]

    async def _company_states(self, queue: str, company_id: str, newest_first: bool) -> Any:
        """(id, state) for each job of the company's index, chunk by chunk; prunes the gone."""
        script = self._scripts[queue]["states"]
        gone: list[str] = []
        offset = 0
        while True:
            out = await script(
                keys=[self._key(queue)],
                args=[company_id, offset, COMPANY_CHUNK, int(newest_first)],
            )
            scanned = int(out[0])
            for job_id, state in zip(out[1::2], out[2::2], strict=True):
                if state:
                    yield str(job_id), str(state)
                else:
                    gone.append(str(job_id))
            if scanned < COMPANY_CHUNK:
                break
            offset += COMPANY_CHUNK
        if gone:
            await self._queue(queue).client.zrem(self._key(queue, f"fair:i:{company_id}"), *gone)

    async def company_counts(self, queue: str, company_id: str) -> JobCounts:
        counts = dict.fromkeys(("waiting", "active", "completed", "failed", "delayed"), 0)
        async for _, state in self._company_states(queue, company_id, False):
            if state in counts:
                counts[state] += 1
        paused = await self.is_paused(queue)
        return JobCounts(**counts, paused=counts["waiting"] if paused else 0)

    async def company_jobs(
        self, queue: str, state: str, start: int, end: int, company_id: str
    ) -> list[JobRecord]:
        if state == "paused" and not await self.is_paused(queue):
            return []
        wanted = "waiting" if state == "paused" else state
        newest_first = state in ("completed", "failed")
        matched: list[str] = []
        async for job_id, job_state in self._company_states(queue, company_id, newest_first):
            if job_state == wanted:
                matched.append(job_id)
                if len(matched) > end:
                    break
        ids = matched[start : end + 1]
        jobs = await self._jobs_by_id(queue, ids)
        return [self._record(queue, jobs[i], state) for i in ids if i in jobs]

    async def logs(self, queue: str, job_id: str) -> list[str]:
        result = await self._queue(queue).getJobLogs(job_id)
        return [str(line) for line in result["logs"]]

    async def list_jobs(self, queue: str, state: str, start: int, end: int) -> list[JobRecord]:
        q = self._queue(queue)
        if state == "paused" and not await q.isPaused():
            return []
        ascending = state not in ("completed", "failed")
        jobs = await q.getJobs([_BULL_TYPES[state]], start, end, ascending)
        records = [self._record(queue, job, state) for job in jobs]
        if state in ("waiting", "paused") and len(records) < end - start + 1:
            # After what is in `wait` (it runs first), the staged jobs, oldest first.
            raw = await q.getJobCounts("waiting", "prioritized")
            in_wait = int(raw["waiting"]) + int(raw["prioritized"])
            first = max(start - in_wait, 0)
            ids = await self._staged_ids(queue, first, end - in_wait)
            staged = await self._jobs_by_id(queue, ids)
            records += [self._record(queue, staged[i], state) for i in ids if i in staged]
        return records

    async def counts(self, queue: str) -> JobCounts:
        q = self._queue(queue)
        raw = await q.getJobCounts(
            "waiting", "prioritized", "active", "completed", "failed", "delayed"
        )
        staged = int(await q.client.zcard(self._key(queue, "fair:all")))
        waiting = int(raw["waiting"]) + int(raw["prioritized"]) + staged
        paused = await q.isPaused()
        return JobCounts(
            waiting=waiting,
            active=int(raw["active"]),
            completed=int(raw["completed"]),
            failed=int(raw["failed"]),
            delayed=int(raw["delayed"]),
            paused=waiting if paused else 0,
        )

    async def figures(self, queues: Sequence[str]) -> dict[str, QueueFigures]:
        # One script call a queue, all at once (each queue has its own connection).
        now = now_ms()
        calls = [self._scripts[q]["figures"](keys=[self._key(q)], args=[now]) for q in queues]
        answers = await asyncio.gather(*calls)
        return {q: _figures(now, answer) for q, answer in zip(queues, answers, strict=True)}

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
        await self.dispatch(queue)

    async def is_paused(self, queue: str) -> bool:
        return bool(await self._queue(queue).isPaused())

    async def clean(self, queue: str, state: str, grace_ms: int, limit: int) -> list[str]:
        removed = await self._queue(queue).clean(grace_ms, limit, _BULL_CLEAN_TYPES[state])
        ids = [str(job_id) for job_id in removed]
        if state in ("waiting", "paused") and (limit <= 0 or len(ids) < limit):
            if state == "paused" and not await self.is_paused(queue):
                return ids
            left = 0 if limit <= 0 else limit - len(ids)
            script = self._scripts[queue]["clean_staged"]
            staged = await script(keys=[self._key(queue)], args=[now_ms() - grace_ms, left])
            ids += [str(job_id) for job_id in staged]
        return ids

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

        def processor_for(queue: str, kick_every: int) -> Callable[[Any, str], Awaitable[Any]]:
            # Exactly two parameters: BullMQ passes an abort signal to a third.
            async def process(job: Any, _token: str) -> Any:
                finished = True  # the job's last run: its company slot is given back
                try:
                    return await processor(queue, _BullActiveJob(job))
                except PermanentJobError as exc:
                    raise UnrecoverableError(str(exc)) from exc
                except Exception:
                    finished = int(job.attemptsMade) + 1 >= int(job.opts.get("attempts") or 1)
                    raise
                finally:
                    if self.fair.enabled:
                        if finished:
                            await self._release_slot(queue, job)
                        self._kick(queue, kick_every)

            return process

        for queue, concurrency in settings.concurrency.items():
            worker = Worker(
                self.bull_names[queue],
                processor_for(queue, max(1, concurrency // 2)),
                {
                    "connection": _worker_connection(self.redis_url),
                    "prefix": self.prefix,
                    "concurrency": concurrency,
                    "lockDuration": settings.lock_duration_ms,
                    "stalledInterval": settings.stalled_interval_ms,
                    "maxStalledCount": settings.max_stalled_count,
                    # After a lost connection (a failover) fetch again within a second,
                    # not after bullmq's 15 s.
                    "runRetryDelay": 1000,
                    # Finished jobs counted in Redis, for every worker of the deployment.
                    "metrics": {"maxDataPoints": _METRICS_POINTS},
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
        if self.fair.enabled:
            # Workers top `wait` up as they finish jobs; this loop covers the rest (a
            # queue resumed elsewhere, limits freeing up, Node workers on the queue).
            queues = list(settings.concurrency)
            self._dispatcher = asyncio.create_task(self._dispatch_loop(queues))

    async def stop_workers(self, grace_seconds: float) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
        kicking, self._kicking = list(self._kicking.values()), {}
        await asyncio.gather(*kicking, return_exceptions=True)
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
        await _close_after_late_jobs(workers)

    async def ping(self) -> dict[str, Any]:
        first = next(iter(self._queues.values()))
        await redis_clients.ping(first.client)
        return {}

    async def close(self) -> None:
        await self.stop_workers(0)
        for q in self._queues.values():
            with contextlib.suppress(Exception):
                await q.close()
