"""A noisy neighbour: company *whale* enqueues 25,000 jobs, then *minnow* 3.

    python -m benchmarks.tenants.noisy_neighbour [--whale 25000] [--concurrency 10]

The queue (ai-processing) is paused while they enqueue, then resumed with one worker
process (concurrency 10, no-op jobs). Side by side in one run, each in its own leased
Redis db: Tenantry's JobService on BullMQ with fair scheduling (the default), and bare
bullmq (Queue + Worker, FIFO). For each: minnow's wait (resume -> its last job done)
and how many whale jobs ran before minnow's last one. Goal: under 1 s, fewer than 10.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.redis_lease import leased_redis_db

QUEUE = "ai-processing"
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


class Recorder:
    def __init__(self, minnow_jobs: int) -> None:
        self.order: list[str] = []
        self.minnow_jobs = minnow_jobs
        self.done = asyncio.Event()
        self.started = 0.0
        self.finished = 0.0

    def ran(self, company: str) -> None:
        self.order.append(company)
        if company == "minnow" and self.order.count("minnow") == self.minnow_jobs:
            self.finished = time.perf_counter()
            self.done.set()

    def result(self) -> dict[str, Any]:
        last = len(self.order) - 1 - self.order[::-1].index("minnow")
        return {
            "minnow_wait_s": self.finished - self.started,
            "whale_ahead": self.order[:last].count("whale"),
        }


async def run_tenantry(url: str, whale: int, minnow: int, concurrency: int) -> dict[str, Any]:
    from tenantry.jobs import BullMQBackend, HandlerRegistry, JobContext, JobService
    from tenantry.jobs.queues import QUEUE_NAMES
    from tenantry.settings import load_settings

    registry = HandlerRegistry()
    recorder = Recorder(minnow)

    @registry.handler(QUEUE)
    async def noop(job: JobContext) -> None:
        recorder.ran(job.company_id)

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp), redis_url=url, job_concurrency_ai_processing=concurrency
        )
        service = JobService(settings, BullMQBackend(url, "bull", QUEUE_NAMES), registry)
        try:
            await service.pause(QUEUE)
            started = time.perf_counter()
            for _ in range(whale):
                await service.add(QUEUE, "task", {}, "whale")
            enqueue = time.perf_counter() - started
            for _ in range(minnow):
                await service.add(QUEUE, "task", {}, "minnow")
            await service.start_workers([QUEUE])
            recorder.started = time.perf_counter()
            await service.resume(QUEUE)
            await asyncio.wait_for(recorder.done.wait(), 600)
        finally:
            await service.stop_workers(0)
            await service.close()
    return {**recorder.result(), "enqueue_per_s": whale / enqueue}


async def run_bullmq(url: str, whale: int, minnow: int, concurrency: int) -> dict[str, Any]:
    from bullmq import Queue, Worker

    recorder = Recorder(minnow)

    async def noop(job: Any, _token: str) -> None:
        recorder.ran(job.data["companyId"])

    queue = Queue(QUEUE, {"connection": url})
    await queue.pause()
    started = time.perf_counter()
    for _ in range(whale):
        await queue.add("task", {"companyId": "whale"})
    enqueue = time.perf_counter() - started
    for _ in range(minnow):
        await queue.add("task", {"companyId": "minnow"})
    worker = Worker(QUEUE, noop, {"connection": url, "concurrency": concurrency})
    try:
        recorder.started = time.perf_counter()
        await queue.resume()
        await asyncio.wait_for(recorder.done.wait(), 600)
    finally:
        await worker.close(force=True)
        await queue.close()
    return {**recorder.result(), "enqueue_per_s": whale / enqueue}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--whale", type=int, default=25_000)
    parser.add_argument("--minnow", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    print(
        f"whale {args.whale:,} jobs then minnow {args.minnow}, queue paused then resumed, "
        f"one worker of concurrency {args.concurrency}, Redis {REDIS}\n"
    )
    results = {}
    for name, run in (("Tenantry (fair)", run_tenantry), ("bullmq (bare, FIFO)", run_bullmq)):
        with leased_redis_db(REDIS, owner="bench") as url:
            results[name] = asyncio.run(run(url, args.whale, args.minnow, args.concurrency))
        print(f"  {name}: {results[name]}", file=sys.stderr, flush=True)
    print(f"{'contestant':<24}{'minnow wait':>13}{'whale jobs ahead':>18}{'enqueue/s':>11}")
    for name, result in results.items():
        print(
            f"{name:<24}{result['minnow_wait_s']:>12.3f}s{result['whale_ahead']:>18,}"
            f"{result['enqueue_per_s']:>11,.0f}"
        )
    fair, fifo = results["Tenantry (fair)"], results["bullmq (bare, FIFO)"]
    print(
        f"\nminnow waits {fifo['minnow_wait_s'] / fair['minnow_wait_s']:,.0f}x less with "
        f"Tenantry ({fair['whale_ahead']} whale jobs ahead instead of {fifo['whale_ahead']:,})"
    )


if __name__ == "__main__":
    main()
