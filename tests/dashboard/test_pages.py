"""Dashboard pages: what they show, the actions they take, and their empty states."""

from __future__ import annotations

import re
from typing import Any

from httpx import AsyncClient

from tests.conftest import ADMIN
from tests.dashboard.conftest import log_in


async def test_queues_page_lists_the_six_queues_with_empty_states(
    client: AsyncClient, csrf: str
) -> None:
    page = await client.get("/admin/queues")
    assert page.status_code == 200
    for queue in ("email", "report", "ai-processing", "export", "notification", "cleanup"):
        assert f'data-queue="{queue}"' in page.text
    # Tenantry's own recurring cleanup is listed with its next run.
    assert "tenantry-cleanup" in page.text
    empty = await client.get("/admin/queues/email?state=failed")
    assert "No failed jobs in email." in empty.text


async def test_pause_and_resume_a_queue(client: AsyncClient, csrf: str, app: Any) -> None:
    paused = await client.post("/admin/queues/report/pause", data={"csrf": csrf})
    assert paused.status_code == 303
    assert (await app.state.services.jobs.queue_stats("report")).is_paused is True
    page = await client.get(paused.headers["location"])
    assert "Queue paused." in page.text
    await client.post("/admin/queues/report/resume", data={"csrf": csrf})
    assert (await app.state.services.jobs.queue_stats("report")).is_paused is False


async def test_job_page_shows_data_and_an_unknown_job_is_a_404_page(
    client: AsyncClient, csrf: str, app: Any
) -> None:
    jobs = app.state.services.jobs
    job_id = await jobs.add("ai-processing", "summarise", {"text": "<b>hi</b>"}, "acme")
    page = await client.get(f"/admin/queues/ai-processing/jobs/{job_id}")
    assert page.status_code == 200
    assert "&lt;b&gt;hi&lt;/b&gt;" in page.text  # job data is escaped, never rendered
    missing = await client.get("/admin/queues/ai-processing/jobs/nope")
    assert missing.status_code == 404
    assert "no job" in missing.text and "<html" in missing.text


async def test_circuit_actions(client: AsyncClient, csrf: str, app: Any) -> None:
    breakers = app.state.services.resilience.breakers
    page = await client.get("/admin/circuits")
    for name in ("database", "external-api", "ai-service", "storage"):
        assert f'data-circuit="{name}"' in page.text
    await client.post("/admin/circuits/ai-service/open", data={"csrf": csrf})
    assert breakers["ai-service"].state.value == "forced_open"
    await client.post("/admin/circuits/ai-service/reset", data={"csrf": csrf})
    assert breakers["ai-service"].state.value == "closed"
    await client.post("/admin/circuits/ai-service/close", data={"csrf": csrf})
    assert breakers["ai-service"].state.value == "disabled"
    unknown = await client.post("/admin/circuits/nope/reset", data={"csrf": csrf})
    assert unknown.status_code == 404


async def test_flag_changes_show_in_the_api_and_the_audit_log(
    client: AsyncClient, csrf: str
) -> None:
    await client.post(
        "/admin/flags/advanced-analytics/rollout", data={"csrf": csrf, "percentage": 25}
    )
    await client.post(
        "/admin/flags/advanced-analytics/allow", data={"csrf": csrf, "targetId": "acme"}
    )
    flag = (await client.get("/api/degradation/features/advanced-analytics", headers=ADMIN)).json()
    assert flag["rollout"] == 25 and flag["allow"] == ["acme"]
    page = await client.get("/admin/flags/advanced-analytics")
    assert "rollout:" in page.text and "→ 25" in page.text
    assert "admin (dashboard)" in page.text
    bad = await client.post(
        "/admin/flags/advanced-analytics/rollout", data={"csrf": csrf, "percentage": 101}
    )
    assert bad.status_code == 422
    flag = (await client.get("/api/degradation/features/advanced-analytics", headers=ADMIN)).json()
    assert flag["rollout"] == 25


async def test_dashboard_stays_usable_in_maintenance_mode(client: AsyncClient, csrf: str) -> None:
    page = await client.get("/admin/flags")
    assert 'data-flag="maintenance-mode"' in page.text
    await client.post("/admin/flags/maintenance-mode/toggle", data={"csrf": csrf})
    assert (await client.get("/api/me", headers={"Authorization": "Bearer x"})).status_code == 503
    assert (await client.get("/admin/flags")).status_code == 200
    await client.post("/admin/flags/maintenance-mode/toggle", data={"csrf": csrf})
    assert (await client.get("/api/me", headers=ADMIN)).status_code == 200


