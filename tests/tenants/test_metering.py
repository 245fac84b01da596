"""Usage per company per hour, summed over processes, ranked, and kept for a period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from tenantry.context import company_scope
from tenantry.tenants.metering import UsageMeter, this_hour
from tenantry.tenants.records import UsageRow
from tests.conftest import ADMIN


async def test_usage_is_metered_per_company_and_summed_over_processes(
    app: Any, client: AsyncClient
) -> None:
    services = app.state.services
    tenants = services.tenants
    await tenants.put_company("acme", plan="pro")
    await tenants.put_company("globex")
    with company_scope("acme"):
        async with services.db.session() as session:
            for _ in range(3):
                await session.execute(text("SELECT 1"))
    tenants.meter.api_request("acme")
    tenants.meter.job_run("acme", 12.5)
    tenants.meter.job_run("globex", 1.0)
    tenants.meter.job_run("globex", 1.0)
    # A second process (its own meter, same database) adds to the same hour.
    other = UsageMeter(services.db)
    other.api_request("acme")
    await other.flush()
    await tenants.meter.flush()

    body = (await client.get("/api/companies/acme", headers=ADMIN)).json()
    day = body["last24Hours"]
    assert day["apiRequests"] == 2
    assert (day["jobsRun"], day["jobMs"]) == (1, 12.5)
    assert day["queryCalls"] >= 3 and day["queryMs"] > 0
    assert len(body["hourly"]) == 1

    by_jobs = await client.get("/api/companies", params={"sort": "jobs"}, headers=ADMIN)
    assert [c["companyId"] for c in by_jobs.json()["companies"]][:2] == ["globex", "acme"]
    first = await client.get(
        "/api/companies", params={"sort": "queryTime", "limit": 1}, headers=ADMIN
    )
    assert first.json()["companies"][0]["companyId"] == "acme"


async def test_old_usage_is_removed_after_the_retention_period(app: Any) -> None:
    services = app.state.services
    meter = UsageMeter(services.db, retention_hours=24)
    async with services.db.session() as session:
        session.add(
            UsageRow(
                company_id="acme",
                hour=this_hour() - timedelta(hours=30),
                api_requests=5,
                jobs_run=0,
                job_ms=0,
                query_calls=0,
                query_ms=0,
            )
        )
        session.add(
            UsageRow(
                company_id="acme",
                hour=this_hour() - timedelta(hours=2),
                api_requests=7,
                jobs_run=0,
                job_ms=0,
                query_calls=0,
                query_ms=0,
            )
        )
    await meter.flush()
    hours = await meter.hours("acme", hours=48)
    assert [h.usage.api_requests for h in hours] == [7]


async def test_prometheus_names_the_top_companies_and_sums_the_rest(
    settings_factory: Any,
) -> None:
    from asgi_lifespan import LifespanManager
    from httpx import ASGITransport

    from tenantry.app import create_app

    app = create_app(settings_factory(metrics_top_companies=2))
    async with LifespanManager(app):
        meter = app.state.services.tenants.meter
        for company, requests in [("acme", 5), ("globex", 3), ("initech", 2), ("umbrella", 1)]:
            for _ in range(requests):
                meter.api_request(company)
        await meter.flush()
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
            text_ = (await http.get("/metrics", headers=ADMIN)).text
    lines = [
        line for line in text_.splitlines() if line.startswith("tenantry_company_api_requests")
    ]
    assert sorted(lines) == sorted(
        [
            'tenantry_company_api_requests{company="acme"} 5.0',
            'tenantry_company_api_requests{company="globex"} 3.0',
            'tenantry_company_api_requests{company="other"} 3.0',
        ]
    )
