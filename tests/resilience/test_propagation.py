"""Breaker states and flag changes reach other processes through Redis within one second."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis

from tenantry.app import create_app
from tenantry.resilience.breaker import State
from tenantry.resilience.registry import BreakerRegistry
from tenantry.resilience.sync import RedisSync
from tests.conftest import ADMIN

ROOT = Path(__file__).resolve().parents[2]
BASE = "/api/degradation"


class Peer:
    """`python -m tests.resilience.peer ...` in a subprocess."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.resilience.peer", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    async def line(self, wait: float = 30.0) -> str:
        assert self.process.stdout is not None
        return (
            await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), wait)
        ).strip()

    def close(self) -> str:
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return err


async def start_registry(redis_url: str) -> tuple[BreakerRegistry, RedisSync, Redis]:
    redis = Redis.from_url(redis_url)
    registry = BreakerRegistry()

    async def no_flags() -> None:
        return None

    sync = RedisSync(redis, registry, no_flags)
    await sync.start()
    await asyncio.wait_for(sync.connected.wait(), 5)
    return registry, sync, redis


@pytest.fixture
async def local(redis_url: str) -> AsyncIterator[BreakerRegistry]:
    registry, sync, redis = await start_registry(redis_url)
    yield registry
    await sync.stop()
    await redis.aclose()


async def test_a_circuit_opened_here_is_seen_open_by_another_process(
    redis_url: str, local: BreakerRegistry
) -> None:
    peer = Peer("breaker", redis_url)
    try:
        assert await peer.line() == "ready"
        breaker = local["external-api"]
        for _ in range(breaker.config.failure_threshold or 5):
            with pytest.raises(ConnectionError):
                breaker.call(_refuse)
        opened_at = time.time()
        assert breaker.state is State.OPEN
        seen = await peer.line(wait=10)  # within 10 s: by message, not the 30 s refresh
    finally:
        errors = peer.close()
    assert seen.startswith("seen "), (seen, errors)
    print(f"seen open by the other process {float(seen.split()[1]) - opened_at:.3f} s after")


def _refuse() -> None:
    raise ConnectionError("refused")


async def test_states_follow_between_independent_registries(
    redis_url: str, local: BreakerRegistry
) -> None:
    other, sync, redis = await start_registry(redis_url)
    try:
        local["ai-service"].force_open()
        await _until(lambda: other["ai-service"].state is State.FORCED_OPEN)
        local["ai-service"].reset()
        await _until(lambda: other["ai-service"].state is State.CLOSED)
        other["storage"].disable()
        await _until(lambda: local["storage"].state is State.DISABLED)
        # Half-open is each process's own trial: it is not shared. Messages arrive in
        # order, so once the next change is seen, a shared half-open would have been too.
        local["database"].transition(State.HALF_OPEN, "test")
        local["external-api"].force_open()
        await _until(lambda: other["external-api"].state is State.FORCED_OPEN)
        assert other["database"].state is State.CLOSED
    finally:
        await sync.stop()
        await redis.aclose()


async def test_a_process_starting_later_adopts_an_open_circuit(
    redis_url: str, local: BreakerRegistry
) -> None:
    watcher, watching, watcher_redis = await start_registry(redis_url)
    try:  # the state is stored before it is published: once seen, a newcomer finds it
        local["external-api"].transition(State.OPEN, "test", open_for_ms=30_000)
        await _until(lambda: watcher["external-api"].state is State.OPEN)
    finally:
        await watching.stop()
        await watcher_redis.aclose()
    late, sync, redis = await start_registry(redis_url)
    try:
        breaker = late["external-api"]
        assert breaker.state is State.OPEN
        assert 25 < breaker.retry_after <= 30
    finally:
        await sync.stop()
        await redis.aclose()


