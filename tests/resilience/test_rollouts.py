"""Rollout plans and scheduled flag changes: steps on a clock, guards, processes, restarts.

No test sleeps: every runner reads an injected clock, and the ticks are called by the
tests (the app's own loop is set to tick once an hour, so it never runs during one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from tenantry import db as database
from tenantry.app import create_app
from tenantry.errors import Conflict, InvalidInput, ServiceUnavailable
from tenantry.resilience.breaker import BreakerConfig, State
from tenantry.resilience.flags import Flag
from tenantry.resilience.registry import DEFAULT_BREAKERS, BreakerRegistry
from tenantry.resilience.rollout_store import DatabaseRolloutStore
from tenantry.resilience.rollouts import (
    ErrorRateGuard,
    Guards,
    Move,
    PlanStatus,
    RolloutPlan,
    RolloutRunner,
    ScheduleAction,
    ScheduleStatus,
    Step,
    decide,
    tripped,
)
from tenantry.resilience.service import FlagService
from tenantry.resilience.strategies import Strategy
from tenantry.settings import async_database_url
from tests.conftest import ADMIN

BASE = "/api/degradation"
T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
HOUR = 3600
RETRY = timedelta(seconds=30)
RAMP = [Step(10, HOUR), Step(50, HOUR), Step(100)]
# What is the runner's logic alone runs on SQLite; what depends on the database's
# concurrency (two processes, a restart, the first test's steps) on PostgreSQL too.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- deciding, without a database ---------------------------------------------------------
def test_a_plan_takes_each_step_after_the_hold_of_the_last() -> None:
    plan = RolloutPlan("f", tuple(RAMP), start_at=T0 + timedelta(minutes=5))
    assert decide(plan, T0, RETRY) is None  # not started yet
    first = decide(plan, T0 + timedelta(minutes=5), RETRY)
    assert first is not None and (first.move, first.step) == (Move.ADVANCE, 0)

    at_0 = RolloutPlan("f", tuple(RAMP), start_at=T0, step=0, step_started_at=T0)
    assert decide(at_0, T0 + timedelta(seconds=HOUR - 1), RETRY) is None
    second = decide(at_0, T0 + timedelta(seconds=HOUR), RETRY)
    assert second is not None and (second.move, second.step) == (Move.ADVANCE, 1)

    at_last = RolloutPlan("f", tuple(RAMP), start_at=T0, step=2, step_started_at=T0)
    done = decide(at_last, T0, RETRY)  # the last step holds 0 s: completed next round
    assert done is not None and done.move is Move.COMPLETE
    # After a long outage: one step, not a leap to the end.
    late = decide(at_0, T0 + timedelta(days=30), RETRY)
    assert late is not None and late.step == 1

    pending = RolloutPlan(
        "f", tuple(RAMP), start_at=T0, step=0, step_started_at=T0, pending_since=T0
    )
    assert decide(pending, T0 + timedelta(seconds=29), RETRY) is None  # its claimer is on it
    again = decide(pending, T0 + RETRY, RETRY)
    assert again is not None and (again.move, again.step) == (Move.REAPPLY, 0)
    for status in (PlanStatus.PAUSED, PlanStatus.COMPLETED):
        stopped = RolloutPlan(
            "f", tuple(RAMP), start_at=T0, step=0, step_started_at=T0, status=status
        )
        assert decide(stopped, T0 + timedelta(days=1), RETRY) is None


def test_guards_trip_on_a_circuit_not_closed_or_a_failure_rate() -> None:
    breakers = BreakerRegistry(defaults={})
    breakers.create("ai-service")
    payments = breakers.create(
        "payments",
        BreakerConfig(failure_threshold=None, sliding_window_size=20, failure_rate_threshold=90),
    )
    guards = Guards(("ai-service",), ErrorRateGuard("payments", threshold=25, minimum_calls=10))
    assert tripped(guards, breakers) is None
    breakers["ai-service"].transition(State.OPEN, "3 consecutive failures")
    assert tripped(guards, breakers) == "circuit 'ai-service' is open"
    breakers["ai-service"].transition(State.HALF_OPEN, "wait duration elapsed")
    assert tripped(guards, breakers) == "circuit 'ai-service' is half-open"
    breakers["ai-service"].close()

    def fail() -> None:
        raise ConnectionError("down")

    for index in range(9):
        if index < 3:
            with pytest.raises(ConnectionError):
                payments.call(fail)
        else:
            payments.call(lambda: None)
    assert tripped(guards, breakers) is None  # 3 of 9: under the minimum of 10 calls
    payments.call(lambda: None)
    assert tripped(guards, breakers) == (
        "failure rate of circuit 'payments' is 30.0 % over its last 10 calls (threshold 25 %)"
    )
    payments.force_open()  # the rate's own circuit counts as guarded too
    assert tripped(guards, breakers) == "circuit 'payments' is forced-open"
    assert tripped(Guards(("not-here",)), breakers) is None  # unseen here: cannot trip


# --- one process (or two) on a real database ------------------------------------------------
@dataclass
class Process:
    db: database.Database
    breakers: BreakerRegistry
    flags: FlagService
    runner: RolloutRunner


async def start_process(url: str, clock: Clock) -> Process:
    """What the wiring builds for rollouts, on `url`, as one process of several."""
    from tenantry.wiring import flag_store_stack

    db = database.Database(async_database_url(url))
    breakers = BreakerRegistry(defaults=DEFAULT_BREAKERS)
    memo, _ = flag_store_stack(db, breakers["database"])
    flags = FlagService(memo)
    await flags.refresh()
    await flags.seed()
    runner = RolloutRunner(DatabaseRolloutStore(db), flags, breakers, clock=clock)
    return Process(db, breakers, flags, runner)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def processes(database_url: str, clock: Clock) -> AsyncIterator[list[Process]]:
    started = [await start_process(database_url, clock) for _ in range(2)]
    try:
        yield started
    finally:
        for process in started:
            await process.db.dispose()


async def audit_of(flags: FlagService, key: str, *actors: str) -> list[tuple[str, str, Any]]:
    """(action, actor, after) of `key`'s audit entries by `actors`, oldest first."""
    entries = reversed(await flags.audit(key, 1000))
    return [(e.action, e.actor, e.after) for e in entries if not actors or e.actor in actors]


