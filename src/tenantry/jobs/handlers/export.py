"""The export and report queues: a company's data as CSV, stored through Storage.

- export (`export_data_job(company, kind)`): everything of one kind;
- report (`generate_report_job(company, report_type, start, end)`): the same kinds,
  limited to files created between `start` and `end` (inclusive dates).

Kinds: `files` (one row per file), `usage` (files and bytes per category) and
`queries` (per statement shape: calls, mean/p95/p99 latency, rows, slow count) from the
query monitor. The CSV is uploaded as a private file of the company
(category `exports` or `reports`) and the job's result carries its key and a
signed URL valid for JOB_EXPORT_URL_EXPIRES_SECONDS (at most 7 days).

Idempotent: the file is named after the job's request id, and a re-run (after a worker crash)
finds the file it already stored instead of storing a second one.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tenantry.jobs.backends import PermanentJobError
from tenantry.jobs.queues import EXPORT, REPORT
from tenantry.jobs.registry import JobContext, job_handler

if TYPE_CHECKING:
    from tenantry.container import Services
    from tenantry.storage.service import StorageService, StoredFile

KINDS = ("files", "usage", "queries")
FORMATS = ("csv",)
_PAGE = 200
_MAX_URL_SECONDS = 7 * 24 * 3600  # what Storage (and S3 presigning) allows


def output_id(job: JobContext) -> str:
    """What names this job's file: the request id the service put in its data (unique
    even when job ids restart, as in-process ones do), else the job id."""
    value = str(job.data.get("requestId") or job.id)
    return re.sub(r"[^A-Za-z0-9_-]", "-", value)[:64]


def parse_day(value: Any, field: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise PermanentJobError(f"{field} must be a date (YYYY-MM-DD), got {value!r}") from None


async def company_files(
    storage: StorageService, company_id: str, category: str | None = None
) -> AsyncIterator[StoredFile]:
    cursor: str | None = None
    while True:
        page = await storage.list_files(company_id, category=category, cursor=cursor, limit=_PAGE)
        for stored in page.files:
            yield stored
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def to_csv(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


async def file_rows(
    storage: StorageService, company_id: str, since: datetime | None, until: datetime | None
) -> list[StoredFile]:
    selected = []
    async for stored in company_files(storage, company_id):
        created = stored.created_at
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if (since is None or created >= since) and (until is None or created < until):
            selected.append(stored)
    return selected


# The CSV header: the API's field names, in the order query_rows() writes them.
QUERY_COLUMNS = ["shapeId", "statement", "calls", "meanMs", "p95Ms", "p99Ms", "rows", "slowCount"]


async def query_rows(services: Services, company_id: str) -> list[list[Any]]:
    """Per statement shape: this company's calls and latencies, from the query monitor."""
    metrics = await services.queries.metrics(company_id)
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


async def build_csv(
    services: Services,
    company_id: str,
    kind: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[bytes, int]:
    """The CSV bytes of one kind of data, and its number of data rows."""
    if kind == "queries":
        rows = await query_rows(services, company_id)
        return to_csv(QUERY_COLUMNS, rows), len(rows)
    files = await file_rows(services.storage, company_id, since, until)
    if kind == "files":
        header = ["key", "filename", "category", "size", "contentType", "checksum", "createdAt"]
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
        return to_csv(header, rows), len(rows)
    usage: dict[str, list[int]] = {}
    for f in files:
        entry = usage.setdefault(f.category, [0, 0])
        entry[0] += 1
        entry[1] += f.size
    rows = [[category, n, size] for category, (n, size) in sorted(usage.items())]
    rows.append(["total", sum(r[1] for r in rows), sum(r[2] for r in rows)])
    return to_csv(["category", "files", "bytes"], rows), len(rows)


async def find_previous(
    storage: StorageService, company_id: str, category: str, filename: str
) -> StoredFile | None:
    async for stored in company_files(storage, company_id, category):
        if stored.filename == filename:
            return stored
    return None


async def store(
    job: JobContext, category: str, filename: str, content: bytes, rows: int
) -> dict[str, Any]:
    services = job.require_services()
    storage = services.storage
    stored = await find_previous(storage, job.company_id, category, filename)
    if stored is None:
        stored = await storage.upload(
            content,
            company_id=job.company_id,
            category=category,
            filename=filename,
            content_type="text/csv",
        )
    else:
        await job.log(f"reusing {stored.key} stored by an earlier attempt")
    expires_in = min(job.settings.job_export_url_expires_seconds, _MAX_URL_SECONDS)
    url = await storage.signed_url(stored.key, expires_in, company_id=job.company_id)
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


def check_kind(kind: Any, format: Any) -> str:
    if kind not in KINDS:
        raise PermanentJobError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if format not in FORMATS:
        raise PermanentJobError(f"unsupported format {format!r}; one of {', '.join(FORMATS)}")
    return str(kind)


@job_handler(EXPORT)
async def export_data(job: JobContext) -> dict[str, Any]:
    kind = check_kind(job.data.get("kind", "files"), job.data.get("format", "csv"))
    await job.progress(10)
    content, rows = await build_csv(job.require_services(), job.company_id, kind)
    await job.progress(60)
    return await store(job, "exports", f"{kind}-export-{output_id(job)}.csv", content, rows)


@job_handler(REPORT)
async def generate_report(job: JobContext) -> dict[str, Any]:
    kind = check_kind(job.data.get("reportType"), job.data.get("format", "csv"))
    start = parse_day(job.data.get("start"), "start")
    end = parse_day(job.data.get("end"), "end")
    if end < start:
        raise PermanentJobError("end must not be before start")
    since = datetime.combine(start, datetime.min.time(), UTC)
    until = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
    await job.progress(10)
    content, rows = await build_csv(job.require_services(), job.company_id, kind, since, until)
    await job.progress(60)
    filename = f"{kind}-report-{start.isoformat()}-{end.isoformat()}-{output_id(job)}.csv"
    return await store(job, "reports", filename, content, rows)
