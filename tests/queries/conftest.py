"""Helpers for the query optimizer's tests: engines on either database, slow functions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry.db import create_engine
from tenantry.settings import async_database_url


def _sqlite_sleep(dbapi_connection: Any, _record: Any) -> None:
    # SQLite has no sleep(); a Python function makes statement durations controllable.
    def sleep_ms(ms: float) -> float:
        time.sleep(ms / 1000)
        return ms

    dbapi_connection.create_function("sleep_ms", 1, sleep_ms)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An async engine on SQLite and on PostgreSQL with a `sleep_ms(ms)` SQL function."""
    async for created in _engine(database_url):
        yield created


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """The same on PostgreSQL only, for what SQLite does not have."""
    async for created in _engine(postgres_url):
        yield created


async def _engine(url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(async_database_url(url))
    if created.dialect.name == "sqlite":
        event.listen(created.sync_engine, "connect", _sqlite_sleep)
    else:
        async with created.begin() as conn:
            await conn.exec_driver_sql(
                "CREATE FUNCTION sleep_ms(ms float) RETURNS float LANGUAGE plpgsql "
                "AS $$ BEGIN PERFORM pg_sleep(ms / 1000.0); RETURN ms; END $$"
            )
    try:
        yield created
    finally:
        await created.dispose()


@pytest.fixture
def client_factory() -> Any:
    """`async with client_factory(settings) as (app, client)`: an app on other settings."""
    from contextlib import asynccontextmanager

    from asgi_lifespan import LifespanManager
    from httpx import ASGITransport, AsyncClient

    from tenantry.app import create_app

    @asynccontextmanager
    async def make(settings: Any) -> AsyncIterator[tuple[Any, AsyncClient]]:
        application = create_app(settings)
        async with LifespanManager(application):
            transport = ASGITransport(app=application)
            async with AsyncClient(transport=transport, base_url="http://tenantry.test") as http:
                yield application, http

    return make
