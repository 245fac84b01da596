"""Unleash's client specification through Tenantry's HTTP API: import, then evaluate.

Every case of every file in `unleash-client-specification/` (Unleash's files, byte for
byte, Apache-2.0; the same ten as ../shared/conformance) runs through exactly the two
routes an Unleash user would call: `POST /features/import` with the file's `state`,
then `POST /features/{name}/evaluate` with the case's context. No hand mapping and no
case left out: the count of cases run is checked against the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from httpx import AsyncClient

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
            expected = case["expectedResult"]
            got = {**result["variant"], "feature_enabled": result["enabled"]}
            wanted = {
                "name": expected["name"],
                "enabled": expected["enabled"],
                "payload": expected.get("payload"),
                "feature_enabled": expected.get("feature_enabled", expected.get("featureEnabled")),
            }
            if got != wanted:
                mismatches.append(f"{file}: {case['description']}: {got} != {wanted}")
    assert mismatches == []
    total = sum(len(s.get("tests", [])) + len(s.get("variantTests", [])) for s in SPECS.values())
    assert len(SPECS) == 10
    assert ran == total > 0
