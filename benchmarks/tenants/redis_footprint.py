"""What Tenantry keeps in Redis per company and per job: the figures behind the Redis
sizes in docs/deployment.md.

`python -m benchmarks.tenants.redis_footprint [--companies 1000] [--jobs-per-company 10]`

Drives the real services (JobService on BullMQ with fair scheduling, the API request
rate, the read cache) in one leased Redis db of the loopback Redis, and after each
phase sums `MEMORY USAGE key SAMPLES 0` over every key of that db (so other dbs of the
server do not count). Bytes are Redis's own accounting of each key (value, key name,
per-key overhead), not the server's allocator slack, which adds ~10-30 % on top.
For comparison, the same email jobs added with bare bullmq `Queue.add`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis
from tests.redis_lease import leased_redis_db

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
QUEUE = "email"
# A typical email job: the addressee, a subject and a short templated body.
EMAIL = {
    "to": "someone@example.com",
    "subject": "Your weekly report is ready",
    "template": "weekly-report",
    "variables": {"name": "Alex Example", "reportUrl": "https://example.com/r/0123456789"},
}


@dataclass
class Footprint:
    keys: int
    bytes: int


async def footprint(redis: Redis, match: str = "*") -> Footprint:
    keys = total = 0
    async for key in redis.scan_iter(match=match, count=1000):
        usage = await redis.memory_usage(key, samples=0)
        keys += 1
        total += usage or 0
    return Footprint(keys, total)


async def jobs_phase(url: str, companies: int, per_company: int) -> tuple[int, int, int, int]:
    """Bytes while the jobs wait, after they completed (kept for the dashboard), after
    BullMQ's retention removed them (what stays per company), and the event stream."""
    from tenantry.jobs import BullMQBackend, HandlerRegistry, JobContext, JobService
    from tenantry.jobs.queues import QUEUE_NAMES
    from tenantry.settings import load_settings

    total = companies * per_company
    registry = HandlerRegistry()
    done = asyncio.Event()
    count = 0

    @registry.handler(QUEUE)
    async def noop(job: JobContext) -> None:
        nonlocal count
        count += 1
        if count == total:
            done.set()

    redis = Redis.from_url(url)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), redis_url=url, job_concurrency_email=20)
        service = JobService(settings, BullMQBackend(url, "bull", QUEUE_NAMES), registry)
        for company in range(companies):
            for _ in range(per_company):
                await service.add(QUEUE, "send", EMAIL, f"company-{company:05d}")
        waiting = (await footprint(redis)).bytes
        await service.start_workers([QUEUE])
        await asyncio.wait_for(done.wait(), timeout=600)
        await asyncio.sleep(1)  # the last completions' bookkeeping
        completed = (await footprint(redis)).bytes
        kept = await redis.zcard(f"bull:{QUEUE}:completed")  # JOB_KEEP_COMPLETED of them
        await service.stop_workers(5)
        await service.backend.clean(QUEUE, "completed", 0, 0)
        # BullMQ's event stream is capped (10,000 events), whatever the job count.
        events = (await footprint(redis, "*:events")).bytes
        retained = (await footprint(redis)).bytes - events
        completed = (completed - events - retained) // max(kept, 1)  # bytes per kept job
        await service.close()
    await redis.aclose()
    return waiting, completed, retained, events


async def bare_bullmq_waiting(url: str, total: int) -> int:
    from bullmq import Queue

    queue = Queue(QUEUE, {"connection": url, "prefix": "bare"})
    for _ in range(total):
        await queue.add("send", EMAIL, {"removeOnComplete": 1000})
    await queue.close()
    redis = Redis.from_url(url)
    size = (await footprint(redis, "bare:*")).bytes
    await redis.aclose()
    return size


async def rate_phase(url: str, companies: int) -> int:
    from tenantry.tenants.rate import RequestRate

    redis = Redis.from_url(url)
    rate = RequestRate(redis)
    for company in range(companies):
        await rate.hit(f"company-{company:05d}", 1000)
    size = (await footprint(redis, "tenantry:rate*")).bytes
    await redis.aclose()
    return size


async def cache_phase(url: str, companies: int, value_bytes: int) -> int:
    from tenantry.queries.cache_backends.redis_cache import RedisCache

    redis = Redis.from_url(url)
    cache = RedisCache(redis)
    value = b"x" * value_bytes
    for company in range(companies):
        await cache.put(f"company-{company:05d}", "dashboard:stats", value, 300, 0)
    size = (await footprint(redis, "tenantry:cache*")).bytes
    await redis.aclose()
    return size


async def run(companies: int, per_company: int, value_bytes: int) -> None:
    total = companies * per_company
    started = time.perf_counter()
    with leased_redis_db(REDIS) as url:
        waiting, completed, retained, events = await jobs_phase(url, companies, per_company)
    with leased_redis_db(REDIS) as url:
        bare = await bare_bullmq_waiting(url, total)
    with leased_redis_db(REDIS) as url:
        rate = await rate_phase(url, companies)
        cache = await cache_phase(url, companies, value_bytes)
    print(f"{companies:,} companies x {per_company} email jobs = {total:,} jobs")
    print("| what | bytes each |")
    print("| --- | ---: |")
    print(f"| waiting job, Tenantry (fair) | {waiting / total:,.0f} |")
    print(f"| waiting job, bare bullmq | {bare / total:,.0f} |")
    print(f"| completed job kept (the last JOB_KEEP_COMPLETED) | {completed:,} |")
    print(f"| per company once its jobs are cleaned | {retained / companies:,.0f} |")
    print(f"| BullMQ event stream of the queue (capped), in all | {events:,} |")
    print(f"| API rate window, per active company | {rate / companies:,.0f} |")
    print(f"| cached read of {value_bytes:,} B, per entry | {cache / companies:,.0f} |")
    print(f"({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--jobs-per-company", type=int, default=10)
    parser.add_argument("--cached-value-bytes", type=int, default=1024)
    args = parser.parse_args()
    asyncio.run(run(args.companies, args.jobs_per_company, args.cached_value_bytes))


if __name__ == "__main__":
    main()
