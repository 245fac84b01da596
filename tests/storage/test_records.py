"""RecordWriter: group commit that never lets one bad row fail its neighbours."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tenantry import db as database
from tenantry.settings import async_database_url
from tenantry.storage.records import FileRecord, RecordWriter


def row(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "company_id": "acme",
        "category": "docs",
        "filename": "f.pdf",
        "size": 1,
        "content_type": "application/pdf",
        "checksum": "0" * 64,
        "is_public": False,
        "provider": "local",
        "created_at": datetime.now(UTC),
    }


async def test_a_duplicate_row_fails_alone(database_url: str) -> None:
    await asyncio.to_thread(database.upgrade, database_url)
    db = database.Database(async_database_url(database_url))
    writer = RecordWriter(db)
    futures = [writer.submit(row(f"k{index}")) for index in range(10)]
    futures.append(writer.submit(row("k3")))  # the same key again, in the same batch
    results = await asyncio.gather(*futures, return_exceptions=True)
    await writer.close()
    assert results[:10] == [None] * 10
    assert isinstance(results[10], IntegrityError)
    async with db.session() as session:
        keys = sorted((await session.scalars(select(FileRecord.key))).all())
    assert keys == sorted(f"k{index}" for index in range(10))
    await db.dispose()


async def test_cancelling_the_writer_releases_every_waiter(database_url: str) -> None:
    await asyncio.to_thread(database.upgrade, database_url)
    db = database.Database(async_database_url(database_url))
    writer = RecordWriter(db)
    futures = [writer.submit(row(f"c{index}")) for index in range(5)]
    flushers = list(writer._flushers)
    assert flushers
    for flusher in flushers:
        flusher.cancel()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) or r is None for r in results)
    for flusher in flushers:
        with pytest.raises(asyncio.CancelledError):
            await flusher
    await db.dispose()


async def test_a_row_submitted_as_the_last_flusher_returns_is_written(database_url: str) -> None:
    """The flusher's done-callback runs a loop turn after it returns; a row submitted in
    between used to wait for a flusher that would never come (an upload hung for good)."""
    await asyncio.to_thread(database.upgrade, database_url)
    db = database.Database(async_database_url(database_url))
    writer = RecordWriter(db)
    await writer.submit(row("first"))
    returned = asyncio.create_task(asyncio.sleep(0))
    await returned
    writer._flushers.add(returned)  # a flusher that has returned, its callback not yet run
    await asyncio.wait_for(writer.submit(row("second")), 10)
    await writer.close()
    async with db.session() as session:
        keys = sorted((await session.scalars(select(FileRecord.key))).all())
    assert keys == ["first", "second"]
    await db.dispose()
