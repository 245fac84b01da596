"""Read replicas: reads spread over them, the primary answers when one is down; writes stay."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.app import create_app
from tenantry.db import Database
from tenantry.queries.service import QueryOptimizer, setting_gate
from tenantry.settings import async_database_url, load_settings
from tests.conftest import ADMIN, ADMIN_TOKEN, POSTGRES_URL


def _label(url: str, name: str) -> None:
    """Each database says which one it is, so a read shows where it ran."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE whoami (name text)")
        conn.execute("INSERT INTO whoami VALUES (%s)", (name,))
        conn.execute("CREATE TABLE notes (company_id text, body text)")


@pytest.fixture
def replica_url() -> Iterator[str]:
    """A second database on the same server, standing in for a replica."""
    name = f"tenantry_replica_{uuid.uuid4().hex[:12]}"
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


async def whoami(session: AsyncSession) -> str:
    return str((await session.execute(text("SELECT name FROM whoami"))).scalar_one())


@pytest.fixture
async def primary(postgres_url: str) -> AsyncIterator[Database]:
    _label(postgres_url, "primary")
    db = Database(async_database_url(postgres_url))
    yield db
    await db.dispose()


def _optimizer(primary: Database, replicas: list[str], on: bool = True) -> QueryOptimizer:
    return QueryOptimizer(
        primary,
        replica_urls=[async_database_url(u) for u in replicas],
        replica_gate=setting_gate(on),
    )


async def test_reads_go_to_the_replica_and_writes_to_the_primary(
    primary: Database, replica_url: str
) -> None:
    _label(replica_url, "replica")
    optimizer = _optimizer(primary, [replica_url])
    try:
        assert await optimizer.optimized_read("acme", "who", whoami, cache_ttl=0) == "replica"

        async def write(session: AsyncSession) -> None:
            await session.execute(text("INSERT INTO notes VALUES ('acme', 'hello')"))

        await optimizer.optimized_write("acme", write)
        async with primary.engine.connect() as conn:
            count = await conn.exec_driver_sql("SELECT count(*) FROM notes")
            assert count.scalar_one() == 1
        with psycopg.connect(replica_url) as conn:
            assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)
    finally:
        await optimizer.close()


async def test_reads_spread_round_robin(primary: Database, replica_url: str) -> None:
    _label(replica_url, "replica-1")
    second = replica_url + "_b"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{second.rsplit("/", 1)[1]}"')
    try:
        _label(second, "replica-2")
        optimizer = _optimizer(primary, [replica_url, second])
        try:
            seen = [await optimizer.optimized_read("acme", "who", whoami, 0) for _ in range(6)]
            assert seen.count("replica-1") == seen.count("replica-2") == 3
        finally:
            await optimizer.close()
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{second.rsplit("/", 1)[1]}" WITH (FORCE)')


async def test_a_down_replica_falls_back(primary: Database, replica_url: str) -> None:
    _label(replica_url, "replica")
    optimizer = _optimizer(primary, [_closed_port_url(), replica_url])
    try:
        seen = [await optimizer.optimized_read("acme", "who", whoami, 0) for _ in range(4)]
        assert set(seen) == {"replica"}  # the dead one is skipped, nobody sees an error
        status = optimizer.replicas.status()
        assert status[0]["failures"] == 1 and not status[0]["up"]
        assert status[1]["up"] and status[1]["reads"] == 4
    finally:
        await optimizer.close()


async def test_every_replica_down_reads_the_primary(primary: Database) -> None:
    optimizer = _optimizer(primary, [_closed_port_url()])
    try:
        assert await optimizer.optimized_read("acme", "who", whoami, 0) == "primary"
        assert optimizer.replicas.primary_reads == 1
    finally:
        await optimizer.close()


async def test_gate_off_reads_the_primary(primary: Database, replica_url: str) -> None:
    _label(replica_url, "replica")
    optimizer = _optimizer(primary, [replica_url], on=False)
    try:
        assert await optimizer.optimized_read("acme", "who", whoami, 0) == "primary"
    finally:
        await optimizer.close()


async def test_a_query_error_on_a_replica_is_the_callers(
    primary: Database, replica_url: str
) -> None:
    """A bad query is not a down replica: it is raised, not retried on the primary."""
    _label(replica_url, "replica")
    optimizer = _optimizer(primary, [replica_url])

    async def broken(session: AsyncSession) -> object:
        return (await session.execute(text("SELECT * FROM no_such_table"))).all()

    try:
        with pytest.raises(Exception, match="no_such_table"):
            await optimizer.optimized_read("acme", "broken", broken, 0)
        assert optimizer.replicas.replicas[0].up
        assert optimizer.replicas.primary_reads == 0
    finally:
        await optimizer.close()


async def test_a_flag_can_gate_replicas_per_company(primary: Database, replica_url: str) -> None:
    from tenantry.queries.service import flag_gate

    _label(replica_url, "replica")
    enabled_for = {"acme"}
    optimizer = QueryOptimizer(
        primary,
        replica_urls=[async_database_url(replica_url)],
        replica_gate=flag_gate(
            lambda key, company: key == "use-read-replicas" and company in enabled_for
        ),
    )
    try:
        assert await optimizer.optimized_read("acme", "who", whoami, 0) == "replica"
        assert await optimizer.optimized_read("globex", "who", whoami, 0) == "primary"
    finally:
        await optimizer.close()


async def test_the_use_read_replicas_flag_switches_replicas_on_at_run_time(
    tmp_path: Path, postgres_url: str, replica_url: str
) -> None:
    """In the app: the flag, changed through the API, decides where optimized_read runs."""
    _label(postgres_url, "primary")
    _label(replica_url, "replica")
    settings = load_settings(
        data_dir=tmp_path,
        database_url=postgres_url,
        database_replica_urls=replica_url,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(settings)
    async with LifespanManager(app):
        queries = app.state.services.queries
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            base = "/api/degradation/features/use-read-replicas"
            assert await queries.optimized_read("acme", "who", whoami, 0) == "primary"
            assert (await http.post(f"{base}/enable", headers=ADMIN)).status_code == 200
            assert await queries.optimized_read("acme", "who", whoami, 0) == "replica"
            assert (await http.post(f"{base}/disable", headers=ADMIN)).status_code == 200
            assert await queries.optimized_read("acme", "who", whoami, 0) == "primary"
