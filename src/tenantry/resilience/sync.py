"""Sharing breaker states and flag changes between processes through Redis.

Pub/sub carries each change to every process within milliseconds; a hash of the
current breaker states lets a process that (re)connects catch up, and on every
(re)subscription flags are reloaded from the store, so a message missed while
Redis was away is never lost for good. If Redis is down, publishing fails fast
(logged, counted) and each process keeps its own state. On a Redis Cluster, messages
are published through the cluster and heard on one node (`redis_clients.pubsub`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from tenantry import redis_clients
from tenantry.redis_clients import AnyRedis
from tenantry.resilience.breaker import State, Transition
from tenantry.resilience.registry import BreakerRegistry

log = logging.getLogger("tenantry.resilience")

CHANNEL = "tenantry:resilience:events"
BREAKERS_KEY = "tenantry:resilience:breakers"
SHARED_STATES = frozenset({State.OPEN, State.FORCED_OPEN, State.DISABLED, State.CLOSED})
PUBLISH_TIMEOUT = 1.0


class RedisSync:
    def __init__(
        self,
        redis: AnyRedis,
        breakers: BreakerRegistry,
        reload_flags: Callable[[], Awaitable[Any]],
    ) -> None:
        self.redis = redis
        self.breakers = breakers
        self.reload_flags = reload_flags
        # Pub/sub channels are shared by every logical database of a Redis server: name
        # ours after the database, so deployments that share a server never hear each other.
        self.channel = f"{CHANNEL}:{redis_clients.database(redis)}"
        self.origin = uuid.uuid4().hex
        self.connected = asyncio.Event()
        self.publish_failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: set[concurrent.futures.Future[None]] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.breakers.add_listener(self._on_transition)
        self._task = asyncio.create_task(self._listen(), name="tenantry-resilience-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for future in list(self._pending):
            future.cancel()

    # --- publishing ----------------------------------------------------------------
    def _on_transition(self, event: Transition) -> None:
        """Breaker listener; may run in any thread, so it hands off to the loop."""
        if event.remote or event.to_state not in SHARED_STATES or self._loop is None:
            return
        until = time.time() * 1000 + event.open_for_ms if event.to_state is State.OPEN else 0
        message = {
            "kind": "breaker",
            "name": event.breaker,
            "state": event.to_state.value,
            "untilMs": until,
        }
        if self._loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self._publish_breaker(message), self._loop)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def _publish_breaker(self, message: dict[str, Any]) -> None:
        async def send() -> None:
            await self.redis.hset(BREAKERS_KEY, message["name"], json.dumps(message))  # type: ignore[misc]
            await self._publish(message)

        await self._guarded(send())

    async def publish_flag_change(self, key: str) -> None:
        await self._guarded(self._publish({"kind": "flags", "key": key}))

    async def _publish(self, message: dict[str, Any]) -> None:
        data = json.dumps({**message, "origin": self.origin})
        await redis_clients.publish(self.redis, self.channel, data)

    async def _guarded(self, operation: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(operation, PUBLISH_TIMEOUT)
        except Exception as exc:
            self.publish_failures += 1
            log.warning("could not share a resilience change through Redis: %s", exc)

    # --- listening -----------------------------------------------------------------
    async def _listen(self) -> None:
        delay = 0.2
        while True:
            try:
                async with redis_clients.pubsub(self.redis) as pubsub:
                    await pubsub.subscribe(self.channel)
                    await self._catch_up()
                    self.connected.set()
                    delay = 0.2
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None:
                            await self._handle(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set():
                    log.warning("resilience sync lost Redis (%s); retrying", exc)
                self.connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _catch_up(self) -> None:
        """Adopt the shared breaker states and reload the flags (after a gap)."""
        states = await self.redis.hgetall(BREAKERS_KEY)  # type: ignore[misc]
        for raw in states.values():
            self._apply_breaker(json.loads(raw), catching_up=True)
        try:
            await self.reload_flags()
        except Exception as exc:
            log.warning("could not reload flags after (re)connecting: %s", exc)

    async def _handle(self, raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if message.get("origin") == self.origin:
            return
        if message.get("kind") == "breaker":
            self._apply_breaker(message)
        elif message.get("kind") == "flags":
            try:
                await self.reload_flags()
            except Exception as exc:
                log.warning("could not reload flags after a change elsewhere: %s", exc)

    def _apply_breaker(self, message: dict[str, Any], catching_up: bool = False) -> None:
        name = message.get("name")
        if name not in self.breakers:
            return
        try:
            state = State(message["state"])
        except (KeyError, ValueError):
            return
        breaker = self.breakers.get(str(name))
        if state is State.OPEN:
            remaining = int(float(message.get("untilMs", 0)) - time.time() * 1000)
            if remaining <= 0:
                return  # that opening has already timed out
            breaker.transition(
                state, "opened in another process", remote=True, open_for_ms=remaining
            )
        elif not (catching_up and state is State.CLOSED):
            breaker.transition(state, f"{state.value} in another process", remote=True)