async def test_a_plan_steps_on_the_clock_and_audits_every_step(
    processes: list[Process], clock: Clock
) -> None:
    process = processes[0]
    runner, flags = process.runner, process.flags
    plan = await runner.put_plan("vision-analysis", RAMP, actor="admin")
    assert (plan.step, plan.pending_since, plan.status) == (0, None, PlanStatus.ACTIVE)
    assert plan.next_move_at == T0 + timedelta(hours=1)
    assert (await flags.get("vision-analysis")).rollout == 10  # step 0 at once

    clock.advance(HOUR - 1)
    await runner.tick()
    assert (await runner.plan("vision-analysis")).step == 0
    clock.advance(1)
    await runner.tick()
    await runner.tick()  # held: one step a round, and this one just began
    assert (await runner.plan("vision-analysis")).step == 1
    assert (await flags.get("vision-analysis")).rollout == 50
    clock.advance(HOUR)
    await runner.tick()
    assert (await flags.get("vision-analysis")).rollout == 100
    await runner.tick()
    done = await runner.plan("vision-analysis")
    assert (done.status, done.step, done.next_move_at) == (PlanStatus.COMPLETED, 2, None)

    audit = await audit_of(flags, "vision-analysis", "admin", "rollout-plan")
    assert [(action, actor) for action, actor, _ in audit] == [
        ("plan-create", "admin"),
        ("plan-step", "rollout-plan"),  # 10 %: the flag had it already, the step is logged
        ("plan-step", "rollout-plan"),
        ("rollout", "rollout-plan"),
        ("plan-step", "rollout-plan"),
        ("rollout", "rollout-plan"),
        ("plan-complete", "rollout-plan"),
    ]
    assert audit[2][2] == {"step": 1, "of": 3, "percentage": 50, "holdSeconds": HOUR}
    assert (audit[3][2] or {})["rollout"] == 50


