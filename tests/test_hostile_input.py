"""Hostile input, table-driven: every case is a clear 4xx, and nothing changes.

Path traversal and NUL bytes in filenames and keys, oversized and empty uploads,
invalid cron patterns, rollouts outside 0-100, malformed JSON, wrong content
types, huge query strings, and EXPLAIN attempts to write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from tenantry.app import create_app
from tests.conftest import ADMIN, bearer
from tests.raw_asgi import raw_request

MAX_UPLOAD = 4096


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    company: bool = False  # sent with acme's key rather than the admin key


def upload(filename: str, body: bytes, content_type: str = "text/plain") -> dict[str, Any]:
    return {"files": {"file": (filename, body, content_type)}, "data": {"category": "documents"}}


def raw_upload(filename: bytes) -> dict[str, Any]:
    """A multipart body written by hand: httpx would percent-encode a NUL in the filename."""
    boundary = b"tenantryboundary"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="category"\r\n\r\n'
        b"documents\r\n--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: text/plain\r\n\r\nx\r\n--" + boundary + b"--\r\n"
    )
    content_type = "multipart/form-data; boundary=" + boundary.decode()
    return {"content": body, "headers": {"Content-Type": content_type}}


WRITES = [
    "DELETE FROM sentinel",
    "WITH gone AS (UPDATE sentinel SET n = n + 1 RETURNING n) SELECT * FROM gone",
    "SELECT * FROM sentinel FOR UPDATE",
    "SELECT 1; DELETE FROM sentinel",
    "COPY sentinel TO STDOUT",
    "SELECT nextval('sentinel_seq')",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT * INTO copied FROM sentinel",
    "DROP TABLE sentinel",
]

CASES = [
    Case(
        "traversal filename", "POST", "/api/storage/files", upload("../../etc/passwd", b"x"), True
    ),
    Case("NUL in filename", "POST", "/api/storage/files", raw_upload(b"evil\x00.txt"), True),
    Case("control char in filename", "POST", "/api/storage/files", raw_upload(b"a\x07b.txt"), True),
    Case(
        "bidi override in filename",
        "POST",
        "/api/storage/files",
        raw_upload("invoice\u202etxt.exe".encode()),
        True,
    ),
    Case(
        "zero-width space in filename",
        "POST",
        "/api/storage/files",
        upload("in\u200bvoice.txt", b"x"),
        True,
    ),
    Case("oversized upload", "POST", "/api/storage/files", upload("big.txt", b"x" * 8192), True),
    Case("empty upload", "POST", "/api/storage/files", upload("empty.txt", b""), True),
    Case(
        "executable content type",
        "POST",
        "/api/storage/files",
        upload("run.exe", b"MZ", "application/x-msdownload"),
        True,
    ),
    Case(
        "traversal category",
        "POST",
        "/api/storage/files",
        {"files": {"file": ("a.txt", b"x", "text/plain")}, "data": {"category": "../.."}},
        True,
    ),
    Case("traversal key", "GET", "/api/storage/files/companies/acme/../../../etc/passwd", {}, True),
    Case("encoded traversal key", "DELETE", "/api/storage/files/..%2F..%2Fetc%2Fpasswd", {}, True),
    Case(
        "NUL in key", "GET", "/api/storage/files/companies/acme/documents/a%00b/content", {}, True
    ),
    Case("signed file without signature", "GET", "/files/companies/acme/documents/x.txt"),
    Case(
        "invalid cron",
        "PUT",
        "/api/queues/email/schedules/nightly",
        {"json": {"pattern": "61 25 * * *", "data": {}}},
    ),
    Case(
        "cron that never fires",
        "PUT",
        "/api/queues/email/schedules/never",
        {"json": {"pattern": "0 0 30 2 *"}},
    ),
    Case(
        "rollout above 100",
        "POST",
        "/api/degradation/features/vision-analysis/rollout",
        {"json": {"percentage": 101}},
    ),
    Case(
        "rollout below 0",
        "POST",
        "/api/degradation/features/vision-analysis/rollout",
        {"json": {"percentage": -1}},
    ),
    Case(
        "malformed JSON",
        "POST",
        "/api/keys",
        {"content": b'{"companyId": ', "headers": {"Content-Type": "application/json"}},
    ),
    Case(
        "JSON route sent text",
        "POST",
        "/api/degradation/features",
        {"content": b"key=x", "headers": {"Content-Type": "text/plain"}},
    ),
    Case(
        "huge query string",
        "GET",
        "/api/storage/files",
        {"params": {"category": "c" * 20000}},
        True,
    ),
    Case("unknown queue", "GET", "/api/queues/../../etc/jobs", {}),
    *[
        Case(
            f"EXPLAIN {sql.split()[0]} #{i}",
            "POST",
            "/api/query-optimizer/explain",
            {"json": {"query": sql}},
        )
        for i, sql in enumerate(WRITES)
    ],
]


@pytest.fixture
async def hostile(settings_factory: Any) -> AsyncIterator[tuple[AsyncClient, Any, dict[str, str]]]:
    app = create_app(settings_factory(max_upload_bytes=MAX_UPLOAD))
    async with LifespanManager(app):
        db = app.state.services.db
        async with db.session() as session:
            await session.execute(text("CREATE TABLE sentinel (n INTEGER)"))
            await session.execute(text("INSERT INTO sentinel VALUES (1), (2), (3)"))
            if db.dialect == "postgresql":
                await session.execute(text("CREATE SEQUENCE sentinel_seq"))
        acme, _ = await app.state.services.keys.create("acme")
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, app, bearer(acme)


async def snapshot(app: Any) -> dict[str, Any]:
    services = app.state.services
    async with services.db.session() as session:
        rows = (await session.execute(text("SELECT sum(n), count(*) FROM sentinel"))).one()
        sequence = None
        if services.db.dialect == "postgresql":
            sequence = (await session.execute(text("SELECT last_value FROM sentinel_seq"))).one()
    flag = await services.resilience.flags.get("vision-analysis")
    return {
        "rows": tuple(rows),
        "sequence": tuple(sequence) if sequence else None,
        "files": (await services.storage.company_stats("acme")).total_files,
        "schedules": [s.id for s in await services.jobs.list_schedules("email")],
        "rollout": flag.rollout,
        "keys": len(await services.keys.list()),
    }


async def test_every_hostile_input_is_a_clear_4xx_and_changes_nothing(
    hostile: tuple[AsyncClient, Any, dict[str, str]],
) -> None:
    client, app, acme = hostile
    before = await snapshot(app)
    answers = {}
    for case in CASES:
        kwargs = dict(case.kwargs)
        headers = {**kwargs.pop("headers", {}), **(acme if case.company else ADMIN)}
        if kwargs:
            response = await client.request(case.method, case.url, headers=headers, **kwargs)
        else:  # sent raw: httpx would remove the dot segments of a traversal first
            path, _, query = case.url.partition("?")
            response = await raw_request(app, case.method, path, headers, query)
        answers[case.name] = response.status_code
        assert 400 <= response.status_code < 500, (
            f"{case.name}: {response.status_code} {response.text}"
        )
        if response.headers.get("content-type", "").startswith("application/json"):
            error = response.json()["error"]
            assert error["code"] and error["message"], case.name
    assert answers["oversized upload"] == 413
    assert answers["executable content type"] == 415
    assert answers["rollout above 100"] == 422
    assert answers["invalid cron"] == 422
    assert answers["traversal key"] == answers["encoded traversal key"] == 422
    assert answers["bidi override in filename"] == answers["zero-width space in filename"] == 422
    assert await snapshot(app) == before
