"""Enqueue and drain N no-op jobs: Tenantry's job layer beside bare bullmq and its peers.

    python -m benchmarks.jobs.drain [--jobs 10000] [--timeout 120] [--only tenantry,bullmq]

Every contestant runs in its own process, against the same loopback Redis, each in
its own Redis db (leased like the tests lease theirs, so a concurrent test run is
not disturbed), with a time limit. For each: enqueue rate (one job at a time, as a
request handler would) and drain rate (from the moment its worker starts until the
last job has run). Ratios are against bare bullmq. Peers that are not installed are
reported as such; install them with `pip install -e '.[bench]'` (arq conflicts with
bullmq's redis>=6 requirement; add it with `pip install --no-deps arq`).

Worker shape per contestant (one process unless said otherwise):
- tenantry: JobService on the BullMQ backend, the email queue, concurrency 10, fair
  scheduling across companies (the default); tenantry-fifo: the same with
  JOB_FAIR_SCHEDULING=false (plain BullMQ FIFO), so the cost of fairness is the
  "fair / FIFO" ratio printed at the end;
- tenantry x2: `tenantry worker --queues email --processes 2` (two processes);
- bullmq: bare `Queue.add` + `Worker(concurrency=10)`; and the same with the job
  options Tenantry sets (3 attempts, backoff, keep 1,000 completed jobs / 1 day), which
  separates the cost of the layer from the cost of its retention policy;
- dramatiq: `Worker(worker_threads=8)` (its default);
- celery: `worker --pool=solo`;
- saq: `Worker(concurrency=10)`;  arq: `Worker(max_jobs=10, burst=True)`;
- rq: `SimpleWorker` (no fork per job: RQ's fastest setting), burst.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis as redis_sync

# The tests' Redis-db lease, so a benchmark never takes a db a running test holds.
from tests.redis_lease import leased_redis_db

CONCURRENCY = 10
QUEUE = "email"
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
ROOT = Path(__file__).resolve().parents[2]
Timing = tuple[float, float]  # enqueue seconds, drain seconds


# --------------------------------------------------------------------------- contestants


async def run_tenantry(url: str, n: int, fair: bool = True) -> Timing:
    from tenantry.jobs import BullMQBackend, HandlerRegistry, JobContext, JobService
    from tenantry.jobs.queues import QUEUE_NAMES
    from tenantry.settings import load_settings

    registry = HandlerRegistry()
    done = asyncio.Event()
    count = 0

    @registry.handler(QUEUE)
    async def noop(job: JobContext) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            redis_url=url,
            job_concurrency_email=CONCURRENCY,
            job_fair_scheduling=fair,
        )
        service = JobService(settings, BullMQBackend(url, "bull", QUEUE_NAMES), registry)
        started = time.perf_counter()
        for _ in range(n):
            await service.add(QUEUE, "noop", {}, "bench")
        enqueued = time.perf_counter() - started
        started = time.perf_counter()
        await service.start_workers([QUEUE])
        await done.wait()
        drained = time.perf_counter() - started
        await service.stop_workers(5)
        await service.close()
    return enqueued, drained


async def run_tenantry_fifo(url: str, n: int) -> Timing:
    return await run_tenantry(url, n, fair=False)


async def run_tenantry_processes(url: str, n: int, processes: int = 2) -> Timing:
    """`tenantry worker --processes 2`: the queue is paused while the workers start."""
    from tenantry.jobs import BullMQBackend, JobService
    from tenantry.jobs.queues import QUEUE_NAMES
    from tenantry.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), redis_url=url)
        service = JobService(settings, BullMQBackend(url, "bull", QUEUE_NAMES))
        await service.pause(QUEUE)
        started = time.perf_counter()
        for _ in range(n):
            await service.add(QUEUE, "noop", {}, "bench")
        enqueued = time.perf_counter() - started
        try:
            drained = await _drain_with_workers(service, url, tmp, processes)
        finally:
            await service.close()
    return enqueued, drained


async def _drain_with_workers(service: Any, url: str, tmp: str, processes: int) -> float:
    """Start the worker processes, resume the queue, and time until it is empty."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": url,
        "TENANTRY_DATA_DIR": tmp,
        "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
        "JOB_HANDLER_MODULES": "benchmarks.jobs.noop",
        "JOB_CONCURRENCY_EMAIL": str(CONCURRENCY),
    }
    output = Path(tmp) / "worker.log"
    with output.open("wb") as sink:
        worker = subprocess.Popen(  # noqa: ASYNC220  (started once, before timing)
            [sys.executable, "-m", "tenantry", "worker", "--queues", QUEUE,
             "--processes", str(processes)],
            env=env, cwd=tmp, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        while output.read_text().count("worker ready") < processes:
            if worker.poll() is not None:
                raise RuntimeError(output.read_text())
            await asyncio.sleep(0.02)
        started = time.perf_counter()
        await service.resume(QUEUE)
        while True:
            counts = await service.backend.counts(QUEUE)
            if counts.waiting + counts.active + counts.delayed == 0:
                break
            await asyncio.sleep(0.02)
        return time.perf_counter() - started
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


async def run_bullmq(url: str, n: int, options: dict[str, Any] | None = None) -> Timing:
    from bullmq import Queue, Worker

    done = asyncio.Event()
    count = 0

    async def noop(job: Any, token: str) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    queue = Queue(QUEUE, {"connection": url})
    started = time.perf_counter()
    for _ in range(n):
        await queue.add("noop", {}, options or {})
    enqueued = time.perf_counter() - started
    started = time.perf_counter()
    worker = Worker(QUEUE, noop, {"connection": url, "concurrency": CONCURRENCY})
    await done.wait()
    drained = time.perf_counter() - started
    await worker.close()
    await queue.close()
    return enqueued, drained


async def run_bullmq_same_options(url: str, n: int) -> Timing:
    """Bare bullmq with the job options Tenantry sets (attempts, backoff, retention):
    the gap between this and Tenantry is the layer itself."""
    from tenantry.jobs.queues import definitions
    from tenantry.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        options = definitions(load_settings(data_dir=Path(tmp)))[QUEUE].job_options()
    return await run_bullmq(url, n, options)


def run_dramatiq(url: str, n: int) -> Timing:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)
    done = threading.Event()
    lock = threading.Lock()
    count = 0

    @dramatiq.actor(broker=broker, queue_name="bench", max_retries=0)
    def noop() -> None:
        nonlocal count
        with lock:
            count += 1
            if count == n:
                done.set()

    started = time.perf_counter()
    for _ in range(n):
        noop.send()
    enqueued = time.perf_counter() - started
    started = time.perf_counter()
    worker = dramatiq.Worker(broker, worker_threads=8)
    worker.start()
    done.wait()
    drained = time.perf_counter() - started
    worker.stop()
    broker.close()
    return enqueued, drained


