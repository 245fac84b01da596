"""Dashboard: a flag's strategies, constraints, segments and dependencies; try it; Unleash
documents in and out. Every edit goes through the forms and is checked in the service."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from httpx import AsyncClient

from tenantry.resilience.constraints import Constraint
from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import Dependency, Reason, Strategy, Variant
from tenantry.resilience.unleash import simple_strategies
from tests.dashboard.test_pages import INLINE, assert_protected

KEY = "advanced-analytics"  # a default flag: company-targeted, on, 100 %
URL = f"/admin/flags/{KEY}"


def problem(page: Any, form: str) -> str:
    """The refusal shown beside `form` (the page is a page, not a 500)."""
    match = re.search(rf'data-problem="{re.escape(form)}">([^<]*)<', page.text)
    assert match, (page.status_code, form, page.text[-2000:])
    return html.unescape(match.group(1))


async def test_edit_strategies_constraints_and_dependencies(
    client: AsyncClient, csrf: str, app: Any
) -> None:
    flags = app.state.services.resilience.flags
    ab = (Variant("a", 1), Variant("b", 1))
    await flags.update(KEY, actor="test", block=frozenset({"evil"}), variants=ab)
    simple = await flags.get(KEY)
    ids = [f"company-{n}" for n in range(20)]

    def decisions() -> list[tuple[bool, str | None]]:
        evaluations = [flags.evaluate(KEY, target_id) for target_id in ids]
        return [(e.enabled, e.variant.name if e.variant else None) for e in evaluations]

    decided = decisions()
    assert {variant for _, variant in decided} == {"a", "b"}

    # "Use strategies": the strategies that decide as the gates did.
    converted = await client.post(
        f"{URL}/use-strategies", data={"csrf": csrf, "version": simple.version}
    )
    assert converted.status_code == 303
    flag = await flags.get(KEY)
    assert flag.strategies == simple_strategies(simple) and not flag.block
    assert not flags.evaluate(KEY, "evil").enabled
    assert decisions() == decided  # variants too

    # Edit the strategy's name and parameters, then constrain it.
    v = flag.version
    edited = await client.post(
        f"{URL}/strategies/0",
        data={
            "csrf": csrf,
            "version": v,
            "name": "flexibleRollout",
            "parameters": f"rollout=100\nstickiness=companyId\ngroupId={KEY}",
        },
    )
    assert edited.status_code == 303
    added = await client.post(
        f"{URL}/strategies/0/constraints",
        data={
            "csrf": csrf,
            "version": v + 1,
            "contextName": "environment",
            "operator": "IN",
            "values": "production, staging",
        },
    )
    assert added.status_code == 303
    blocked = await client.post(  # the block list, now a constraint, goes
        f"{URL}/strategies/0/constraints/0/remove", data={"csrf": csrf, "version": v + 2}
    )
    assert blocked.status_code == 303
    flag = await flags.get(KEY)
    assert flag.strategies == (
        Strategy(
            "flexibleRollout",
            {"rollout": "100", "stickiness": "companyId", "groupId": KEY},
            (Constraint("environment", "IN", ("production", "staging")),),
        ),
    )
    production = EvaluationContext(company_id="acme", environment="production")
    assert flags.evaluate(KEY, context=production).enabled
    dev = flags.evaluate(KEY, context=EvaluationContext(company_id="acme", environment="dev"))
    assert not dev.enabled and dev.reason is Reason.NO_STRATEGY_MATCH
    page = await client.get(URL)
    assert "1. flexibleRollout" in page.text and "production, staging" in page.text
    assert "admin (dashboard)" in page.text  # audited with the admin as actor
    assert not INLINE.search(page.text) and "Back to a simple rollout" not in page.text
    assert_protected(page)
    refused = await client.post(f"{URL}/use-simple", data={"csrf": csrf, "version": flag.version})
    assert refused.status_code == 422 and "becomes a simple rollout" in problem(refused, "convert")

    # A constraint the service refuses is shown beside its form; nothing changes.
    version = flag.version
    bad = await client.post(
        f"{URL}/strategies/0/constraints",
        data={
            "csrf": csrf,
            "version": version,
            "contextName": "age",
            "operator": "NUM_GT",
            "values": "<b>old</b>",
        },
    )
    assert bad.status_code == 422
    assert problem(bad, "constraint-0").startswith("strategy 1, constraint 2, value:")
    assert "&lt;b&gt;old&lt;/b&gt;" in bad.text and "<b>old" not in bad.text  # typed, escaped
    rollout = await client.post(
        f"{URL}/strategies/0",
        data={
            "csrf": csrf,
            "version": version,
            "name": "flexibleRollout",
            "parameters": "rollout=150",
        },
    )
    assert rollout.status_code == 422
    assert "parameters, rollout" in problem(rollout, "strategy-0")
    assert (await flags.get(KEY)).version == version
    stale = await client.post(f"{URL}/strategies/0/remove", data={"csrf": csrf, "version": 1})
    assert stale.status_code == 409 and "changed since" in problem(stale, "strategy-0")
    last = await client.post(f"{URL}/strategies/0/remove", data={"csrf": csrf, "version": version})
    assert last.status_code == 422 and "at least one strategy" in problem(last, "strategy-0")

    # Add a second strategy (defaults), move it first, remove the old one.
    await client.post(
        f"{URL}/strategies", data={"csrf": csrf, "version": version, "name": "userWithId"}
    )
    await client.post(f"{URL}/strategies/1/up", data={"csrf": csrf, "version": version + 1})
    flag = await flags.get(KEY)
    assert [s.name for s in flag.strategies] == ["userWithId", "flexibleRollout"]
    await client.post(f"{URL}/strategies/1/remove", data={"csrf": csrf, "version": flag.version})
    await client.post(
        f"{URL}/strategies/0",
        data={"csrf": csrf, "version": flag.version + 1, "name": "default", "parameters": ""},
    )
    flag = await flags.get(KEY)
    assert flag.strategies == (Strategy("default"),)

    # Dependencies: a missing parent is refused; a real one is added, then removed.
    missing = await client.post(
        f"{URL}/dependencies", data={"csrf": csrf, "version": flag.version, "feature": "nope"}
    )
    assert missing.status_code == 422
    assert "dependency 1, feature: no flag 'nope'" in problem(missing, "dependencies")
    await client.post(
        f"{URL}/dependencies",
        data={
            "csrf": csrf,
            "version": flag.version,
            "feature": "maintenance-mode",
            "enabled": "no",
        },
    )
    flag = await flags.get(KEY)
    assert flag.dependencies == (Dependency("maintenance-mode", False),)
    assert flags.evaluate(KEY, "acme").enabled  # maintenance mode is off
    await flags.enable("maintenance-mode", actor="test")
    assert flags.evaluate(KEY, "acme").reason is Reason.DEPENDENCY_NOT_MET
    await flags.disable("maintenance-mode", actor="test")
    await client.post(f"{URL}/dependencies/0/remove", data={"csrf": csrf, "version": flag.version})
    flag = await flags.get(KEY)
    assert flag.dependencies == ()

    # One unconstrained default strategy goes back to a simple rollout of 100 %.
    page = await client.get(URL)
    assert "Back to a simple rollout" in page.text
    back = await client.post(f"{URL}/use-simple", data={"csrf": csrf, "version": flag.version})
    assert back.status_code == 303
    flag = await flags.get(KEY)
    assert flag.simple and flag.rollout == 100 and not flag.block
    assert decisions() == decided


async def test_segments_create_attach_and_delete_in_use(
    client: AsyncClient, csrf: str, app: Any
) -> None:
    flags = app.state.services.resilience.flags
    created = await client.post(
        "/admin/segments", data={"csrf": csrf, "name": "beta <testers>", "description": "early"}
    )
    assert created.status_code == 303
    (segment,) = flags.segments()
    assert segment.name == "beta <testers>" and segment.id == 1
    taken = await client.post("/admin/segments", data={"csrf": csrf, "id": "1", "name": "again"})
    assert taken.status_code == 409 and "exists already" in problem(taken, "new")
    added = await client.post(
        "/admin/segments/1/constraints",
        data={"csrf": csrf, "contextName": "userId", "operator": "IN", "values": "ann\nbob"},
    )
    assert added.status_code == 303
    assert flags.segment(1).constraints == (Constraint("userId", "IN", ("ann", "bob")),)
    bad = await client.post(
        "/admin/segments/1/constraints",
        data={"csrf": csrf, "contextName": "ip", "operator": "IN_CIDR", "values": "not-a-net"},
    )
    assert bad.status_code == 422
    assert "constraint 2, values" in problem(bad, "constraint-1")

    # Attach it to a strategy of a flag: only ann and bob get the flag.
    await flags.update(KEY, actor="test", strategies=(Strategy("default"),))
    flag = await flags.get(KEY)
    attached = await client.post(
        f"{URL}/strategies/0/segments", data={"csrf": csrf, "version": flag.version, "segment": 1}
    )
    assert attached.status_code == 303
    assert (await flags.get(KEY)).strategies[0].segments == (1,)
    assert flags.evaluate(KEY, context=EvaluationContext(user_id="ann")).enabled
    assert not flags.evaluate(KEY, context=EvaluationContext(user_id="eve")).enabled
    page = await client.get(URL)
    assert "beta &lt;testers&gt;" in page.text and "<testers>" not in page.text

    segments = await client.get("/admin/segments")
    assert segments.status_code == 200 and not INLINE.search(segments.text)
    assert_protected(segments)
    row = re.search(r'<tr data-segment="1">.*?</tr>', segments.text, re.S)
    assert row and f">{KEY}</a>" in row.group(0)  # which flags use it
    in_use = await client.post("/admin/segments/1/delete", data={"csrf": csrf})
    assert in_use.status_code == 409 and "is used by" in problem(in_use, "segment-1")
    assert flags.segments()

    flag = await flags.get(KEY)
    detached = await client.post(
        f"{URL}/strategies/0/segments",
        data={"csrf": csrf, "version": flag.version, "segment": 1, "detach": "on"},
    )
    assert detached.status_code == 303 and (await flags.get(KEY)).strategies[0].segments == ()
    deleted = await client.post("/admin/segments/1/delete", data={"csrf": csrf})
    assert deleted.status_code == 303 and flags.segments() == []


async def test_try_it_shows_the_evaluation(client: AsyncClient, csrf: str, app: Any) -> None:
    flags = app.state.services.resilience.flags
    strategy = Strategy("default", {}, (Constraint("plan", "IN", ("pro",)),))
    await flags.update(KEY, actor="test", strategies=(strategy,), variants=(Variant("blue", 1),))

    async def tried(**fields: str) -> tuple[str, str, str]:
        page = await client.post(f"{URL}/try", data={"csrf": csrf, **fields})
        assert page.status_code == 200
        found = [
            re.search(rf'data-{name}="([^"]*)"', page.text)
            for name in ("enabled", "variant", "reason")
        ]
        assert all(found), page.text
        return tuple(m.group(1) for m in found if m)  # type: ignore[return-value]

    assert await tried(companyId="acme", properties="plan=pro") == ("yes", "blue", "strategy_match")
    assert await tried(companyId="acme", properties="plan=free") == (
        "no",
        "",
        "no_strategy_match",
    )
    bad = await client.post(f"{URL}/try", data={"csrf": csrf, "properties": "no equals sign"})
    assert bad.status_code == 422 and "name=value" in problem(bad, "try")


async def test_unleash_export_and_import_round_trip(
    client: AsyncClient, csrf: str, app: Any
) -> None:
    flags = app.state.services.resilience.flags
    exported = await client.get("/admin/flags/export")
    assert exported.status_code == 200
    assert exported.headers["content-disposition"].startswith("attachment")
    document = exported.json()
    assert {f["name"] for f in document["features"]} == {f.key for f in await flags.all()}

    await flags.disable("core-api", actor="test")
    imported = await client.post(
        "/admin/flags/import",
        data={"csrf": csrf},
        files={"file": ("flags.json", json.dumps(document).encode(), "application/json")},
    )
    assert imported.status_code == 303
    page = await client.get(imported.headers["location"])
    assert f"Document imported: {len(document['features'])} flags." in page.text
    assert (await flags.get("core-api")).enabled
    assert (await client.get("/admin/flags/export")).json() == document  # the same decisions

    for pasted, expected in (("{not json", "not JSON"), ('{"version": 9}', "version")):
        refused = await client.post(
            "/admin/flags/import", data={"csrf": csrf, "document": pasted}, files={}
        )
        assert refused.status_code == 422 and expected in problem(refused, "import")
    assert 'id="import"' in page.text and not INLINE.search(page.text)
