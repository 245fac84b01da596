"""Unleash documents in and out: validation all or nothing, round trips that decide the same."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

from httpx import AsyncClient
from yggdrasil_engine.engine import UnleashEngine

from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import Flag, Target, Variant
from tenantry.resilience.service import FlagService
from tenantry.resilience.stores.memoized import MemoizedStore
from tenantry.resilience.stores.memory import MemoryFlagStore
from tests.conftest import ADMIN

SPEC_DIR = Path(__file__).parent / "unleash-client-specification"
BASE = "/api/degradation"

# Tenantry's own shapes: the simple model in each form, and a company rollout strategy.
NATIVE = [
    Flag("simple-company", enabled=True, target=Target.COMPANY, rollout=30,
         allow=frozenset({"c-1", "c-2"}), block=frozenset({"c-3", "c-1"}),
         variants=(Variant("a", 1, {"type": "string", "value": "A"}), Variant("b", 3))),
    Flag("simple-user", enabled=True, target=Target.USER, rollout=50,
         variants=(Variant("x", 5, {"free": ["json"]}), Variant("y", 5))),
    Flag("everyone", enabled=True),
    Flag("no-one", enabled=True, rollout=0),
    Flag("allow-only", enabled=True, rollout=0, allow=frozenset({"u-1"})),
    Flag("switched-off", enabled=False, rollout=100),
]  # fmt: skip


def _contexts(count: int) -> list[EvaluationContext]:
    rng = random.Random(5)
    pick = rng.choice
    return [
        EvaluationContext(
            user_id=pick([None, *(f"u-{n}" for n in range(40))]),
            company_id=pick([None, *(f"c-{n}" for n in range(10))]),
            session_id=pick([None, "s-1", "s-2"]),
            remote_address=pick([None, "10.0.0.1", "192.168.1.1", "2001:db8::1"]),
            environment=pick([None, "production", "development"]),
            app_name=pick([None, "web", "mobile"]),
            properties={"customField": pick(["a", "b", "c"]), "version": pick(["1.2.2", "2.0.0"])},
        )
        for _ in range(count)
    ]


def _deterministic(decision: Any) -> Any:
    return decision


async def _service() -> FlagService:
    flags = FlagService(MemoizedStore(MemoryFlagStore()))
    await flags.refresh()
    return flags


async def _loaded() -> FlagService:
    flags = await _service()
    for flag in NATIVE:
        await flags.create(flag, actor="test")
    for path in sorted(SPEC_DIR.glob("*.json")):
        await flags.import_document(json.loads(path.read_text())["state"], actor="test")
    return flags


def _answers(flags: FlagService, contexts: list[EvaluationContext]) -> dict[str, list[Any]]:
    answers: dict[str, list[Any]] = {}
    for key in flags.snapshot.flags:
        row = []
        for context in contexts:
            evaluation = flags.evaluate(key, context=context)
            variant = evaluation.variant
            row.append((evaluation.enabled, variant.name if variant else None))
        answers[key] = row
    return answers


def _stable(contexts: list[EvaluationContext]) -> list[EvaluationContext]:
    """Contexts every rollout can stick to (no random draw decides them)."""
    return [c for c in contexts if c.user_id and c.session_id and c.company_id]


async def test_an_export_imported_into_a_fresh_tenantry_decides_identically() -> None:
    source = await _loaded()
    document = json.loads(json.dumps(source.export_document()))  # through JSON, as on the wire
    fresh = await _service()
    assert await fresh.import_document(document, actor="test") == len(source.snapshot.flags)
    contexts = _stable(_contexts(600))
    assert len(contexts) > 100
    assert _answers(fresh, contexts) == _answers(source, contexts)


async def test_unleashs_engine_decides_an_export_as_tenantry_does() -> None:
    flags = await _loaded()
    engine = UnleashEngine()
    engine.take_state(json.dumps(flags.export_document()))
    disagreements = []
    for context in _stable(_contexts(400)):
        for key in flags.snapshot.flags:
            ours = flags.evaluate(key, context=context)
            theirs = engine.check_variant(key, context.to_unleash()).variant
            variant = ours.variant
            mine = (ours.enabled, variant.name if variant else "disabled",
                    variant.unleash_payload() if variant else None)  # fmt: skip
            if mine != (theirs.feature_enabled, theirs.name, theirs.payload):
                disagreements.append((key, context, mine, theirs))
    assert disagreements == []


BAD_DOCUMENTS: list[tuple[Any, str, str | None]] = [
    ([], "document", None),
    ({"version": 3, "features": []}, "version", None),
    ({"version": 2}, "features", None),
    ({"version": 2, "features": [{"name": "ok", "enabled": "yes"}]}, "enabled", "ok"),
    ({"version": 2, "features": [{"name": "a/b", "enabled": True}]}, "name", "a/b"),
    ({"version": 2, "features": [{"name": "import"}]}, "name", "import"),
    (
        {"version": 2, "features": [{"name": "x", "strategies": [{"name": "default",
          "constraints": [{"contextName": "userId", "values": ["1"]}]}]}]},
        "strategies[0].constraints[0].operator",
        "x",
    ),
    (
        {"version": 2, "features": [{"name": "x"}, {"name": "y", "variants": [{"weight": 5}]}]},
        "variants[0].name",
        "y",
    ),
    ({"version": 2, "features": [{"name": "x"}, {"name": "x"}]}, "name", "x"),
    ({"version": 2, "features": [], "segments": [{"name": "no id"}]}, "segments[0].id", None),
]  # fmt: skip


async def test_an_invalid_document_is_422_naming_the_field_and_imports_nothing(
    client: AsyncClient,
) -> None:
    before = (await client.get(f"{BASE}/features/export", headers=ADMIN)).json()
    for document, field, feature in BAD_DOCUMENTS:  # one app for all: each starts in seconds
        response = await client.post(f"{BASE}/features/import", json=document, headers=ADMIN)
        assert response.status_code == 422, (document, response.text)
        details = response.json()["error"]["details"]
        assert (details["field"], details.get("feature")) == (field, feature), document
    after = (await client.get(f"{BASE}/features/export", headers=ADMIN)).json()
    assert after == before


async def test_import_replaces_same_names_and_leaves_the_others(client: AsyncClient) -> None:
    document = {
        "version": 1,
        "features": [
            {"name": "core-api", "enabled": False, "strategies": []},
            {"name": "new.flag ✓", "enabled": True, "strategies": [
                {"name": "userWithId", "parameters": {"userIds": "7, 8"}, "segments": [3]}]},
        ],
        "segments": [{"id": 3, "name": "eu", "constraints": [
            {"contextName": "region", "operator": "IN", "values": ["eu"]}]}],
    }  # fmt: skip
    response = await client.post(f"{BASE}/features/import", json=document, headers=ADMIN)
    assert response.json() == {"imported": 2}
    core = (await client.get(f"{BASE}/features/core-api", headers=ADMIN)).json()
    assert (core["enabled"], core["version"]) == (False, 2)
    assert (await client.get(f"{BASE}/features/authentication", headers=ADMIN)).json()["enabled"]
    name = quote("new.flag ✓", safe="")
    audit = (await client.get(f"{BASE}/features/{name}/audit", headers=ADMIN)).json()
    assert [entry["action"] for entry in audit] == ["import"]

    async def decide(context: dict[str, Any]) -> bool:
        answer = await client.post(
            f"{BASE}/features/{name}/evaluate", json={"context": context}, headers=ADMIN
        )
        enabled: bool = answer.json()["enabled"]
        return enabled

    assert await decide({"userId": "8", "properties": {"region": "eu"}})
    assert not await decide({"userId": "8", "properties": {"region": "us"}})
    assert not await decide({"userId": "9", "properties": {"region": "eu"}})
    segments = (await client.get(f"{BASE}/segments", headers=ADMIN)).json()
    assert [s["id"] for s in segments] == [3]
    # A segment in use cannot go; the flag's strategy would silently never match.
    assert (await client.delete(f"{BASE}/segments/3", headers=ADMIN)).status_code == 409


async def test_evaluate_answers_an_unknown_flag_as_unleash_does(client: AsyncClient) -> None:
    response = await client.post(f"{BASE}/features/nope/evaluate", json={}, headers=ADMIN)
    assert response.json() == {
        "enabled": False,
        "variant": {"name": "disabled", "enabled": False, "payload": None},
        "reason": "flag_not_found",
    }
