"""/api/query-optimizer/*: who may read what, and every answer's shape."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import ADMIN


async def _reads(app: Any, company: str, times: int) -> None:
    queries = app.state.services.queries

    async def load(session: AsyncSession) -> int:
        result = await session.execute(text("SELECT count(*) FROM tenantry_api_keys"))
        return int(result.scalar_one())

    for _ in range(times):
        await queries.optimized_read(company, "keys:count", load, cache_ttl=60)


async def _raw_statement(app: Any, company: str) -> None:
    from tenantry.context import company_scope

    async with app.state.services.db.engine.connect() as conn:
        with company_scope(company):
            await conn.execute(text("SELECT count(*) FROM tenantry_api_keys WHERE name = 'x'"))


async def test_company_key_reads_only_its_own_metrics(
    app: Any, client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    await _raw_statement(app, "acme")
    await _raw_statement(app, "globex")
    own = await client.get("/api/query-optimizer/metrics", headers=company_keys["acme"])
    assert own.status_code == 200
    body = own.json()
    companies = {c["companyId"] for shape in body["shapes"] for c in shape["companies"]}
    assert companies == {"acme"}
    assert any("name =" in (shape["statement"] or "") for shape in body["shapes"])
    other = await client.get(
        "/api/query-optimizer/metrics?companyId=globex", headers=company_keys["acme"]
    )
    assert other.status_code == 403
    admin = await client.get("/api/query-optimizer/metrics?companyId=globex", headers=ADMIN)
    assert {c["companyId"] for s in admin.json()["shapes"] for c in s["companies"]} == {"globex"}
    everyone = await client.get("/api/query-optimizer/metrics", headers=ADMIN)
    every = {c["companyId"] for s in everyone.json()["shapes"] for c in s["companies"]}
    assert {"acme", "globex"} <= every


async def test_statistics_with_cache_hit_rate(
    app: Any, client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    await _reads(app, "acme", 4)  # 1 miss, 3 hits
    response = await client.get("/api/query-optimizer/statistics", headers=company_keys["acme"])
    assert response.status_code == 200
    stats = response.json()
    assert stats["companyId"] == "acme"
    assert stats["cacheHitRate"] == 0.75
    assert stats["calls"] >= 1  # the one miss ran a statement
    assert stats["avgMs"] > 0 and stats["p95Ms"] >= stats["p50Ms"]
    assert stats["slowCount"] == 0


async def test_slow_only_lists_slow_statements(settings_factory: Any, client_factory: Any) -> None:
    async with client_factory(settings_factory(slow_query_ms=0)) as (app, client):
        await _raw_statement(app, "acme")
        response = await client.get(
            "/api/query-optimizer/metrics?slowOnly=true&companyId=acme", headers=ADMIN
        )
        body = response.json()
        assert body["shapes"] and all(s["slowCount"] > 0 for s in body["shapes"])
        assert body["slowQueries"] and body["slowQueries"][0]["companyId"] == "acme"
        assert body["slowQueries"][0]["plan"] not in (None, "unavailable")
        # a company key gets the figures, never a plan (it may hold another company's values)
        key, _ = await app.state.services.keys.create("acme")
        own = await client.get(
            "/api/query-optimizer/metrics?slowOnly=true", headers={"Authorization": f"Bearer {key}"}
        )
        assert own.json()["shapes"] and all(s["plan"] is None for s in own.json()["shapes"])
        assert all(e["plan"] is None for e in own.json()["slowQueries"])
        assert body["shapes"][0]["plan"] is not None


async def test_admin_only_routes(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    acme = company_keys["acme"]
    for method, path in (
        ("POST", "/api/query-optimizer/explain"),
        ("GET", "/api/query-optimizer/indexes"),
        ("DELETE", "/api/query-optimizer/metrics"),
        ("GET", "/api/query-optimizer/health"),
    ):
        response = await client.request(method, path, headers=acme, json={"query": "SELECT 1"})
        assert response.status_code == 403, path
        assert (await client.request(method, path)).status_code == 401


async def test_explain_refusals_are_422_with_the_error_shape(client: AsyncClient) -> None:
    for query in ("DELETE FROM tenantry_api_keys", "SELECT 1; SELECT 2"):
        response = await client.post(
            "/api/query-optimizer/explain", json={"query": query}, headers=ADMIN
        )
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"]["field"] == "query" and error["details"]["reason"]
    missing = await client.post("/api/query-optimizer/explain", json={}, headers=ADMIN)
    assert missing.status_code == 422
    assert missing.json()["error"]["details"][0]["field"] == "query"


async def test_explain_and_indexes_by_database(app: Any, client: AsyncClient) -> None:
    if app.state.services.db.dialect == "postgresql":
        # An application table created after the upgrade: readable by the EXPLAIN role
        # through the default privileges the upgrade set.
        async with app.state.services.db.engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE products (id int, company_id text)")
    explain = await client.post(
        "/api/query-optimizer/explain",
        json={"query": "SELECT * FROM products WHERE company_id = 'acme'"},
        headers=ADMIN,
    )
    indexes = await client.get("/api/query-optimizer/indexes?maxIndexes=2", headers=ADMIN)
    if app.state.services.db.dialect == "sqlite":
        for response in (explain, indexes):
            assert response.status_code == 422
            assert response.json()["error"]["code"] == "UNSUPPORTED_DATABASE"
    else:
        assert explain.status_code == 200, explain.text
        assert explain.json()["totalCost"] > 0 and "plan" in explain.json()
        own = await client.post(
            "/api/query-optimizer/explain",
            json={"query": "SELECT * FROM tenantry_api_keys"},
            headers=ADMIN,
        )
        assert own.status_code == 422  # Tenantry's own tables are not the application's
        assert own.json()["error"]["details"]["sqlstate"] == "42501"
        assert indexes.status_code == 200
        assert indexes.json()["method"] in ("hypopg", "heuristic")


async def test_reset_forgets_the_figures(app: Any, client: AsyncClient) -> None:
    await _raw_statement(app, "acme")
    await _reads(app, "acme", 2)
    assert (await client.delete("/api/query-optimizer/metrics", headers=ADMIN)).status_code == 204
    after = await client.get("/api/query-optimizer/metrics?companyId=acme", headers=ADMIN)
    assert after.json()["shapes"] == []
    stats = await client.get("/api/query-optimizer/statistics?companyId=acme", headers=ADMIN)
    assert stats.json()["cacheHitRate"] is None and stats.json()["calls"] == 0


async def test_health_and_readiness(client: AsyncClient) -> None:
    health = await client.get("/api/query-optimizer/health", headers=ADMIN)
    assert health.status_code == 200
    assert health.json()["cache"]["status"] == "up"
    ready = await client.get("/ready", headers=ADMIN)
    assert ready.json()["checks"]["queries"]["status"] == "up"


async def test_bad_parameters_are_named(client: AsyncClient) -> None:
    bad = await client.get("/api/query-optimizer/metrics?companyId=no%20spaces", headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "companyId"
    bad = await client.get("/api/query-optimizer/indexes?maxIndexes=0", headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "maxIndexes"
