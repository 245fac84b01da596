"""Breaker and flag events stay within their Redis database.

Redis pub/sub channels are shared by all logical databases of a server, so two
deployments (or two tests) on different databases must use different channels.
"""

from __future__ import annotations

from redis.asyncio import Redis

from tenantry.resilience.registry import BreakerRegistry
from tenantry.resilience.sync import RedisSync


async def _noop() -> None:
    return None


async def test_each_redis_database_has_its_own_channel() -> None:
    first = Redis.from_url("redis://127.0.0.1:6379/3")
    second = Redis.from_url("redis://127.0.0.1:6379/4")
    try:
        one = RedisSync(first, BreakerRegistry(), _noop)
        other = RedisSync(second, BreakerRegistry(), _noop)
        same = RedisSync(Redis.from_url("redis://127.0.0.1:6379/3"), BreakerRegistry(), _noop)
        assert one.channel != other.channel
        assert one.channel == same.channel
        await same.redis.aclose()
    finally:
        await first.aclose()
        await second.aclose()
