"""Tenantry on a Redis Cluster of three masters, each with a replica.

Two app instances share the cluster and a PostgreSQL database: the read cache, flag and
breaker changes, company rate limits, quotas, usage figures and BullMQ's six queues all
work across them; then a master is SIGKILLed while jobs are enqueued and processed, its
replica takes over, and no job is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
import redis as redis_sync
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from redis.crc import key_slot

from tenantry.app import create_app
from tenantry.errors import QuotaExceeded
from tenantry.jobs import JobContext, job_handler
from tenantry.jobs.queues import AI_PROCESSING, QUEUE_NAMES
from tenantry.resilience.breaker import State
from tenantry.settings import Settings, load_settings
from tests.conftest import ADMIN, ADMIN_TOKEN, POSTGRES_URL, SETTINGS_VARIABLES, bearer
from tests.faults.report import record
from tests.faults.servers import OwnRedisCluster, wait_until
from tests.jobs.test_node_interop import NODE_MODULES, node

__all__ = ["node"]  # the fixture: Node and its bullmq package, or a skip naming them

pytestmark = pytest.mark.asyncio(loop_scope="module")
BASE = "/api/degradation"

# (queue, job id) of every run of the probe handler; ids of the failover's jobs, and runs.
PROBED: set[tuple[str, str]] = set()
PROCESSED: set[str] = set()
EXECUTIONS: Counter[str] = Counter()


def _probe(queue: str) -> Callable[[JobContext], Awaitable[None]]:
    async def probe(job: JobContext) -> None:
        PROBED.add((queue, job.id))

    return probe


for _queue in QUEUE_NAMES:
    job_handler(_queue, "cluster-probe")(_probe(_queue))


@job_handler(AI_PROCESSING, "cluster-count")
async def count_once(job: JobContext) -> None:
    """Idempotent: its effect (an id in a set) is the same however often it runs."""
    EXECUTIONS[job.id] += 1
    PROCESSED.add(job.id)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedisCluster]:
    server = OwnRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster_settings(
    tmp_path_factory: pytest.TempPathFactory, cluster: OwnRedisCluster
) -> Iterator[Settings]:
    """One PostgreSQL database, one upload folder, the cluster: what both instances share."""
    folder = tmp_path_factory.mktemp("cluster-apps")
    name = f"tenantry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with pytest.MonkeyPatch.context() as env:
            for variable in SETTINGS_VARIABLES & set(os.environ):
                env.delenv(variable)
            env.chdir(folder)  # no developer's .env
            yield load_settings(
                data_dir=folder / "data",
                upload_dir=folder / "uploads",
                database_url=f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}",
                redis_url=cluster.url,
                admin_token=ADMIN_TOKEN,
                secret_key="test-secret-key",
                tenant_cache_seconds=0,  # a company's new limits apply in both at once
                job_workers_in_app=True,
                job_concurrency_ai_processing=10,
                # A job whose completion a dying master took is run again within seconds.
                job_lock_duration_ms=2000,
                job_stalled_interval_ms=1000,
                job_max_stalled_count=10,
                job_outbox_relay_seconds=0.2,
                circuit_breakers={
                    "redis": {"failureThreshold": 2, "timeout": 1000, "callTimeout": 1000}
                },
            )
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def apps(cluster_settings: Settings) -> AsyncIterator[tuple[Any, Any]]:
    """Two instances of the service (two processes' worth of state) on one cluster."""
    first, second = create_app(cluster_settings), create_app(cluster_settings)
    # One after the other: the first migrates the database.
    async with (
        LifespanManager(first, startup_timeout=60, shutdown_timeout=60),
        LifespanManager(second, startup_timeout=60, shutdown_timeout=60),
    ):
        for app in (first, second):
            await asyncio.wait_for(app.state.services.resilience.sync.connected.wait(), 10)
        yield first, second


def http(app: Any) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://t")


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {within} s")
        await asyncio.sleep(0.01)


async def test_cached_reads_are_shared_and_a_write_invalidates_them(
    apps: tuple[Any, Any],
) -> None:
    first, second = (app.state.services.queries for app in apps)
    assert first.cache.backend.name == "redis"
    total, loads = [1], [0]

    async def load(_session: Any) -> int:
        loads[0] += 1
        return total[0]

    assert await first.optimized_read("acme", "total", load) == 1
    assert await second.optimized_read("acme", "total", load) == 1  # the other's entry
    assert loads == [1]

    async def write(_session: Any) -> None:
        total[0] = 2

    await first.optimized_write("acme", write, invalidates=["tot*"])
    assert await second.optimized_read("acme", "total", load) == 2
    assert loads == [2]
    # Figures flushed by both (one MULTI/EXEC each, in one slot) are read as one.
    await first.flush()
    await second.flush()
    async with http(apps[0]) as client:
        stats = await client.get(
            "/api/query-optimizer/statistics", params={"companyId": "acme"}, headers=ADMIN
        )
    assert stats.json()["source"] == "redis"
    assert stats.json()["cacheHitRate"] == round(1 / 3, 4)


async def test_ready_when_every_master_answers(apps: tuple[Any, Any]) -> None:
    async with http(apps[0]) as client:
        ready = await client.get("/ready", headers=ADMIN)
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"]["status"] == "up"


async def test_flag_and_breaker_changes_reach_the_other_instance(
    apps: tuple[Any, Any],
) -> None:
    resilience = apps[1].state.services.resilience
    async with http(apps[0]) as client:
        allowed = await client.post(
            f"{BASE}/features/vision-analysis/allow", json={"targetId": "acme"}, headers=ADMIN
        )
        assert allowed.status_code == 200
        await until(
            lambda: resilience.flags.evaluate("vision-analysis", "acme").reason == "allowed"
        )
        assert (await client.post(f"{BASE}/circuits/ai-service/open", headers=ADMIN)).is_success
        await until(lambda: resilience.breakers["ai-service"].state is State.FORCED_OPEN)
        assert (await client.post(f"{BASE}/circuits/ai-service/close", headers=ADMIN)).is_success
        await until(lambda: resilience.breakers["ai-service"].state is State.CLOSED)


async def test_rate_limits_quotas_and_usage_are_shared(apps: tuple[Any, Any]) -> None:
    first, second = (app.state.services for app in apps)
    await first.tenants.put_company(
        "globex", limits={"apiRequestsPerMinute": 6, "storageBytes": 100 * 1024}
    )
    key, _ = await first.keys.create("globex", "cluster")
    async with http(apps[0]) as one, http(apps[1]) as other:
        statuses = [
            (await client.get("/api/me", headers=bearer(key))).status_code
            for client in (one, other) * 4
        ]
    assert statuses == [200] * 6 + [429] * 2  # one count for both instances

    await first.storage.upload(
        b"x" * 60 * 1024, company_id="globex", category="documents", filename="a.bin"
    )
    with pytest.raises(QuotaExceeded):  # the bytes the other instance stored count
        await second.storage.upload(
            b"x" * 50 * 1024, company_id="globex", category="documents", filename="b.bin"
        )

    for services in (first, second):
        await services.tenants.meter.flush()
    async with http(apps[1]) as client:
        usage = (await client.get("/api/companies/globex", headers=ADMIN)).json()
    assert usage["last24Hours"]["apiRequests"] == 6  # admitted requests, of both instances


async def test_jobs_run_on_all_six_queues_each_in_one_slot(
    apps: tuple[Any, Any], cluster: OwnRedisCluster
) -> None:
    ids: dict[str, str] = {}
    async with http(apps[0]) as client:
        for queue in QUEUE_NAMES:
            body = {"name": "cluster-probe", "companyId": "acme", "data": {}}
            added = await client.post(f"/api/queues/{queue}/jobs", json=body, headers=ADMIN)
            assert added.status_code == 201, added.text
            ids[queue] = added.json()["id"]
    await until(lambda: set(ids.items()) <= PROBED, within=20)

    masters = {}
    for queue in QUEUE_NAMES:
        slot = key_slot(queue.encode())  # its hash tag: {<queue>}
        master = cluster.master_of(slot)
        assert master is not None
        masters[queue] = master.port
        node = redis_sync.Redis(port=master.port)
        try:
            keys = [k.decode() for k in node.scan_iter(match=f"bull:{{{queue}}}:*", count=1000)]
        finally:
            node.close()
        assert f"bull:{{{queue}}}:{ids[queue]}" in keys
        assert f"bull:{{{queue}}}:fair:i:acme" in keys  # the fair scheduler's, beside BullMQ's
        assert {key_slot(k.encode()) for k in keys} == {slot}
    # The queues spread over the masters: on a fresh cluster's even split, two of three.
    assert len(set(masters.values())) >= 2, masters


NODE_PRODUCER = """
const { Queue } = require('bullmq');
const IORedis = require('ioredis');
(async () => {
  const connection = new IORedis.Cluster(JSON.parse(process.argv[2]));
  const queue = new Queue('{report}', { prefix: 'bull', connection });
  const job = await queue.add('cluster-probe', { companyId: 'acme' });
  console.log(JSON.stringify({ added: job.id }));
  await queue.close();
  await connection.quit();
})().catch((error) => { console.error(error); process.exit(1); });
"""


async def test_a_node_producer_on_the_cluster_shares_a_queue(
    node: str, apps: tuple[Any, Any], cluster: OwnRedisCluster, tmp_path: Path
) -> None:
    """What docs tell Node users: queue `{report}`, prefix `bull`, a cluster connection."""
    script = tmp_path / "producer.js"
    script.write_text(NODE_PRODUCER)
    nodes = [{"host": "127.0.0.1", "port": port} for port in cluster.alive()]
    process = await asyncio.create_subprocess_exec(
        node,
        str(script),
        json.dumps(nodes),
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    added = str(json.loads(out.decode().splitlines()[-1])["added"])
    await until(lambda: ("report", added) in PROBED, within=20)  # run by Tenantry's worker


async def test_a_master_killed_while_jobs_run_loses_none(
    apps: tuple[Any, Any], cluster: OwnRedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    wait_until(cluster.healthy, 30, "the cluster whole")
    slot = key_slot(AI_PROCESSING.encode())
    master = cluster.master_of(slot)
    assert master is not None
    enqueued: list[str] = []
    figures: dict[str, Any] = {}

    def failed_over() -> bool:
        now = cluster.master_of(slot)
        return now is not None and now.port != master.port and cluster.healthy()

    async with http(apps[0]) as client:

        async def phase(name: str, ends: Awaitable[Any]) -> None:
            """Enqueue one job after another until `ends` is done; count the answers."""
            statuses: Counter[str] = Counter()
            latencies: list[float] = []
            started = time.monotonic()
            ending = asyncio.ensure_future(ends)
            while not ending.done():
                body = {"name": "cluster-count", "companyId": "acme", "data": {}}
                sent = time.monotonic()
                added = await client.post(
                    f"/api/queues/{AI_PROCESSING}/jobs", json=body, headers=ADMIN
                )
                latencies.append(time.monotonic() - sent)
                statuses[str(added.status_code)] += 1
                if added.status_code == 201:
                    enqueued.append(added.json()["id"])
                await asyncio.sleep(0.005)
            await ending
            figures[name] = {
                "seconds": round(time.monotonic() - started, 2),
                "byStatus": dict(statuses),
                "medianMs": round(statistics.median(latencies) * 1000, 1),
                "maxMs": round(max(latencies) * 1000, 1),
            }

        with caplog.at_level(logging.WARNING, logger="tenantry.jobs.outbox"):
            await phase("before", asyncio.sleep(1.5))
            cluster.kill(master.port)
            killed_at = time.monotonic()
            # Polled in a thread (it runs redis-cli): the workers share this event loop.
            await phase("failover", asyncio.to_thread(wait_until, failed_over, 30, "failover"))
            figures["failoverSeconds"] = round(time.monotonic() - killed_at, 2)
            await phase("after", asyncio.sleep(1.5))
        figures["outboxed"] = sum("kept in the outbox" in r.message for r in caplog.records)

    draining = time.monotonic()
    await until(lambda: not set(enqueued) - PROCESSED, within=30)
    figures["drainSeconds"] = round(time.monotonic() - draining, 2)
    lost = set(enqueued) - PROCESSED
    figures.update(
        enqueued=len(enqueued),
        processed=len(PROCESSED & set(enqueued)),
        lost=len(lost),
        ranMoreThanOnce=sum(1 for job_id in enqueued if EXECUTIONS[job_id] > 1),
    )
    record("redis-cluster-failover", figures)
    answers = Counter[str]()
    for name in ("before", "failover", "after"):
        answers.update(figures[name]["byStatus"])
    assert set(answers) <= {"201", "503"}, answers  # never a 500
    assert figures["before"]["byStatus"]["201"] > 0 and figures["after"]["byStatus"]["201"] > 0
    assert not lost, f"{len(lost)} jobs lost"
