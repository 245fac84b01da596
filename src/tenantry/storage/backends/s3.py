"""Where the bytes go: local disk, or any S3-compatible bucket (AWS S3, Cloudflare R2).

Every backend implements `StorageBackend`, a deliberately small interface, and
passes the same contract tests (tests/storage/test_contract.py). The service
holds backends only through it, so a wrapper (a circuit breaker, metrics) is a
class that takes a backend and implements the same six methods.

Both write paths are atomic: a local file is written to `.incoming/` and renamed
into place; an S3 object either completes its upload or the multipart upload is
aborted (obstore aborts it when the stream fails), so no reader ever sees a
partial object under its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import quote, urlencode

import obstore
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from tenantry.errors import InvalidInput, NotFound, ServiceUnavailable
from tenantry.settings import Settings
from tenantry.storage.keys import KEY_PREFIX
from tenantry.storage.signing import UrlSigner
from tenantry.tempfiles import remove_expired_files

READ_CHUNK = 1024 * 1024
# Multipart part size and parts in flight: bounds an upload's buffered memory
# (about PART_SIZE x PART_CONCURRENCY) whatever the file's size.
PART_SIZE = 5 * 1024 * 1024  # S3 minimum part size; 10,000 parts allow files up to ~48 GiB
PART_CONCURRENCY = 4


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


# --- local disk -------------------------------------------------------------


class LocalBackend:
    """Files under `root`, served by the app (`/files/…` signed, `/public/…`)."""

    name = "local"
    capabilities = Capabilities(presigned_post=False, object_acl=False, public_urls=True)

    def __init__(self, root: Path, signer: UrlSigner, base_url: str | None = None) -> None:
        self.root = root.resolve()
        self._incoming = self.root / ".incoming"
        self._signer = signer
        self._base_url = (base_url or "").rstrip("/")

    def path(self, key: str) -> Path:
        """The file for `key`, refusing any key that could leave `root`."""
        parts = key.split("/")
        if (
            key.startswith("/")
            or "\\" in key
            or "\x00" in key
            or any(part in ("", ".", "..") for part in parts)
            or parts[0] == self._incoming.name
        ):
            raise InvalidInput("key is not a valid storage path", details={"field": "key"})
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidInput("key is not a valid storage path", details={"field": "key"})
        return path

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        target = self.path(key)
        await asyncio.to_thread(self._incoming.mkdir, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self._incoming, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as file:
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
                await asyncio.to_thread(_flush_and_sync, file)
            await asyncio.to_thread(_move_into_place, Path(temporary), target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)  # synchronous: must run even when the task is cancelled
            raise

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no stored object {key!r}") from None
        return _read_chunks(file)

    async def size(self, key: str) -> int | None:
        try:
            stat = await asyncio.to_thread(self.path(key).stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return stat.st_size

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def signed_url(self, key: str, expires_in: int) -> str:
        self.path(key)
        expires = int(time.time()) + expires_in
        query = urlencode({"expires": expires, "signature": self._signer.signature(key, expires)})
        return f"{self._base_url}/files/{quote(key)}?{query}"

    def public_url(self, key: str) -> str:
        return f"{self._base_url}/public/{quote(key)}"

    async def check(self) -> dict[str, Any]:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise PermissionError(f"{self.root} is not writable")
        return {"path": str(self.root)}

    async def remove_incomplete(self, older_than_seconds: float) -> int:
        # A file being written has a fresh mtime; one left by a crash stops ageing it.
        return await asyncio.to_thread(remove_expired_files, self._incoming, older_than_seconds)

    async def close(self) -> None:
        return None


def _flush_and_sync(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())  # the rename below must never publish bytes still in flight


def _move_into_place(temporary: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temporary, target)


async def _read_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    with file:
        while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
            yield chunk


# --- S3 and Cloudflare R2 ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Config:
    """One S3-compatible bucket. `for_r2` and `for_aws` know each cloud's particulars."""

    provider: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str
    endpoint: str | None = None
    capabilities: Capabilities = Capabilities(
        presigned_post=True, object_acl=True, public_urls=True
    )

    @classmethod
    def for_aws(
        cls,
        bucket: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        endpoint: str | None = None,
    ) -> S3Config:
        return cls("s3", bucket, region, access_key_id, secret_access_key, endpoint)

    @classmethod
    def for_r2(
        cls, account_id: str, bucket: str, access_key_id: str, secret_access_key: str
    ) -> S3Config:
        # R2 signs with region "auto", has no presigned POST and no object ACLs: public
        # files are reached through CDN_BASE_URL (a custom domain on the bucket), never ACLs.
        return cls(
            "cloudflare-r2",
            bucket,
            "auto",
            access_key_id,
            secret_access_key,
            f"https://{account_id}.r2.cloudflarestorage.com",
            Capabilities(presigned_post=False, object_acl=False, public_urls=False),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Config:
        if settings.storage_provider == "cloudflare-r2":
            return cls.for_r2(
                settings.cloudflare_account_id or "",
                settings.cloudflare_r2_bucket or "",
                settings.cloudflare_r2_access_key_id or "",
                _secret(settings.cloudflare_r2_secret_access_key),
            )
        return cls.for_aws(
            settings.aws_s3_bucket or "",
            settings.aws_region,
            settings.aws_access_key_id or "",
            _secret(settings.aws_secret_access_key),
            settings.aws_endpoint_url,
        )

    def store(self) -> S3Store:
        """The obstore client. No request is made until the first operation.

        Tenantry never asks for ACLs or extra checksum headers, which R2 rejects.
        """
        options: Any = {"timeout": "600s", "connect_timeout": "10s"}
        extra: dict[str, Any] = {}
        if self.endpoint:
            extra["endpoint"] = self.endpoint
            extra["virtual_hosted_style_request"] = False
            options["allow_http"] = self.endpoint.startswith("http://")
        return S3Store(
            self.bucket,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            client_options=options,
            # A few quick retries, not obstore's default of ten over three minutes: a
            # caller (or a circuit breaker around this backend) should hear of an outage.
            retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=20)},
            **extra,
        )

    def admin_client(self) -> Any:
        """A boto3 client for what obstore does not do (listing multipart uploads)."""
        # Imported here: boto3 costs ~30 MB of memory, and only the cleanup job needs it.
        import boto3
        from botocore.config import Config as BotoConfig

        return boto3.client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=BotoConfig(
                # No extra checksum headers (R2 rejects some); few quick retries, as above.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                s3={"addressing_style": "path" if self.endpoint else "auto"},
            ),
        )


