"""The flag-store contract: what Tenantry's flag service needs of a `FlagStore`.

Each check is a plain `async def check_*(store) -> None` that raises `AssertionError`
on a breach; `FLAG_STORE_CHECKS` lists them all. The store must be new and empty;
closing it is the caller's. The suite takes well under a second on an in-process
store.

Run it against your own store from your pytest file (with pytest-asyncio in auto
mode, or mark the test `@pytest.mark.asyncio`)::

    import pytest
    from tenantry.testing.flags import FLAG_STORE_CHECKS, FlagStoreCheck

    @pytest.mark.parametrize("check", FLAG_STORE_CHECKS, ids=lambda c: c.__name__)
    async def test_my_store_keeps_the_contract(check: FlagStoreCheck) -> None:
        await check(MyFlagStore())

For pytest's full explanation of a failed check, call
`pytest.register_assert_rewrite("tenantry.testing")` in your conftest.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.resilience.constraints import Constraint
from tenantry.resilience.flags import Dependency, Flag, Segment, Strategy, Target, Variant
from tenantry.resilience.stores.base import Change, FlagStore, segment_key
from tenantry.resilience.variants import Override

FlagStoreCheck = Callable[[FlagStore], Awaitable[None]]


def sample_flag(key: str = "beta", **changes: object) -> Flag:
    """A flag that uses every field, so a store that drops one fails the round trip."""
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


EU = Segment(7, "eu", (Constraint("region", "IN", ("eu-west", "eu-central")),), "EU regions")


def targeted_flag(key: str = "targeted") -> Flag:
    """A flag with every targeting field: strategies, constraints, segments, dependencies."""
    strategy = Strategy(
        "flexibleRollout",
        {"rollout": "40", "stickiness": "companyId", "groupId": "g"},
        (
            Constraint("plan", "IN", ("enterprise",), case_insensitive=True),
            Constraint("appVersion", "SEMVER_GTE", value="3.2.0", inverted=True),
        ),
        (EU.id,),
        (Variant("blue", 1, {"type": "string", "value": "b"}, "companyId"),),
    )
    return Flag(
        key,
        enabled=True,
        strategies=(strategy, Strategy("userWithId", {"userIds": "a,b"})),
        dependencies=(Dependency("beta", False, ("control",)),),
        variants=(Variant("x", 2, None, "userId", (Override("userId", ("a",)),)),),
    )


async def _stored(store: FlagStore, key: str) -> Flag:
    flag = await store.get(key)
    assert flag is not None, f"flag {key!r} is missing"
    return flag


async def check_create_then_read(store: FlagStore) -> None:
    created = await store.create(sample_flag(), actor="admin")
    assert created.version == 1
    assert await store.get("beta") == created
    await store.create(sample_flag("alpha"), actor="admin")
    assert [flag.key for flag in await store.all()] == ["alpha", "beta"]
    assert (await _stored(store, "beta")).variants[1].payload == {"color": "#00f", "n": [1, 2]}
    assert await store.get("missing") is None


async def check_duplicate_key_conflicts(store: FlagStore) -> None:
    await store.create(sample_flag(), actor="admin")
    with _raises(Conflict):
        await store.create(sample_flag(enabled=False), actor="admin")
    assert (await _stored(store, "beta")).enabled is True


async def check_update_bumps_version_and_audits_before_and_after(store: FlagStore) -> None:
    await store.create(sample_flag(), actor="admin")
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


async def check_update_that_changes_nothing_is_not_audited(store: FlagStore) -> None:
    await store.create(sample_flag(), actor="admin")
    same = await store.update("beta", lambda f: f, actor="admin", action="update")
    assert same.version == 1
    assert len(await store.audit("beta")) == 1


async def check_a_failing_change_saves_nothing(store: FlagStore) -> None:
    await store.create(sample_flag(), actor="admin")

    def broken(_: Flag) -> Flag:
        raise InvalidInput("refused")

    with _raises(InvalidInput, match="refused"):
        await store.update("beta", broken, actor="admin", action="update")
    assert (await _stored(store, "beta")).version == 1
    assert len(await store.audit("beta")) == 1


async def check_missing_flags_are_not_found(store: FlagStore) -> None:
    with _raises(NotFound):
        await store.update("nope", lambda f: f, actor="admin", action="update")
    with _raises(NotFound):
        await store.delete("nope", actor="admin")
    assert await store.audit("nope") == []


async def check_delete_keeps_the_audit_log(store: FlagStore) -> None:
    await store.create(sample_flag(), actor="admin")
    deleted = await store.delete("beta", actor="admin")
    assert deleted.key == "beta"
    assert await store.get("beta") is None
    assert await store.all() == []
    entries = await store.audit("beta")
    assert [e.action for e in entries] == ["delete", "create"]
    assert entries[0].after is None and entries[0].before is not None
    await store.create(sample_flag(), actor="admin")  # the key can be reused
    assert (await _stored(store, "beta")).version == 1


async def check_audit_is_newest_first_and_limited(store: FlagStore) -> None:
    await store.create(sample_flag(), actor="admin")

    def rollout(percentage: int) -> Change:
        return lambda f: replace(f, rollout=percentage)

    for percentage in (30, 40, 50):
        await store.update("beta", rollout(percentage), actor="admin", action="rollout")
    entries = await store.audit("beta", limit=2)
    assert [e.after["rollout"] for e in entries if e.after] == [50, 40]


async def check_concurrent_changes_are_not_lost(store: FlagStore) -> None:
    await store.create(sample_flag(allow=frozenset()), actor="admin")

    async def add(company: str) -> None:
        await store.update(
            "beta",
            lambda f: replace(f, allow=f.allow | {company}),
            actor="admin",
            action="allow",
        )

    companies = [f"c{n}" for n in range(8)]
    await asyncio.gather(*(add(c) for c in companies))
    flag = await _stored(store, "beta")
    assert flag.allow == frozenset(companies)
    assert flag.version == 1 + len(companies)


async def check_targeting_round_trips(store: FlagStore) -> None:
    created = await store.create(targeted_flag(), actor="admin")
    assert await store.get("targeted") == created
    assert created.strategies == targeted_flag().strategies
    assert created.dependencies == targeted_flag().dependencies
    assert created.variants == targeted_flag().variants


async def check_segments_put_replace_delete(store: FlagStore) -> None:
    assert await store.segments() == []
    await store.put_segment(EU, actor="admin")
    other = Segment(3, "beta testers", (Constraint("userId", "STR_ENDS_WITH", ("@acme.com",)),))
    await store.put_segment(other, actor="admin")
    assert await store.segments() == [other, EU]
    renamed = replace(EU, name="europe")
    await store.put_segment(renamed, actor="admin")
    assert await store.segments() == [other, renamed]
    assert await store.delete_segment(3, actor="admin") == other
    assert await store.segments() == [renamed]
    with _raises(NotFound):
        await store.delete_segment(3, actor="admin")
    entries = await store.audit(segment_key(EU.id))
    assert [e.after["name"] if e.after else None for e in entries] == ["europe", "eu"]


async def check_replace_many_is_one_audited_change(store: FlagStore) -> None:
    await store.create(sample_flag(), actor="admin")
    await store.create(sample_flag("kept"), actor="admin")
    incoming = [sample_flag(enabled=False), targeted_flag(), sample_flag("kept")]
    stored = await store.replace_many(incoming, [EU], actor="importer", action="import")
    assert [(f.key, f.version) for f in stored] == [("beta", 2), ("targeted", 1), ("kept", 1)]
    assert (await _stored(store, "beta")).enabled is False
    assert await store.segments() == [EU]
    assert [e.action for e in await store.audit("beta")] == ["import", "create"]
    assert [e.action for e in await store.audit("kept")] == ["create"]  # unchanged: untouched
    assert (await _stored(store, "targeted")).strategies == targeted_flag().strategies


@contextmanager
def _raises(error: type[Exception], match: str | None = None) -> Iterator[None]:
    # The suite runs outside pytest too, so no pytest.raises.
    try:
        yield
    except error as exc:
        if match is not None and not re.search(match, str(exc)):
            raise AssertionError(f"{error.__name__} {str(exc)!r} does not match {match!r}") from exc
        return
    raise AssertionError(f"expected {error.__name__}")


FLAG_STORE_CHECKS: tuple[FlagStoreCheck, ...] = (
    check_create_then_read,
    check_duplicate_key_conflicts,
    check_update_bumps_version_and_audits_before_and_after,
    check_update_that_changes_nothing_is_not_audited,
    check_a_failing_change_saves_nothing,
    check_missing_flags_are_not_found,
    check_delete_keeps_the_audit_log,
    check_audit_is_newest_first_and_limited,
    check_concurrent_changes_are_not_lost,
    check_targeting_round_trips,
    check_segments_put_replace_delete,
    check_replace_many_is_one_audited_change,
)
