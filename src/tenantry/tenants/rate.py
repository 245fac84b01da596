"""API requests per minute per company: all of a company's keys together, every process.

A sliding window, estimated from two fixed one-minute windows as Cloudflare's rate
limiting does: `previous * (share of the minute still to come) + current`. With
Redis the counts live there (one script call per request, so every process shares
them and a restart forgets nothing but the current minute); without it, in-process.
Refused requests are not counted, so a company over its limit gets through again as
soon as its rate falls under it. Written here rather than taken from the `limits`
package: its asynchronous Redis storage needs a second Redis client library (coredis)
beside the redis-py client the rest of Tenantry shares.

A company's two window keys carry its id as a hash tag (`tenantry:rate:{acme}:<minute>`),
so the script's keys share one slot on a Redis Cluster.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tenantry.errors import TenantryError
from tenantry.redis_clients import AnyRedis, script

WINDOW = 60.0

# KEYS: current, previous window. ARGV: limit, fraction of the previous window still in.
_HIT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous * tonumber(ARGV[2]) + current + 1 > tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
return 1
"""


class TooManyRequests(TenantryError):
    status_code, code = 429, "TOO_MANY_REQUESTS"


class RequestRate:
    def __init__(self, redis: AnyRedis | None = None, prefix: str = "tenantry:rate") -> None:
        self._prefix = prefix
        self._script: Any = script(redis, _HIT) if redis is not None else None
        self._local: dict[tuple[str, int], int] = {}

    async def hit(self, company_id: str, per_minute: int | None) -> None:
        """Count one request of `company_id`, or raise 429 with Retry-After if over."""
        if per_minute is None:
            return
        now = time.time()
        window = int(now // WINDOW)
        left = 1.0 - (now % WINDOW) / WINDOW
        if self._script is not None:
            keys = [
                f"{self._prefix}:{{{company_id}}}:{window}",
                f"{self._prefix}:{{{company_id}}}:{window - 1}",
            ]
            allowed = await self._script(keys=keys, args=[per_minute, left])
        else:
            allowed = self._hit_locally(company_id, window, left, per_minute)
        if not allowed:
            retry = max(1, math.ceil(left * WINDOW))
            raise TooManyRequests(
                f"this company is over its {per_minute} API requests per minute; "
                f"try again in {retry} s",
                details={"limit": "apiRequestsPerMinute", "allowed": per_minute},
                headers={"Retry-After": str(retry)},
            )

    def _hit_locally(self, company_id: str, window: int, left: float, per_minute: int) -> bool:
        current = self._local.get((company_id, window), 0)
        previous = self._local.get((company_id, window - 1), 0)
        if previous * left + current + 1 > per_minute:
            return False
        if len(self._local) > 200_000:  # bounded: drop every window but the last two
            self._local = {k: v for k, v in self._local.items() if k[1] >= window - 1}
        self._local[(company_id, window)] = current + 1
        return True
