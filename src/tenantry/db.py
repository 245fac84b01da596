"""The database: engine, sessions, the project's own tables and their migrations.

Tenantry keeps its own records (API keys, and later file records, flags, outbox)
in the application's database. The schema is owned by Alembic; `upgrade()` brings
any database to the latest revision and is what `tenantry db upgrade` runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, DateTime, String, Text, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tenantry.settings import sync_database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """A company-scoped API key. Only a SHA-256 digest of the secret is kept."""

    __tablename__ = "tenantry_api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL and foreign keys so it behaves under concurrency."""
    if url.startswith("sqlite"):
        Path(url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class CompanyRow(Base):
    __tablename__ = "tenantry_companies"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan: Mapped[str | None] = mapped_column(String(64), nullable=True)
    limits: Mapped[str] = mapped_column(Text, default="{}")  # the overrides, JSON
    # What the company's stored files add up to; kept with every stored and removed file.
    storage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_files: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


async def ensure_company(session: AsyncSession, company_id: str) -> None:
    """The company's row, created if this is the first thing that refers to it."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(CompanyRow)
        .values(id=company_id, limits="{}", storage_bytes=0, storage_files=0, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["id"])
    )


class Database:
    """One engine and its session factory, shared by every service of the app."""

    def __init__(
        self, url: str, *, engine: AsyncEngine | None = None, **engine_kwargs: Any
    ) -> None:
        """On `engine` when given (an embedding application's, which it disposes of
        itself), else on an engine of its own for `url`."""
        self.url = url
        self.engine = engine if engine is not None else create_engine(url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sync_database_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at `url` to `revision` (synchronous; run it off the event loop)."""
    from alembic import command

    if url.startswith("sqlite"):
        Path(url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)
