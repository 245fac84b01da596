"""The error shape: every 503 says when to try again; other errors carry no such header."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tenantry.errors import NotFound, ServiceUnavailable
from tenantry.http_errors import install_error_handlers

app = FastAPI()
install_error_handlers(app)


@app.get("/down")
async def down() -> None:
    raise ServiceUnavailable("the store is down")


@app.get("/down-briefly")
async def down_briefly() -> None:
    raise ServiceUnavailable("the database is down", headers={"Retry-After": "1"})


@app.get("/missing")
async def missing() -> None:
    raise NotFound("no such thing")


async def test_a_503_always_has_retry_after_and_the_raiser_can_set_it() -> None:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        down = await client.get("/down")
        assert down.status_code == 503
        assert down.headers["retry-after"] == "5"
        assert down.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert (await client.get("/down-briefly")).headers["retry-after"] == "1"
        missing = await client.get("/missing")
        assert missing.status_code == 404
        assert "retry-after" not in missing.headers
