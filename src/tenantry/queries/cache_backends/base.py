"""The read-cache contract, `CacheBackend`: where cached reads live (Redis or this process).

Every entry belongs to one company and every operation names the company, so a
backend cannot hand one company's value to another: keys are built from the
company id (which cannot contain ':'), never from the caller's name alone.

Each company also has an *epoch*, bumped by every invalidation. A reader notes the
epoch when it misses and stores its value only if the epoch is unchanged, so a
read that raced with a write never re-caches the pre-write value.

A reader that misses *claims* the name before loading it, for a bounded time, so
that across processes only one of them runs the query; the others wait for its
value (see ReadCache).
"""

from __future__ import annotations

from typing import Protocol


class CacheBackend(Protocol):
    name: str

    async def get(self, company: str, name: str) -> tuple[bytes | None, int]:
        """The cached value (or None) and the company's current epoch."""
        ...

    async def put(self, company: str, name: str, value: bytes, ttl: float, epoch: int) -> bool:
        """Store `value` for `ttl` seconds if the company's epoch is still `epoch`."""
        ...

    async def invalidate(self, company: str, names: list[str]) -> int:
        """Drop the company's entries named exactly, or by prefix for names ending in '*'.

        Bumps the company's epoch; returns how many entries were dropped.
        """
        ...

    async def claim(self, company: str, name: str, seconds: float) -> str | None:
        """Claim loading `name` for at most `seconds`: a token, or None if it is claimed."""
        ...

    async def release(self, company: str, name: str, token: str) -> None:
        """End a claim, if `token` still holds it (an expired claim may be another's)."""
        ...

    async def ping(self) -> None: ...


def matches(name: str, patterns: list[str]) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)
