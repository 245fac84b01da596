"""A company's data as CSV, stored through Storage: what the export and report jobs make.

Kinds: `files` (one row per file), `usage` (files and bytes per category) and
`queries` (per statement shape: calls, mean/p95/p99 latency, rows, slow count) from the
query monitor. The CSV is uploaded as a private file of the company and the job's
result carries its key and a signed URL valid for JOB_EXPORT_URL_EXPIRES_SECONDS
(at most what Storage allows, 7 days).

Idempotent: the file is named after the job's request id, and a re-run (after a worker
crash) finds the file it already stored instead of storing a second one.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from tenantry.jobs.registry import JobContext
from tenantry.storage.service import MAX_EXPIRES_IN

if TYPE_CHECKING:
    from tenantry.queries.service import QueryOptimizer
    from tenantry.storage.service import StorageService, StoredFile

Kind = Literal["files", "usage", "queries"]
Format = Literal["csv"]
_PAGE = 200
# The CSV header: the API's field names, in the order query_rows() writes them.
QUERY_COLUMNS = ["shapeId", "statement", "calls", "meanMs", "p95Ms", "p99Ms", "rows", "slowCount"]
FILE_COLUMNS = ["key", "filename", "category", "size", "contentType", "checksum", "createdAt"]


def output_id(job: JobContext, request_id: str | None) -> str:
    """What names this job's file: the request id the producer put in its data (unique
    even when job ids restart, as in-process ones do), else the job id."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request_id or job.id)[:64]


def to_csv(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


@dataclass(frozen=True, slots=True)
class CompanyData:
    """What the export and report handlers need: the files, the query figures, and how
    long the link to the result stays valid."""

    storage: StorageService
    queries: QueryOptimizer
    url_expires_seconds: int = 86400

    async def csv(
        self,
        company_id: str,
        kind: Kind,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[bytes, int]:
        """The CSV bytes of one kind of data, and its number of data rows."""
        if kind == "queries":
            rows = await self._query_rows(company_id)
            return to_csv(QUERY_COLUMNS, rows), len(rows)
        files = await self._files_between(company_id, since, until)
        if kind == "files":
            rows = [
                [
                    f.key,
                    f.filename,
                    f.category,
                    f.size,
                    f.content_type,
                    f.checksum,
                    f.created_at.isoformat(),
                ]
                for f in files
            ]
            return to_csv(FILE_COLUMNS, rows), len(rows)
        usage: dict[str, list[int]] = {}
        for f in files:
            entry = usage.setdefault(f.category, [0, 0])
            entry[0] += 1
            entry[1] += f.size
        rows = [[category, n, size] for category, (n, size) in sorted(usage.items())]
        rows.append(["total", sum(r[1] for r in rows), sum(r[2] for r in rows)])
        return to_csv(["category", "files", "bytes"], rows), len(rows)

    async def store(
        self, job: JobContext, category: str, filename: str, content: bytes, rows: int
    ) -> dict[str, Any]:
        """Upload the CSV (once: a re-run reuses it) and answer its key and a signed URL."""
        stored = await self._previous(job.company_id, category, filename)
        if stored is None:
            stored = await self.storage.upload(
                content,
                company_id=job.company_id,
                category=category,
                filename=filename,
                content_type="text/csv",
            )
        else:
            await job.log(f"reusing {stored.key} stored by an earlier attempt")
        expires_in = min(self.url_expires_seconds, MAX_EXPIRES_IN)
        url = await self.storage.signed_url(stored.key, expires_in, company_id=job.company_id)
        expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
        await job.log(f"stored {rows} row(s) as {stored.key}")
        await job.progress(100)
        return {
            "key": stored.key,
            "url": url,
            "expiresAt": expires_at.isoformat(),
            "rows": rows,
            "size": stored.size,
        }

    async def _query_rows(self, company_id: str) -> list[list[Any]]:
        """Per statement shape: this company's calls and latencies, from the query monitor."""
        metrics = await self.queries.metrics(company_id)
        return [
            [
                shape.shape_id,
                shape.statement,
                shape.figures.calls,
                shape.figures.mean_ms,
                shape.figures.p95_ms,
                shape.figures.p99_ms,
                shape.figures.rows,
                shape.figures.slow_count,
            ]
            for shape in metrics.shapes
        ]

    async def _files(
        self, company_id: str, category: str | None = None
    ) -> AsyncIterator[StoredFile]:
        cursor: str | None = None
        while True:
            page = await self.storage.list_files(
                company_id, category=category, cursor=cursor, limit=_PAGE
            )
            for stored in page.files:
                yield stored
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _files_between(
        self, company_id: str, since: datetime | None, until: datetime | None
    ) -> list[StoredFile]:
        selected = []
        async for stored in self._files(company_id):
            created = stored.created_at
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            if (since is None or created >= since) and (until is None or created < until):
                selected.append(stored)
        return selected

    async def _previous(self, company_id: str, category: str, filename: str) -> StoredFile | None:
        async for stored in self._files(company_id, category):
            if stored.filename == filename:
                return stored
        return None
