"""The failed-auth limiter on Redis: one limit for every process, atomic, and per process
again while Redis is away. (Through the app, without Redis: tests/test_auth.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tenantry.auth import FailedAuthLimiter, TooManyFailures
from tests.live import free_port

LIMIT = 5
REFUSED = {"429 after 60", "429 after 59"}  # Retry-After: when the oldest failure expires


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def outcomes(limiters: list[FailedAuthLimiter], client: str, attempts: int) -> list[str]:
    """All attempts at once, spread over the limiters: 'counted' or the Retry-After."""

    async def attempt(limiter: FailedAuthLimiter) -> str:
        try:
            await limiter.failed(client)
        except TooManyFailures as exc:
            assert exc.headers is not None
            return f"429 after {exc.headers['Retry-After']}"
        return "counted"

    return await asyncio.gather(*(attempt(limiters[n % len(limiters)]) for n in range(attempts)))


async def test_processes_sharing_redis_share_one_limit(redis: Redis) -> None:
    processes = [FailedAuthLimiter(LIMIT, redis=redis) for _ in range(3)]
    results = await outcomes(processes, "203.0.113.7", 30)
    assert results.count("counted") == LIMIT  # not LIMIT per process
    assert set(results) - {"counted"} <= REFUSED
    # Another address has its own count; a new process joins the same one.
    assert (await outcomes(processes, "203.0.113.8", 1)) == ["counted"]
    newcomer = FailedAuthLimiter(LIMIT, redis=redis)
    assert set(await outcomes([newcomer], "203.0.113.7", 1)) <= REFUSED
    # Refused failures are not stored: memory stays at the limit per address.
    assert await redis.zcard("tenantry:auth-failures:203.0.113.7") == LIMIT
    assert 0 < await redis.pttl("tenantry:auth-failures:203.0.113.7") <= 60_000


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "per-process"])
async def test_failures_leave_the_window(redis: Redis, shared: bool) -> None:
    """Else one burst of bad keys locks an address out for good."""
    limiter = FailedAuthLimiter(2, window_seconds=1, redis=redis if shared else None)
    assert sorted(await outcomes([limiter], "198.51.100.1", 3)) == [
        "429 after 1",
        "counted",
        "counted",
    ]
    deadline = time.monotonic() + 5
    while await outcomes([limiter], "198.51.100.1", 1) != ["counted"]:
        assert time.monotonic() < deadline, "the failures never left the window"
        await asyncio.sleep(0.05)
    # And the limit holds again: one more failure fills it, the next is refused.
    assert sorted(await outcomes([limiter], "198.51.100.1", 2)) == ["429 after 1", "counted"]


async def test_without_redis_or_while_it_is_down_each_process_counts_its_own() -> None:
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        first, second = (FailedAuthLimiter(LIMIT, redis=down) for _ in range(2))
        alone = FailedAuthLimiter(LIMIT)
        for limiter in (first, second, alone):
            results = await outcomes([limiter], "192.0.2.1", LIMIT + 2)
            assert results.count("counted") == LIMIT
            assert set(results) - {"counted"} <= REFUSED
    finally:
        await down.aclose()


async def test_switched_off_it_counts_nothing(redis: Redis) -> None:
    limiter = FailedAuthLimiter(0, redis=redis)
    assert await outcomes([limiter], "192.0.2.9", 50) == ["counted"] * 50
    assert await redis.exists("tenantry:auth-failures:192.0.2.9") == 0


async def test_while_redis_is_down_failures_one_after_another_are_counted_here() -> None:
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        limiter = FailedAuthLimiter(2, redis=down)
        results = [await outcomes([limiter], "192.0.2.2", 1) for _ in range(3)]
        assert results[:2] == [["counted"], ["counted"]]
        assert set(results[2]) <= REFUSED
        assert await outcomes([limiter], "192.0.2.4", 1) == ["counted"]  # its own count
    finally:
        await down.aclose()


async def test_a_limit_of_one_failure() -> None:
    limiter = FailedAuthLimiter(1)
    assert await outcomes([limiter], "192.0.2.3", 1) == ["counted"]
    assert set(await outcomes([limiter], "192.0.2.3", 1)) <= REFUSED
    assert await outcomes([limiter], "192.0.2.5", 1) == ["counted"]  # another address
