"""The shipped storage contract (tenantry.testing.storage), run against every backend.

Local disk and S3 (on loopback SeaweedFS, which checks SigV4 signatures) run each
check as its own test; a toy in-memory backend defined here shows a user's backend
runs the same suite, and that the suite catches a broken one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import httpx
import pytest

from tenantry.errors import Forbidden, NotFound
from tenantry.storage.backends import Capabilities, LocalBackend, S3Backend, S3Config
from tenantry.storage.signing import UrlSigner
from tenantry.testing.storage import (
    STORAGE_CONTRACT,
    Check,
    ContractViolation,
    Fetch,
    run_storage_contract,
)
from tests.storage.conftest import S3_ACCESS_KEY, S3_ENDPOINT, S3_SECRET_KEY

SIGNER = UrlSigner("contract-secret")


def local_fetch(backend: LocalBackend) -> Fetch:
    """What the app's /files route does for a signed URL, without the file records."""

    async def fetch(url: str) -> tuple[int, bytes]:
        parts = urlsplit(url)
        key = unquote(parts.path.removeprefix("/files/"))
        query = dict(parse_qsl(parts.query))
        try:
            SIGNER.verify(key, query.get("expires", ""), query.get("signature", ""))
            chunks = await backend.open(key)
        except Forbidden:
            return 403, b""
        except NotFound:
            return 404, b""
        return 200, b"".join([chunk async for chunk in chunks])

    return fetch


def http_fetch(client: httpx.AsyncClient) -> Fetch:
    async def fetch(url: str) -> tuple[int, bytes]:
        response = await client.get(url)
        return response.status_code, response.content

    return fetch


@pytest.mark.parametrize("check", STORAGE_CONTRACT, ids=lambda check: check.__name__)
@pytest.mark.parametrize("provider", ["local", "s3"])
async def test_storage_contract(
    provider: str,
    check: Check,
    tmp_path: Path,
    loopback: httpx.AsyncClient,
    request: pytest.FixtureRequest,
) -> None:
    if provider == "local":
        local = LocalBackend(tmp_path / "files", SIGNER)
        await check(local, local_fetch(local))
        return
    bucket = request.getfixturevalue("s3_bucket")
    s3 = S3Backend(S3Config.for_aws(bucket, "us-east-1", S3_ACCESS_KEY, S3_SECRET_KEY, S3_ENDPOINT))
    try:
        await check(s3, http_fetch(loopback))
    finally:
        await s3.close()


# --- a user's backend: defined here, run through the shipped contract ----------------


class MemoryBackend:
    """Objects in a dict; signed URLs `memory:///{key}?expires=…&signature=…`."""

    name = "memory"
    capabilities = Capabilities(presigned_post=False, object_acl=False, public_urls=False)

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._secret = b"toy-secret"

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        self.objects[key] = b"".join([chunk async for chunk in chunks])  # whole, or nothing

    async def open(self, key: str) -> AsyncIterator[bytes]:
        if key not in self.objects:
            raise NotFound(f"no stored object {key!r}")
        return _once(self.objects[key])

    async def size(self, key: str) -> int | None:
        data = self.objects.get(key)
        return None if data is None else len(data)

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def signed_url(self, key: str, expires_in: int) -> str:
        expires = int(time.time()) + expires_in
        query = urlencode({"expires": expires, "signature": self.signature(key, expires)})
        return f"memory:///{quote(key)}?{query}"

    def signature(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{expires}\n{key}".encode(), hashlib.sha256).hexdigest()

    def public_url(self, key: str) -> str | None:
        return None

    async def check(self) -> dict[str, Any]:
        return {"objects": len(self.objects)}

    async def remove_incomplete(self, older_than_seconds: float) -> int:
        return 0

    async def close(self) -> None:
        return None

    async def fetch(self, url: str) -> tuple[int, bytes]:
        """The toy's own 'server' for its signed URLs."""
        parts = urlsplit(url)
        key = unquote(parts.path.removeprefix("/"))
        query = dict(parse_qsl(parts.query))
        expires = query.get("expires", "")
        if not expires.isdigit() or int(expires) <= time.time():
            return 403, b""
        if not hmac.compare_digest(query.get("signature", ""), self.signature(key, int(expires))):
            return 403, b""
        if key not in self.objects:
            return 404, b""
        return 200, self.objects[key]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class SizeOffByOne(MemoryBackend):
    async def size(self, key: str) -> int | None:
        size = await super().size(key)
        return None if size is None else size + 1


class DeleteKeepsTheObject(MemoryBackend):
    async def delete(self, key: str) -> None:
        return None


class KeepsPartialUploads(MemoryBackend):
    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        self.objects[key] = b""
        async for chunk in chunks:
            self.objects[key] += chunk


async def test_a_backend_defined_in_a_test_file_keeps_the_shipped_contract() -> None:
    backend = MemoryBackend()
    await run_storage_contract(backend, backend.fetch)
    assert backend.objects == {}  # every check removed what it wrote


@pytest.mark.parametrize(
    ("broken", "rule"),
    [
        (SizeOffByOne, "size"),
        (DeleteKeepsTheObject, "once deleted"),
        (KeepsPartialUploads, "failed upload stores no object"),
    ],
)
async def test_the_contract_fails_a_broken_backend(broken: type[MemoryBackend], rule: str) -> None:
    backend = broken()
    with pytest.raises(ContractViolation, match=rule):
        await run_storage_contract(backend, backend.fetch)
