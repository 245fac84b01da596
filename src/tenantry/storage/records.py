"""The database record of every stored file: stats are a query, migration can verify."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, String, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db import Base, Database, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY, so the id is BIGINT elsewhere.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class FileRecord(Base):
    __tablename__ = "tenantry_storage_files"
    __table_args__ = (
        Index("ix_tenantry_storage_files_company_category", "company_id", "category"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(1024), unique=True)
    company_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    checksum: Mapped[str] = mapped_column(String(64), doc="SHA-256 of the content, hex")
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    provider: Mapped[str] = mapped_column(String(32), doc="Where the bytes live now")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set by `tenantry migrate-storage` once a copy at that provider is verified.
    migrated_to: Mapped[str | None] = mapped_column(String(32), nullable=True)
    migrated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UsageRow(Base):
    """Files and bytes per company and category, kept in the transaction that adds or
    removes a file record: a company's stats read a few rows, not all of its files."""

    __tablename__ = "tenantry_storage_usage"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    files: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)


async def count_usage(
    connection: AsyncConnection | AsyncSession, rows: list[dict[str, Any]], sign: int = 1
) -> None:
    """Add (or, with sign -1, take away) these file records to the usage counters."""
    totals: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        entry = totals.setdefault((row["company_id"], row["category"]), [0, 0])
        entry[0] += sign
        entry[1] += sign * row["size"]
    bind = connection.get_bind() if isinstance(connection, AsyncSession) else connection
    dialect = bind.dialect.name
    insert_for = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert_for(UsageRow)
    statement = statement.on_conflict_do_update(
        index_elements=["company_id", "category"],
        set_={
            "files": UsageRow.files + statement.excluded.files,
            "bytes": UsageRow.bytes + statement.excluded.bytes,
        },
    )
    values = [  # sorted: concurrent writers take the row locks in one order
        {"company_id": company, "category": category, "files": files, "bytes": size}
        for (company, category), (files, size) in sorted(totals.items())
    ]
    await connection.execute(statement, values)


class RecordWriter:
    """Inserts upload records with group commit: rows that arrive together share a transaction.

    Under concurrent uploads the database round trip and statement overhead is paid
    once per batch instead of once per file (one multi-row INSERT). A lone upload
    is written at once, as before. If a batch fails, its rows are retried one by
    one, so only the row at fault fails.
    """

    def __init__(self, db: Database, max_batch: int = 128, max_flushers: int = 1) -> None:
        self._db = db
        self._max_batch = max_batch
        # Transactions in flight at once. One measured best here (benchmarks/storage):
        # more commits cost more than the wait for the current one saves.
        self._max_flushers = max_flushers
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    def submit(self, values: dict[str, Any]) -> asyncio.Future[None]:
        """Queue one row; the future completes once it is committed (or fails)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((values, future))
        # A flusher that has returned is done at once, but leaves the set only when its
        # callback runs, a loop turn later: counted as running, it would strand this row.
        running = sum(not flusher.done() for flusher in self._flushers)
        if running < self._max_flushers:
            flusher = asyncio.create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._release_if_stopped)
        return future

    def _release_if_stopped(self, flusher: asyncio.Task[None]) -> None:
        """A flusher cancelled (even before it ran) must not leave uploads waiting."""
        self._flushers.discard(flusher)
        stopped = flusher.cancelled() or flusher.exception() is not None
        if stopped and not self._flushers:
            for _, future in self._pending:
                future.cancel()
            self._pending.clear()

    async def close(self) -> None:
        if self._flushers:
            await asyncio.wait(list(self._flushers))

    async def _flush(self) -> None:
        batch: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        try:
            # Rows may arrive while the connection closes: the outer loop picks them up.
            while self._pending:
                # One connection for the whole burst: no pool checkout (and ping) per batch.
                async with self._db.engine.connect() as connection:
                    while self._pending:
                        await asyncio.sleep(0)  # one loop turn: uploads finishing together join
                        batch = self._pending[: self._max_batch]
                        del self._pending[: self._max_batch]
                        await self._write(connection, batch)
        except Exception as exc:  # no connection: every waiting upload hears why
            for _, future in batch + self._pending:
                _settle(future, exc)
            self._pending.clear()
        finally:  # cancelled with the app: nobody may be left waiting forever
            for _, future in batch + self._pending:
                if not future.done():
                    future.cancel()

    async def _write(
        self, connection: AsyncConnection, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]
    ) -> None:
        try:
            await _insert(connection, [values for values, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for values, future in batch:  # find the row at fault; the others go in
                try:
                    await _insert(connection, [values])
                except Exception as row_error:
                    _settle(future, row_error)
                else:
                    _settle(future, None)
        else:
            for _, future in batch:
                _settle(future, None)


async def _insert(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    async with connection.begin():
        await connection.execute(_INSERT, rows)
        await count_usage(connection, rows)


_INSERT = insert(FileRecord)  # built once: SQLAlchemy reuses its compiled form


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