def run_celery(url: str, n: int) -> Timing:
    from benchmarks.jobs.celery_app import app, noop

    app.conf.broker_url = url
    started = time.perf_counter()
    for _ in range(n):
        noop.apply_async(queue="bench")
    enqueued = time.perf_counter() - started
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_CELERY_URL": url, "BENCH_JOBS": str(n)}
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.jobs.celery_app"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    marked = [line for line in child.stdout.splitlines() if line.startswith("BENCH_DRAIN ")]
    drained = float(marked[-1].split()[1])
    return enqueued, drained


async def noop_async(ctx: Any) -> None:
    ctx["bench"].tick()


class Counter:
    def __init__(self, n: int) -> None:
        self.n, self.count, self.done = n, 0, asyncio.Event()

    def tick(self) -> None:
        self.count += 1
        if self.count == self.n:
            self.done.set()


async def run_saq(url: str, n: int) -> Timing:
    from saq import Queue, Worker

    counter = Counter(n)
    queue = Queue.from_url(url)
    await queue.connect()
    started = time.perf_counter()
    for _ in range(n):
        await queue.enqueue("noop_async")
    enqueued = time.perf_counter() - started

    async def startup(ctx: Any) -> None:
        ctx["bench"] = counter

    worker = Worker(queue, functions=[noop_async], concurrency=CONCURRENCY, startup=[startup])
    started = time.perf_counter()
    running = asyncio.create_task(worker.start())
    await counter.done.wait()
    drained = time.perf_counter() - started
    await worker.stop()
    running.cancel()
    await queue.disconnect()
    return enqueued, drained


async def run_arq(url: str, n: int) -> Timing:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker

    settings = RedisSettings.from_dsn(url)
    pool = await create_pool(settings)
    started = time.perf_counter()
    for _ in range(n):
        await pool.enqueue_job("noop_async")
    enqueued = time.perf_counter() - started
    counter = Counter(n)

    async def startup(ctx: Any) -> None:
        ctx["bench"] = counter

    worker = Worker(
        functions=[noop_async],  # type: ignore[list-item]
        redis_settings=settings,
        burst=True,
        max_jobs=CONCURRENCY,
        handle_signals=False,
        on_startup=startup,
        keep_result=0,
    )
    started = time.perf_counter()
    await worker.async_run()
    drained = time.perf_counter() - started
    assert counter.count == n, counter.count
    await worker.close()
    await pool.aclose()
    return enqueued, drained


