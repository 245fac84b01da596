"""Unleash's client specification, through Tenantry's HTTP API and through its engine.

Every case of every file in `unleash-client-specification/` (Unleash's files, byte for
byte, Apache-2.0; the same ten as ../shared/conformance) runs through exactly the two
routes an Unleash user would call: `POST /features/import` with the file's `state`,
then `POST /features/{name}/evaluate` with the case's context. No hand mapping and no
case left out: the count of cases run is checked against the files. The same cases run once more
against the engine itself (`read_document`, `FlagSnapshot`), without an app: that is
the test `make mutate` runs for flag evaluation, where an app per mutant costs minutes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from httpx import AsyncClient

from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import Evaluation, FlagSnapshot
from tenantry.resilience.unleash import read_document
from tests.conftest import ADMIN

SPEC_DIR = Path(__file__).parent / "unleash-client-specification"
BASE = "/api/degradation"
SPECS = {path.name: json.loads(path.read_text()) for path in sorted(SPEC_DIR.glob("*.json"))}


async def _reset(client: AsyncClient) -> None:
    """Each file starts from no flags and no segments, as a fresh Unleash client would."""
    for flag in (await client.get(f"{BASE}/features", headers=ADMIN)).json():
        response = await client.delete(
            f"{BASE}/features/{quote(flag['key'], safe='')}", headers=ADMIN
        )
        assert response.status_code == 204
    for segment in (await client.get(f"{BASE}/segments", headers=ADMIN)).json():
        response = await client.delete(f"{BASE}/segments/{segment['id']}", headers=ADMIN)
        assert response.status_code == 204


async def _evaluate(client: AsyncClient, name: str, context: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        f"{BASE}/features/{quote(name, safe='')}/evaluate",
        json={"context": context},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_every_case_of_every_specification_file(client: AsyncClient) -> None:
    mismatches: list[str] = []
    ran = 0
    for file, spec in SPECS.items():
        await _reset(client)
        imported = await client.post(f"{BASE}/features/import", json=spec["state"], headers=ADMIN)
        assert imported.status_code == 200, (file, imported.text)
        assert imported.json() == {"imported": len(spec["state"]["features"])}
        for case in spec.get("tests", []):
            result = await _evaluate(client, case["toggleName"], case["context"])
            ran += 1
            if result["enabled"] != case["expectedResult"]:
                mismatches.append(f"{file}: {case['description']}: {result}")
        for case in spec.get("variantTests", []):
            result = await _evaluate(client, case["toggleName"], case["context"])
            ran += 1
            got = {**result["variant"], "feature_enabled": result["enabled"]}
            wanted = _expected_variant(case["expectedResult"])
            if got != wanted:
                mismatches.append(f"{file}: {case['description']}: {got} != {wanted}")
    assert mismatches == []
    assert ran == _total_cases() > 0


def test_every_case_of_every_specification_file_in_the_engine() -> None:
    mismatches: list[str] = []
    ran = 0
    for file, spec in SPECS.items():
        read = read_document(spec["state"])
        snapshot = FlagSnapshot.of(read.flags, read.segments)
        for case in spec.get("tests", []):
            result = _evaluate_in_engine(snapshot, case)
            ran += 1
            if result.enabled != case["expectedResult"]:
                mismatches.append(f"{file}: {case['description']}: {result}")
        for case in spec.get("variantTests", []):
            result = _evaluate_in_engine(snapshot, case)
            ran += 1
            variant = result.variant
            got = {
                "name": variant.name if variant else "disabled",
                "enabled": variant is not None,
                "payload": variant.unleash_payload() if variant else None,
                "feature_enabled": result.enabled,
            }
            if got != _expected_variant(case["expectedResult"]):
                mismatches.append(f"{file}: {case['description']}: {got}")
    assert mismatches == []
    assert ran == _total_cases() > 0


def _evaluate_in_engine(snapshot: FlagSnapshot, case: dict[str, Any]) -> Evaluation:
    return snapshot.evaluate(case["toggleName"], context=EvaluationContext.of(case["context"]))


def _expected_variant(expected: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": expected["name"],
        "enabled": expected["enabled"],
        "payload": expected.get("payload"),
        "feature_enabled": expected.get("feature_enabled", expected.get("featureEnabled")),
    }


def _total_cases() -> int:
    assert len(SPECS) == 10
    return sum(len(s.get("tests", [])) + len(s.get("variantTests", [])) for s in SPECS.values())
