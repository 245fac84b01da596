"""Storage quotas, on local disk and on S3, SQLite and PostgreSQL: checked before bytes
are stored, reserved while they stream, and nothing left behind when refused."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from tenantry.app import create_app
from tenantry.db import utcnow
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


async def test_deleting_a_file_frees_exactly_its_slot(app: Any) -> None:
    services = app.state.services
    await services.tenants.put_company("acme", limits={"storageFiles": 2})
    first, _ = [
        await services.storage.upload(b"x", company_id="acme", category="documents", filename=n)
        for n in ("a", "b")
    ]
    await services.storage.delete(first.key, company_id="acme")
    assert (await services.tenants.company("acme")).storage.files == 1
    await services.storage.upload(b"x", company_id="acme", category="documents", filename="c")
    with pytest.raises(QuotaExceeded):
        await services.storage.upload(b"x", company_id="acme", category="documents", filename="d")


async def test_a_streamed_upload_may_fill_a_quota_of_several_steps(app: Any) -> None:
    """The reservation grows ahead of the bytes; only its own bytes count against it."""
    services = app.state.services
    await services.tenants.put_company("acme", limits={"storageBytes": 3 * 1024 * KiB})
    stored = await services.storage.upload(
        chunks(48, 64 * KiB), company_id="acme", category="documents", filename="big.bin"
    )
    assert stored.size == 3 * 1024 * KiB


async def test_concurrent_uploads_of_large_chunks_stay_within_the_quota(app: Any) -> None:
    services = app.state.services
    await services.tenants.put_company("acme", limits={"storageBytes": 8 * 1024 * KiB})

    async def upload(n: int) -> Any:
        return await services.storage.upload(
            chunks(1, 3 * 1024 * KiB), company_id="acme", category="documents", filename=f"{n}"
        )

    results = await asyncio.gather(*(upload(n) for n in range(4)), return_exceptions=True)
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, QuotaExceeded) for r in results if isinstance(r, BaseException))
    assert sum(f.size for f in stored) <= 8 * 1024 * KiB
    assert len(stored) >= 1


# --- concurrent reservations and the boundaries, on SQLite and PostgreSQL ---------------


@pytest.fixture
async def local(settings_factory: Any) -> AsyncIterator[Any]:
    """The app on local disk only: what these tests check is the database's part."""
    application = create_app(settings_factory())
    application.state.bucket = None
    async with LifespanManager(application):
        yield application


def outcomes(results: list[Any], limit: str) -> list[Any]:
    """The uploads stored; every other one refused with the quota's 403 naming `limit`."""
    refused = [r for r in results if isinstance(r, BaseException)]
    for error in refused:
        assert isinstance(error, QuotaExceeded), repr(error)
        assert (error.status_code, error.details["limit"]) == (403, limit)
    return [r for r in results if not isinstance(r, BaseException)]


async def usage(app: Any, company_id: str = "acme") -> tuple[int, int]:
    company = await app.state.services.tenants.company(company_id)
    return company.storage.bytes, company.storage.files


async def test_concurrent_uploads_near_the_file_quota_get_exactly_the_free_slots(
    local: Any,
) -> None:
    services = local.state.services
    await services.tenants.put_company("acme", limits={"storageFiles": 3})
    kept = await services.storage.upload(
        b"x", company_id="acme", category="documents", filename="kept"
    )
    results = await asyncio.gather(
        *(
            services.storage.upload(b"y", company_id="acme", category="documents", filename=f"{n}")
            for n in range(5)
        ),
        return_exceptions=True,
    )
    stored = outcomes(results, "storageFiles")
    assert len(stored) == 2
    assert await usage(local) == (3, 3)
    assert sorted(objects(local)) == sorted([kept.key, *(f.key for f in stored)])


async def test_concurrent_uploads_get_exactly_the_bytes_that_fit(local: Any) -> None:
    """Of known size (acme) and streamed, of unknown size (globex): each is refused when
    its bytes would cross what the stored files and the other uploads hold."""
    services = local.state.services
    await services.tenants.put_company("acme", limits={"storageBytes": 35 * KiB})
    await services.tenants.put_company("globex", limits={"storageBytes": 100 * KiB})
    known = [
        services.storage.upload(
            os.urandom(10 * KiB), company_id="acme", category="documents", filename=f"{n}"
        )
        for n in range(6)
    ]
    streamed = [
        services.storage.upload(
            chunks(4), company_id="globex", category="documents", filename=f"{n}"
        )
        for n in range(3)
    ]
    results = await asyncio.gather(*known, *streamed, return_exceptions=True)
    stored_known = outcomes(results[:6], "storageBytes")
    stored_streamed = outcomes(results[6:], "storageBytes")
    assert len(stored_known) == 3  # 3 x 10 KiB fit in 35 KiB, a fourth would not
    assert await usage(local, "acme") == (30 * KiB, 3)
    assert len(stored_streamed) == 1  # one 64 KiB upload fits in 100 KiB, two do not
    assert await usage(local, "globex") == (64 * KiB, 1)
    assert sorted(objects(local)) == sorted(f.key for f in stored_known + stored_streamed)