@sqlite_only
async def test_an_opened_circuit_pauses_the_plan_saying_why_until_resumed(
    processes: list[Process], clock: Clock
) -> None:
    process = processes[0]
    runner, breakers = process.runner, process.breakers
    await runner.put_plan("vision-analysis", RAMP, guards=Guards(("ai-service",)), actor="admin")
    breakers["ai-service"].transition(State.OPEN, "3 consecutive failures")
    clock.advance(HOUR)
    await runner.tick()
    paused = await runner.plan("vision-analysis")
    assert (paused.status, paused.step) == (PlanStatus.PAUSED, 0)
    assert paused.paused_reason == "circuit 'ai-service' is open"
    assert paused.paused_at == clock.now
    clock.advance(5 * HOUR)
    await runner.tick()
    assert (await process.flags.get("vision-analysis")).rollout == 10  # held where it was

    with pytest.raises(Conflict, match="circuit 'ai-service' is open") as refused:
        await runner.resume("vision-analysis", actor="admin")
    assert refused.value.code == "GUARD_TRIPPED"
    breakers["ai-service"].close()
    resumed = await runner.resume("vision-analysis", actor="admin")
    assert (resumed.status, resumed.paused_reason, resumed.step) == (PlanStatus.ACTIVE, None, 0)
    assert resumed.step_started_at == clock.now  # the hold starts again
    clock.advance(HOUR - 1)
    await runner.tick()
    assert (await runner.plan("vision-analysis")).step == 0
    clock.advance(1)
    await runner.tick()
    assert (await process.flags.get("vision-analysis")).rollout == 50

    audit = await audit_of(process.flags, "vision-analysis", "admin", "rollout-plan")
    pause = [after for action, _, after in audit if action == "plan-pause"]
    assert pause == [{"step": 0, "reason": "circuit 'ai-service' is open"}]
    assert ("plan-resume", "admin", {"step": 0}) in audit


async def test_two_processes_take_each_step_and_make_each_change_once(
    processes: list[Process], clock: Clock
) -> None:
    first, second = processes
    await first.runner.put_plan(
        "vision-analysis", RAMP, start_at=T0 + timedelta(minutes=1), actor="admin"
    )
    for action, minutes, percentage in [("enable", 10, None), ("rollout", 20, 30)]:
        await first.runner.schedule(
            "mobile-app",
            ScheduleAction(action),
            at=T0 + timedelta(minutes=minutes),
            percentage=percentage,
            actor="admin",
        )
    await first.flags.disable("mobile-app", actor="admin")
    for _ in range(8):  # 8 rounds of 30 minutes: every step and change, each raced by both
        clock.advance(30 * 60)
        await asyncio.gather(first.runner.tick(), second.runner.tick())

    plan = await second.runner.plan("vision-analysis")
    assert (plan.status, plan.step) == (PlanStatus.COMPLETED, 2)
    audit = await audit_of(first.flags, "vision-analysis", "rollout-plan")
    assert [action for action, _, _ in audit] == [
        "plan-step",
        "plan-step",
        "rollout",
        "plan-step",
        "rollout",
        "plan-complete",
    ]
    changes = await audit_of(first.flags, "mobile-app", "schedule")
    assert [action for action, _, _ in changes] == [
        "schedule-apply",
        "enable",
        "schedule-apply",
        "rollout",
    ]
    flag = await first.flags.store.inner.get("mobile-app")
    assert flag is not None and (flag.enabled, flag.rollout) == (True, 30)
    assert {s.status for s in await first.runner.schedules("mobile-app")} == {ScheduleStatus.DONE}


