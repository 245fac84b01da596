"""The operator's API: /api/companies and /api/plans, validated and access-checked."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.conftest import ADMIN

LIMITS = {
    "storageBytes": 1024,
    "storageFiles": 10,
    "apiRequestsPerMinute": 600,
    "jobsPerMinute": {"email": 100},
    "jobConcurrency": {"report": 2},
}


async def test_a_company_gets_a_plan_and_overrides_on_top(client: AsyncClient) -> None:
    put = await client.put(
        "/api/companies/acme", json={"plan": "pro", "limits": LIMITS}, headers=ADMIN
    )
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["companyId"] == "acme" and body["plan"] == "pro"
    assert body["queueWeight"] == 2
    assert body["overrides"] == LIMITS
    limits = body["limits"]
    assert limits["storageBytes"] == 1024 and limits["apiRequestsPerMinute"] == 600
    # Queue maps merge per queue: the plan's export concurrency stays.
    assert limits["jobConcurrency"] == {"report": 2, "export": 5, "ai-processing": 10}
    assert body["usage"] == {"storageBytes": 0, "storageFiles": 0}
    got = (await client.get("/api/companies/acme", headers=ADMIN)).json()
    assert {k: v for k, v in got.items() if k not in ("last24Hours", "hourly")} == body
    # Back to the default plan, no overrides.
    reset = await client.put("/api/companies/acme", json={}, headers=ADMIN)
    assert reset.json()["plan"] == "free" and reset.json()["overrides"] == {}


async def test_bad_limits_are_422_naming_them(client: AsyncClient) -> None:
    cases = [
        ({"limits": {"storageGigabytes": 1}}, "limits.storageGigabytes"),
        ({"limits": {"storageBytes": -1}}, "limits.storageBytes"),
        ({"limits": {"storageFiles": 1.5}}, "limits.storageFiles"),
        ({"limits": {"jobsPerMinute": {"email": -5}}}, "limits.jobsPerMinute.email"),
        ({"limits": {"jobConcurrency": {"nope": 1}}}, "limits.jobConcurrency.nope"),
        ({"limits": {"jobConcurrency": 3}}, "limits.jobConcurrency"),
        ({"plan": "platinum"}, "plan"),
    ]
    for body, field in cases:
        response = await client.put("/api/companies/acme", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["details"]["field"] == field, body
    unknown = await client.put("/api/companies/acme", json={"plna": "pro"}, headers=ADMIN)
    assert unknown.status_code == 422
    weight = await client.put("/api/plans/gold", json={"queueWeight": 0}, headers=ADMIN)
    assert weight.status_code == 422
    assert weight.json()["error"]["details"]["field"] == "queueWeight"


async def test_plans_can_be_defined_and_redefined(client: AsyncClient) -> None:
    plans = await client.get("/api/plans", headers=ADMIN)
    assert {p["plan"] for p in plans.json()} >= {"free", "pro", "enterprise"}
    gold = await client.put(
        "/api/plans/gold", json={"limits": {"storageBytes": 5}, "queueWeight": 3}, headers=ADMIN
    )
    assert gold.status_code == 200, gold.text
    assert gold.json()["queueWeight"] == 3
    on_gold = await client.put("/api/companies/acme", json={"plan": "gold"}, headers=ADMIN)
    assert on_gold.json()["limits"]["storageBytes"] == 5
    assert on_gold.json()["queueWeight"] == 3
    free = await client.put("/api/plans/free", json={"limits": {"storageFiles": 7}}, headers=ADMIN)
    assert free.json()["limits"]["storageBytes"] is None  # a redefinition replaces the plan
    got = await client.get("/api/plans/free", headers=ADMIN)
    assert got.json()["limits"]["storageFiles"] == 7
    assert (await client.get("/api/plans/none", headers=ADMIN)).status_code == 404


async def test_companies_are_listed_a_page_at_a_time_in_either_order(app: Any) -> None:
    services = app.state.services
    for index in range(7):
        await services.storage.upload(
            b"x" * (index + 1), company_id=f"co{index}", category="documents", filename="f"
        )
    await services.keys.create("keyonly")  # a key makes a company known too
    from httpx import ASGITransport

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 3, "sort": "storageBytes", **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/companies", params=params, headers=ADMIN)).json()
            seen += [c["companyId"] for c in page["companies"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == [f"co{i}" for i in range(6, -1, -1)] + ["keyonly"]
        by_id = (await http.get("/api/companies", params={"limit": 200}, headers=ADMIN)).json()
        assert [c["companyId"] for c in by_id["companies"]] == sorted(seen)
        bad = await http.get("/api/companies", params={"cursor": "zzz"}, headers=ADMIN)
        assert bad.status_code == 422


async def test_a_company_key_sees_only_its_own_company(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    own = await client.get("/api/companies/acme", headers=company_keys["acme"])
    assert own.status_code == 200 and own.json()["companyId"] == "acme"
    other = await client.get("/api/companies/globex", headers=company_keys["acme"])
    assert other.status_code == 403
    for method, path in [
        ("GET", "/api/companies"),
        ("PUT", "/api/companies/acme"),
        ("GET", "/api/plans"),
        ("PUT", "/api/plans/free"),
    ]:
        response = await client.request(method, path, json={}, headers=company_keys["acme"])
        assert response.status_code == 403, (method, path)
    assert (await client.get("/api/companies/acme")).status_code == 401
    assert (await client.get("/api/companies/nobody", headers=ADMIN)).status_code == 404


async def test_a_companys_keys_share_its_requests_per_minute(
    app: Any, client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    await app.state.services.tenants.put_company("acme", limits={"apiRequestsPerMinute": 3})
    second_key, _ = await app.state.services.keys.create("acme", "second")
    second = {"Authorization": f"Bearer {second_key}"}
    statuses = [
        (await client.get("/api/me", headers=headers)).status_code
        for headers in (company_keys["acme"], second, company_keys["acme"])
    ]
    assert statuses == [200, 200, 200]
    refused = await client.get("/api/me", headers=second)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["details"]["limit"] == "apiRequestsPerMinute"
    # Uploads are refused before their body is read, with the same answer.
    upload = await client.post(
        "/api/storage/files",
        files={"file": ("a.txt", b"x", "text/plain")},
        data={"category": "documents"},
        headers=company_keys["acme"],
    )
    assert upload.status_code == 429
    assert (await client.get("/api/me", headers=company_keys["globex"])).status_code == 200
    assert (await client.get("/api/me", headers=ADMIN)).status_code == 200
    await app.state.services.tenants.meter.flush()
    day = (await client.get("/api/companies/acme", headers=ADMIN)).json()["last24Hours"]
    assert day["apiRequests"] == 3  # the refused ones are not counted
