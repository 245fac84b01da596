"""Write marks: the highest LSN a company wrote, for a short while, shared through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tenantry.queries.write_marks import LSN_MAX, WriteMarks
from tests.live import free_port


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_in_process_marks_keep_the_highest_and_expire() -> None:
    marks = WriteMarks(ttl=0.2)
    assert await marks.last("acme") is None
    await marks.note("acme", 200)
    await marks.note("acme", 100)  # a slower write that committed earlier
    assert await marks.last("acme") == 200
    assert await marks.last("globex") is None
    await asyncio.sleep(0.25)
    assert await marks.last("acme") is None


async def test_redis_marks_are_seen_by_another_process(redis: Redis) -> None:
    writer, reader = WriteMarks(ttl=5, redis=redis), WriteMarks(ttl=5, redis=redis)
    lsn = 0x1_0000_0000_0000 + 7  # past 2**53: compared exactly, not as a Lua double
    await writer.note("acme", lsn + 1)
    await writer.note("acme", lsn)
    assert await reader.last("acme") == lsn + 1
    assert await reader.last("globex") is None
    ttl_ms = await redis.pttl("tenantry:replicas:written:acme")
    assert 0 < ttl_ms <= 5000


async def test_an_unreachable_redis_sends_reads_to_the_primary() -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    marks = WriteMarks(ttl=5, redis=dead)
    try:
        await marks.note("acme", 100)  # never raises: the write itself is done
        assert await marks.last("acme") == LSN_MAX
        assert await marks.last("globex") == LSN_MAX  # unknown: no replica is sure to have it
        assert marks.errors == 1  # then left alone for a second, not asked on every read
        await marks.note("acme", 101)  # a mark is always tried: a missed one could mislead
        assert marks.errors == 2
    finally:
        await dead.aclose()
