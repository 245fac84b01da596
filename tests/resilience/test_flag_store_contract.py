"""One contract, every flag store: memory, database (SQLite and PostgreSQL), and the stacks.

The contract is the shipped one (tenantry.testing.flags), run here as a user would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tenantry import db as database
from tenantry.resilience.breaker import Breaker
from tenantry.resilience.guard import guard
from tenantry.resilience.registry import DEFAULT_BREAKERS
from tenantry.resilience.stores.base import AuditEntry, FlagStore
from tenantry.resilience.stores.database import DatabaseFlagStore
from tenantry.resilience.stores.failsafe import FailsafeStore
from tenantry.resilience.stores.memoized import MemoizedStore
from tenantry.resilience.stores.memory import MemoryFlagStore
from tenantry.settings import async_database_url
from tenantry.testing.flags import (
    FLAG_STORE_CHECKS,
    FlagStoreCheck,
    check_update_bumps_version_and_audits_before_and_after,
)

BACKENDS = [
    "memory",
    "database-sqlite",
    "database-postgresql",
    "stack-memory",
    "stack-database-postgresql",
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[FlagStore]:
    kind: str = request.param
    db = None
    if "database" in kind:
        url = request.getfixturevalue("migrated_database")(kind.rsplit("-", 1)[1])
        db = database.Database(async_database_url(url))
        engine: FlagStore = DatabaseFlagStore(db)
    else:
        engine = MemoryFlagStore()
    if kind.startswith("stack"):
        memo = MemoizedStore(
            FailsafeStore(guard(engine, Breaker("database", DEFAULT_BREAKERS["database"])))
        )
        await memo.refresh()
        yield memo
    else:
        yield engine
    if db is not None:
        await db.dispose()


@pytest.mark.parametrize("check", FLAG_STORE_CHECKS, ids=lambda check: check.__name__)
async def test_flag_store_contract(store: FlagStore, check: FlagStoreCheck) -> None:
    await check(store)


class AuditlessStore(MemoryFlagStore):
    """A user's store that keeps no audit log: a breach the shipped suite must catch."""

    async def audit(self, key: str, limit: int = 100) -> list[AuditEntry]:
        return []


async def test_the_contract_catches_a_store_that_keeps_no_audit_log() -> None:
    with pytest.raises(AssertionError):
        await check_update_bumps_version_and_audits_before_and_after(AuditlessStore())
