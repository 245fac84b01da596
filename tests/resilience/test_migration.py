"""Migration resilience_0001 creates and drops the flag tables, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import command

from tenantry import db as database
from tenantry.settings import sync_database_url

TABLES = {"tenantry_feature_flags", "tenantry_feature_flag_audit"}


def tables(url: str) -> set[str]:
    engine = sa.create_engine(sync_database_url(url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


async def test_upgrade_and_downgrade(database_url: str) -> None:
    await asyncio.to_thread(database.upgrade, database_url)
    assert tables(database_url) >= TABLES
    config = database.alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "resilience_0001-1")
    remaining = tables(database_url)
    assert not TABLES & remaining
    assert "tenantry_api_keys" in remaining  # the foundation's tables are untouched
    await asyncio.to_thread(database.upgrade, database_url)
    assert tables(database_url) >= TABLES
