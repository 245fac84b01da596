"""Storage fixtures: a bucket of its own per test on the loopback SeaweedFS server.

SeaweedFS is started by scripts/services.sh (`weed mini` on 127.0.0.1:18333, with
an identity whose SigV4 signatures it checks). Buckets are created and removed
with boto3, used here only for bucket administration.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from tenantry.settings import Settings

S3_ENDPOINT = os.environ.get("TEST_S3_ENDPOINT", "http://127.0.0.1:18333")
S3_ACCESS_KEY = os.environ.get("TEST_S3_ACCESS_KEY", "tenantry-test")
S3_SECRET_KEY = os.environ.get("TEST_S3_SECRET_KEY", "tenantry-test-secret")


def s3_admin(
    endpoint: str = S3_ENDPOINT, access_key: str = S3_ACCESS_KEY, secret_key: str = S3_SECRET_KEY
) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3},
        ),
    )


def empty_and_delete_bucket(client: Any, bucket: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3_bucket() -> Iterator[str]:
    """An empty bucket for this test alone, removed with its contents afterwards."""
    client = s3_admin()
    name = f"tenantry-test-{uuid.uuid4().hex[:16]}"
    try:
        client.create_bucket(Bucket=name)
    except EndpointConnectionError:
        pytest.fail(f"no S3 server at {S3_ENDPOINT}: start it with scripts/services.sh")
    try:
        yield name
    finally:
        empty_and_delete_bucket(client, name)


def s3_objects(bucket: str, client: Any = None) -> list[str]:
    paginator = (client or s3_admin()).get_paginator("list_objects_v2")
    return sorted(
        item["Key"]
        for page in paginator.paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    )


def s3_pending_uploads(bucket: str, client: Any = None) -> list[str]:
    listing = (client or s3_admin()).list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in listing.get("Uploads", [])]


def s3_settings(settings_factory: Any, bucket: str, **overrides: Any) -> Settings:
    made: Settings = settings_factory(
        storage_provider="s3",
        aws_s3_bucket=bucket,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        aws_endpoint_url=S3_ENDPOINT,
        **overrides,
    )
    return made


def stored_files(root: Path) -> list[str]:
    """Every file under an upload directory, including half-written ones in .incoming/."""
    if not root.exists():
        return []
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@pytest.fixture
async def loopback() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for URLs on the loopback S3 server (no Tenantry in between)."""
    async with httpx.AsyncClient(timeout=30) as http:
        yield http