def _secret(value: Any) -> str:
    return str(value.get_secret_value()) if value is not None else ""


class S3Backend:
    """An S3-compatible bucket through obstore (async, streaming multipart, SigV4 presigning)."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.name = config.provider
        self.capabilities = config.capabilities
        self.store = config.store()

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        attributes: Any = {"Content-Type": content_type}
        stream = aiter(chunks)
        head, finished = await _read_up_to(stream, PART_SIZE)
        try:
            if finished:  # small file: one PUT instead of a three-request multipart upload
                await obstore.put_async(
                    self.store, key, head, attributes=attributes, use_multipart=False
                )
            else:
                parts = _prepend(head, stream)
                del head  # the first part is then held only until it is sent
                await obstore.put_async(
                    self.store,
                    key,
                    parts,
                    attributes=attributes,
                    chunk_size=PART_SIZE,
                    max_concurrency=PART_CONCURRENCY,
                )
        except ObjectStoreError as exc:
            raise _unavailable(self.name, "store", exc) from exc

    async def open(self, key: str) -> AsyncIterator[bytes]:
        try:
            result = await obstore.get_async(self.store, key)
        except (NotFoundError, FileNotFoundError):
            raise NotFound(f"no stored object {key!r}") from None
        except ObjectStoreError as exc:
            raise _unavailable(self.name, "read", exc) from exc
        return _bytes_of(result.stream(min_chunk_size=READ_CHUNK))

    async def size(self, key: str) -> int | None:
        try:
            meta = await obstore.head_async(self.store, key)
        except (NotFoundError, FileNotFoundError):
            return None
        except ObjectStoreError as exc:
            raise _unavailable(self.name, "inspect", exc) from exc
        return int(meta["size"])

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self.store, key)
        except (NotFoundError, FileNotFoundError):
            return
        except ObjectStoreError as exc:
            raise _unavailable(self.name, "delete", exc) from exc

    async def signed_url(self, key: str, expires_in: int) -> str:
        try:  # a local HMAC computation: no request is made, so no need to await one
            return obstore.sign(self.store, "GET", key, timedelta(seconds=expires_in))
        except ObjectStoreError as exc:
            raise _unavailable(self.name, "sign", exc) from exc

    def public_url(self, key: str) -> str | None:
        """The object's plain URL (public only if the bucket policy says so); R2 has none."""
        if not self.capabilities.public_urls:
            return None
        if self.config.endpoint:
            return f"{self.config.endpoint.rstrip('/')}/{self.config.bucket}/{quote(key)}"
        host = f"{self.config.bucket}.s3.{self.config.region}.amazonaws.com"
        return f"https://{host}/{quote(key)}"

    async def check(self) -> dict[str, Any]:
        # A HEAD on a key that need not exist proves the endpoint answers and accepts
        # our signature (a wrong secret is refused) without listing the bucket.
        await self.size(".tenantry-health-check")
        return {"bucket": self.config.bucket}

    async def remove_incomplete(self, older_than_seconds: float) -> int:
        """Abort multipart uploads under Tenantry's prefix started this long ago.

        obstore aborts a failed upload itself, unless the provider is gone at that
        moment (or the process dies): those uploads stay, invisible but billed, until
        aborted here. obstore cannot list or abort them, so boto3 does (in a thread).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(self._abort_uploads_before, older_than_seconds)
        except (BotoCoreError, ClientError) as exc:
            raise StorageBackendError(
                f"storage provider {self.name} could not abort unfinished uploads: "
                f"{type(exc).__name__}"
            ) from exc

    def _abort_uploads_before(self, older_than_seconds: float) -> int:
        client = self.config.admin_client()
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.config.bucket, Prefix=KEY_PREFIX
        )
        stale = [
            upload
            for page in pages
            for upload in page.get("Uploads", [])
            if upload["Initiated"] <= cutoff
        ]
        for upload in stale:
            client.abort_multipart_upload(
                Bucket=self.config.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        return len(stale)

    async def close(self) -> None:
        return None


def _unavailable(provider: str, action: str, exc: Exception) -> StorageBackendError:
    return StorageBackendError(
        f"storage provider {provider} could not {action} the object: {type(exc).__name__}"
    )


async def _read_up_to(stream: AsyncIterator[bytes], limit: int) -> tuple[bytes, bool]:
    """The first `limit`-or-more bytes of `stream`, and whether the stream ended there."""
    buffered: list[bytes] = []
    total = 0
    async for chunk in stream:
        buffered.append(chunk)
        total += len(chunk)
        if total > limit:
            return b"".join(buffered), False
    return buffered[0] if len(buffered) == 1 else b"".join(buffered), True


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    del first  # not kept for the rest of a long upload
    async for chunk in rest:
        yield chunk


async def _bytes_of(stream: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield bytes(chunk)


def backend_from_settings(settings: Settings, signer: UrlSigner, provider: str) -> StorageBackend:
    """The backend for `provider` as configured: local disk, or the configured bucket."""
    if provider == "local":
        return LocalBackend(settings.upload_dir, signer, settings.storage_local_url)
    if provider != settings.storage_provider:
        raise StorageUnavailable(
            f"files stored with provider {provider!r} cannot be reached: "
            f"STORAGE_PROVIDER is {settings.storage_provider!r}",
            details={"provider": provider},
        )
    return S3Backend(S3Config.from_settings(settings))
