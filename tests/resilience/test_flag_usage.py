"""Flag usage: evaluations counted per process, added up per hour in the database over
processes, kept through a failed flush, pruned after the retention period; the
stale-flag report; its routes and its dashboard page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from tenantry import db as database
from tenantry.errors import ServiceUnavailable
from tenantry.resilience.flags import DEFAULT_FLAGS, Dependency, Flag, Strategy, Target
from tenantry.resilience.guard import guard
from tenantry.resilience.registry import BreakerRegistry
from tenantry.resilience.service import FlagService
from tenantry.resilience.stale import StaleCode, fully_on, stale_report
from tenantry.resilience.stores.memoized import MemoizedStore
from tenantry.resilience.stores.memory import MemoryFlagStore
from tenantry.resilience.usage import (
    RECORDING_KEY,
    FlagUsage,
    FlagUsageRecords,
    FlagUsageRow,
    this_hour,
)
from tenantry.resilience.variants import Variant
from tenantry.settings import async_database_url
from tests.conftest import ADMIN
from tests.dashboard.conftest import log_in

NOW = datetime(2026, 12, 5, 10, 20, tzinfo=UTC)
HALF = Flag("half", enabled=True, target=Target.USER, rollout=50)
FLAGS = (Flag("on", enabled=True), Flag("off"), HALF)
USERS = [f"user-{n}" for n in range(200)]


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def flag_service(flags: tuple[Flag, ...] = FLAGS) -> FlagService:
    service = FlagService(MemoizedStore(MemoryFlagStore()))
    await service.seed(flags)
    return service


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[database.Database]:
    opened = database.Database(async_database_url(database_url))
    yield opened
    await opened.dispose()


async def stored(db: database.Database) -> dict[tuple[str, datetime], tuple[int, int]]:
    async with db.session() as session:
        rows = (await session.scalars(select(FlagUsageRow))).all()
    return {
        (row.flag_key, row.hour.replace(tzinfo=UTC)): (row.yes, row.no)
        for row in rows  # SQLite hands times back naive
    }


# --- counting in one process -----------------------------------------------------------
async def test_is_enabled_and_evaluate_count_yes_and_no_and_decide_as_before() -> None:
    flags = await flag_service()
    decisions = [flags.is_enabled("half", user) for user in USERS]
    assert decisions == [flags.snapshot.is_enabled("half", user) for user in USERS]
    assert 0 < sum(decisions) < len(USERS)
    assert flags.is_enabled("on") is True and flags.is_enabled("off") is False
    flags.evaluate("on", "acme")
    flags.is_enabled("nope")  # not a flag: nothing to count
    flags.evaluate("nope")
    assert flags.counts.peek() == {
        "half": (sum(decisions), len(USERS) - sum(decisions)),
        "on": (2, 0),
        "off": (0, 1),
    }
    # A change installs a new snapshot: the counts made before it stay.
    await flags.disable("on", actor="test")
    assert flags.is_enabled("on") is False
    assert flags.counts.peek()["on"] == (2, 1)
    assert flags.counts.drain()["on"] == (2, 1)
    assert flags.counts.peek() == {}
    # A deleted flag's counter is dropped once drained.
    flags.is_enabled("off")
    await flags.delete("off", actor="test")
    assert flags.counts.drain() == {"off": (0, 1)}
    assert "off" not in flags.counts._counts


async def test_without_a_recorder_usage_is_a_503() -> None:
    flags = await flag_service()
    with pytest.raises(ServiceUnavailable):
        await flags.stale_flags()


# --- in the database -------------------------------------------------------------------
async def test_counts_of_two_processes_add_up_per_hour(
    db: database.Database, database_url: str
) -> None:
    clock = Clock()
    other_db = database.Database(async_database_url(database_url))  # a second process
    try:
        one, two = await flag_service(), await flag_service()
        first = FlagUsage(FlagUsageRecords(db), one.counts, clock=clock)
        second = FlagUsage(FlagUsageRecords(other_db), two.counts, clock=clock)
        one.usage = first
        half_yes = 0
        for user in USERS:
            half_yes += one.is_enabled("half", user)
            half_yes += two.is_enabled("half", user)
        for _ in range(3):
            one.is_enabled("on")
            two.evaluate("on")
        two.is_enabled("off")
        await asyncio.gather(first.flush(), second.flush())  # at once: the upsert adds
        hour = this_hour(NOW)
        assert await stored(db) == {
            ("half", hour): (half_yes, 2 * len(USERS) - half_yes),
            ("on", hour): (6, 0),
            ("off", hour): (0, 1),
        }
        # The next hour is a row of its own; the report fills the hours between with zeros.
        clock.now = NOW + timedelta(hours=2)
        one.is_enabled("on")
        await first.flush()
        report = await one.usage_of("on", hours=4)
        assert [(h.hour, h.yes, h.no) for h in report.hours] == [
            (hour - timedelta(hours=1), 0, 0),
            (hour, 6, 0),
            (hour + timedelta(hours=1), 0, 0),
            (hour + timedelta(hours=2), 1, 0),
        ]
        assert (report.yes, report.no) == (7, 0)
        assert report.first_evaluated == NOW and report.last_evaluated == clock.now
        off = await one.usage_of("off", hours=1)
        assert off.last_evaluated == NOW  # the second process's flush
    finally:
        await other_db.dispose()


async def test_a_failed_flush_keeps_the_counts_for_the_next(db: database.Database) -> None:
    breaker = BreakerRegistry()["database"]
    flags = await flag_service()
    usage = FlagUsage(guard(FlagUsageRecords(db), breaker), flags.counts, clock=Clock())
    for _ in range(5):
        flags.is_enabled("on")
    breaker.force_open("test")  # the database circuit: the write is not even tried
    with pytest.raises(ServiceUnavailable):
        await usage.flush()
    assert usage.pending == {("on", this_hour(NOW)): (5, 0)}
    assert await stored(db) == {}
    flags.is_enabled("on")
    flags.is_enabled("off")
    breaker.reset()
    await usage.flush()
    assert usage.pending == {}
    assert await stored(db) == {("on", this_hour(NOW)): (6, 0), ("off", this_hour(NOW)): (0, 1)}


async def test_retention_prunes_old_hours(db: database.Database) -> None:
    clock = Clock(NOW - timedelta(days=31))
    flags = await flag_service()
    usage = FlagUsage(FlagUsageRecords(db), flags.counts, retention_days=30, clock=clock)
    flags.is_enabled("on")
    await usage.flush()
    clock.now = NOW - timedelta(days=29)
    flags.is_enabled("off")
    await usage.flush()
    assert len(await stored(db)) == 2
    clock.now = NOW
    await usage.flush()
    assert await stored(db) == {("off", this_hour(NOW - timedelta(days=29))): (0, 1)}
    # The last-evaluated times are kept (the report's "no evaluation for N days" needs them).
    evaluated = await FlagUsageRecords(db).evaluated()
    assert evaluated["on"][1] == NOW - timedelta(days=31)
    assert evaluated[RECORDING_KEY][0] == NOW - timedelta(days=31)


async def test_pending_counts_stay_bounded_while_the_database_is_down() -> None:
    class Down(FlagUsageRecords):
        def __init__(self) -> None:
            pass

        async def add(self, *args: Any) -> None:
            raise ConnectionError("down")

    clock = Clock()
    flags = await flag_service()
    usage = FlagUsage(Down(), flags.counts, retention_days=1, max_pending=3, clock=clock)
    for step in range(6):  # six hours of outage, two flags counted in each
        clock.now = NOW + timedelta(hours=step)
        flags.is_enabled("on")
        flags.is_enabled("off")
        with pytest.raises(ConnectionError):
            await usage.flush()
    newest = this_hour(NOW) + timedelta(hours=5)
    kept = sorted(hour for _key, hour in usage.pending)  # the newest; the oldest given up
    assert kept == [newest - timedelta(hours=1), newest, newest]
    assert usage.dropped == 9
    clock.now = NOW + timedelta(days=3)  # past retention: nothing pending is worth keeping
    with pytest.raises(ConnectionError):
        await usage.flush()
    assert usage.pending == {} and usage.dropped == 12


# --- the stale-flag report (pure) ------------------------------------------------------
def test_what_counts_as_100_percent_on() -> None:
    everyone = Strategy("default")
    full = Strategy("flexibleRollout", {"rollout": "100", "stickiness": "default"})
    on = [
        Flag("a", enabled=True),
        Flag("b", enabled=True, allow=frozenset({"vip"})),  # an allow list changes nothing
        Flag("c", enabled=True, strategies=(everyone,)),
        Flag("d", enabled=True, strategies=(Strategy("userWithId", {"userIds": "x"}), full)),
        Flag("e", enabled=True, strategies=(Strategy("companyRollout", {"rollout": "100"}),)),
    ]
    not_on = [
        Flag("f", enabled=False),
        Flag("g", enabled=True, rollout=99),
        Flag("h", enabled=True, block=frozenset({"x"})),
        Flag("i", enabled=True, variants=(Variant("a", 1), Variant("b", 1))),
        Flag("j", enabled=True, dependencies=(Dependency("a"),)),
        Flag("k", enabled=True, strategies=(Strategy("flexibleRollout", {"rollout": "50"}),)),
        Flag("l", enabled=True, strategies=(Strategy("default", segments=(1,)),)),
        Flag("m", enabled=True, strategies=(Strategy("default", variants=(Variant("a", 1),)),)),
        Flag("n", enabled=True, strategies=(Strategy("userWithId", {"userIds": "x"}),)),
    ]
    assert [flag.key for flag in on if fully_on(flag)] == ["a", "b", "c", "d", "e"]
    assert [flag.key for flag in not_on if fully_on(flag)] == []


def test_stale_reasons() -> None:
    long_ago, lately = NOW - timedelta(days=45), NOW - timedelta(days=3)
    flags = [
        Flag("unused", enabled=False),
        Flag("used", enabled=False),
        Flag("changed", enabled=False),
        Flag("full", enabled=True),
        Flag("full-unused", enabled=True),
        Flag("full-changed", enabled=True),
        Flag("never-evaluated", enabled=False),
    ]
    changes: Mapping[str, datetime] = {
        key: lately if "changed" in key else long_ago for key in (f.key for f in flags)
    }
    evaluated = {"used": lately, "full": lately, "changed": long_ago, "unused": long_ago}

    def report(recording_since: datetime | None) -> dict[str, list[str]]:
        made = stale_report(
            flags,
            last_changes=changes,
            last_evaluated=evaluated,
            totals={"used": (3, 4)},
            recording_since=recording_since,
            days=30,
            now=NOW,
        )
        assert [f.key for f in made.flags] == sorted(f.key for f in flags)
        assert next(f for f in made.flags if f.key == "used").yes == 3
        return {s.key: [r.code.value for r in s.reasons] for s in made.stale}

    assert report(NOW - timedelta(days=60)) == {
        "unused": ["unused"],
        "full": ["fully-on"],
        "full-unused": ["unused", "fully-on"],
        "never-evaluated": ["unused"],
    }
    # Evaluations recorded for less than the window: "unused" cannot be claimed yet.
    assert report(NOW - timedelta(days=10)) == {"full": ["fully-on"], "full-unused": ["fully-on"]}
    made = stale_report(
        [Flag("x")],
        last_changes={},  # no audit entry: unchanged as far as anyone can tell
        last_evaluated={},
        totals={},
        recording_since=NOW - timedelta(days=8),
        days=7,
        now=NOW,
    )
    assert [(r.code, r.text) for r in made.stale[0].reasons] == [
        (StaleCode.UNUSED, "no change and no evaluation for 7 days")
    ]
    full = stale_report(
        [Flag("y", enabled=True)],
        last_changes={"y": long_ago},
        last_evaluated={"y": NOW},
        totals={},
        recording_since=None,
        days=7,
        now=NOW,
    )
    assert [r.text for r in full.stale[0].reasons] == ["100 % on for 7 days"]


# --- the routes and the dashboard (one database kind is enough here) -------------------
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_usage_routes(app: Any, client: AsyncClient) -> None:
    flags = app.state.services.resilience.flags
    usage = flags.usage
    assert usage is not None
    flags.is_enabled("core-api")
    flags.is_enabled("core-api")
    flags.is_enabled("use-read-replicas", "acme")
    await usage.flush()
    got = await client.get("/api/degradation/features/core-api/usage?hours=3", headers=ADMIN)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["key"] == "core-api" and body["yes"] >= 2 and body["lastEvaluated"]
    assert len(body["hours"]) == 3 and body["hours"][-1]["yes"] >= 2
    assert set(body["hours"][0]) == {"hour", "yes", "no"}
    unknown = await client.get("/api/degradation/features/nope/usage", headers=ADMIN)
    assert unknown.status_code == 404
    for bad in ("hours=0", "hours=abc", f"hours={24 * 3660 + 1}"):
        answer = await client.get(f"/api/degradation/features/core-api/usage?{bad}", headers=ADMIN)
        assert answer.status_code == 422, bad
    for bad in ("days=0", "days=x", "days=3651"):
        answer = await client.get(f"/api/degradation/stale-flags?{bad}", headers=ADMIN)
        assert answer.status_code == 422, bad
    assert (await client.get("/api/degradation/stale-flags")).status_code == 401

    fresh = (await client.get("/api/degradation/stale-flags", headers=ADMIN)).json()
    assert fresh["days"] == 30 and fresh["usageKnown"] is False and fresh["flags"] == []
    # Forty days on, with nothing evaluated since: every flag unused, the on ones 100 % on.
    usage.clock = lambda: datetime.now(UTC) + timedelta(days=40)
    later = (await client.get("/api/degradation/stale-flags?days=7", headers=ADMIN)).json()
    assert later["usageKnown"] is True
    stale = {entry["key"]: entry for entry in later["flags"]}
    assert set(stale) == {flag.key for flag in DEFAULT_FLAGS}
    assert [r["code"] for r in stale["core-api"]["reasons"]] == ["unused", "fully-on"]
    assert stale["core-api"]["reasons"][1]["text"] == "100 % on for 7 days"
    assert [r["code"] for r in stale["maintenance-mode"]["reasons"]] == ["unused"]
    assert [r["code"] for r in stale["vision-analysis"]["reasons"]] == ["unused"]
    assert stale["core-api"]["lastChanged"] and stale["core-api"]["lastEvaluated"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_dashboard_page_shows_the_report_and_a_flags_usage(
    app: Any, client: AsyncClient
) -> None:
    await log_in(client)
    flags = app.state.services.resilience.flags
    flags.is_enabled("core-api")
    await flags.usage.flush()
    page = await client.get("/admin/flag-usage")
    assert page.status_code == 200
    assert 'href="/admin/flag-usage"' in page.text  # in the nav
    assert "No stale flags over 30 days." in page.text and "data-usage-unknown" in page.text
    assert 'data-flag="core-api"' in page.text
    flags.usage.clock = lambda: datetime.now(UTC) + timedelta(days=40)
    later = await client.get("/admin/flag-usage?days=7&flag=core-api")
    assert 'data-stale="maintenance-mode"' in later.text
    assert 'data-reason="fully-on"' in later.text and "100 % on for 7 days" in later.text
    assert 'data-usage="core-api"' in later.text and "<svg" in later.text
    assert (await client.get("/admin/flag-usage?flag=nope")).status_code == 404
    assert (await client.get("/admin/flag-usage?days=0")).status_code == 422