async def test_without_redis_each_process_keeps_its_own_state() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    registry = BreakerRegistry()

    async def no_flags() -> None:
        return None

    sync = RedisSync(redis, registry, no_flags)
    await sync.start()
    try:
        breaker = registry["external-api"]
        for _ in range(5):
            with pytest.raises(ConnectionError):
                breaker.call(_refuse)
        assert breaker.state is State.OPEN
        # Publishing never blocks a caller: the calls returned before any publish was tried.
        assert sync.publish_failures == 0
        await _until(lambda: sync.publish_failures >= 1)
        assert not sync.connected.is_set()
        breaker.reset()
        assert breaker.state is State.CLOSED
    finally:
        await sync.stop()
        await redis.aclose()


async def test_a_flag_change_through_the_api_reaches_another_process(
    settings_factory: Any, redis_url: str
) -> None:
    settings = settings_factory(redis_url=redis_url)
    app = create_app(settings)
    async with LifespanManager(app):
        peer = Peer("flag", redis_url, settings.database_url)
        try:
            assert await peer.line() == "ready"
            async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
                response = await http.post(
                    f"{BASE}/features/maintenance-mode/enable", headers=ADMIN
                )
                assert response.status_code == 200
                # From the change saved (and published), not from the request sent: the
                # database write itself is not propagation, and a loaded machine slows it.
                changed_at = time.time()
            # Within 10 s, so by message: the periodic refresh (the backstop) is every 30 s.
            seen = await peer.line(wait=10)
        finally:
            errors = peer.close()
    assert seen.startswith("seen "), (seen, errors)
    print(f"seen by the other process {float(seen.split()[1]) - changed_at:.3f} s after")


async def test_a_flag_change_reaches_a_second_app_instance(
    settings_factory: Any, redis_url: str
) -> None:
    settings = settings_factory(redis_url=redis_url)
    first, second = create_app(settings), create_app(settings)
    async with LifespanManager(first), LifespanManager(second):
        flags = second.state.services.resilience.flags
        await asyncio.wait_for(second.state.services.resilience.sync.connected.wait(), 5)
        async with AsyncClient(transport=ASGITransport(app=first), base_url="http://t") as http:
            await http.post(
                f"{BASE}/features/vision-analysis/allow", json={"targetId": "acme"}, headers=ADMIN
            )
            # Within _until's 5 s, so by message: the periodic refresh (the backstop) comes
            # only every 30 s. The latency itself is measured in benchmarks and the
            # many-process test.
            await _until(lambda: flags.evaluate("vision-analysis", "acme").reason == "allowed")
            await http.post(
                f"{BASE}/features", json={"key": "brand-new", "enabled": True}, headers=ADMIN
            )
            await _until(lambda: flags.is_enabled("brand-new"))
            await http.delete(f"{BASE}/features/brand-new", headers=ADMIN)
            await _until(lambda: not flags.is_enabled("brand-new"))
            # And breakers opened through the API of one are open in the other.
            await http.post(f"{BASE}/circuits/storage/open", headers=ADMIN)
            breakers = second.state.services.resilience.breakers
            await _until(lambda: breakers["storage"].state is State.FORCED_OPEN)


async def _until(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {within} s")
        await asyncio.sleep(0.005)


async def test_with_redis_down_changes_still_save_and_apply_locally(settings_factory: Any) -> None:
    # Job queues off: this test is about resilience, not about how jobs start without Redis.
    app = create_app(settings_factory(redis_url="redis://127.0.0.1:1/0", enable_job_queues=False))
    async with LifespanManager(app):
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
            disable = http.post(f"{BASE}/features/core-api/disable", headers=ADMIN)
            response = await asyncio.wait_for(disable, timeout=30)  # not held up by Redis
            assert response.status_code == 200
            health = (await http.get(f"{BASE}/health", headers=ADMIN)).json()
        resilience = app.state.services.resilience
        assert resilience.flags.is_enabled("core-api") is False
        assert health["redisSync"] == "disconnected"
        assert resilience.sync.publish_failures >= 1
