"""Moving every local file to the cloud provider, provably: copy, verify, then switch.

1. `plan()` (`--dry-run`): what would move — files, bytes, per company. Writes nothing.
2. `copy()`: streams each local file to the target with bounded concurrency and
   retries, checks the bytes read match the record's size and SHA-256 and that the
   target holds that many bytes, then marks the record `migrated_to`. A rerun skips
   marked records, so the copy can be stopped (or crash) and be resumed. When the
   target stops answering (many files in a row fail), the run stops early rather
   than fail every remaining file slowly, one retry at a time.
3. `verify()` (`--verify`): reads every record's object back from the target and
   compares size and SHA-256. A mismatch is reported and its mark cleared, so the
   next copy sends that file again.
4. `switch()` (`--switch`): only after a clean verify, points the verified records at
   the target. Local files are left in place; delete them once you are satisfied.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select, update

from tenantry.db import Database, utcnow
from tenantry.errors import Conflict, NotFound
from tenantry.storage.backends import StorageBackend
from tenantry.storage.records import FileRecord

Progress = Callable[[int], None]  # called with the bytes of each finished file
_BATCH = 500


@dataclass(frozen=True, slots=True)
class CompanyPlan:
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    source: str
    target: str
    files: int
    bytes: int
    already_copied: int
    companies: dict[str, CompanyPlan]


@dataclass(slots=True)
class CopyReport:
    copied: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    not_attempted: int = 0
    stopped_early: str | None = None  # why the run gave up on the target


@dataclass(frozen=True, slots=True)
class _Failure:
    problem: str
    at_target: bool  # the target failed (not the file): many in a row means it is down


@dataclass(frozen=True, slots=True)
class Mismatch:
    key: str
    problem: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    mismatches: list[Mismatch]
    last_id: int

    @property
    def ok(self) -> bool:
        return not self.mismatches


class _SourceDiffers(Exception):
    """The local file no longer matches its record: copying again will not help."""


class StorageMigration:
    def __init__(
        self,
        db: Database,
        source: StorageBackend,
        target: StorageBackend,
        *,
        concurrency: int = 8,
        retries: int = 3,
        retry_delay: float = 0.5,
        give_up_after: int | None = None,
    ) -> None:
        if source.name == target.name:
            raise ValueError(f"source and target are both {source.name!r}")
        self.db = db
        self.source = source
        self.target = target
        self.concurrency = max(1, concurrency)
        self.retries = max(0, retries)
        self.retry_delay = retry_delay
        # Every worker failing twice in a row, at least 10 files: the target is down.
        self.give_up_after = give_up_after or max(10, 2 * self.concurrency)

    # --- plan --------------------------------------------------------------------------

    async def plan(self) -> MigrationPlan:
        query = (
            select(
                FileRecord.company_id,
                func.count(),
                func.coalesce(func.sum(FileRecord.size), 0),
                func.count(FileRecord.migrated_to),
            )
            .where(FileRecord.provider == self.source.name)
            .group_by(FileRecord.company_id)
            .order_by(FileRecord.company_id)
        )
        copied_query = select(func.count()).where(
            FileRecord.provider == self.source.name, FileRecord.migrated_to == self.target.name
        )
        async with self.db.session() as session:
            rows = (await session.execute(query)).all()
            copied = int(await session.scalar(copied_query) or 0)
        companies = {str(row[0]): CompanyPlan(int(row[1]), int(row[2])) for row in rows}
        return MigrationPlan(
            self.source.name,
            self.target.name,
            sum(plan.files for plan in companies.values()),
            sum(plan.bytes for plan in companies.values()),
            copied,
            companies,
        )

    # --- copy --------------------------------------------------------------------------

    async def copy(self, progress: Progress | None = None) -> CopyReport:
        report = CopyReport()
        target_failures_in_a_row = 0

        async def copy_one(record: FileRecord) -> None:
            nonlocal target_failures_in_a_row
            if record.migrated_to == self.target.name:
                report.skipped += 1
            elif report.stopped_early:
                report.not_attempted += 1
            elif (failure := await self._copy_with_retries(record)) is None:
                report.copied += 1
                target_failures_in_a_row = 0
            else:
                report.failed[record.key] = failure.problem
                target_failures_in_a_row = target_failures_in_a_row + 1 if failure.at_target else 0
                if target_failures_in_a_row >= self.give_up_after and not report.stopped_early:
                    report.stopped_early = (
                        f"{target_failures_in_a_row} files in a row could not be copied to "
                        f"{self.target.name}; the last: {failure.problem}"
                    )
            if progress:
                progress(record.size)

        await self._each(self._records([self.source.name]), copy_one)
        return report

    async def _copy_with_retries(self, record: FileRecord) -> _Failure | None:
        """None once copied and checked, or why the file could not be copied."""
        for attempt in range(self.retries + 1):
            try:
                await self._copy(record)
                return None
            except NotFound:
                return _Failure("missing at the source", at_target=False)
            except _SourceDiffers as exc:
                return _Failure(str(exc), at_target=False)
            except Exception as exc:
                if attempt == self.retries:
                    return _Failure(f"{type(exc).__name__}: {exc}", at_target=True)
                await asyncio.sleep(self.retry_delay * 2**attempt)
        return _Failure("not copied", at_target=True)  # pragma: no cover - always returned

    async def _copy(self, record: FileRecord) -> None:
        digest = hashlib.sha256()
        size = 0
        chunks = await self.source.open(record.key)

        async def measured() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        await self.target.put(record.key, measured(), record.content_type)
        if size != record.size or digest.hexdigest() != record.checksum:
            # The target now holds what the disk holds; the record says otherwise.
            await self.target.delete(record.key)
            raise _SourceDiffers("the local file no longer matches its record (size or SHA-256)")
        stored = await self.target.size(record.key)
        if stored != record.size:
            raise OSError(f"target holds {stored} bytes, expected {record.size}")
        async with self.db.session() as session:
            await session.execute(
                update(FileRecord)
                .where(FileRecord.id == record.id)
                .values(migrated_to=self.target.name, migrated_at=utcnow())
            )

    # --- verify ------------------------------------------------------------------------

    async def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Every record's object at the target, read back: size and SHA-256 must match."""
        mismatches: list[Mismatch] = []
        checked = 0
        last_id = 0

        async def verify_one(record: FileRecord) -> None:
            nonlocal checked, last_id
            problem = await self._check_at_target(record)
            checked += 1
            last_id = max(last_id, record.id)
            if problem:
                mismatches.append(Mismatch(record.key, problem))
                await self._unmark(record)
            if progress:
                progress(record.size)

        await self._each(self._records([self.source.name, self.target.name]), verify_one)
        mismatches.sort(key=lambda mismatch: mismatch.key)
        return VerifyReport(checked, mismatches, last_id)

    async def _check_at_target(self, record: FileRecord) -> str | None:
        try:
            chunks = await self.target.open(record.key)
            digest = hashlib.sha256()
            size = 0
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
        except NotFound:
            return "missing at the target"
        if size != record.size:
            return f"size differs: {size} bytes at the target, {record.size} in the record"
        if digest.hexdigest() != record.checksum:
            return "SHA-256 differs from the record"
        return None

    async def _unmark(self, record: FileRecord) -> None:
        if record.provider != self.source.name or record.migrated_to is None:
            return
        async with self.db.session() as session:
            await session.execute(
                update(FileRecord)
                .where(FileRecord.id == record.id)
                .values(migrated_to=None, migrated_at=None)
            )

    # --- switch ------------------------------------------------------------------------

    async def switch(self, progress: Progress | None = None) -> tuple[VerifyReport, int]:
        """Verify, then point every verified record at the target. Refused on a mismatch."""
        report = await self.verify(progress)
        if not report.ok:
            raise Conflict(
                f"{len(report.mismatches)} file(s) differ at {self.target.name}; "
                "run migrate-storage again, then --verify",
                details=[{"key": m.key, "problem": m.problem} for m in report.mismatches],
            )
        async with self.db.session() as session:
            result = await session.execute(
                update(FileRecord)
                .where(
                    FileRecord.provider == self.source.name,
                    FileRecord.id <= report.last_id,  # uploads after the verify wait their turn
                )
                .values(provider=self.target.name, migrated_to=self.target.name)
            )
        return report, int(getattr(result, "rowcount", 0) or 0)

    # --- helpers -----------------------------------------------------------------------

    async def _records(self, providers: list[str]) -> AsyncIterator[FileRecord]:
        """Records in id order, a batch at a time (memory stays flat for any count)."""
        after = 0
        while True:
            query = (
                select(FileRecord)
                .where(FileRecord.provider.in_(providers), FileRecord.id > after)
                .order_by(FileRecord.id)
                .limit(_BATCH)
            )
            async with self.db.session() as session:
                batch = list((await session.scalars(query)).all())
            for record in batch:
                yield record
            if len(batch) < _BATCH:
                return
            after = batch[-1].id

    async def _each(
        self, records: AsyncIterator[FileRecord], work: Callable[[FileRecord], Awaitable[None]]
    ) -> None:
        """Run `work` on every record, `concurrency` at a time."""
        queue: asyncio.Queue[FileRecord | None] = asyncio.Queue(maxsize=self.concurrency * 2)

        async def worker() -> None:
            while (record := await queue.get()) is not None:
                await work(record)

        async with asyncio.TaskGroup() as group:
            for _ in range(self.concurrency):
                group.create_task(worker())
            async for record in records:
                await queue.put(record)
            for _ in range(self.concurrency):
                await queue.put(None)

    async def count(self, providers: list[str]) -> tuple[int, int]:
        """Files and bytes recorded at these providers (for progress totals)."""
        query = select(func.count(), func.coalesce(func.sum(FileRecord.size), 0)).where(
            FileRecord.provider.in_(providers)
        )
        async with self.db.session() as session:
            row = (await session.execute(query)).one()
        return int(row[0]), int(row[1])
