"""Dashboard: a flag's rollout plan and scheduled changes, through the forms on its page.

On SQLite only: the runner and its store are tested on both databases elsewhere
(tests/resilience/test_rollouts.py); here it is the forms. The app's own tick is set to
once an hour, so no plan moves by itself during a test.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from tenantry.dashboard.durations import format_duration, parse_duration
from tenantry.resilience.rollouts import (
    ErrorRateGuard,
    Guards,
    PlanStatus,
    ScheduleAction,
    ScheduleStatus,
    Step,
)
from tenantry.settings import Settings
from tests.dashboard.test_pages import INLINE, assert_protected

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

KEY = "advanced-analytics"  # a default flag: company-targeted, on, 100 %
URL = f"/admin/flags/{KEY}"


@pytest.fixture
def settings(settings_factory: Any) -> Settings:
    made: Settings = settings_factory(
        rollout_tick_seconds=3600,
        circuit_breakers={"external-api": {"slidingWindowSize": 20}},
    )
    return made


def problem(page: Any, form: str) -> tuple[str, str]:
    """The refusal shown beside `form` (the page is a page, not a 500), and its field."""
    match = re.search(rf'data-field="([^"]*)" data-problem="{re.escape(form)}">([^<]*)<', page.text)
    assert match, (page.status_code, form, page.text[-2000:])
    return html.unescape(match.group(2)), match.group(1)


def step_states(page: Any) -> list[str]:
    return re.findall(r'data-step-state="([a-z]+)"', page.text)


def test_durations_read_back_what_they_write() -> None:
    assert parse_duration("1h30m") == parse_duration("1h 30m") == 5400
    assert parse_duration("2d") == 2 * 86400 and parse_duration("45S") == 45
    assert format_duration(5400) == "1h30m" and format_duration(0) == "0s"
    for seconds in (1, 59, 3600, 90061, 90 * 86400):
        assert parse_duration(format_duration(seconds)) == seconds
    for bad in ("", "5", "1x", "h", "1h-"):
        with pytest.raises(ValueError):
            parse_duration(bad)


@sqlite_only
async def test_create_a_plan_with_guards_and_see_its_state(
    client: AsyncClient, csrf: str, app: Any
) -> None:
    services = app.state.services
    empty = await client.get(URL)
    assert "No rollout plan" in empty.text
    assert f'href="/admin/flag-usage?flag={KEY}"' in empty.text

    created = await client.post(
        f"{URL}/rollout-plan",
        data={
            "csrf": csrf,
            "steps": "10 1h\n\n50 30m\n100",
            "circuits": ["ai-service", "storage"],
            "rateCircuit": "external-api",
            "rateThreshold": "25",
            "rateMinimumCalls": "5",
        },
    )
    assert created.status_code == 303, created.text
    plan = await services.rollouts.plan(KEY)
    assert plan.steps == (Step(10, 3600), Step(50, 1800), Step(100))
    assert plan.guards == Guards(("ai-service", "storage"), ErrorRateGuard("external-api", 25, 5))
    assert plan.status is PlanStatus.ACTIVE and plan.step == 0  # started now: step 1 taken
    assert (await services.resilience.flags.get(KEY)).rollout == 10
    audit = await services.resilience.flags.audit(KEY, limit=10)
    assert {"plan-create", "plan-step"} <= {e.action for e in audit}
    assert any(e.action == "plan-create" and e.actor == "admin (dashboard)" for e in audit)

    page = await client.get(created.headers["location"])
    assert page.status_code == 200 and "Rollout plan saved." in page.text
    assert 'data-plan-status="active"' in page.text
    assert step_states(page) == ["current", "next", "later"]
    due = (plan.step_started_at + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"Next step at {due}" in page.text
    assert "10 1h\n50 30m\n100</textarea>" in page.text  # the replace form starts from it
    assert "data-would-pause" not in page.text
    assert not INLINE.search(page.text)
    assert_protected(page)
    listed = await client.get("/admin/flags")
    assert f'<tr data-plan="{KEY}">' in listed.text  # the flags page's rollouts in progress

    # A guard that trips now is said (the plan pauses on the next tick).
    services.resilience.breakers["storage"].force_open("test")
    tripped = await client.get(URL)
    assert "Would pause now: circuit &#39;storage&#39; is forced-open" in tripped.text
    services.resilience.breakers["storage"].reset()


@sqlite_only
async def test_invalid_plans_are_refused_beside_the_form(
    client: AsyncClient, csrf: str, app: Any
) -> None:
    async def refused(status: int, **fields: Any) -> tuple[str, str]:
        page = await client.post(f"{URL}/rollout-plan", data={"csrf": csrf, **fields})
        assert page.status_code == status, page.text[-1000:]
        return problem(page, "rollout-plan")

    message, field = await refused(422, steps="10 1h\n<b>fifty</b> 1h")
    assert message.startswith("step 2: ") and field == "steps"
    page = await client.post(f"{URL}/rollout-plan", data={"csrf": csrf, "steps": "<b>x</b>"})
    assert "&lt;b&gt;x&lt;/b&gt;</textarea>" in page.text and "<b>x" not in page.text
    assert 'aria-invalid="true">&lt;b&gt;x' in page.text
    assert (await refused(422, steps="10 5"))[0].startswith("step 1: '5' is not a duration")
    assert await refused(422, steps="10 1h\n150") == (
        "step 2, percentage: a whole percentage, 0-100",
        "steps",
    )
    assert (await refused(422, steps="10 91d"))[0] == "step 1, hold: at most 90d"
    assert await refused(422, steps="\n".join(["10 1m"] * 21)) == (
        "steps: at most 20 steps",
        "steps",
    )
    message, field = await refused(422, steps="100", circuits="nope")
    assert "no circuit 'nope'" in message and field == "circuits"
    message, field = await refused(422, steps="100", rateCircuit="ai-service", rateThreshold="5")
    assert "keeps no failure rate" in message and field == "rateCircuit"
    message, field = await refused(422, steps="100", rateCircuit="external-api", rateThreshold="0")
    assert field == "rateThreshold"
    message, field = await refused(422, steps="100", startAt="tomorrow")
    assert field == "startAt"
    # Replacing a plan the page did not show (created meanwhile) is refused.
    await app.state.services.rollouts.put_plan(KEY, [Step(100)], actor="test")
    assert (await refused(409, steps="50"))[0].startswith("The rollout plan changed")
    assert (await app.state.services.rollouts.plan(KEY)).steps == (Step(100),)


@sqlite_only
async def test_pause_resume_and_delete(client: AsyncClient, csrf: str, app: Any) -> None:
    services = app.state.services
    start = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    created = await client.post(
        f"{URL}/rollout-plan",
        data={
            "csrf": csrf,
            "steps": "20 2h\n100",
            "circuits": "ai-service",
            "startAt": start.strftime("%Y-%m-%dT%H:%M"),  # as datetime-local sends it: UTC
        },
    )
    assert created.status_code == 303
    plan = await services.rollouts.plan(KEY)
    assert plan.start_at == start and plan.step == -1  # not started yet
    page = await client.get(URL)
    assert step_states(page) == ["next", "later"]
    assert f"Takes its first step at {start:%Y-%m-%d %H:%M:%S} UTC" in page.text
    planned = re.search(r'name="planned" value="([^"]+)"', page.text)
    assert planned

    paused = await client.post(
        f"{URL}/rollout-plan/pause", data={"csrf": csrf, "reason": "checking <logs>"}
    )
    assert paused.status_code == 303
    plan = await services.rollouts.plan(KEY)
    assert plan.status is PlanStatus.PAUSED
    assert plan.paused_reason == "paused by admin (dashboard): checking <logs>"
    again = await client.post(f"{URL}/rollout-plan/pause", data={"csrf": csrf})
    assert again.status_code == 409 and "not active" in problem(again, "rollout-state")[0]

    # While a guarded circuit is open the plan cannot resume: said beside the form.
    breakers = services.resilience.breakers
    breakers["ai-service"].force_open("test")
    page = await client.get(URL)
    assert "checking &lt;logs&gt;" in page.text and "<logs>" not in page.text
    assert "Cannot resume now: circuit &#39;ai-service&#39; is forced-open" in page.text
    refused = await client.post(f"{URL}/rollout-plan/resume", data={"csrf": csrf})
    assert refused.status_code == 409
    message, _ = problem(refused, "rollout-state")
    assert message.endswith(f"plan of {KEY!r}: circuit 'ai-service' is forced-open")
    assert (await services.rollouts.plan(KEY)).status is PlanStatus.PAUSED
    breakers["ai-service"].reset()
    resumed = await client.post(f"{URL}/rollout-plan/resume", data={"csrf": csrf})
    assert resumed.status_code == 303
    assert (await services.rollouts.plan(KEY)).status is PlanStatus.ACTIVE

    stale = await client.post(f"{URL}/rollout-plan/delete", data={"csrf": csrf, "planned": ""})
    assert stale.status_code == 409
    deleted = await client.post(
        f"{URL}/rollout-plan/delete", data={"csrf": csrf, "planned": planned.group(1)}
    )
    assert deleted.status_code == 303
    assert await services.rollouts.store.plan(KEY) is None
    actions = [e.action for e in await services.resilience.flags.audit(KEY, limit=20)]
    assert {"plan-pause", "plan-resume", "plan-delete"} <= set(actions)
    gone = await client.post(f"{URL}/rollout-plan/resume", data={"csrf": csrf})
    assert gone.status_code == 404 and "no rollout plan" in problem(gone, "rollout-state")[0]
    no_csrf = await client.post(f"{URL}/rollout-plan/pause", data={})
    assert no_csrf.status_code == 403


@sqlite_only
async def test_schedule_and_cancel_changes(client: AsyncClient, csrf: str, app: Any) -> None:
    rollouts = app.state.services.rollouts
    at = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    typed_at = at.strftime("%Y-%m-%dT%H:%M")
    made = await client.post(
        f"{URL}/schedules",
        data={"csrf": csrf, "action": "rollout", "at": typed_at, "percentage": "40"},
    )
    assert made.status_code == 303
    (change,) = await rollouts.schedules(KEY)
    assert (change.action, change.at, change.percentage) == (ScheduleAction.ROLLOUT, at, 40)
    assert change.status is ScheduleStatus.PENDING and change.created_by == "admin (dashboard)"
    await client.post(f"{URL}/schedules", data={"csrf": csrf, "action": "disable", "at": typed_at})
    page = await client.get(URL)
    assert page.text.count('data-status="pending"') == 2
    assert f"{at:%Y-%m-%d %H:%M:%S} UTC" in page.text and "rollout to 40 %" in page.text
    assert "read as UTC" in page.text

    past = await client.post(
        f"{URL}/schedules", data={"csrf": csrf, "action": "enable", "at": "2020-01-01T09:00"}
    )
    assert past.status_code == 422 and problem(past, "schedule") == ("at: is in the past", "at")
    assert 'value="2020-01-01T09:00"' in past.text  # what was typed stays
    not_rollout = await client.post(
        f"{URL}/schedules",
        data={"csrf": csrf, "action": "enable", "at": typed_at, "percentage": "5"},
    )
    assert problem(not_rollout, "schedule")[1] == "percentage"
    missing = await client.post(
        f"{URL}/schedules", data={"csrf": csrf, "action": "rollout", "at": typed_at}
    )
    assert missing.status_code == 422 and "for a rollout" in problem(missing, "schedule")[0]

    cancelled = await client.post(f"{URL}/schedules/{change.id}/cancel", data={"csrf": csrf})
    assert cancelled.status_code == 303
    assert (await rollouts.get_schedule(change.id)).status is ScheduleStatus.CANCELLED
    page = await client.get(URL)
    assert f'<tr data-schedule="{change.id}" data-status="cancelled">' in page.text
    twice = await client.post(f"{URL}/schedules/{change.id}/cancel", data={"csrf": csrf})
    assert twice.status_code == 409 and "not pending" in problem(twice, "schedule")[0]
    other_flag = f"/admin/flags/core-api/schedules/{change.id}/cancel"
    other = await client.post(other_flag, data={"csrf": csrf})
    assert other.status_code == 404
    actions = [e.action for e in await app.state.services.resilience.flags.audit(KEY, limit=20)]
    assert actions.count("schedule-create") == 2 and "schedule-cancel" in actions