def run_rq(url: str, n: int) -> Timing:
    from benchmarks.jobs.celery_app import rq_noop
    from rq import Queue, SimpleWorker

    connection = redis_sync.Redis.from_url(url)
    queue = Queue("bench", connection=connection)
    started = time.perf_counter()
    for _ in range(n):
        queue.enqueue(rq_noop, result_ttl=0)
    enqueued = time.perf_counter() - started
    worker = SimpleWorker([queue], connection=connection)
    started = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    drained = time.perf_counter() - started
    assert queue.count == 0
    return enqueued, drained


CONTESTANTS: dict[str, tuple[str, Callable[[str, int], Timing | Awaitable[Timing]]]] = {
    "tenantry": ("Tenantry (1 process)", run_tenantry),
    "tenantry-fifo": ("Tenantry FIFO (1 process)", run_tenantry_fifo),
    "tenantry-2p": ("Tenantry (--processes 2)", run_tenantry_processes),
    "bullmq": ("bullmq (bare)", run_bullmq),
    "bullmq-options": ("bullmq (Tenantry's options)", run_bullmq_same_options),
    "dramatiq": ("dramatiq", run_dramatiq),
    "celery": ("Celery (solo)", run_celery),
    "saq": ("SAQ", run_saq),
    "arq": ("arq", run_arq),
    "rq": ("RQ (SimpleWorker)", run_rq),
}
REQUIRES = {"dramatiq": "dramatiq", "celery": "celery", "saq": "saq", "arq": "arq", "rq": "rq"}


# --------------------------------------------------------------------------- harness


def run_one(name: str, url: str, n: int) -> None:
    """In the child process: run one contestant and print its timing as JSON."""
    outcome = CONTESTANTS[name][1](url, n)
    if asyncio.iscoroutine(outcome):
        outcome = asyncio.run(outcome)
    enqueued, drained = outcome  # type: ignore[misc]
    print(json.dumps({"enqueue": enqueued, "drain": drained}))


def measure(name: str, n: int, timeout: float) -> dict[str, Any]:
    module = REQUIRES.get(name)
    if module is not None:
        try:
            __import__(module)
        except ImportError:
            return {"error": f"not installed (pip install {module})"}
    with leased_redis_db(REDIS, owner="bench") as url:
        command = [sys.executable, "-m", "benchmarks.jobs.drain", "--run", name, "--url", url,
                   "--jobs", str(n)]  # fmt: skip
        child = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # so a timeout ends its worker processes too
        )  # fmt: skip
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return {"error": f"over the {timeout:.0f} s limit"}
        if child.returncode != 0:
            return {"error": (err.strip().splitlines() or ["failed"])[-1][:100]}
        return dict(json.loads(out.strip().splitlines()[-1]))


def better(best: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
    """The faster drain of two runs; a run that failed only when nothing else succeeded."""
    if best is None or ("error" in best and "error" not in result):
        return result
    if "error" in result or result["drain"] >= best["drain"]:
        return best
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=180, help="seconds per contestant")
    parser.add_argument("--only", help="comma-separated contestants: " + ",".join(CONTESTANTS))
    parser.add_argument("--rounds", type=int, default=1, help="runs per contestant; best kept")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_one(args.run, args.url, args.jobs)
        return

    names = args.only.split(",") if args.only else list(CONTESTANTS)
    unknown = set(names) - set(CONTESTANTS)
    if unknown:
        parser.error(f"unknown contestant(s): {', '.join(sorted(unknown))}")
    runs = "one run each" if args.rounds == 1 else f"best of {args.rounds} interleaved runs"
    print(f"Enqueue and drain {args.jobs:,} no-op jobs, Redis {REDIS}, {runs}\n")
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.rounds):  # interleaved, so a burst of outside load hits everyone
        for name in names:
            result = measure(name, args.jobs, args.timeout)
            print(f"  {CONTESTANTS[name][0]}: {result}", file=sys.stderr, flush=True)
            results[name] = better(results.get(name), result)
    bare = results.get("bullmq", {}).get("drain")
    print(f"{'contestant':<30}{'enqueue/s':>11}{'drain/s':>10}{'drain vs bullmq':>17}")
    for name in names:
        label, result = CONTESTANTS[name][0], results[name]
        if "error" in result:
            print(f"{label:<30}  {result['error']}")
            continue
        enqueue_rate = args.jobs / result["enqueue"]
        drain_rate = args.jobs / result["drain"]
        ratio = f"{bare / result['drain']:.2f}x" if bare else "-"
        print(f"{label:<30}{enqueue_rate:>11,.0f}{drain_rate:>10,.0f}{ratio:>17}")
    fair, fifo = results.get("tenantry", {}), results.get("tenantry-fifo", {})
    if "drain" in fair and "drain" in fifo:
        print(f"\nfairness cost: drain fair / FIFO = {fifo['drain'] / fair['drain']:.2f}x")


if __name__ == "__main__":
    main()
