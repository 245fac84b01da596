"""The read cache: the shipped contract (tenantry.testing.cache) run against the in-process
and the Redis backend, and what only the Redis or the in-process backend does."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from tenantry.queries.cache import ReadCache
from tenantry.queries.cache_backends import CacheBackend, MemoryCache, RedisCache
from tenantry.testing.cache import (
    CACHE_BACKEND_CHECKS,
    CacheBackendCheck,
    Loader,
    check_a_company_never_sees_another_companys_value,
)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[CacheBackend]:
    if request.param == "memory":
        yield MemoryCache()
        return
    url: str = request.getfixturevalue("redis_url")
    redis = Redis.from_url(url)
    try:
        yield RedisCache(redis)
    finally:
        await redis.aclose()


@pytest.mark.parametrize("check", CACHE_BACKEND_CHECKS, ids=lambda check: check.__name__)
async def test_cache_backend_contract(backend: CacheBackend, check: CacheBackendCheck) -> None:
    await check(backend)


class OneNamespaceCache(MemoryCache):
    """A user's backend that keys entries by name alone: a breach the shipped suite must catch."""

    async def get(self, company: str, name: str) -> tuple[bytes | None, int]:
        return await super().get("everyone", name)

    async def put(self, company: str, name: str, value: bytes, ttl: float, epoch: int) -> bool:
        return await super().put("everyone", name, value, ttl, epoch)


async def test_the_contract_catches_a_backend_that_mixes_companies() -> None:
    with pytest.raises(AssertionError):
        await check_a_company_never_sees_another_companys_value(OneNamespaceCache())


# --- Redis down --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_reads_answered_when_redis_is_unreachable() -> None:
    port = _free_port()  # nothing listens here
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    cache = ReadCache(RedisCache(redis), retry_after=60)
    loader = Loader({"rows": 3})
    for _ in range(3):
        assert await cache.read("acme", "k", loader, 60) == {"rows": 3}
    assert loader.calls == 3  # every read went to the database, none failed
    assert cache.backend_errors >= 1 and cache.degraded
    assert await cache.invalidate("acme", ["k"]) == 0  # a write's invalidation does not raise
    await redis.aclose()


@pytest.fixture
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test alone, on a spare port (the shared one is never stopped)."""
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (scripts/services.sh installs it)"
    port = _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)


async def test_reads_keep_working_when_redis_stops(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = own_redis
    redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    cache = ReadCache(RedisCache(redis), retry_after=0.2)
    loader = Loader("from the database")
    assert await cache.read("acme", "k", loader, 60) == "from the database"
    assert await cache.read("acme", "k", loader, 60) == "from the database"
    assert loader.calls == 1  # cached in Redis

    process.terminate()
    process.wait(timeout=10)
    for _ in range(3):
        assert await cache.read("acme", "k", loader, 60) == "from the database"
    assert loader.calls == 4
    assert cache.backend_errors >= 1
    # once the retry window passes Redis is tried again (and still down: no error either)
    await asyncio.sleep(0.25)
    assert await cache.read("acme", "k", loader, 60) == "from the database"
    await redis.aclose()


async def test_the_in_process_backend_is_bounded() -> None:
    backend = MemoryCache(max_entries=3)
    cache = ReadCache(backend)
    for i in range(5):
        await cache.read("acme", f"k{i}", Loader(i), 60)
    assert len(backend._entries) == 3
    again = Loader("reloaded")
    assert await cache.read("acme", "k0", again, 60) == "reloaded"  # evicted first
    assert await cache.read("acme", "k4", again, 60) == 4  # the newest stayed


@pytest.mark.parametrize("names", [["k"], ["k*"]])
async def test_a_read_after_a_write_does_not_share_a_load_that_began_before_it(
    names: list[str],
) -> None:
    """A load in flight when a write drops its key read the data before the write: a read
    issued after the write returned runs its own load (found by benchmarks/queries/impact.py)."""
    cache = ReadCache(MemoryCache())
    data = {"version": 1}
    gate = asyncio.Event()

    async def before_the_write() -> int:
        seen = data["version"]  # the statement's snapshot
        await gate.wait()
        return seen

    async def after_the_write() -> int:
        return data["version"]

    first = asyncio.create_task(cache.read("acme", "k", before_the_write, 60))
    await asyncio.sleep(0.01)
    data["version"] = 2  # the write commits, then drops the company's names
    await cache.invalidate("acme", names)
    second = asyncio.create_task(cache.read("acme", "k", after_the_write, 60))
    await asyncio.sleep(0.01)
    gate.set()
    assert await first == 1  # it began before the write: either answer is right for it
    assert await second == 2
    assert await cache.read("acme", "k", after_the_write, 60) == 2  # the old value was not kept
