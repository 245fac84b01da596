"""Read replicas without a real one: what is not a streaming replica gets no reads,
and replicas are configured only where they can work. (A real primary and replica:
tests/faults/test_replica.py.)"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.db import Database
from tenantry.queries.service import QueryOptimizer, setting_gate
from tenantry.settings import ConfigError, async_database_url, load_settings
from tests.conftest import POSTGRES_URL, SETTINGS_VARIABLES


@pytest.fixture
def other_database() -> Iterator[str]:
    """A second database on the same server: a primary, not a replica."""
    name = f"tenantry_not_a_replica_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/nowhere?connect_timeout=2"


async def database_name(session: AsyncSession) -> str:
    return str((await session.execute(text("SELECT current_database()"))).scalar_one())


@pytest.fixture
async def primary(postgres_url: str) -> AsyncIterator[Database]:
    db = Database(async_database_url(postgres_url))
    yield db
    await db.dispose()


async def _polled(primary: Database, replicas: list[str], on: bool = True) -> QueryOptimizer:
    optimizer = QueryOptimizer(
        primary,
        replica_urls=[async_database_url(u) for u in replicas],
        replica_gate=setting_gate(on),
    )
    await optimizer.replicas.poll()  # what the started optimizer does every REPLICA_POLL_MS
    return optimizer


async def test_a_database_that_is_not_a_standby_gets_no_reads(
    primary: Database, other_database: str
) -> None:
    """Its replay position, and so its lag, cannot be known: the primary answers."""
    optimizer = await _polled(primary, [other_database])
    try:
        answered = await optimizer.optimized_read("acme", "db", database_name, cache_ttl=0)
        assert answered == primary.url.rsplit("/", 1)[1]
        [health] = optimizer.replica_health()
        assert health.state == "down" and "not a standby" in (health.error or "")
        assert (health.reads, optimizer.primary_reads) == (0, 1)
    finally:
        await optimizer.close()


async def test_an_unreachable_replica_is_down_and_the_primary_answers(primary: Database) -> None:
    optimizer = await _polled(primary, [_closed_port_url()])
    try:
        answered = await optimizer.optimized_read("acme", "db", database_name, cache_ttl=0)
        assert answered == primary.url.rsplit("/", 1)[1]
        [health] = optimizer.replica_health()
        assert (health.state, health.up, health.lag_ms) == ("down", False, None)
        assert "OperationalError" in (health.error or "")
    finally:
        await optimizer.close()


async def test_a_replica_not_polled_yet_gets_no_reads(primary: Database) -> None:
    optimizer = QueryOptimizer(
        primary,
        replica_urls=[async_database_url(_closed_port_url())],
        replica_gate=setting_gate(True),
    )
    try:
        [health] = optimizer.replica_health()
        assert (health.state, health.error) == ("down", "not polled yet")
        await optimizer.optimized_read("acme", "db", database_name, cache_ttl=0)
        assert optimizer.primary_reads == 1
    finally:
        await optimizer.close()


async def test_passwords_are_hidden_in_the_replicas_health(primary: Database) -> None:
    url = _closed_port_url().replace("postgres@", "postgres:s3cret@")
    optimizer = await _polled(primary, [url])
    try:
        [health] = optimizer.replica_health()
        assert "s3cret" not in health.url and "***" in health.url
        assert "s3cret" not in (health.error or "")
    finally:
        await optimizer.close()


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No setting from the environment or a .env file."""
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS_VARIABLES & set(os.environ):
        monkeypatch.delenv(name)
    return tmp_path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"database_url": None}, "DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL"),
        (
            {"database_replica_urls": "sqlite:///replica.db"},
            "every replica must be a postgresql:// URL",
        ),
        ({"replica_poll_ms": 1000}, "REPLICA_POLL_MS must be below REPLICA_MAX_LAG_MS"),
        ({"replica_max_lag_ms": 0}, "REPLICA_MAX_LAG_MS: Input should be greater than 0"),
        ({"replica_poll_ms": 5}, "REPLICA_POLL_MS: Input should be greater than or equal to 10"),
    ],
)
def test_replica_settings_are_validated(
    clean_env: Path, overrides: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {
        "data_dir": clean_env,
        "database_url": "postgresql://postgres@127.0.0.1/app",
        "database_replica_urls": "postgresql://postgres@127.0.0.1:5433/app",
        **overrides,
    }
    with pytest.raises(ConfigError, match=message):
        load_settings(**values)


def test_replica_settings_defaults(clean_env: Path) -> None:
    settings = load_settings(
        data_dir=clean_env,
        database_url="postgresql://postgres@127.0.0.1/app",
        database_replica_urls="postgres://postgres@127.0.0.1:5433/app, ",
    )
    assert settings.replica_urls == ["postgresql+psycopg://postgres@127.0.0.1:5433/app"]
    assert (settings.replica_max_lag_ms, settings.replica_poll_ms) == (1000.0, 200.0)
