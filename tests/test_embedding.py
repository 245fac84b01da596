"""`Tenantry` beyond the examples: outside `run()`, and on the application's engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from httpx import ASGITransport, AsyncClient
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from tenantry import Tenantry
from tenantry.embedding import NotRunning

# The embedding adds no database code of its own: SQLite is enough here (the examples
# run on PostgreSQL).
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_services_exist_only_while_running(settings_factory: Any) -> None:
    tenantry = Tenantry(settings_factory())
    with pytest.raises(NotRunning, match=r"tenantry\.run\(\)"):
        tenantry.services
    async with tenantry.run() as services:
        assert tenantry.services is services
    with pytest.raises(NotRunning):
        tenantry.services


async def test_the_application_engine_is_used_and_left_open(
    settings_factory: Any, tmp_path: Path
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    tenantry = Tenantry(settings_factory(), engine=engine)
    async with tenantry.run() as services:
        assert services.db.engine is engine
        await services.keys.create("acme", "test")  # Tenantry's own table, in the app's db
    async with engine.connect() as connection:  # not disposed of: still the app's to use
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        keys = await connection.scalar(text("SELECT count(*) FROM tenantry_api_keys"))
    assert "tenantry_api_keys" in tables and keys == 1
    await engine.dispose()


@pytest.mark.parametrize(("answer", "status"), [(None, 401), ("../globex", 403), ("acme", 200)])
async def test_the_resolvers_answer_decides_the_status(
    settings_factory: Any, answer: str | None, status: int
) -> None:
    """A resolver reading a client's token must not let it cause a 500."""
    tenantry = Tenantry(settings_factory(), company=lambda request: answer)
    app = FastAPI()

    @app.get("/mine")
    async def mine(request: Request) -> dict[str, str]:
        return {"company": tenantry.company(request)}

    tenantry.mount(app, prefix="/ops")
    async with tenantry.run():
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/mine")
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]["code"] == "INVALID_COMPANY_ID"
        assert "globex" not in response.text
