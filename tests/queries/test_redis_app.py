"""The service with Redis configured: the cache lives in Redis, figures are merged there."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import ADMIN


async def test_app_with_redis_caches_and_merges_there(
    settings_factory: Any, client_factory: Any, redis_url: str
) -> None:
    settings = settings_factory(redis_url=redis_url, enable_job_queues=False)
    async with client_factory(settings) as (app, client):
        queries = app.state.services.queries
        assert queries.cache.backend.name == "redis"

        async def load(session: AsyncSession) -> int:
            return int((await session.execute(text("SELECT 7"))).scalar_one())

        for _ in range(3):
            assert await queries.optimized_read("acme", "seven", load) == 7
        await queries.flush()
        stats = await client.get("/api/query-optimizer/statistics?companyId=acme", headers=ADMIN)
        body = stats.json()
        assert body["source"] == "redis"
        assert body["cacheHitRate"] == round(2 / 3, 4)
        redis = Redis.from_url(redis_url)
        try:
            keys = {k.decode() for k in await redis.keys("tenantry:*")}
        finally:
            await redis.aclose()
        assert "tenantry:cache:{acme}:v:seven" in keys
        assert "tenantry:queries:series" in keys
        await client.delete("/api/query-optimizer/metrics", headers=ADMIN)
