"""Export and report jobs: CSV through Storage, fetched back through the signed URL.

Runs on SQLite and PostgreSQL (the file records live in the database).
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from httpx import AsyncClient

from tenantry.context import company_scope
from tenantry.errors import InvalidInput
from tenantry.jobs import JobContext
from tenantry.jobs.types.company_data import QUERY_COLUMNS, CompanyData
from tenantry.jobs.types.export import ExportData
from tests.jobs.conftest import eventually


async def finished(service: Any, queue: str, job_id: str) -> dict[str, Any]:
    status = await eventually(
        lambda: service.get_job_status(queue, job_id),
        lambda s: s.state in ("completed", "failed"),
    )
    assert status.state == "completed", status.job.failed_reason
    result: dict[str, Any] = status.job.result
    return result


async def fetch_csv(client: AsyncClient, url: str) -> list[list[str]]:
    parts = urlsplit(url)
    response = await client.get(f"{parts.path}?{parts.query}")  # no key: the signature is enough
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.text)))


@pytest.fixture
async def files(app: Any) -> dict[str, str]:
    storage = app.state.services.storage
    made = {}
    for company, category, name, body in [
        ("acme", "documents", "a.txt", b"alpha"),
        ("acme", "documents", "b.txt", b"bravo!"),
        ("acme", "images", "c.png", b"\x89PNG..."),
        ("globex", "documents", "secret.txt", b"not acme's"),
    ]:
        content_type = "image/png" if name.endswith(".png") else "text/plain"
        stored = await storage.upload(
            body, company_id=company, category=category, filename=name, content_type=content_type
        )
        made[name] = stored.key
    return made


async def test_a_files_export_is_a_csv_of_the_companys_files_only(
    app: Any, client: AsyncClient, files: dict[str, str]
) -> None:
    service = app.state.services.jobs
    job_id = await service.export_data_job("acme", "files")
    result = await finished(service, "export", job_id)
    assert result["rows"] == 3
    assert result["key"].startswith("companies/acme/exports/")
    rows = await fetch_csv(client, result["url"])
    assert rows[0] == [
        "key",
        "filename",
        "category",
        "size",
        "contentType",
        "checksum",
        "createdAt",
    ]
    assert sorted(row[1] for row in rows[1:]) == ["a.txt", "b.txt", "c.png"]
    assert {row[0] for row in rows[1:]} == {files["a.txt"], files["b.txt"], files["c.png"]}
    sizes = {row[1]: int(row[3]) for row in rows[1:]}
    assert sizes == {"a.txt": 5, "b.txt": 6, "c.png": 7}


async def test_a_usage_report_covers_its_date_range(
    app: Any, client: AsyncClient, files: dict[str, str]
) -> None:
    service = app.state.services.jobs
    today = date.today()
    job_id = await service.generate_report_job(
        "acme", "usage", today - timedelta(days=1), today + timedelta(days=1)
    )
    result = await finished(service, "report", job_id)
    assert result["key"].startswith("companies/acme/reports/")
    assert (
        f"-usage-report-{today - timedelta(days=1)}-{today + timedelta(days=1)}-" in result["key"]
    )
    rows = await fetch_csv(client, result["url"])
    assert rows == [
        ["category", "files", "bytes"],
        ["documents", "2", "11"],
        ["images", "1", "7"],
        ["total", "3", "18"],
    ]

    last_year = today - timedelta(days=365)
    job_id = await service.generate_report_job("acme", "usage", last_year, last_year)
    result = await finished(service, "report", job_id)
    assert await fetch_csv(client, result["url"]) == [
        ["category", "files", "bytes"],
        ["total", "0", "0"],
    ]


async def test_a_query_statistics_export_has_the_companys_own_figures_only(
    app: Any, client: AsyncClient
) -> None:
    """The expected calls are the statements this test ran, not the product's figures."""
    engine = app.state.services.db.engine
    ran = {"acme": ("SELECT 7001 AS acme_only", 3), "globex": ("SELECT 7002 AS globex_only", 5)}
    async with engine.connect() as conn:
        for company, (statement, calls) in ran.items():
            with company_scope(company):
                for _ in range(calls):
                    await conn.exec_driver_sql(statement)
    await app.state.services.queries.flush()
    service = app.state.services.jobs
    job_id = await service.export_data_job("acme", "queries")
    result = await finished(service, "export", job_id)
    rows = await fetch_csv(client, result["url"])
    assert rows[0] == QUERY_COLUMNS
    assert len(rows) - 1 == result["rows"]
    by_statement = {row[1]: row for row in rows[1:]}
    calls = QUERY_COLUMNS.index("calls")
    assert [row[calls] for text, row in by_statement.items() if "acme_only" in text] == ["3"]
    assert not [text for text in by_statement if "globex_only" in text]  # another company's


async def test_a_signed_url_of_another_key_or_tampered_signature_is_refused(
    app: Any, client: AsyncClient, files: dict[str, str]
) -> None:
    service = app.state.services.jobs
    result = await finished(service, "export", await service.export_data_job("acme", "usage"))
    parts = urlsplit(result["url"])
    tampered = parts.query.replace("signature=", "signature=0")
    assert (await client.get(f"{parts.path}?{tampered}")).status_code in (401, 403)


async def test_a_rerun_export_reuses_the_file_it_stored(app: Any, files: dict[str, str]) -> None:
    """At-least-once delivery: running the same job twice stores one file."""
    services = app.state.services

    class Job:
        id, name, attempts_made = "77", "export-data", 0
        data = {"kind": "files", "requestId": "r-77"}

        async def update_progress(self, progress: Any) -> None:
            pass

        async def log(self, line: str) -> None:
            pass

    context = JobContext("export", Job(), "acme", services.settings)
    export_data = ExportData(CompanyData(services.storage, services.queries))
    first = await export_data(context)
    second = await export_data(context)
    assert first["key"] == second["key"]
    listed = await services.storage.list_files("acme", category="exports")
    assert [f.key for f in listed.files] == [first["key"]]


async def test_bad_report_requests_are_refused_before_enqueueing(app: Any) -> None:
    service = app.state.services.jobs
    with pytest.raises(InvalidInput) as error:
        await service.generate_report_job("acme", "revenue", "2026-01-01", "2026-01-31")
    assert error.value.details["field"] == "reportType"
    with pytest.raises(InvalidInput):
        await service.generate_report_job("acme", "usage", "2026-02-01", "2026-01-01")
    with pytest.raises(InvalidInput):
        await service.generate_report_job("acme", "usage", "yesterday", "2026-01-01")
    with pytest.raises(InvalidInput):
        await service.export_data_job("acme", "files", format="xlsx")
    assert (await service.queue_stats("report")).waiting == 0
