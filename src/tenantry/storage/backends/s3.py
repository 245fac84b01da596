"""Any S3-compatible bucket (AWS S3, Cloudflare R2) through obstore.

The write path is atomic: an object either completes its upload or the multipart
upload is aborted (obstore aborts it when the stream fails), so no reader ever
sees a partial object under its key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import obstore
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from tenantry.errors import NotFound
from tenantry.settings import Settings
from tenantry.storage.backends.base import READ_CHUNK, Capabilities, StorageBackendError
from tenantry.storage.keys import KEY_PREFIX

# Multipart part size and parts in flight: bounds an upload's buffered memory
# (about PART_SIZE x PART_CONCURRENCY) whatever the file's size.
PART_SIZE = 5 * 1024 * 1024  # S3 minimum part size; 10,000 parts allow files up to ~48 GiB
PART_CONCURRENCY = 4
_S3_CAPABILITIES = Capabilities(presigned_post=True, object_acl=True, public_urls=True)


@dataclass(frozen=True, slots=True)
class S3Config:
    """One S3-compatible bucket. `for_r2` and `for_aws` know each cloud's particulars."""

    provider: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str
    endpoint: str | None = None
    capabilities: Capabilities = _S3_CAPABILITIES

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
