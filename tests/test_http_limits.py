"""Request bodies are bounded before the app reads them (tenantry/http_limits.py).

In process, through httpx's ASGI transport, which pulls a request body from the test
only when the app asks for it: counting the chunks pulled shows what was read.
The same limits against a real `tenantry serve`, with memory measured: test_serve_limits.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from tenantry.app import create_app
from tenantry.settings import Settings
from tests.conftest import ADMIN, bearer

LIMIT = 1024
KIB = b"x" * 1024


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'tenantry.db'}"  # the middleware is the same on every database


@pytest.fixture
def settings(settings_factory: Any) -> Settings:
    made: Settings = settings_factory(
        max_request_body_bytes=LIMIT,
        max_upload_bytes=256 * 1024,
        body_timeout_seconds=0.3,
        auth_failures_per_minute=0,  # these tests send many bad keys on purpose
    )
    return made


class Body:
    """A request body of `chunks` KiB that records how many chunks the app pulled."""

    def __init__(self, chunks: int, *, stall_after: int | None = None) -> None:
        self.chunks, self.stall_after, self.pulled = chunks, stall_after, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(self.chunks):
            if index == self.stall_after:
                await asyncio.sleep(60)  # far past the body timeout
            self.pulled += 1
            yield KIB


def body_routes(app: Any) -> list[tuple[str, str]]:
    """Every key-authenticated route that takes a body, with its path parameters filled."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/api/"):
            filled = re.sub(r"\{[^}]+\}", "x", path)
            routes += [(m.upper(), filled) for m in operations if m in ("post", "put", "patch")]
    return routes


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert response.headers["connection"] == "close"  # the rest of the body is never read
    return error


async def test_a_body_without_a_valid_key_is_refused_before_it_is_read(
    app: Any, client: AsyncClient
) -> None:
    routes = body_routes(app)
    assert ("POST", "/api/keys") in routes and ("POST", "/api/storage/files") in routes
    for method, path in routes:
        for headers in ({}, bearer("tnt_000000000000_" + "a" * 43), {"Authorization": "Basic x"}):
            body = Body(512)  # 512 KiB, within the upload route's limit
            response = await client.request(method, path, content=body, headers=headers)
            error = assert_error(response, 401, "UNAUTHORIZED")
            assert body.pulled == 0, (method, path, headers)
            assert "API key" in error["message"]


async def test_refusals_before_the_body_meet_the_failed_auth_limiter(
    settings_factory: Any,
) -> None:
    app = create_app(settings_factory(auth_failures_per_minute=2))
    async with LifespanManager(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://tenantry.test") as client:
            for _ in range(2):
                response = await client.post("/api/keys", content=Body(4))
                assert response.status_code == 401
            limited = await client.post("/api/keys", content=Body(4))
            assert_error(limited, 429, "TOO_MANY_REQUESTS")
            assert "retry-after" in limited.headers
            valid = await client.post("/api/keys", json={"companyId": "acme"}, headers=ADMIN)
            assert valid.status_code == 201, valid.text  # a valid key still gets in


async def test_each_route_has_its_body_limit(
    app: Any, client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    keys = app.state.services.keys
    calls = 0
    authenticate = keys.authenticate

    async def counted(token: str) -> Any:
        nonlocal calls
        calls += 1
        return await authenticate(token)

    keys.authenticate = counted

    # Over the limit with a Content-Length: refused before a byte is read.
    body = Body(2)
    declared = {**ADMIN, "Content-Length": "2048", "Content-Type": "application/json"}
    response = await client.post("/api/keys", content=body, headers=declared)
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"field": "body", "maxBytes": LIMIT}
    assert body.pulled == 0

    # Chunked, or a Content-Length that lies: counted as it arrives, stopped past the limit.
    for headers in ({}, {"Content-Length": "10"}):
        body = Body(100)
        response = await client.post("/api/keys", content=body, headers={**ADMIN, **headers})
        assert_error(response, 413, "PAYLOAD_TOO_LARGE")
        assert body.pulled == 2  # 1 KiB is the limit: the second KiB is one too many

    # Uploads have MAX_UPLOAD_BYTES (and stream); the key is checked once, not twice.
    calls = 0
    response = await client.post(
        "/api/storage/files",
        data={"category": "documents"},
        files={"file": ("big.pdf", b"%PDF" * 16 * 1024, "application/pdf")},
        headers=company_keys["acme"],
    )
    assert response.status_code == 201, response.text
    assert calls == 1


@pytest.mark.parametrize(
    "path",
    [
        "/admin/login",  # the dashboard's form, before any session
        "/admin/queues/email/pause",  # a cookie-authenticated action
        "/files/companies/acme/documents/x.pdf",  # signed URLs
        "/public/companies/acme/documents/x.pdf",
    ],
)
async def test_routes_without_keys_have_their_bodies_bounded(
    client: AsyncClient, path: str
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = Body(64)
    response = await client.post(path, content=body, headers={**form, "Content-Length": "65536"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert body.pulled == 0
    if path == "/admin/login":  # the one that reads its body: counted as it arrives
        body = Body(64)
        response = await client.post(path, content=body, headers=form)
        assert_error(response, 413, "PAYLOAD_TOO_LARGE")
        assert body.pulled == 2


async def test_a_body_that_stops_arriving_is_answered_408(client: AsyncClient) -> None:
    body = Body(4, stall_after=1)
    sent = client.post("/api/keys", content=body, headers=ADMIN)
    response = await asyncio.wait_for(sent, timeout=30)  # answered, not held for the 60 s
    error = assert_error(response, 408, "REQUEST_TIMEOUT")
    assert error["details"] == {"field": "body", "timeoutSeconds": 0.3}
