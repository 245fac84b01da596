"""`MemoryCache`: the read cache in this process, bounded (least recently used go first)."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

from tenantry.queries.cache_backends.base import matches


class MemoryCache:
    """In-process entries with a size bound (least recently used go first)."""

    name = "memory"

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        self._epochs: dict[str, int] = {}
        self._claims: dict[tuple[str, str], tuple[str, float]] = {}  # token, expires at

    async def get(self, company: str, name: str) -> tuple[bytes | None, int]:
        epoch = self._epochs.get(company, 0)
        entry = self._entries.get((company, name))
        if entry is None:
            return None, epoch
        expires, value = entry
        if expires <= time.monotonic():
            del self._entries[(company, name)]
            return None, epoch
        self._entries.move_to_end((company, name))
        return value, epoch

    async def put(self, company: str, name: str, value: bytes, ttl: float, epoch: int) -> bool:
        if self._epochs.get(company, 0) != epoch:
            return False
        self._entries[(company, name)] = (time.monotonic() + ttl, value)
        self._entries.move_to_end((company, name))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    async def invalidate(self, company: str, names: list[str]) -> int:
        self._epochs[company] = self._epochs.get(company, 0) + 1
        doomed = [k for k in self._entries if k[0] == company and matches(k[1], names)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    async def claim(self, company: str, name: str, seconds: float) -> str | None:
        now = time.monotonic()
        held = self._claims.get((company, name))
        if held is not None and held[1] > now:
            return None
        if len(self._claims) > self.max_entries:  # forgotten claims must not pile up
            self._claims = {k: v for k, v in self._claims.items() if v[1] > now}
        token = secrets.token_hex(8)
        self._claims[(company, name)] = (token, now + seconds)
        return token

    async def release(self, company: str, name: str, token: str) -> None:
        held = self._claims.get((company, name))
        if held is not None and held[0] == token:
            del self._claims[(company, name)]

    async def ping(self) -> None:
        return None