async def test_queries_page_shows_statements_and_an_explain_box(
    client: AsyncClient, csrf: str, app: Any
) -> None:
    page = await client.get("/admin/queries")
    assert page.status_code == 200
    # Tenantry's own statements (key lookups, flag loads) are monitored too.
    assert "tenantry_" in page.text
    explained = await client.post(
        "/admin/queries/explain", data={"csrf": csrf, "query": "SELECT 1 AS one"}
    )
    assert explained.status_code == 200
    assert 'hx-get="/admin/queries"' in explained.text
    if app.state.services.db.dialect == "sqlite":
        assert "needs PostgreSQL" in explained.text
        return
    assert 'id="explain-result"' in explained.text
    refused = await client.post(
        "/admin/queries/explain", data={"csrf": csrf, "query": "DELETE FROM tenantry_api_keys"}
    )
    assert refused.status_code == 200
    assert 'role="alert"' in refused.text and 'id="explain-result"' not in refused.text
    # the attack review's spelling: a function called through attribute notation
    attribute = await client.post(
        "/admin/queries/explain",
        data={"csrf": csrf, "query": "SELECT replace(('/etc/passwd').pg_read_file, 'x', 'y')"},
    )
    assert 'role="alert"' in attribute.text and "pg_read_file" in attribute.text
    assert "root:" not in attribute.text


async def test_index_advice_page(client: AsyncClient, csrf: str, app: Any) -> None:
    page = await client.get("/admin/queries/indexes")
    assert page.status_code == 200
    if app.state.services.db.dialect == "sqlite":
        assert "index advice needs PostgreSQL" in page.text
    else:
        assert "statements analysed" in page.text


DASHBOARD_URLS = [
    "/admin",
    "/admin/queues",
    "/admin/queues/email?state=failed",
    "/admin/queries",
    "/admin/circuits",
    "/admin/flags",
    "/admin/flags/vision-analysis",
    "/admin/storage",
    "/admin/companies",
    "/admin/companies?sort=jobs",
    "/admin/queues/email/jobs/missing",  # an error page
]
INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=|javascript:", re.I)


def assert_protected(response: Any) -> None:
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    static = response.url.path.startswith("/admin/static/")
    assert (response.headers.get("cache-control") == "no-store") != static


async def test_every_dashboard_response_forbids_framing_and_foreign_content(
    client: AsyncClient, app: Any
) -> None:
    # Before logging in: the redirect, the login page, a failed login, the assets.
    for response in (
        await client.get("/admin"),
        await client.get("/admin/login"),
        await client.post("/admin/login", data={"key": "wrong"}),
        await client.get("/admin/static/dashboard.css"),
        await client.get("/admin/static/htmx.min.js"),
    ):
        assert_protected(response)
    csrf = await log_in(client)
    history = app.state.dashboard_history
    for n in range(3):  # the overview's charts have samples to draw (legends included)
        history.record({"completed": n, "failed": 0, "p95": 1.0 + n, "p99": 2.0})
    for url in DASHBOARD_URLS:
        page = await client.get(url)
        assert_protected(page)
        # The policy allows no inline script or style, so the pages carry none.
        assert not INLINE.search(page.text), (url, INLINE.search(page.text))
    assert 'class="series-1"' in (await client.get("/admin")).text  # the charts drew legends
    assert_protected(await client.post("/admin/logout", data={"csrf": csrf}))
    assert "content-security-policy" not in (await client.get("/health")).headers


async def test_company_lists_are_paged_largest_first(
    client: AsyncClient, csrf: str, app: Any
) -> None:
    storage = app.state.services.storage
    for index in range(30):
        await storage.upload(
            b"x" * (index + 1), company_id=f"co{index:02d}", category="documents", filename="f"
        )
    first = await client.get("/admin/storage")
    rows = re.findall(r'<tr data-company="([^"]+)"', first.text)
    assert rows == [f"co{i:02d}" for i in range(29, 4, -1)]  # 25, the largest first
    link = re.search(r'href="(/admin/storage\?cursor=[^"]+)"', first.text)
    assert link is not None
    second = await client.get(link.group(1).replace("&amp;", "&"))
    assert re.findall(r'<tr data-company="([^"]+)"', second.text) == [
        f"co{i:02d}" for i in range(4, -1, -1)
    ]
    assert "Next companies" not in second.text
    companies = await client.get("/admin/companies")
    assert len(re.findall(r'<tr data-company="', companies.text)) == 30
    assert "co29" in companies.text.split('data-company="')[1]  # the largest first
