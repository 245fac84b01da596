"""Storage calls go through the `storage` circuit: while it is open, uploads answer 503 at once."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.conftest import ADMIN


async def test_an_open_storage_circuit_answers_503_and_stores_nothing(
    app: Any, client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    breaker = app.state.services.resilience.breakers["storage"]
    breaker.force_open("test")
    upload = await client.post(
        "/api/storage/files",
        files={"file": ("a.txt", b"hello", "text/plain")},
        data={"category": "documents"},
        headers=company_keys["acme"],
    )
    assert upload.status_code == 503
    assert "retry-after" in upload.headers
    listed = await client.get("/api/storage/files", headers=company_keys["acme"])
    assert listed.json()["files"] == []
    ready = await client.get("/ready", headers=ADMIN)
    assert ready.json()["checks"]["storage"]["status"] == "down"

    breaker.reset()
    upload = await client.post(
        "/api/storage/files",
        files={"file": ("a.txt", b"hello", "text/plain")},
        data={"category": "documents"},
        headers=company_keys["acme"],
    )
    assert upload.status_code == 201
    stats = await client.get("/api/storage/stats", params={"companyId": "acme"}, headers=ADMIN)
    assert stats.json()["totalFiles"] == 1
