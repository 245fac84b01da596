"""Storage quotas, on local disk and on S3, SQLite and PostgreSQL: checked before bytes
are stored, reserved while they stream, and nothing left behind when refused."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from tenantry.app import create_app
from tenantry.errors import QuotaExceeded
from tests.conftest import ADMIN
from tests.storage.conftest import s3_bucket, s3_objects, s3_settings, stored_files

__all__ = ["s3_bucket"]  # the fixture, for the S3 runs

KiB = 1024


@pytest.fixture(params=["local", "s3"])
async def app(request: pytest.FixtureRequest, settings_factory: Any) -> AsyncIterator[Any]:
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        settings = s3_settings(settings_factory, bucket)
    else:
        settings = settings_factory()
    application = create_app(settings)
    application.state.bucket = bucket if request.param == "s3" else None
    async with LifespanManager(application):
        yield application


def objects(app: Any) -> list[str]:
    if app.state.bucket:
        return s3_objects(app.state.bucket)
    return stored_files(Path(app.state.services.settings.upload_dir))


async def chunks(n: int, size: int = 16 * KiB) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield os.urandom(size)


async def test_an_upload_over_the_byte_quota_is_refused_and_leaves_nothing(app: Any) -> None:
    services = app.state.services
    await services.tenants.put_company("acme", limits={"storageBytes": 100 * KiB})
    kept = await services.storage.upload(
        os.urandom(60 * KiB), company_id="acme", category="documents", filename="a.bin"
    )
    with pytest.raises(QuotaExceeded) as refused:  # known size: refused before storing
        await services.storage.upload(
            os.urandom(50 * KiB), company_id="acme", category="documents", filename="b.bin"
        )
    assert refused.value.details == {
        "limit": "storageBytes", "usage": 110 * KiB, "allowed": 100 * KiB,
    }  # fmt: skip
    with pytest.raises(QuotaExceeded):  # streamed: stopped when it crosses the quota
        await services.storage.upload(
            chunks(4), company_id="acme", category="documents", filename="c.bin"
        )
    assert objects(app) == [kept.key]
    listed = await services.storage.list_files("acme")
    assert [f.key for f in listed.files] == [kept.key]
    company = await services.tenants.company("acme")
    assert (company.storage.bytes, company.storage.files) == (60 * KiB, 1)
    # Another company is not held back by acme's quota.
    other = await services.storage.upload(
        os.urandom(200 * KiB), company_id="globex", category="documents", filename="g.bin"
    )
    assert other.size == 200 * KiB
    # Deleting frees the space again.
    await services.storage.delete(kept.key, company_id="acme")
    again = await services.storage.upload(
        chunks(6), company_id="acme", category="documents", filename="d.bin"
    )
    assert again.size == 96 * KiB
    assert (await services.tenants.company("acme")).storage.bytes == 96 * KiB


async def test_the_file_count_quota(app: Any) -> None:
    services = app.state.services
    await services.tenants.put_company("acme", limits={"storageFiles": 2})
    for name in ("a", "b"):
        await services.storage.upload(b"x", company_id="acme", category="documents", filename=name)
    with pytest.raises(QuotaExceeded) as refused:
        await services.storage.upload(b"x", company_id="acme", category="documents", filename="c")
    assert refused.value.details == {"limit": "storageFiles", "usage": 2, "allowed": 2}
    assert len(objects(app)) == 2


async def test_concurrent_uploads_cannot_share_the_last_bytes(app: Any) -> None:
    services = app.state.services
    await services.tenants.put_company("acme", limits={"storageBytes": 100 * KiB})

    async def upload(n: int) -> Any:
        return await services.storage.upload(
            chunks(4), company_id="acme", category="documents", filename=f"{n}.bin"
        )

    results = await asyncio.gather(*(upload(n) for n in range(4)), return_exceptions=True)
    stored = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(stored) + len(refused) == 4
    assert sum(f.size for f in stored) <= 100 * KiB
    assert len(stored) >= 1
    assert sorted(objects(app)) == sorted(f.key for f in stored)


async def test_over_quota_over_http_is_403_naming_the_limit(app: Any) -> None:
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://tenantry.test") as http:
        put = await http.put(
            "/api/companies/acme", json={"limits": {"storageBytes": 10}}, headers=ADMIN
        )
        assert put.status_code == 200, put.text
        response = await http.post(
            "/api/storage/files?companyId=acme",
            files={"file": ("a.txt", b"x" * 11, "text/plain")},
            data={"category": "documents"},
            headers=ADMIN,
        )
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "QUOTA_EXCEEDED"
    assert error["details"] == {"limit": "storageBytes", "usage": 11, "allowed": 10}
    assert objects(app) == []
