"""QueryOptimizer across processes: the server and a worker read the same merged figures."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.context import company_scope
from tenantry.db import Database
from tenantry.errors import ServiceUnavailable
from tenantry.queries.service import QueryOptimizer
from tenantry.settings import async_database_url


async def test_server_and_worker_figures_merge(database_url: str, redis_url: str) -> None:
    url = async_database_url(database_url)
    dbs = [Database(url), Database(url)]
    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    server, worker = (QueryOptimizer(db, redis=r) for db, r in zip(dbs, clients, strict=True))

    async def count(session: AsyncSession) -> int:
        return int((await session.execute(text("SELECT 41 + 1"))).scalar_one())

    try:
        for optimizer, calls in ((server, 3), (worker, 2)):
            async with optimizer.db.engine.connect() as conn:
                with company_scope("acme"):
                    for _ in range(calls):
                        await conn.execute(text("SELECT 40 + :n"), {"n": 2})
        # the worker's cached read is a hit for the server: the cache is shared too
        assert await worker.optimized_read("acme", "answer", count) == 42
        assert await server.optimized_read("acme", "answer", count) == 42
        before_flush = await server.statistics("acme")
        assert before_flush.calls == 3  # only its own until the worker flushes
        await worker.flush()
        await server.flush()
        merged = await server.statistics("acme")
        assert merged.source == "redis"
        assert merged.calls == 3 + 2 + 1  # five statements and the one cache miss
        assert merged.cache_hit_rate == 0.5
        assert (await worker.statistics("acme")).calls == merged.calls
        await server.reset_metrics()
        assert (await worker.statistics("acme")).calls == 0
    finally:
        for optimizer in (server, worker):
            await optimizer.close()
        for db, client in zip(dbs, clients, strict=True):
            await db.dispose()
            await client.aclose()


async def test_figures_fall_back_to_this_process_when_redis_is_down(database_url: str) -> None:
    db = Database(async_database_url(database_url))
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    optimizer = QueryOptimizer(db, redis=dead)

    async def one(session: AsyncSession) -> int:
        return int((await session.execute(text("SELECT 1"))).scalar_one())

    try:
        assert await optimizer.optimized_read("acme", "one", one) == 1
        stats = await optimizer.statistics("acme")
        # (PostgreSQL's first connection also runs the dialect's own set-up statements)
        assert stats.source == "process" and stats.calls >= 1
        assert stats.cache_hit_rate == 0.0
        metrics = await optimizer.metrics("acme")
        assert metrics.source == "process" and metrics.shapes
        health = await optimizer.health()
        assert health.cache.status.startswith("down")
        with pytest.raises(ServiceUnavailable, match="Redis"):
            await optimizer.reset_metrics()
        assert optimizer.monitor.local_series() == {}  # this process's part is done
    finally:
        await optimizer.close()
        await db.dispose()
        await dead.aclose()
