"""Local → S3 migration: interrupted and resumed, verified, a corrupted object caught, switched."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterable
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tenantry import cli
from tenantry import db as database
from tenantry.settings import Settings
from tenantry.storage import StorageService
from tenantry.storage.backends import S3Backend, S3Config, StorageBackend
from tenantry.storage.migrate import StorageMigration
from tenantry.storage.records import FileRecord
from tests.storage.conftest import (
    S3_ACCESS_KEY,
    S3_ENDPOINT,
    S3_SECRET_KEY,
    s3_admin,
    s3_objects,
    s3_settings,
)

FILES = 300


class StopsTheRunAfter:
    """Wraps the target; once `count` objects are stored it signals, so the test cancels."""

    def __init__(self, inner: StorageBackend, count: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.stored = 0
        self.reached = asyncio.Event()
        self.count = count

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        await self.inner.put(key, chunks, content_type)
        self.stored += 1
        if self.stored >= self.count:
            self.reached.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def upload_local_files(settings: Settings) -> dict[str, bytes]:
    await asyncio.to_thread(database.upgrade, settings.effective_database_url)
    db = database.Database(settings.effective_database_url)
    service = StorageService.from_settings(settings, db, "secret")
    rng = random.Random(3)
    contents: dict[str, bytes] = {}
    limit = asyncio.Semaphore(16)

    async def one(index: int) -> None:
        data = os.urandom(rng.randint(0, 4096))
        async with limit:
            stored = await service.upload(
                data,
                company_id=("acme", "globex", "initech")[index % 3],
                category=("docs", "avatars")[index % 2],
                filename=f"file-{index}.bin",
            )
        contents[stored.key] = data

    await asyncio.gather(*(one(i) for i in range(FILES)))
    await db.dispose()
    return contents


async def interrupted_copy(settings: Settings, bucket: str, after: int) -> int:
    """Start copying, cancel the run once `after` files are stored; return records marked."""
    db = database.Database(settings.effective_database_url)
    service = StorageService.from_settings(settings, db, "secret")
    target = StopsTheRunAfter(
        S3Backend(S3Config.for_aws(bucket, "us-east-1", S3_ACCESS_KEY, S3_SECRET_KEY, S3_ENDPOINT)),
        after,
    )
    migration = StorageMigration(db, service.backend, target, concurrency=8)  # type: ignore[arg-type]
    run = asyncio.create_task(migration.copy())
    await target.reached.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    async with db.session() as session:
        marked = len(
            (await session.scalars(select(FileRecord).where(FileRecord.migrated_to == "s3"))).all()
        )
    await db.dispose()
    return marked


async def records(settings: Settings) -> list[FileRecord]:
    db = database.Database(settings.effective_database_url)
    async with db.session() as session:
        rows = list((await session.scalars(select(FileRecord))).all())
    await db.dispose()
    return rows


async def read_through_s3_service(settings: Settings, key: str) -> bytes:
    db = database.Database(settings.effective_database_url)
    service = StorageService.from_settings(settings, db, "secret")
    download = await service.open(key)
    data = b"".join([chunk async for chunk in download.chunks])
    await db.dispose()
    return data


def invoke(*arguments: str) -> Any:
    result = CliRunner().invoke(cli.app, ["migrate-storage", *arguments])
    return result


@pytest.fixture
def cli_env(
    settings_factory: Any, s3_bucket: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Settings]:
    local = settings_factory()
    cloud = s3_settings(settings_factory, s3_bucket)
    for name, value in {
        "DATABASE_URL": database_url,
        "UPLOAD_DIR": str(local.upload_dir),
        "TENANTRY_DATA_DIR": str(local.data_dir),
        "STORAGE_PROVIDER": "s3",
        "AWS_S3_BUCKET": s3_bucket,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_ENDPOINT_URL": S3_ENDPOINT,
        "COLUMNS": "200",
    }.items():
        monkeypatch.setenv(name, value)
    return local, cloud


def test_migration_is_resumable_verified_and_catches_corruption(
    cli_env: tuple[Settings, Settings], s3_bucket: str
) -> None:
    local, cloud = cli_env
    contents = asyncio.run(upload_local_files(local))
    assert len(contents) == FILES

    dry = invoke("--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"{FILES} files" in dry.output
    for company in ("acme", "globex", "initech"):
        assert company in dry.output
    assert s3_objects(s3_bucket) == []  # a dry run writes nothing

    # With STORAGE_PROVIDER=s3 already, files not yet moved are still read from disk.
    first = sorted(contents)[1]
    assert asyncio.run(read_through_s3_service(cloud, first)) == contents[first]

    marked = asyncio.run(interrupted_copy(local, s3_bucket, after=120))
    # Copies in flight when the run stopped are stored but unmarked: they are sent again.
    assert 120 - 8 <= marked < FILES

    resumed = invoke()
    assert resumed.exit_code == 0, resumed.output
    assert f"Copied {FILES - marked}, skipped {marked}" in resumed.output
    assert s3_objects(s3_bucket) == sorted(contents)

    verified = invoke("--verify")
    assert verified.exit_code == 0, verified.output
    assert f"All {FILES} files verified" in verified.output

    corrupted = sorted(contents)[42]
    s3_admin().put_object(Bucket=s3_bucket, Key=corrupted, Body=b"bit rot")
    failed = invoke("--verify")
    assert failed.exit_code == 1
    assert f"mismatch {corrupted}" in failed.output
    assert "1 of 300 files differ" in failed.output

    refused = invoke("--switch")
    assert refused.exit_code == 1
    assert all(record.provider == "local" for record in asyncio.run(records(local)))

    repaired = invoke()
    assert repaired.exit_code == 0, repaired.output
    assert f"Copied 1, skipped {FILES - 1}" in repaired.output
    switched = invoke("--switch")
    assert switched.exit_code == 0, switched.output
    assert f"{FILES} records now point at s3" in switched.output
    assert {record.provider for record in asyncio.run(records(local))} == {"s3"}
    # The files are now read from the bucket, byte for byte.
    for key in (sorted(contents)[0], corrupted):
        assert asyncio.run(read_through_s3_service(cloud, key)) == contents[key]


def test_a_missing_or_altered_local_file_is_reported_not_copied(
    cli_env: tuple[Settings, Settings], s3_bucket: str
) -> None:
    local, _ = cli_env

    async def two_files() -> list[str]:
        await asyncio.to_thread(database.upgrade, local.effective_database_url)
        db = database.Database(local.effective_database_url)
        service = StorageService.from_settings(local, db, "secret")
        keys = [
            (await service.upload(b"x" * n, company_id="acme", category="d", filename="f")).key
            for n in (10, 20, 30)
        ]
        await db.dispose()
        return keys

    gone, altered, fine = asyncio.run(two_files())
    (local.upload_dir / gone).unlink()
    (local.upload_dir / altered).write_bytes(b"changed behind our back")
    result = invoke("--retries", "0")
    assert result.exit_code == 1
    assert f"failed {gone}: missing at the source" in result.output
    assert f"failed {altered}: the local file no longer matches its record" in result.output
    assert s3_objects(s3_bucket) == [fine]
    verify = invoke("--verify")
    assert verify.exit_code == 1
    assert f"mismatch {gone}: missing at the target" in verify.output


def test_migrate_storage_needs_a_cloud_provider(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_factory()
    monkeypatch.setenv("STORAGE_PROVIDER", "local")
    result = invoke("--dry-run")
    assert result.exit_code == 2
    assert "STORAGE_PROVIDER" in result.output
    both = invoke("--verify", "--switch")
    assert both.exit_code == 2


class Unreachable:
    """A target that is down: every store fails, as a stopped server's would."""

    name = "s3"

    def __init__(self) -> None:
        self.attempts = 0

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        self.attempts += 1
        raise OSError("connection refused")


async def test_a_copy_stops_early_when_the_target_stops_answering(
    settings_factory: Any,
) -> None:
    local = settings_factory()
    contents = await upload_local_files(local)
    db = database.Database(local.effective_database_url)
    source = StorageService.from_settings(local, db, "secret").backend
    target = Unreachable()
    migration = StorageMigration(
        db,
        source,
        target,  # type: ignore[arg-type]
        concurrency=4,
        retries=1,
        retry_delay=0,
    )
    report = await migration.copy()
    await db.dispose()

    assert migration.give_up_after == 10
    assert report.stopped_early is not None
    assert "10 files in a row could not be copied to s3" in report.stopped_early
    # The files in flight when it gave up fail too; the rest are left for the rerun.
    assert 10 <= len(report.failed) < 10 + 4
    assert report.not_attempted == len(contents) - len(report.failed)
    assert report.copied == 0
    assert target.attempts == len(report.failed) * 2  # each tried twice (one retry)
