"""`RedisCache`: the read cache in Redis, shared by every process; atomic by Lua scripts."""

from __future__ import annotations

import secrets
import time

from tenantry.redis_clients import AnyRedis, script

# KEYS: value, epoch, index.  ARGV: value bytes, ttl ms, expected epoch, expires-at ms, name.
_PUT = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
return 1
"""

# KEYS: claim.  ARGV: token.  Deletes the claim only if it is still this token's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: epoch, index.  ARGV: value-key prefix, now ms, patterns...
_INVALIDATE = """
redis.call('INCR', KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
local dropped = 0
for _, name in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  for i = 3, #ARGV do
    local p = ARGV[i]
    local hit
    if string.sub(p, -1) == '*' then
      hit = string.sub(name, 1, #p - 1) == string.sub(p, 1, -2)
    else
      hit = name == p
    end
    if hit then
      dropped = dropped + redis.call('DEL', ARGV[1] .. name)
      redis.call('ZREM', KEYS[2], name)
      break
    end
  end
end
return dropped
"""


class RedisCache:
    """Entries as Redis strings with a TTL; a sorted set per company indexes its names.

    Keys carry the company in a hash tag ({acme}) so one company's keys share a
    cluster slot and the scripts stay valid on Redis Cluster.
    """

    name = "redis"

    def __init__(self, redis: AnyRedis, prefix: str = "tenantry:cache:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._put = script(redis, _PUT)
        self._invalidate = script(redis, _INVALIDATE)
        self._release = script(redis, _RELEASE)

    def _keys(self, company: str) -> tuple[str, str, str]:
        base = f"{self.prefix}{{{company}}}:"
        return f"{base}v:", f"{base}epoch", f"{base}names"

    def _claim_key(self, company: str, name: str) -> str:
        return f"{self.prefix}{{{company}}}:claim:{name}"

    async def get(self, company: str, name: str) -> tuple[bytes | None, int]:
        values, epoch_key, _ = self._keys(company)
        value, epoch = await self.redis.mget(values + name, epoch_key)
        return value, int(epoch or 0)

    async def put(self, company: str, name: str, value: bytes, ttl: float, epoch: int) -> bool:
        values, epoch_key, index = self._keys(company)
        ttl_ms = max(1, round(ttl * 1000))
        expires = round(time.time() * 1000) + ttl_ms
        args: list[bytes | str | int] = [value, ttl_ms, epoch, expires, name]
        stored = await self._put(keys=[values + name, epoch_key, index], args=args)
        return bool(stored)

    async def invalidate(self, company: str, names: list[str]) -> int:
        values, epoch_key, index = self._keys(company)
        now = round(time.time() * 1000)
        dropped = await self._invalidate(keys=[epoch_key, index], args=[values, now, *names])
        return int(dropped)

    async def claim(self, company: str, name: str, seconds: float) -> str | None:
        token = secrets.token_hex(8)
        ttl_ms = max(1, round(seconds * 1000))
        claimed = await self.redis.set(self._claim_key(company, name), token, nx=True, px=ttl_ms)
        return token if claimed else None

    async def release(self, company: str, name: str, token: str) -> None:
        await self._release(keys=[self._claim_key(company, name)], args=[token])

    async def ping(self) -> None:
        await self.redis.ping()  # type: ignore[misc]  # redis-py types ping as sync|async
