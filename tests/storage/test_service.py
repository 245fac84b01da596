"""The storage service over every provider (local disk, S3 on loopback SeaweedFS).

Each test runs per provider and per database (SQLite, PostgreSQL), through the
StorageService and — for URLs — through the HTTP server that answers them: the
app for local files, SeaweedFS itself for S3 (which checks SigV4 signatures).
What each backend must do on its own (signed URLs refused when forged or expired
among it) is the shipped contract, run in test_contract.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tenantry import db as database
from tenantry.errors import InvalidInput, NotFound, PayloadTooLarge
from tenantry.http_errors import install_error_handlers
from tenantry.settings import Settings
from tenantry.storage import StorageService
from tenantry.storage.backends import PART_SIZE
from tenantry.storage.records import RecordWriter
from tenantry.storage.routes import router
from tenantry.storage.service import UploadInterrupted
from tests.storage.conftest import (
    s3_admin,
    s3_objects,
    s3_pending_uploads,
    s3_settings,
    stored_files,
)


@dataclass
class Harness:
    provider: str
    settings: Settings
    service: StorageService
    app_client: AsyncClient
    loopback: httpx.AsyncClient
    bucket: str | None

    async def fetch(self, url: str) -> httpx.Response:
        """GET a file URL from whoever serves it: the app (local) or the S3 server."""
        if url.startswith("/"):
            return await self.app_client.get(url)
        return await self.loopback.get(url)

    def leftovers(self) -> list[str]:
        """Every object the provider holds, partial ones included."""
        if self.bucket is not None:
            return s3_objects(self.bucket) + s3_pending_uploads(self.bucket)
        return stored_files(self.settings.upload_dir)

    def abandon_an_upload(self, key: str) -> None:
        """What a process killed mid-upload leaves: a half-written file, an open multipart."""
        if self.bucket is not None:
            client = s3_admin()
            upload = client.create_multipart_upload(Bucket=self.bucket, Key=key)
            client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x"
            )
        else:
            incoming = self.settings.upload_dir / ".incoming"
            incoming.mkdir(parents=True, exist_ok=True)
            (incoming / "upload-abandoned").write_bytes(b"x")


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, settings_factory: Any, loopback: httpx.AsyncClient
) -> AsyncIterator[Harness]:
    bucket = request.getfixturevalue("s3_bucket") if request.param == "s3" else None
    settings = (
        s3_settings(settings_factory, bucket, max_upload_bytes=20 * 1024 * 1024)
        if bucket
        else settings_factory(max_upload_bytes=20 * 1024 * 1024)
    )
    await asyncio.to_thread(database.upgrade, settings.effective_database_url)
    db = database.Database(settings.effective_database_url)
    service = StorageService.from_settings(settings, db, "contract-secret")
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.services = SimpleNamespace(storage=service)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        yield Harness(request.param, settings, service, client, loopback, bucket)
    await service.close()
    await db.dispose()


async def upload(harness: Harness, data: bytes, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "company_id": "acme",
        "category": "documents",
        "filename": "report.pdf",
        "content_type": "application/pdf",
    }
    arguments.update(overrides)
    return await harness.service.upload(data, **arguments)


async def read_all(harness: Harness, key: str, company: str = "acme") -> bytes:
    download = await harness.service.open(key, company_id=company)
    return b"".join([chunk async for chunk in download.chunks])


async def test_upload_then_open_returns_the_same_bytes(storage: Harness) -> None:
    data = os.urandom(5000)
    stored = await upload(storage, data)
    assert stored.key.startswith("companies/acme/documents/")
    assert stored.key.endswith("-report.pdf")
    assert stored.size == 5000
    assert stored.checksum == hashlib.sha256(data).hexdigest()
    assert stored.content_type == "application/pdf"
    assert stored.provider == storage.provider
    assert await read_all(storage, stored.key) == data
    assert await storage.service.backend.size(stored.key) == 5000


async def test_streamed_upload_larger_than_a_part_round_trips(storage: Harness) -> None:
    """More than one multipart part on S3; many small writes on disk."""
    chunk = os.urandom(256 * 1024)
    count = PART_SIZE // len(chunk) * 2 + 3

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield chunk

    stored = await storage.service.upload(
        chunks(),
        company_id="acme",
        category="videos",
        filename="clip.mp4",
        content_type="video/mp4",
    )
    assert stored.size == len(chunk) * count
    assert stored.checksum == hashlib.sha256(chunk * count).hexdigest()
    body = await read_all(storage, stored.key)
    assert hashlib.sha256(body).hexdigest() == stored.checksum
    if storage.bucket:
        assert s3_pending_uploads(storage.bucket) == []


async def test_delete_removes_object_and_record(storage: Harness) -> None:
    stored = await upload(storage, b"to be deleted")
    await storage.service.delete(stored.key, company_id="acme")
    assert await storage.service.backend.size(stored.key) is None
    with pytest.raises(NotFound):
        await storage.service.open(stored.key)
    with pytest.raises(NotFound):
        await storage.service.delete(stored.key)
    assert storage.leftovers() == []
    assert (await storage.service.company_stats("acme")).total_files == 0


async def test_signed_url_lifetime_is_bounded(storage: Harness, subtests: pytest.Subtests) -> None:
    stored = await upload(storage, b"x")
    for expires_in in [0, -1, 7 * 24 * 3600 + 1]:
        with subtests.test(expires_in=expires_in):
            with pytest.raises(InvalidInput) as raised:
                await storage.service.signed_url(stored.key, expires_in)
            assert "expiresIn" in raised.value.message


async def test_stats_match_the_uploaded_files(storage: Harness) -> None:
    rng = random.Random(7)
    expected: dict[str, list[int]] = {"avatars": [], "invoices": [], "exports": []}
    for category, sizes in expected.items():
        for _ in range(rng.randint(1, 4)):
            size = rng.randint(0, 3000)
            sizes.append(size)
            await upload(storage, os.urandom(size), category=category, filename="f.bin")
    await upload(storage, b"not acme's", company_id="globex")
    stats = await storage.service.company_stats("acme")
    assert stats.total_files == sum(len(sizes) for sizes in expected.values())
    assert stats.total_size == sum(sum(sizes) for sizes in expected.values())
    assert {name: (u.files, u.bytes) for name, u in stats.categories.items()} == {
        name: (len(sizes), sum(sizes)) for name, sizes in expected.items()
    }
    globex = await storage.service.company_stats("globex")
    assert (globex.total_files, globex.total_size) == (1, len(b"not acme's"))
    assert (await storage.service.company_stats("initech")).total_files == 0


async def test_companies_are_isolated(storage: Harness) -> None:
    acme = await upload(storage, b"acme data")
    globex = await upload(storage, b"globex data", company_id="globex")
    listed = await storage.service.list_files("globex")
    assert [f.key for f in listed.files] == [globex.key]
    for attempt in (
        storage.service.open(acme.key, company_id="globex"),
        storage.service.signed_url(acme.key, company_id="globex"),
        storage.service.delete(acme.key, company_id="globex"),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert await read_all(storage, acme.key) == b"acme data"


async def test_failed_upload_leaves_nothing_behind(storage: Harness) -> None:
    chunk = os.urandom(1024 * 1024)

    async def breaks_midway() -> AsyncIterator[bytes]:
        for _ in range(PART_SIZE // len(chunk) + 2):  # past the first S3 part
            yield chunk
        raise ConnectionResetError("client went away")

    with pytest.raises(UploadInterrupted) as raised:
        await storage.service.upload(
            breaks_midway(), company_id="acme", category="videos", filename="cut.mp4"
        )
    assert isinstance(raised.value.__cause__, ConnectionResetError)
    assert raised.value.status_code == 400
    assert storage.leftovers() == []
    assert (await storage.service.list_files("acme")).files == []


async def test_upload_over_the_limit_is_413_and_leaves_nothing(storage: Harness) -> None:
    storage.service.max_upload_bytes = PART_SIZE + 1024 * 1024

    async def too_big() -> AsyncIterator[bytes]:
        for _ in range(PART_SIZE // (1024 * 1024) + 3):
            yield os.urandom(1024 * 1024)

    with pytest.raises(PayloadTooLarge):
        await storage.service.upload(
            too_big(), company_id="acme", category="videos", filename="big.mp4"
        )
    assert storage.leftovers() == []
    assert (await storage.service.company_stats("acme")).total_files == 0


async def test_record_failure_removes_the_stored_object(storage: Harness) -> None:
    class DatabaseDown:
        @property
        def engine(self) -> Any:
            raise ConnectionRefusedError("database is down")

    real_records = storage.service.records
    storage.service.records = RecordWriter(DatabaseDown())  # type: ignore[arg-type]
    try:
        with pytest.raises(ConnectionRefusedError):
            await upload(storage, b"stored, then the record fails")
    finally:
        storage.service.records = real_records
    assert storage.leftovers() == []


async def test_public_and_private_urls(storage: Harness) -> None:
    storage.service.cdn_base_url = "https://cdn.example.test"
    public = await upload(
        storage, b"logo", filename="logo.png", content_type="image/png", is_public=True
    )
    private = await upload(storage, b"payroll", filename="payroll.csv", content_type="text/csv")
    assert public.cdn_url == f"https://cdn.example.test/{public.key}"
    assert public.url == public.cdn_url
    assert private.cdn_url is None
    assert "cdn.example.test" not in private.url
    assert (await storage.fetch(private.url)).content == b"payroll"


async def test_unicode_filenames_are_kept_safely(storage: Harness) -> None:
    stored = await upload(storage, b"cv", filename="Résumé 履歴書 (final).pdf")
    assert stored.key.endswith("-Résumé-履歴書-final-.pdf")
    assert stored.filename == "Résumé 履歴書 (final).pdf"
    assert await read_all(storage, stored.key) == b"cv"
    response = await storage.fetch(await storage.service.signed_url(stored.key, 60))
    assert response.status_code == 200
    assert response.content == b"cv"


async def test_concurrent_uploads_are_all_recorded(storage: Harness) -> None:
    """Records written together share a transaction; each upload still gets its own."""
    payloads = [os.urandom(100 + index) for index in range(40)]
    stored = await asyncio.gather(
        *(upload(storage, data, filename=f"f{index}.pdf") for index, data in enumerate(payloads))
    )
    listed = await storage.service.list_files("acme", limit=100)
    assert sorted(f.key for f in listed.files) == sorted(s.key for s in stored)
    for file, data in zip(stored, payloads, strict=True):
        assert await read_all(storage, file.key) == data


async def test_usage_by_company_and_recent_files(storage: Harness) -> None:
    await upload(storage, b"a" * 10, category="docs")
    await upload(storage, b"b" * 5, category="avatars")
    await upload(storage, b"c" * 100, company_id="globex")
    newest = await upload(storage, b"d" * 1, company_id="initech")
    usage = await storage.service.usage_by_company()
    assert [(u.company_id, u.total_files, u.total_size) for u in usage] == [
        ("globex", 1, 100),
        ("acme", 2, 15),
        ("initech", 1, 1),
    ]
    assert {name: (c.files, c.bytes) for name, c in usage[1].categories.items()} == {
        "avatars": (1, 5),
        "docs": (1, 10),
    }
    recent = await storage.service.recent_files(limit=2)
    assert recent[0].key == newest.key
    assert len(recent) == 2


async def test_a_provider_failure_is_a_503_naming_it(storage: Harness) -> None:
    """Past the backend seam a provider's failure is StorageUnavailable (503), not a 500."""
    from tenantry.storage import StorageUnavailable
    from tenantry.storage.backends import StorageBackendError

    stored = await upload(storage, b"kept")

    class Broken:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def put(self, *args: Any) -> None:
            raise StorageBackendError("the provider is down")

        async def open(self, key: str) -> Any:
            raise OSError("disk gone")

    storage.service.wrap_backends(Broken)
    with pytest.raises(StorageUnavailable) as raised:
        await upload(storage, b"lost")
    assert raised.value.status_code == 503
    assert storage.provider in raised.value.message
    with pytest.raises(StorageUnavailable):
        await storage.service.open(stored.key)
    assert (await storage.service.company_stats("acme")).total_files == 1


async def test_unfinished_uploads_are_removed_once_old_enough(storage: Harness) -> None:
    kept = await upload(storage, b"a finished file")
    storage.abandon_an_upload("companies/acme/documents/" + "0" * 32 + "-cut-off.pdf")
    assert len(storage.leftovers()) == 2

    assert await storage.service.remove_incomplete_uploads(3600) == 0  # could still be running
    assert len(storage.leftovers()) == 2
    await asyncio.sleep(1.1)
    assert await storage.service.remove_incomplete_uploads(1) == 1
    assert storage.leftovers() == [kept.key]
    assert await read_all(storage, kept.key) == b"a finished file"
    assert await storage.service.remove_incomplete_uploads(0) == 0
