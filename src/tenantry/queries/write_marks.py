"""Each company's last write position (a WAL LSN), for reading one's own writes.

`optimized_write` notes where the primary's WAL stood once the write had committed;
a read for that company may then go only to a replica that has replayed that far.
Marks are kept in this process and, when Redis is configured, in Redis too, so a
read served by another process than the one that wrote sees the mark as well.

A mark lives `ttl` seconds: the router skips a replica lagging more than
REPLICA_MAX_LAG_MS anyway, so an older mark could only ever route to the primary
a replica that is fit to answer.

When Redis cannot be read, the mark is unknown and taken to be the highest there
is (`LSN_MAX`: the primary answers); Redis is then left alone for `retry_after`.
"""

from __future__ import annotations

import logging
import time

from tenantry.redis_clients import AnyRedis, script

log = logging.getLogger("tenantry.queries")
LSN_MAX = 2**64 - 1  # no replica is that far: "read from the primary"
_PRUNE_AT = 10_000  # local marks kept before the expired ones are dropped

# KEYS: the company's mark.  ARGV: LSN as 16 hex digits, ttl ms.  Keeps the highest:
# two writes may report their LSNs out of order. Fixed-width hex compares as text,
# where Lua's numbers (doubles) would round a 64-bit LSN.
_NOTE = """
local current = redis.call('GET', KEYS[1])
if not current or current < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
"""


class WriteMarks:
    def __init__(
        self,
        ttl: float,
        redis: AnyRedis | None = None,
        *,
        prefix: str = "tenantry:replicas:written:",
        retry_after: float = 1.0,
    ) -> None:
        self.ttl = ttl
        self.redis = redis
        self.prefix = prefix
        self.retry_after = retry_after
        self.errors = 0
        self._local: dict[str, tuple[int, float]] = {}  # company -> (lsn, monotonic expiry)
        self._down_until = 0.0
        self._note = script(redis, _NOTE) if redis is not None else None

    async def note(self, company: str, lsn: int) -> None:
        """Remember that `company` wrote up to `lsn`; never raises (the write is done)."""
        now = time.monotonic()
        held = self._local.get(company)
        if held is None or held[1] < now or held[0] < lsn:
            self._local[company] = (lsn, now + self.ttl)
        if len(self._local) > _PRUNE_AT:
            self._local = {c: m for c, m in self._local.items() if m[1] >= now}
        if self._note is not None:
            try:
                await self._note(keys=[self.prefix + company], args=[f"{lsn:016x}", self._ttl_ms])
            except Exception as exc:  # other processes' reads of it go to the primary
                self._failed(exc)

    async def last(self, company: str) -> int | None:
        """The company's last write position, None if it wrote nothing lately."""
        held = self._local.get(company)
        local = held[0] if held is not None and held[1] >= time.monotonic() else None
        if self.redis is None:
            return local
        if time.monotonic() < self._down_until:
            return LSN_MAX
        try:
            shared = await self.redis.get(self.prefix + company)
        except Exception as exc:
            self._failed(exc)
            return LSN_MAX
        if shared is None:
            return local
        return max(int(shared, 16), local or 0)

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if time.monotonic() >= self._down_until:
            log.warning("read-your-writes marks: Redis unavailable (%s); reading the primary", exc)
        self._down_until = time.monotonic() + self.retry_after