@sqlite_only
async def test_a_flags_changes_are_made_in_their_order_when_one_is_retried(
    processes: list[Process], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = processes
    enable, disable = [
        await first.runner.schedule(
            "mobile-app", action, at=T0 + timedelta(minutes=minutes), actor="admin"
        )
        for action, minutes in [(ScheduleAction.ENABLE, 10), (ScheduleAction.DISABLE, 20)]
    ]
    await first.flags.disable("mobile-app", actor="admin")
    real = first.flags.enable
    failures = [ServiceUnavailable("the database is unavailable")]

    async def flaky(key: str, *, actor: str) -> Flag:
        if failures:
            raise failures.pop()
        return await real(key, actor=actor)

    monkeypatch.setattr(first.flags, "enable", flaky)
    clock.advance(30 * 60)  # both due in one round; the enable fails
    await first.runner.tick()
    await second.runner.tick()  # the enable is left to be retried: the disable waits for it
    statuses = {s.id: s.status for s in await first.runner.schedules("mobile-app")}
    assert statuses == {enable.id: ScheduleStatus.APPLYING, disable.id: ScheduleStatus.PENDING}
    clock.advance(RETRY.total_seconds())
    await second.runner.tick()
    flag = await first.flags.store.inner.get("mobile-app")
    assert flag is not None and not flag.enabled  # the later change has the last word
    changes = await audit_of(first.flags, "mobile-app", "schedule")
    assert [action for action, _, _ in changes] == [
        "schedule-apply",
        "enable",
        "schedule-apply",
        "disable",
    ]


@sqlite_only
async def test_a_step_whose_claimer_failed_is_applied_again_after_retry_after(
    processes: list[Process], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, flags = processes[0].runner, processes[0].flags
    real = flags.set_rollout
    failures = [ServiceUnavailable("the database is unavailable")]

    async def flaky(key: str, percentage: int, *, actor: str) -> Flag:
        if failures:
            raise failures.pop()
        return await real(key, percentage, actor=actor)

    monkeypatch.setattr(flags, "set_rollout", flaky)
    plan = await runner.put_plan("ai-recommendations", [Step(25)], actor="admin")
    assert plan.step == 0 and plan.pending_since == T0  # taken, not yet on the flag
    clock.advance(29)
    await processes[1].runner.tick()
    assert (await runner.plan("ai-recommendations")).pending_since is not None
    clock.advance(1)
    await processes[1].runner.tick()  # another process takes it over
    assert (await flags.store.inner.get("ai-recommendations")).rollout == 25  # type: ignore[union-attr]
    assert (await runner.plan("ai-recommendations")).pending_since is None
    audit = await audit_of(flags, "ai-recommendations", "rollout-plan")
    assert [action for action, _, _ in audit] == ["plan-step", "rollout"]


@sqlite_only
async def test_a_plan_sets_a_strategy_flags_rollout_and_pauses_when_the_flag_goes(
    processes: list[Process], clock: Clock
) -> None:
    runner, flags = processes[0].runner, processes[0].flags
    rollout = Strategy("flexibleRollout", {"rollout": "5", "stickiness": "default", "groupId": "s"})
    await flags.create(Flag("strategic", enabled=True, strategies=(rollout,)), actor="admin")
    await flags.create(
        Flag("no-rollout", enabled=True, strategies=(Strategy("default"),)), actor="admin"
    )
    with pytest.raises(Conflict) as no_rollout:
        await runner.put_plan("no-rollout", RAMP, actor="admin")
    assert no_rollout.value.code == "NO_ROLLOUT_STRATEGY"

    await runner.put_plan("strategic", RAMP, actor="admin")
    assert (await flags.get("strategic")).strategies[0].parameters["rollout"] == "10"
    await flags.delete("strategic", actor="admin")
    clock.advance(HOUR)
    await runner.tick()
    paused = await runner.plan("strategic")
    assert paused.status is PlanStatus.PAUSED
    assert paused.paused_reason == "step 1 (50 %) cannot be applied: no feature flag 'strategic'"


@sqlite_only
async def test_scheduled_changes_are_made_at_their_time(
    processes: list[Process], clock: Clock
) -> None:
    runner, flags = processes[0].runner, processes[0].flags
    enable = await runner.schedule(
        "ai-recommendations", ScheduleAction.ENABLE, at=T0 + timedelta(hours=1), actor="admin"
    )
    rollout = await runner.schedule(
        "ai-recommendations",
        ScheduleAction.ROLLOUT,
        at=T0 + timedelta(hours=2),
        percentage=40,
        actor="admin",
    )
    await runner.schedule(
        "ai-recommendations", ScheduleAction.DISABLE, at=T0 + timedelta(hours=3), actor="admin"
    )
    cancelled = await runner.schedule(
        "ai-recommendations", ScheduleAction.ENABLE, at=T0 + timedelta(hours=4), actor="admin"
    )
    await runner.cancel(cancelled.id, actor="admin")
    gone = await runner.schedule(
        "vision-analysis", ScheduleAction.ENABLE, at=T0 + timedelta(hours=1), actor="admin"
    )
    await flags.delete("vision-analysis", actor="admin")
    await flags.disable("ai-recommendations", actor="admin")

    seen = []
    for _ in range(5):
        clock.advance(HOUR)
        await runner.tick()
        flag = await flags.get("ai-recommendations")
        seen.append((flag.enabled, flag.rollout))
    assert seen[:3] == [(True, 100), (True, 40), (False, 40)]
    assert seen[3:] == [(False, 40)] * 2  # the cancelled enable never happens
    statuses = {s.id: s.status for s in await runner.schedules()}
    assert statuses[enable.id] is statuses[rollout.id] is ScheduleStatus.DONE
    assert statuses[cancelled.id] is ScheduleStatus.CANCELLED
    failed = await runner.get_schedule(gone.id)
    assert failed.status is ScheduleStatus.FAILED
    assert failed.error == "no feature flag 'vision-analysis'"
    audit = await audit_of(flags, "ai-recommendations", "schedule")
    assert [action for action, _, _ in audit] == [
        "schedule-apply",
        "enable",
        "schedule-apply",
        "rollout",
        "schedule-apply",
        "disable",
    ]
    with pytest.raises(Conflict):
        await runner.cancel(enable.id, actor="admin")  # made already
    with pytest.raises(InvalidInput, match="at: is in the past"):
        await runner.schedule("core-api", ScheduleAction.ENABLE, at=T0, actor="admin")


# --- over HTTP, across a restart --------------------------------------------------------------
Request = Callable[..., Awaitable[Any]]


async def running(settings: Any, clock: Clock) -> tuple[Any, LifespanManager]:
    app = create_app(settings)
    manager = LifespanManager(app, startup_timeout=30)
    await manager.__aenter__()
    app.state.services.rollouts.clock = clock
    return app, manager


def http(app: Any) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://tenantry.test")


async def test_a_plan_paused_by_an_open_circuit_is_resumed_after_a_restart(
    settings_factory: Any, clock: Clock
) -> None:
    settings = settings_factory(rollout_tick_seconds=3600)
    url = f"{BASE}/features/vision-analysis/rollout-plan"
    body = {
        "steps": [
            {"percentage": 10, "holdSeconds": HOUR},
            {"percentage": 50, "holdSeconds": HOUR},
            {"percentage": 100},
        ],
        "guards": {"circuits": ["ai-service"]},
    }
    app, manager = await running(settings, clock)
    try:
        async with http(app) as client:
            created = await client.put(url, json=body, headers=ADMIN)
            assert created.status_code == 200, created.text
            assert created.json()["currentStep"] == 0
            assert created.json()["nextStepAt"] == "2027-01-04T10:00:00Z"
            clock.advance(HOUR)
            await app.state.services.rollouts.tick()
            opened = await client.post(f"{BASE}/circuits/ai-service/open", headers=ADMIN)
            assert opened.status_code == 200
            await app.state.services.rollouts.tick()
            paused = (await client.get(url, headers=ADMIN)).json()
            assert (paused["status"], paused["currentStep"]) == ("paused", 1)
            assert paused["pausedReason"] == "circuit 'ai-service' is forced-open"
            refused = await client.post(f"{url}/resume", headers=ADMIN)
            assert refused.status_code == 409
            assert refused.json()["error"]["code"] == "GUARD_TRIPPED"
    finally:
        await manager.__aexit__(None, None, None)

    clock.advance(HOUR)
    app, manager = await running(settings, clock)  # a new process: every circuit closed
    try:
        async with http(app) as client:
            after = (await client.get(url, headers=ADMIN)).json()
            assert (after["status"], after["currentStep"], after["currentPercentage"]) == (
                "paused",
                1,
                50,
            )
            assert after["pausedReason"] == "circuit 'ai-service' is forced-open"
            await app.state.services.rollouts.tick()
            assert (await client.get(url, headers=ADMIN)).json()["status"] == "paused"
            resumed = await client.post(f"{url}/resume", headers=ADMIN)
            assert resumed.status_code == 200, resumed.text
            assert (resumed.json()["status"], resumed.json()["pausedReason"]) == ("active", None)
            clock.advance(HOUR)
            await app.state.services.rollouts.tick()
            flag = (await client.get(f"{BASE}/features/vision-analysis", headers=ADMIN)).json()
            assert flag["rollout"] == 100
            listed = (await client.get(f"{BASE}/rollout-plans", headers=ADMIN)).json()
            assert [(p["key"], p["currentStep"]) for p in listed] == [("vision-analysis", 2)]
            audit = (
                await client.get(f"{BASE}/features/vision-analysis/audit", headers=ADMIN)
            ).json()
            assert [(e["action"], e["actor"]) for e in reversed(audit)][1:] == [
                ("plan-create", "admin"),
                ("plan-step", "rollout-plan"),
                ("plan-step", "rollout-plan"),
                ("rollout", "rollout-plan"),
                ("plan-pause", "rollout-plan"),
                ("plan-resume", "admin"),
                ("plan-step", "rollout-plan"),
                ("rollout", "rollout-plan"),
            ]
    finally:
        await manager.__aexit__(None, None, None)


@sqlite_only
async def test_the_routes_answer_4xx_naming_what_is_wrong(
    settings_factory: Any, clock: Clock
) -> None:
    app, manager = await running(settings_factory(rollout_tick_seconds=3600), clock)
    plan = f"{BASE}/features/core-api/rollout-plan"
    ok_steps = [{"percentage": 50}]
    cases: list[tuple[str, str, Any, int, str]] = [
        ("PUT", plan, {"steps": []}, 422, "steps"),
        ("PUT", plan, {"steps": [{"percentage": 101}]}, 422, "steps.0.percentage"),
        ("PUT", plan, {"steps": [{"percentage": 5, "holdSeconds": -1}]}, 422, "holdSeconds"),
        ("PUT", plan, {"steps": [{"percentage": "x"}]}, 422, "percentage"),
        ("PUT", plan, {"steps": ok_steps, "guards": {"circuits": ["nope"]}}, 422, "circuits[0]"),
        (
            "PUT",
            plan,
            {"steps": ok_steps, "guards": {"errorRate": {"circuit": "database", "threshold": 5}}},
            422,
            "guards.errorRate.circuit",
        ),
        (
            "PUT",
            plan,
            {"steps": ok_steps, "guards": {"errorRate": {"circuit": "database", "threshold": 0}}},
            422,
            "threshold",
        ),
        ("PUT", plan, {"steps": ok_steps, "startAt": "2027-01-05T09:00:00"}, 422, "startAt"),
        ("PUT", plan, {"steps": ok_steps, "startAt": "9999-01-05T09:00:00Z"}, 422, "startAt"),
        ("PUT", f"{BASE}/features/nope/rollout-plan", {"steps": ok_steps}, 404, "nope"),
        ("GET", plan, None, 404, "no rollout plan"),
        ("GET", f"{BASE}/features/nope/rollout-plan", None, 404, "nope"),
        ("DELETE", plan, None, 404, "no rollout plan"),
        ("POST", f"{plan}/pause", None, 404, "no rollout plan"),
        ("POST", f"{plan}/resume", None, 404, "no rollout plan"),
        (
            "POST",
            f"{BASE}/schedules",
            {"key": "core-api", "action": "rollout", "at": "2027-02-01T00:00:00Z"},
            422,
            "percentage",
        ),
        (
            "POST",
            f"{BASE}/schedules",
            {"key": "core-api", "action": "enable", "percentage": 5, "at": "2027-02-01T00:00:00Z"},
            422,
            "percentage",
        ),
        (
            "POST",
            f"{BASE}/schedules",
            {"key": "core-api", "action": "explode", "at": "2027-02-01T00:00:00Z"},
            422,
            "action",
        ),
        (
            "POST",
            f"{BASE}/schedules",
            {"key": "core-api", "action": "enable", "at": "2020-02-01T00:00:00Z"},
            422,
            "at: is in the past",
        ),
        (
            "POST",
            f"{BASE}/schedules",
            {"key": "core-api", "action": "enable", "at": "2027-02-01T00:00:00"},
            422,
            "at",
        ),
        (
            "POST",
            f"{BASE}/schedules",
            {"key": "nope", "action": "enable", "at": "2027-02-01T00:00:00Z"},
            404,
            "nope",
        ),
        ("GET", f"{BASE}/schedules/12345", None, 404, "12345"),
        ("DELETE", f"{BASE}/schedules/12345", None, 404, "12345"),
        ("GET", f"{BASE}/schedules/0", None, 422, "schedule_id"),
        ("GET", f"{BASE}/schedules/99999999999999999999", None, 422, "schedule_id"),
        ("GET", f"{BASE}/schedules?status=later", None, 422, "status"),
    ]
    try:
        async with http(app) as client:
            for method, path, body, status, named in cases:
                response = await client.request(method, path, json=body, headers=ADMIN)
                assert response.status_code == status, (method, path, body, response.text)
                assert named in response.json()["error"]["message"], (path, body, response.text)

            created = await client.put(plan, json={"steps": ok_steps}, headers=ADMIN)
            assert created.json()["status"] == "completed" or created.json()["currentStep"] == 0
            resumed = await client.post(f"{plan}/resume", headers=ADMIN)
            assert (resumed.status_code, resumed.json()["error"]["code"]) == (
                409,
                "PLAN_NOT_PAUSED",
            )
            paused = await client.post(f"{plan}/pause", json={"reason": "checking"}, headers=ADMIN)
            assert paused.json()["pausedReason"] == "paused by admin: checking"
            again = await client.post(f"{plan}/pause", headers=ADMIN)
            assert (again.status_code, again.json()["error"]["code"]) == (409, "PLAN_NOT_ACTIVE")
            assert (await client.delete(plan, headers=ADMIN)).status_code == 204

            at = "2027-02-01T00:00:00+01:00"
            change = {"key": "core-api", "action": "rollout", "percentage": 5, "at": at}
            made = await client.post(f"{BASE}/schedules", json=change, headers=ADMIN)
            assert made.status_code == 201, made.text
            assert made.json()["at"] == "2027-01-31T23:00:00Z"
            listed = await client.get(
                f"{BASE}/schedules?key=core-api&status=pending", headers=ADMIN
            )
            assert [item["id"] for item in listed.json()] == [made.json()["id"]]
            schedule = f"{BASE}/schedules/{made.json()['id']}"
            assert (await client.delete(schedule, headers=ADMIN)).status_code == 204
            twice = await client.delete(schedule, headers=ADMIN)
            assert (twice.status_code, twice.json()["error"]["code"]) == (
                409,
                "SCHEDULE_NOT_PENDING",
            )
            assert (await client.get(schedule, headers=ADMIN)).json()["status"] == "cancelled"
    finally:
        await manager.__aexit__(None, None, None)
