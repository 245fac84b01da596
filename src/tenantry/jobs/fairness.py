"""Fair, limited, per-company queues: the design, and the small pieces both backends share.

Every queue is shared by every company; without care the first to enqueue 25,000 jobs
makes everyone else wait for all of them. So a job enqueued through Tenantry does not
go straight to the queue's run list: it is *staged* per company, and a dispatcher hands
jobs to the run list round robin across companies (a company of weight w gets w turns
to a weight-1 company's one), skipping a company at its concurrency or rate limit.

On BullMQ (backends/bullmq_fair.py has the keys and the Lua) a job gets its normal
BullMQ hash `bull:<queue>:<id>` at once (so GET by id, Bull Board by id and events all
work), but its id goes to a per-company staging zset instead of `wait`; one atomic
script ("dispatch") moves a batch into BullMQ's own `wait` list, keeping it shallow
(JOB_FAIR_WAIT_DEPTH, default twice the queue's concurrency). Dispatch runs inside the
add script when `wait` is low, in Tenantry's workers as they finish jobs, on resume,
and in a light background loop (JOB_FAIR_DISPATCH_SECONDS), which is also what feeds
Node workers on the same queue: from `wait` on, everything is plain BullMQ.

Why this and not BullMQ's own tools: priorities could order companies, but cannot hold
back a company at its concurrency or rate; BullMQ's rate limiter and global
concurrency are per queue, not per company; BullMQ Pro's groups (the anchor) are paid
and Node only. Staging keeps BullMQ's data layout untouched and needs no change to its
scripts: workers, Node producers and Bull Board see ordinary jobs.

What to know:
- Jobs a Node producer adds straight into `wait` are still run, in arrival order among
  what is in `wait`; they are not subject to fairness or company limits.
- Delayed jobs, prioritized jobs, retries (with or without backoff) and schedule runs go
  to BullMQ's delayed/wait lists as usual; fairness applies to a job's first enqueue.
- Counts: `waiting` counts staged jobs (JobService.queue_stats); Bull Board's own count
  shows only what is in `wait`, and a staged job's state in Bull Board reads "unknown"
  until it is dispatched.
- Concurrency per company: a slot is taken when a job is dispatched and given back when
  it finishes. A slot whose job is finished, gone, or neither locked by a worker nor in
  `wait` once its grace (the lock duration) has passed is dropped by the dispatcher: a
  worker killed mid-job loses its lock, so its slot is recovered.
- Rate per company: jobs dispatched in the last 60 s (a sliding log), at most
  `per_minute`. A limited job waits in staging; it is never failed or dropped.
- JOB_FAIR_SCHEDULING=false is plain BullMQ FIFO: no staging, no fairness, no limits.

Limits come from a `LimitSource` (the tenants service; `tenantry.tenants.limits`
satisfies these protocols structurally: this package must not import tenantry.tenants,
which imports it), are cached per process for JOB_LIMITS_CACHE_SECONDS, and written
where the dispatcher reads them (a Redis hash per queue on BullMQ).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Limits(Protocol):
    """One company's share of one queue (tenantry.tenants.limits.QueueLimits)."""

    @property
    def weight(self) -> int: ...
    @property
    def concurrency(self) -> int | None: ...
    @property
    def per_minute(self) -> int | None: ...


class LimitSource(Protocol):
    """Where limits come from (tenantry.tenants.limits.QueueLimitSource)."""

    async def queue_limits(self, company_id: str, queue: str) -> Limits: ...


@dataclass(frozen=True, slots=True)
class CompanyLimits:
    """A plain `Limits`: weight 1 and unlimited by default."""

    weight: int = 1
    concurrency: int | None = None
    per_minute: int | None = None

    @classmethod
    def of(cls, limits: Limits) -> CompanyLimits:
        return cls(max(1, int(limits.weight)), limits.concurrency, limits.per_minute)

    @property
    def is_default(self) -> bool:
        return self.weight == 1 and self.concurrency is None and self.per_minute is None

    def encode(self) -> str:
        """`weight|concurrency|per_minute`, empty for unlimited: what the Lua reads."""
        concurrency = "" if self.concurrency is None else str(self.concurrency)
        rate = "" if self.per_minute is None else str(self.per_minute)
        return f"{self.weight}|{concurrency}|{rate}"


UNLIMITED = CompanyLimits()


@dataclass(frozen=True, slots=True)
class FairSettings:
    """How a backend schedules: given to it by JobService (from settings)."""

    enabled: bool = True
    wait_depth: dict[str, int] | None = None  # queue -> jobs kept in `wait`; None: 20
    grace_ms: int = 30_000  # a slot's life without a lock (the job lock duration)
    dispatch_seconds: float = 0.5  # the background dispatch loop's period

    def depth(self, queue: str) -> int:
        return (self.wait_depth or {}).get(queue, 20)


class LimitCache:
    """Limits per (company, queue), fetched from the source at most every `ttl` seconds."""

    def __init__(self, source: LimitSource | None, ttl: float) -> None:
        self.source = source
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, CompanyLimits]] = {}

    def forget(self, company_id: str) -> None:
        for key in [key for key in self._entries if key[0] == company_id]:
            del self._entries[key]

    async def get(self, company_id: str, queue: str) -> tuple[CompanyLimits, bool]:
        """The limits, and whether they were (re)fetched now (so to be written again)."""
        if self.source is None:
            return UNLIMITED, False
        now = time.monotonic()
        cached = self._entries.get((company_id, queue))
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1], False
        limits = CompanyLimits.of(await self.source.queue_limits(company_id, queue))
        self._entries[(company_id, queue)] = (now, limits)
        return limits, True