async def test_live_reservations_hold_files_and_bytes_against_each_other(local: Any) -> None:
    """What an upload under way holds (its file, its bytes) counts against every other
    upload until it is committed or released; a quota may be filled to the byte."""
    tenants = local.state.services.tenants
    quota = tenants.quota
    await tenants.put_company("acme", limits={"storageFiles": 3, "storageBytes": 100})
    first = await quota.begin("acme", 60)
    with pytest.raises(QuotaExceeded) as refused:
        await quota.begin("acme", 41)
    assert refused.value.details == {"limit": "storageBytes", "usage": 101, "allowed": 100}
    second = await quota.begin("acme", 40)  # exactly at the quota
    with pytest.raises(QuotaExceeded) as refused:
        await quota.begin("acme", 1)  # one byte over
    assert refused.value.details == {"limit": "storageBytes", "usage": 101, "allowed": 100}
    third = await quota.begin("acme", 0)  # the third file, of no bytes
    with pytest.raises(QuotaExceeded) as refused:
        await quota.begin("acme", 0)
    assert refused.value.details == {"limit": "storageFiles", "usage": 3, "allowed": 3}
    await first.release()
    await third.release()
    await second.commit(40)
    assert await usage(local) == (40, 1)
    again = await quota.begin("acme", 60)  # the released bytes are free again
    with pytest.raises(QuotaExceeded):
        await quota.begin("acme", 1)
    await again.commit(60)
    assert await usage(local) == (100, 2)


async def test_a_streamed_upload_may_end_exactly_at_the_quota_not_a_byte_over(
    local: Any,
) -> None:
    """The boundary as the bytes stream in, beside another upload's live reservation."""
    services = local.state.services
    await services.tenants.put_company("acme", limits={"storageBytes": 100 * KiB})
    held = await services.tenants.quota.begin("acme", 40 * KiB)

    async def stream(*sizes: int) -> AsyncIterator[bytes]:
        for size in sizes:
            yield os.urandom(size)

    with pytest.raises(QuotaExceeded) as refused:
        await services.storage.upload(
            stream(60 * KiB, 1), company_id="acme", category="documents", filename="over"
        )
    assert refused.value.details == {
        "limit": "storageBytes", "usage": 100 * KiB + 1, "allowed": 100 * KiB,
    }  # fmt: skip
    assert objects(local) == []
    stored = await services.storage.upload(
        stream(60 * KiB), company_id="acme", category="documents", filename="exact"
    )
    assert stored.size == 60 * KiB
    await held.release()
    assert await usage(local) == (60 * KiB, 1)
    assert objects(local) == [stored.key]


async def test_an_upload_that_grows_keeps_its_reservation_past_the_first_hour(
    local: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reservation expires an hour after it last grew, not after it began; and an
    upload whose reservation did expire is still held to the quota when it resumes."""
    clock = [utcnow()]
    monkeypatch.setattr("tenantry.tenants.quota.utcnow", lambda: clock[0])
    tenants = local.state.services.tenants
    await tenants.put_company("acme", limits={"storageBytes": 100 * KiB})
    slow = await tenants.quota.begin("acme")
    clock[0] += timedelta(minutes=50)
    await slow.need(10 * KiB)  # holds what is left (its step ahead), for another hour
    clock[0] += timedelta(minutes=20)
    with pytest.raises(QuotaExceeded):
        await tenants.quota.begin("acme", 1)
    clock[0] += timedelta(hours=1)  # it has not grown for an hour: taken for dead
    other = await tenants.quota.begin("acme", 30 * KiB)
    with pytest.raises(QuotaExceeded) as refused:  # it was not: 80 KiB + 30 KiB > 100 KiB
        await slow.need(80 * KiB)
    assert refused.value.details == {
        "limit": "storageBytes", "usage": 110 * KiB, "allowed": 100 * KiB,
    }  # fmt: skip
    await slow.release()
    await other.commit(30 * KiB)
    assert await usage(local) == (30 * KiB, 1)
