"""The HTTP API with STORAGE_PROVIDER=s3 (loopback SeaweedFS): the same answers as on disk."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from httpx import AsyncClient

from tenantry.settings import Settings
from tests.conftest import ADMIN
from tests.storage.conftest import s3_objects, s3_settings


@pytest.fixture
def settings(settings_factory: Any, s3_bucket: str) -> Settings:
    return s3_settings(settings_factory, s3_bucket, max_upload_bytes=1024 * 1024)


async def test_upload_sign_fetch_and_delete_on_s3(
    client: AsyncClient,
    company_keys: dict[str, dict[str, str]],
    s3_bucket: str,
    loopback: httpx.AsyncClient,
) -> None:
    acme = company_keys["acme"]
    response = await client.post(
        "/api/storage/files",
        data={"category": "invoices"},
        files={"file": ("march.pdf", b"%PDF march", "application/pdf")},
        headers=acme,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["provider"] == "s3"
    assert s3_objects(s3_bucket) == [body["key"]]

    signed = await client.get(
        f"/api/storage/files/{body['key']}/signed-url", params={"expiresIn": "60"}, headers=acme
    )
    url = signed.json()["url"]
    assert url.startswith("http://127.0.0.1:18333/") or "X-Amz-Signature" in url
    fetched = await loopback.get(url)
    assert fetched.status_code == 200
    assert fetched.content == b"%PDF march"
    forged = await loopback.get(url.replace("march.pdf", "april.pdf"))
    assert forged.status_code == 403

    other = await client.get(
        f"/api/storage/files/{body['key']}/signed-url", headers=company_keys["globex"]
    )
    assert other.status_code == 403

    too_big = await client.post(
        "/api/storage/files",
        data={"category": "invoices"},
        files={"file": ("big.bin", b"x" * (1024 * 1024 + 1), "application/octet-stream")},
        headers=acme,
    )
    assert too_big.status_code == 413
    assert s3_objects(s3_bucket) == [body["key"]]

    deleted = await client.delete(f"/api/storage/files/{body['key']}", headers=acme)
    assert deleted.status_code == 204
    assert s3_objects(s3_bucket) == []
    health = await client.get("/api/storage/health", headers=ADMIN)
    assert health.json()["status"] == "up"
    assert health.json()["bucket"] == s3_bucket
