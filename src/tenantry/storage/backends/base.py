"""The storage backend interface: what Tenantry needs from a place that keeps bytes.

Every backend implements `StorageBackend`, a deliberately small interface, and
passes the same contract (`tenantry.testing.storage`, run by
tests/storage/test_contract.py). The service holds backends only through it, so a
wrapper (a circuit breaker, metrics) is a class that takes a backend and
implements the same methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from tenantry.errors import ServiceUnavailable

READ_CHUNK = 1024 * 1024


class StorageUnavailable(ServiceUnavailable):
    """The storage provider did not answer or refused the request (503)."""


class StorageBackendError(Exception):
    """A provider failed (unreachable, refused our credentials, …).

    Deliberately not a TenantryError: a circuit breaker around a backend counts it as
    a failure, while TenantryErrors (404, 413, …) are answers. The service turns it
    into a 503 above the seam.
    """


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider offers beyond get/put/delete, so callers need not guess."""

    presigned_post: bool
    object_acl: bool
    public_urls: bool


class StorageBackend(Protocol):
    """The operations Tenantry needs from a place that keeps bytes under keys."""

    name: str
    capabilities: Capabilities

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        """Store the whole stream under `key` atomically, or nothing if it fails."""

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The content of `key` as chunks; `NotFound` (raised here, not mid-stream)."""

    async def size(self, key: str) -> int | None:
        """The stored size of `key` in bytes, or None when it does not exist."""

    async def delete(self, key: str) -> None:
        """Remove `key`; a key that does not exist is not an error."""

    async def signed_url(self, key: str, expires_in: int) -> str:
        """A GET URL for `key` that stops working after `expires_in` seconds."""

    def public_url(self, key: str) -> str | None:
        """The URL a public file is reachable at without signing, if the provider has one."""

    async def check(self) -> dict[str, Any]:
        """Raise when the provider is unreachable or refuses our credentials."""

    async def remove_incomplete(self, older_than_seconds: float) -> int:
        """Remove what unfinished uploads this old left behind; return how many."""

    async def close(self) -> None: ...
