"""One contract, every flag store: memory, database (SQLite and PostgreSQL), and the stacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tenantry import db as database
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.resilience.backends import (
    DatabaseFlagStore,
    FailsafeStore,
    FlagStore,
    GuardedStore,
    MemoizedStore,
    MemoryFlagStore,
)
from tenantry.resilience.breaker import Breaker
from tenantry.resilience.flags import Flag, Target, Variant
from tenantry.resilience.registry import DEFAULT_BREAKERS

BACKENDS = [
    "memory",
    "database-sqlite",
    "database-postgresql",
    "stack-memory",
    "stack-database-postgresql",
]


async def _database(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> database.Database:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'flags.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    await asyncio.to_thread(database.upgrade, url)
    from tenantry.settings import async_database_url

    return database.Database(async_database_url(url))


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FlagStore]:
    kind: str = request.param
    db = None
    if "database" in kind:
        db = await _database(request, tmp_path, kind.rsplit("-", 1)[1])
        engine: FlagStore = DatabaseFlagStore(db)
    else:
        engine = MemoryFlagStore()
    if kind.startswith("stack"):
        memo = MemoizedStore(
            FailsafeStore(GuardedStore(engine, Breaker("database", DEFAULT_BREAKERS["database"])))
        )
        await memo.refresh()
        yield memo
    else:
        yield engine
    if db is not None:
        await db.dispose()


def sample(key: str = "beta", **changes: object) -> Flag:
    flag = Flag(
        key,
        "A beta feature.",
        enabled=True,
        target=Target.COMPANY,
        rollout=25,
        allow=frozenset({"acme"}),
        block=frozenset({"globex"}),
        variants=(Variant("control", 50), Variant("blue", 50, {"color": "#00f", "n": [1, 2]})),
    )
    return replace(flag, **changes)  # type: ignore[arg-type]


async def test_create_then_read(store: FlagStore) -> None:
    created = await store.create(sample(), actor="admin")
    assert created.version == 1
    assert await store.get("beta") == created
    await store.create(sample("alpha"), actor="admin")
    assert [flag.key for flag in await store.all()] == ["alpha", "beta"]
    assert (await store.get("beta")).variants[1].payload == {"color": "#00f", "n": [1, 2]}  # type: ignore[union-attr]
    assert await store.get("missing") is None


async def test_duplicate_key_conflicts(store: FlagStore) -> None:
    await store.create(sample(), actor="admin")
    with pytest.raises(Conflict):
        await store.create(sample(enabled=False), actor="admin")
    assert (await store.get("beta")).enabled is True  # type: ignore[union-attr]


async def test_update_bumps_version_and_audits_before_and_after(store: FlagStore) -> None:
    await store.create(sample(), actor="admin")
    updated = await store.update(
        "beta", lambda f: replace(f, rollout=50), actor="key123", action="rollout"
    )
    assert (updated.rollout, updated.version) == (50, 2)
    assert await store.get("beta") == updated
    entries = await store.audit("beta")
    assert [(e.action, e.actor) for e in entries] == [("rollout", "key123"), ("create", "admin")]
    newest = entries[0]
    assert newest.before is not None and newest.after is not None
    assert (newest.before["rollout"], newest.after["rollout"]) == (25, 50)
    assert newest.at >= entries[1].at
    assert entries[1].before is None


async def test_update_that_changes_nothing_is_not_audited(store: FlagStore) -> None:
    await store.create(sample(), actor="admin")
    same = await store.update("beta", lambda f: f, actor="admin", action="update")
    assert same.version == 1
    assert len(await store.audit("beta")) == 1


async def test_a_failing_change_saves_nothing(store: FlagStore) -> None:
    await store.create(sample(), actor="admin")

    def broken(_: Flag) -> Flag:
        raise InvalidInput("refused")

    with pytest.raises(InvalidInput, match="refused"):
        await store.update("beta", broken, actor="admin", action="update")
    assert (await store.get("beta")).version == 1  # type: ignore[union-attr]
    assert len(await store.audit("beta")) == 1


async def test_missing_flags_are_not_found(store: FlagStore) -> None:
    with pytest.raises(NotFound):
        await store.update("nope", lambda f: f, actor="admin", action="update")
    with pytest.raises(NotFound):
        await store.delete("nope", actor="admin")
    assert await store.audit("nope") == []


async def test_delete_keeps_the_audit_log(store: FlagStore) -> None:
    await store.create(sample(), actor="admin")
    deleted = await store.delete("beta", actor="admin")
    assert deleted.key == "beta"
    assert await store.get("beta") is None
    assert await store.all() == []
    entries = await store.audit("beta")
    assert [e.action for e in entries] == ["delete", "create"]
    assert entries[0].after is None and entries[0].before is not None
    await store.create(sample(), actor="admin")  # the key can be reused
    assert (await store.get("beta")).version == 1  # type: ignore[union-attr]


async def test_audit_is_newest_first_and_limited(store: FlagStore) -> None:
    await store.create(sample(), actor="admin")
    for percentage in (30, 40, 50):
        await store.update(
            "beta", lambda f, p=percentage: replace(f, rollout=p), actor="admin", action="rollout"
        )
    entries = await store.audit("beta", limit=2)
    assert [e.after["rollout"] for e in entries if e.after] == [50, 40]


async def test_concurrent_changes_are_not_lost(store: FlagStore) -> None:
    await store.create(sample(allow=frozenset()), actor="admin")

    async def add(company: str) -> None:
        await store.update(
            "beta",
            lambda f: replace(f, allow=f.allow | {company}),
            actor="admin",
            action="allow",
        )

    companies = [f"c{n}" for n in range(8)]
    await asyncio.gather(*(add(c) for c in companies))
    flag = await store.get("beta")
    assert flag is not None
    assert flag.allow == frozenset(companies)
    assert flag.version == 1 + len(companies)
