"""Fixtures shared by every test: real PostgreSQL and Redis, one of each per test.

PostgreSQL and Redis are started by the test command (scripts/test.sh) when the
machine has not; their addresses can be moved with TEST_POSTGRES_URL and
TEST_REDIS_URL. Every test that uses them gets its own database / Redis db and
cleans it up.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

import tenantry
from tenantry import db as database
from tenantry.app import create_app
from tenantry.settings import Settings, load_settings
from tests.redis_lease import leased_redis_db

# tests/test_mutants.py runs tests against a mutated copy of the package: make sure that
# copy, not the checkout, is what they import.
_MUTANT_SRC = os.environ.get("TENANTRY_MUTANT_SRC")
if _MUTANT_SRC and not tenantry.__file__.startswith(_MUTANT_SRC):
    raise RuntimeError(f"the mutant copy is not imported: {tenantry.__file__}")

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
# The shipped contract suites assert plainly; pytest explains their failures in full
# only if it rewrites them as it imports them.
pytest.register_assert_rewrite("tenantry.testing")
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
# Every environment variable the settings read: tests start from none of them.
SETTINGS_VARIABLES = {str(field.validation_alias) for field in Settings.model_fields.values()}


def _drop(name: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def drop_later() -> Iterator[Callable[[str], None]]:
    """Drops a test's database off the test's time: each DROP DATABASE waits for a
    checkpoint (up to a second on a busy machine), which the next test need not."""
    with ThreadPoolExecutor(1, thread_name_prefix="drop-database") as dropping:
        drops: list[Future[None]] = []
        yield lambda name: drops.append(dropping.submit(_drop, name))
    for drop in drops:
        drop.result()  # a database that could not be dropped fails the session


@pytest.fixture
def postgres_url(drop_later: Callable[[str], None]) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    name = f"tenantry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        drop_later(name)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis logical database (1-15) leased to this test alone, flushed before and after."""
    with leased_redis_db(REDIS_URL) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One migrated database of each kind per test process, copied for each test that
    takes `database_url` (migrating ~1,000 databases one by one took minutes)."""
    sqlite_file = tmp_path_factory.mktemp("template") / "tenantry.db"
    database.upgrade(f"sqlite:///{sqlite_file}")
    name = f"tenantry_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database.upgrade(f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}")
    try:
        yield {"sqlite": str(sqlite_file), "postgresql": name}
    finally:
        _drop(name)


@pytest.fixture
def migrated_database(
    tmp_path: Path, migrated_templates: dict[str, str], drop_later: Callable[[str], None]
) -> Iterator[Callable[[str], str]]:
    """`migrated_database(kind)`: the URL of a database of this test's own, "sqlite" or
    "postgresql", already at the latest migration (a copy of the template)."""
    names: list[str] = []

    def copy(kind: str) -> str:
        if kind == "sqlite":
            target = tmp_path / "tenantry.db"
            shutil.copyfile(migrated_templates["sqlite"], target)
            return f"sqlite:///{target}"
        name = f"tenantry_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_templates["postgresql"]}"')
        names.append(name)
        return f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"

    yield copy
    for name in names:
        drop_later(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, migrated_database: Callable[[str], str]) -> str:
    """Each test that takes this runs twice: on embedded SQLite and on PostgreSQL, each
    a database of its own already at the latest migration (`postgres_url` is empty)."""
    return migrated_database(request.param)


@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings isolated from the developer's environment and .env file."""
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS_VARIABLES & set(os.environ):
        monkeypatch.delenv(name)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "upload_dir": tmp_path / "uploads",
            "database_url": database_url,
            "admin_token": ADMIN_TOKEN,
            "secret_key": "test-secret-key",
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(settings_factory: Any) -> Settings:
    made: Settings = settings_factory()
    return made


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    # A generous bound: the first start of a worker (imports, migrations) on a loaded
    # machine can take seconds; a start that hangs still fails.
    async with LifespanManager(application, startup_timeout=30):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[AsyncClient]:
    async with client_from(app) as http:
        yield http


def client_from(app: Any, address: str = "127.0.0.1") -> AsyncClient:
    """A client of `app` calling from `address`: a table of requests without a key, one
    address a row, meets the failed-auth limiter afresh at each row."""
    transport = ASGITransport(app=app, client=(address, 123))
    return AsyncClient(transport=transport, base_url="http://tenantry.test")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN = bearer(ADMIN_TOKEN)


@pytest.fixture
async def company_keys(app: Any) -> dict[str, dict[str, str]]:
    """Authorization headers for two companies, acme and globex."""
    keys = app.state.services.keys
    acme, _ = await keys.create("acme", "test")
    globex, _ = await keys.create("globex", "test")
    return {"acme": bearer(acme), "globex": bearer(globex)}
