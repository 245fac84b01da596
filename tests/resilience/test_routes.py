"""/api/degradation/*: every route exists, needs the admin key, and answers as described."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import ADMIN, client_from

BASE = "/api/degradation"
# In order on one app: a circuit nothing else here goes through (forced open, `database`
# would refuse the next rows' company keys), and what removes a thing after its uses.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/circuits", None),
    ("GET", "/circuits/external-api", None),
    ("POST", "/circuits/external-api/reset", None),
    ("POST", "/circuits/external-api/open", None),
    ("POST", "/circuits/external-api/close", None),
    ("GET", "/features", None),
    ("GET", "/features/core-api", None),
    ("GET", "/features/core-api/check?targetId=acme", None),
    ("POST", "/features/core-api/enable", None),
    ("POST", "/features/core-api/disable", None),
    ("POST", "/features/core-api/rollout", {"percentage": 10}),
    ("POST", "/features/core-api/allow", {"targetId": "acme"}),
    ("DELETE", "/features/core-api/allow/acme", None),
    ("POST", "/features/core-api/block", {"targetId": "acme"}),
    ("DELETE", "/features/core-api/block/acme", None),
    ("POST", "/features", {"key": "new-flag"}),
    ("PATCH", "/features/core-api", {"description": "x"}),
    ("GET", "/features/core-api/audit", None),
    ("POST", "/features/import", {"version": 2, "features": []}),
    ("GET", "/features/export", None),
    ("POST", "/features/core-api/evaluate", {"context": {"userId": "7"}}),
    ("DELETE", "/features/core-api", None),
    ("GET", "/segments", None),
    ("POST", "/segments", {"name": "eu"}),
    ("GET", "/segments/1", None),
    ("PUT", "/segments/1", {"name": "eu"}),
    ("DELETE", "/segments/1", None),
    ("GET", "/health", None),
]


async def test_every_route_needs_the_admin_key(
    app: Any,
    client: AsyncClient,
    company_keys: dict[str, dict[str, str]],
    subtests: pytest.Subtests,
) -> None:
    for n, (method, path, body) in enumerate(ROUTES):  # one app, a subtest a row
        with subtests.test(f"{method} {path}"):
            async with client_from(app, f"10.0.{n}.1") as stranger:  # the limiter afresh
                anonymous = await stranger.request(method, BASE + path, json=body)
            assert anonymous.status_code == 401
            company = await client.request(
                method, BASE + path, json=body, headers=company_keys["acme"]
            )
            assert company.status_code == 403
            assert company.json()["error"]["code"] == "FORBIDDEN"
            if method == "DELETE" and path.endswith("/acme"):  # list the id first, as admin
                listed = path.rsplit("/", 1)[0]
                await client.post(BASE + listed, json={"targetId": "acme"}, headers=ADMIN)
            if path == "/segments/1" and method != "PUT":  # make the segment first, as admin
                await client.put(BASE + path, json={"name": "eu"}, headers=ADMIN)
            admin = await client.request(method, BASE + path, json=body, headers=ADMIN)
            assert admin.status_code in (200, 201, 204), admin.text


async def test_routes_are_in_the_openapi_schema(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for _, path, _ in ROUTES:
        template = BASE + path.split("?")[0].replace("/external-api", "/{name}").replace(
            "/core-api", "/{key}"
        ).replace("/acme", "/{target_id}").replace("/segments/1", "/segments/{segment_id}")
        assert template in paths, template


async def test_default_flags_exist_on_first_start(client: AsyncClient) -> None:
    response = await client.get(f"{BASE}/features", headers=ADMIN)
    flags = {flag["key"]: flag for flag in response.json()}
    assert len(flags) == 10
    assert flags["vision-analysis"]["rollout"] == 10
    assert flags["mobile-app"] == {
        **flags["mobile-app"],
        "rollout": 5,
        "target": "user",
        "enabled": True,
    }
    assert flags["maintenance-mode"]["enabled"] is False
    audit = await client.get(f"{BASE}/features/core-api/audit", headers=ADMIN)
    assert [(e["action"], e["actor"]) for e in audit.json()] == [("create", "system")]


async def test_flag_lifecycle_with_audit(client: AsyncClient) -> None:
    created = await client.post(
        f"{BASE}/features",
        json={
            "key": "new-checkout",
            "description": "The new checkout.",
            "enabled": True,
            "target": "company",
            "rollout": 0,
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "payload": 7}],
        },
        headers=ADMIN,
    )
    assert created.status_code == 201
    assert created.json()["version"] == 1

    check = await client.get(f"{BASE}/features/new-checkout/check?targetId=acme", headers=ADMIN)
    assert check.json() == {
        "key": "new-checkout",
        "targetId": "acme",
        "enabled": False,
        "reason": "rollout_miss",
        "variant": None,
    }
    allowed = await client.post(
        f"{BASE}/features/new-checkout/allow", json={"targetId": "acme"}, headers=ADMIN
    )
    assert allowed.json()["allow"] == ["acme"]
    check = await client.get(f"{BASE}/features/new-checkout/check?targetId=acme", headers=ADMIN)
    assert check.json()["reason"] == "allowed"
    assert check.json()["variant"]["name"] in ("a", "b")

    blocked = await client.post(
        f"{BASE}/features/new-checkout/block", json={"targetId": "acme"}, headers=ADMIN
    )
    assert blocked.status_code == 200
    check = await client.get(f"{BASE}/features/new-checkout/check?targetId=acme", headers=ADMIN)
    assert (check.json()["enabled"], check.json()["reason"]) == (False, "blocked")
    await client.delete(f"{BASE}/features/new-checkout/block/acme", headers=ADMIN)
    await client.delete(f"{BASE}/features/new-checkout/allow/acme", headers=ADMIN)

    rollout = await client.post(
        f"{BASE}/features/new-checkout/rollout", json={"percentage": 100}, headers=ADMIN
    )
    assert rollout.json()["rollout"] == 100
    disabled = await client.post(f"{BASE}/features/new-checkout/disable", headers=ADMIN)
    assert disabled.json()["enabled"] is False
    check = await client.get(f"{BASE}/features/new-checkout/check?targetId=x", headers=ADMIN)
    assert check.json()["reason"] == "disabled"
    patched = await client.patch(
        f"{BASE}/features/new-checkout",
        json={"enabled": True, "description": "Now on.", "block": ["initech"]},
        headers=ADMIN,
    )
    assert patched.json()["enabled"] is True
    assert patched.json()["block"] == ["initech"]

    audit = (await client.get(f"{BASE}/features/new-checkout/audit", headers=ADMIN)).json()
    assert [entry["action"] for entry in audit] == [
        "update",
        "disable",
        "rollout",
        "allow-remove",
        "block-remove",
        "block",
        "allow",
        "create",
    ]
    assert all(entry["actor"] == "admin" for entry in audit)
    assert audit[1]["before"]["enabled"] is True and audit[1]["after"]["enabled"] is False

    deleted = await client.delete(f"{BASE}/features/new-checkout", headers=ADMIN)
    assert deleted.status_code == 204
    assert (await client.get(f"{BASE}/features/new-checkout", headers=ADMIN)).status_code == 404
    audit = (await client.get(f"{BASE}/features/new-checkout/audit", headers=ADMIN)).json()
    assert audit[0]["action"] == "delete"


async def test_unknown_flag_or_circuit_is_404(
    client: AsyncClient, subtests: pytest.Subtests
) -> None:
    for method, path in [
        ("GET", "/features/nope"),
        ("GET", "/features/nope/check"),
        ("GET", "/features/nope/audit"),
        ("POST", "/features/nope/enable"),
        ("POST", "/features/nope/disable"),
        ("DELETE", "/features/nope"),
        ("GET", "/circuits/nope"),
        ("POST", "/circuits/nope/open"),
        ("POST", "/circuits/nope/close"),
        ("POST", "/circuits/nope/reset"),
    ]:
        with subtests.test(f"{method} {path}"):
            response = await client.request(method, BASE + path, headers=ADMIN)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_rollout_outside_0_100_is_422(client: AsyncClient, subtests: pytest.Subtests) -> None:
    for percentage in [-1, 101, 1000, "ten", None, 12.5]:
        with subtests.test(percentage=percentage):
            response = await client.post(
                f"{BASE}/features/vision-analysis/rollout",
                json={"percentage": percentage},
                headers=ADMIN,
            )
            assert response.status_code == 422
            assert "percentage" in response.json()["error"]["message"]
            flag = (await client.get(f"{BASE}/features/vision-analysis", headers=ADMIN)).json()
            assert flag["rollout"] == 10  # unchanged


async def test_duplicate_key_is_409(client: AsyncClient) -> None:
    response = await client.post(f"{BASE}/features", json={"key": "core-api"}, headers=ADMIN)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"


def _constrained(constraint: dict[str, Any]) -> dict[str, Any]:
    return {"key": "x", "strategies": [{"name": "default", "constraints": [constraint]}]}


BAD_FLAGS = [
    ({"key": "bad/key"}, "key"),
    ({"key": ""}, "key"),
    ({"key": "x", "rollout": 150}, "rollout"),
    ({"key": "x", "target": "planet"}, "target"),
    ({"key": "x", "allow": ["has space"]}, "allow"),
    ({"key": "x", "variants": [{"name": "a", "weight": 0}]}, "variants"),
    (
        {"key": "x", "variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]},
        "variants",
    ),
    ({"key": "x", "variants": [{"name": "a", "weight": -1}]}, "variants"),
]


async def test_bad_flag_bodies_are_422_naming_the_field(
    client: AsyncClient, subtests: pytest.Subtests
) -> None:
    for body, field in BAD_FLAGS:  # one app, a subtest a case
        with subtests.test(body=body):
            response = await client.post(f"{BASE}/features", json=body, headers=ADMIN)
            assert response.status_code == 422, response.text
            assert field in response.json()["error"]["message"]


BAD_TARGETING = [
    ({"key": "export"}, "key"),
    ({"key": "x", "strategies": [{"name": "mine"}]}, "strategies[0].name"),
    (
        {
            "key": "x",
            "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "x"}}],
        },
        "strategies[0].parameters.rollout",
    ),
    (_constrained({"contextName": "v", "operator": "SEMVER_GT", "value": "v1"}), "value"),
    (_constrained({"contextName": "v", "operator": "NUM_GT", "value": "many"}), "value"),
    (_constrained({"contextName": "v", "operator": "DATE_AFTER", "value": "today"}), "value"),
    (_constrained({"contextName": "v", "operator": "REGEX", "value": "(x"}), "value"),
    (_constrained({"contextName": "v", "operator": "IN_CIDR", "values": ["x"]}), "values"),
    (_constrained({"contextName": "v", "operator": "LIKE", "values": ["x"]}), "operator"),
    (_constrained({"contextName": "v", "operator": "IN"}), "values"),
    ({"key": "x", "strategies": [{"name": "default", "segments": [99]}]}, "segments"),
    ({"key": "x", "dependencies": [{"feature": "nope"}]}, "dependencies[0].feature"),
    ({"key": "x", "dependencies": [{"feature": "x"}]}, "dependencies[0].feature"),
]


async def test_bad_targeting_is_422_naming_the_field(client: AsyncClient) -> None:
    for body, field in BAD_TARGETING:  # one app for all the cases
        response = await client.post(f"{BASE}/features", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        assert field in response.json()["error"]["message"], body
    created = await client.post(f"{BASE}/features", json={"key": "x"}, headers=ADMIN)
    assert created.status_code == 201  # nothing of the refused bodies was kept


async def test_bad_target_ids_are_422(client: AsyncClient) -> None:
    response = await client.post(
        f"{BASE}/features/core-api/allow", json={"targetId": ""}, headers=ADMIN
    )
    assert response.status_code == 422
    response = await client.get(f"{BASE}/features/core-api/check?targetId=a%20b", headers=ADMIN)
    assert response.status_code == 422


async def test_removing_an_id_that_is_not_listed_is_404(client: AsyncClient) -> None:
    response = await client.delete(f"{BASE}/features/core-api/allow/nobody", headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_ON_LIST"


async def test_circuit_routes_drive_the_breaker(client: AsyncClient) -> None:
    opened = await client.post(f"{BASE}/circuits/ai-service/open", headers=ADMIN)
    assert opened.json()["state"] == "forced_open"
    health = (await client.get(f"{BASE}/health", headers=ADMIN)).json()
    assert health["status"] == "degraded"
    assert health["openCircuits"] == ["ai-service"]
    closed = await client.post(f"{BASE}/circuits/ai-service/close", headers=ADMIN)
    assert closed.json()["state"] == "closed"
    disabled = await client.post(
        f"{BASE}/circuits/ai-service/close", json={"force": True}, headers=ADMIN
    )
    assert disabled.json()["state"] == "disabled"
    reset = await client.post(f"{BASE}/circuits/ai-service/reset", headers=ADMIN)
    assert reset.json()["state"] == "closed"
    one = (await client.get(f"{BASE}/circuits/ai-service", headers=ADMIN)).json()
    assert one["config"]["failureThreshold"] == 3
    names = [c["name"] for c in (await client.get(f"{BASE}/circuits", headers=ADMIN)).json()]
    assert {"database", "external-api", "ai-service", "storage"} <= set(names)


async def test_transitions_are_counted_in_metrics(client: AsyncClient) -> None:
    await client.post(f"{BASE}/circuits/storage/open", headers=ADMIN)
    await client.post(f"{BASE}/circuits/storage/reset", headers=ADMIN)
    metrics = (await client.get("/metrics", headers=ADMIN)).text
    assert (
        'tenantry_circuit_breaker_transitions_total{circuit="storage",from_state="closed",'
        'to_state="forced_open"} 1.0'
    ) in metrics
    assert 'tenantry_circuit_breaker_state{circuit="storage",state="closed"} 1.0' in metrics
    assert "tenantry_circuit_breaker_not_permitted_calls_total" in metrics
