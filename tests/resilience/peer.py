"""A second process for the propagation tests: its own registry, flags and Redis connection.

    python -m tests.resilience.peer breaker <redis_url>
    python -m tests.resilience.peer flag <redis_url> <database_url>

Prints "ready" once subscribed, then the wall-clock time at which it saw the
`external-api` circuit open (breaker) or `maintenance-mode` switched on (flag).
"""

from __future__ import annotations

import asyncio
import sys
import time

from redis.asyncio import Redis

from tenantry.db import Database
from tenantry.resilience.breaker import State
from tenantry.resilience.registry import BreakerRegistry
from tenantry.resilience.service import FlagService
from tenantry.resilience.sync import RedisSync
from tenantry.settings import async_database_url
from tenantry.wiring import flag_store_stack

DEADLINE = 15.0


async def main(mode: str, redis_url: str, database_url: str | None) -> None:
    redis = Redis.from_url(redis_url)
    breakers = BreakerRegistry()
    db = Database(async_database_url(database_url)) if database_url else None
    flags = None
    if db is not None:
        memo, _ = flag_store_stack(db, breakers["database"])
        flags = FlagService(memo)
        await flags.refresh()
    sync = RedisSync(redis, breakers, flags.refresh if flags else _nothing)
    await sync.start()
    await asyncio.wait_for(sync.connected.wait(), 5)
    print("ready", flush=True)

    def seen() -> bool:
        if mode == "breaker":
            return breakers["external-api"].state is State.OPEN
        assert flags is not None
        return flags.is_enabled("maintenance-mode")

    started = time.monotonic()
    while not seen():
        if time.monotonic() - started > DEADLINE:
            print("timeout", flush=True)
            break
        await asyncio.sleep(0.002)
    else:
        print(f"seen {time.time()}", flush=True)
    await sync.stop()
    await redis.aclose()
    if db is not None:
        await db.dispose()


async def _nothing() -> None:
    return None


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
