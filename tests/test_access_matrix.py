"""Who may call what: one row per route of the app, checked generically.

Every route must appear in ROUTES (routes are read from the OpenAPI document, so
every route must be in it) — a new route that is not in the matrix fails
`test_every_route_is_in_the_matrix`. For each row:
- no key → 401 (unless the route is public);
- an admin route with a company key → 403;
- a company-scoped route, called with acme's key on globex's resource → 403 or 404.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from httpx import AsyncClient

from tests.conftest import ADMIN, client_from

Keys = dict[str, dict[str, str]]
# Given the client and the company keys, make a resource of globex's and return the
# request (method is the row's) that reaches it: (url, extra httpx.request kwargs).
ForeignRequest = Callable[[AsyncClient, Keys], Awaitable[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True)
class Access:
    kind: Literal["public", "admin", "key", "company"]
    foreign: ForeignRequest | None = None


async def _globex_keys(client: AsyncClient, keys: Keys) -> tuple[str, dict[str, Any]]:
    return "/api/companies/globex/keys", {}


def _globex_query(path: str) -> ForeignRequest:
    """A company-scoped listing asked for globex's figures."""

    async def request(client: AsyncClient, keys: Keys) -> tuple[str, dict[str, Any]]:
        return path, {"params": {"companyId": "globex"}}

    return request


async def _globex_upload(client: AsyncClient, keys: Keys) -> tuple[str, dict[str, Any]]:
    files = {"file": ("a.txt", b"hello", "text/plain")}
    return "/api/storage/files", {
        "params": {"companyId": "globex"},
        "files": files,
        "data": {"category": "documents"},
    }


def _globex_file(suffix: str) -> ForeignRequest:
    """A file globex uploaded, reached by its key."""

    async def request(client: AsyncClient, keys: Keys) -> tuple[str, dict[str, Any]]:
        uploaded = await client.post(
            "/api/storage/files",
            files={"file": ("report.txt", b"globex only", "text/plain")},
            data={"category": "documents"},
            headers=keys["globex"],
        )
        assert uploaded.status_code == 201, uploaded.text
        return f"/api/storage/files/{uploaded.json()['key']}{suffix}", {}

    return request


async def _globex_job(client: AsyncClient, keys: Keys, data: dict[str, Any]) -> str:
    body = {"name": "webhook", "companyId": "globex", "data": data}
    created = await client.post("/api/queues/notification/jobs", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _globex_job_status(client: AsyncClient, keys: Keys) -> tuple[str, dict[str, Any]]:
    job_id = await _globex_job(client, keys, {"url": "ftp://nowhere", "event": "e"})
    return f"/api/queues/notification/jobs/{job_id}", {}


async def _globex_failed_job_retry(client: AsyncClient, keys: Keys) -> tuple[str, dict[str, Any]]:
    # An ftp:// webhook fails at once (not retryable): a failed job of globex's.
    job_id = await _globex_job(client, keys, {"url": "ftp://nowhere", "event": "e"})
    path = f"/api/queues/notification/jobs/{job_id}"
    for _ in range(100):
        if (await client.get(path, headers=ADMIN)).json()["state"] == "failed":
            break
        await asyncio.sleep(0.05)
    return f"{path}/retry", {}


async def _globex_company(client: AsyncClient, keys: Keys) -> tuple[str, dict[str, Any]]:
    return "/api/companies/globex", {}


PUBLIC, ADMIN_ONLY, ANY_KEY = Access("public"), Access("admin"), Access("key")
# Reached without a key, but never without a signature (or only for public files).
OPEN = Access("open")

ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): ADMIN_ONLY,
    ("GET", "/api/me"): ANY_KEY,
    ("GET", "/api/keys"): ADMIN_ONLY,
    ("POST", "/api/keys"): ADMIN_ONLY,
    ("DELETE", "/api/keys/{key_id}"): ADMIN_ONLY,
    ("GET", "/api/companies/{company_id}/keys"): Access("company", _globex_keys),
    # tenants
    ("GET", "/api/companies"): ADMIN_ONLY,
    ("GET", "/api/companies/{company_id}"): Access("company", _globex_company),
    ("PUT", "/api/companies/{company_id}"): ADMIN_ONLY,
    ("GET", "/api/plans"): ADMIN_ONLY,
    ("GET", "/api/plans/{plan}"): ADMIN_ONLY,
    ("PUT", "/api/plans/{plan}"): ADMIN_ONLY,
    # storage
    ("POST", "/api/storage/files"): Access("company", _globex_upload),
    ("GET", "/api/storage/files"): Access("company", _globex_query("/api/storage/files")),
    ("GET", "/api/storage/files/{key}"): Access("company", _globex_file("")),
    ("GET", "/api/storage/files/{key}/content"): Access("company", _globex_file("/content")),
    ("GET", "/api/storage/files/{key}/signed-url"): Access("company", _globex_file("/signed-url")),
    ("DELETE", "/api/storage/files/{key}"): Access("company", _globex_file("")),
    ("GET", "/api/storage/stats"): Access("company", _globex_query("/api/storage/stats")),
    ("GET", "/api/storage/health"): ADMIN_ONLY,
    ("GET", "/files/{key}"): OPEN,
    ("GET", "/public/{key}"): OPEN,
    # jobs
    ("GET", "/api/queues/stats"): Access("company", _globex_query("/api/queues/stats")),
    ("GET", "/api/queues/health"): ADMIN_ONLY,
    ("GET", "/api/queues/{queue}/jobs"): Access("company", _globex_query("/api/queues/email/jobs")),
    ("POST", "/api/queues/{queue}/jobs"): ADMIN_ONLY,
    ("GET", "/api/queues/{queue}/jobs/{job_id}"): Access("company", _globex_job_status),
    ("POST", "/api/queues/{queue}/jobs/{job_id}/retry"): Access(
        "company", _globex_failed_job_retry
    ),
    ("POST", "/api/queues/{queue}/retry-failed"): ADMIN_ONLY,
    ("POST", "/api/queues/{queue}/pause"): ADMIN_ONLY,
    ("POST", "/api/queues/{queue}/resume"): ADMIN_ONLY,
    ("POST", "/api/queues/{queue}/clean"): ADMIN_ONLY,
    ("GET", "/api/queues/{queue}/schedules"): ADMIN_ONLY,
    ("GET", "/api/queues/{queue}/schedules/{schedule_id}"): ADMIN_ONLY,
    ("PUT", "/api/queues/{queue}/schedules/{schedule_id}"): ADMIN_ONLY,
    ("DELETE", "/api/queues/{queue}/schedules/{schedule_id}"): ADMIN_ONLY,
    # queries
    ("GET", "/api/query-optimizer/metrics"): Access(
        "company", _globex_query("/api/query-optimizer/metrics")
    ),
    ("GET", "/api/query-optimizer/statistics"): Access(
        "company", _globex_query("/api/query-optimizer/statistics")
    ),
    ("POST", "/api/query-optimizer/explain"): ADMIN_ONLY,
    ("GET", "/api/query-optimizer/indexes"): ADMIN_ONLY,
    ("POST", "/api/query-optimizer/indexes/apply"): ADMIN_ONLY,
    ("GET", "/api/query-optimizer/indexes/changes"): ADMIN_ONLY,
    ("DELETE", "/api/query-optimizer/metrics"): ADMIN_ONLY,
    ("GET", "/api/query-optimizer/health"): ADMIN_ONLY,
    # resilience
    **{
        (method, f"/api/degradation{path}"): ADMIN_ONLY
        for method, path in [
            ("GET", "/circuits"),
            ("GET", "/circuits/{name}"),
            ("POST", "/circuits/{name}/reset"),
            ("POST", "/circuits/{name}/open"),
            ("POST", "/circuits/{name}/close"),
            ("GET", "/features"),
            ("POST", "/features"),
            ("GET", "/features/{key}"),
            ("PATCH", "/features/{key}"),
            ("DELETE", "/features/{key}"),
            ("GET", "/features/{key}/check"),
            ("POST", "/features/{key}/enable"),
            ("POST", "/features/{key}/disable"),
            ("POST", "/features/{key}/rollout"),
            ("POST", "/features/{key}/allow"),
            ("DELETE", "/features/{key}/allow/{target_id}"),
            ("POST", "/features/{key}/block"),
            ("DELETE", "/features/{key}/block/{target_id}"),
            ("GET", "/features/{key}/audit"),
            ("POST", "/features/import"),
            ("GET", "/features/export"),
            ("POST", "/features/{key}/evaluate"),
            ("GET", "/segments"),
            ("POST", "/segments"),
            ("GET", "/segments/{segment_id}"),
            ("PUT", "/segments/{segment_id}"),
            ("DELETE", "/segments/{segment_id}"),
            ("GET", "/health"),
            # rollout plans and scheduled changes (rollout_routes.py)
            ("GET", "/rollout-plans"),
            ("GET", "/features/{key}/rollout-plan"),
            ("PUT", "/features/{key}/rollout-plan"),
            ("DELETE", "/features/{key}/rollout-plan"),
            ("POST", "/features/{key}/rollout-plan/pause"),
            ("POST", "/features/{key}/rollout-plan/resume"),
            ("GET", "/schedules"),
            ("POST", "/schedules"),
            ("GET", "/schedules/{schedule_id}"),
            ("DELETE", "/schedules/{schedule_id}"),
            # flag usage and the stale-flag report (usage_routes.py)
            ("GET", "/features/{key}/usage"),
            ("GET", "/stale-flags"),
        ]
    },
}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """Every operation of the app, read from its OpenAPI document (all routes are in it)."""
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_is_in_the_matrix(app: Any) -> None:
    routes = app_routes(app)
    missing = sorted(routes - set(ROUTES))
    stale = sorted(set(ROUTES) - routes)
    assert not missing, f"routes missing from the access matrix: {missing}"
    assert not stale, f"matrix rows for routes that no longer exist: {stale}"


# Each test runs its rows as subtests of one app (an app a row cost minutes of the
# suite): every row runs, and a failure is reported under the row's name.


async def test_no_key_is_401(app: Any, subtests: pytest.Subtests) -> None:
    for n, (method, path) in enumerate(sorted(ROUTES)):
        kind = ROUTES[(method, path)].kind
        with subtests.test(f"{method} {path}"):
            # From an address of its own: each row's 401 meets the failed-auth limiter afresh.
            async with client_from(app, f"10.{n // 256}.{n % 256}.1") as client:
                response = await client.request(method, concrete(path))
            if kind in ("public", "open"):
                assert response.status_code < (400 if kind == "public" else 500), response.text
                assert response.status_code != 401
            else:
                assert response.status_code == 401, response.text


async def test_company_key_on_admin_route_is_403(
    client: AsyncClient, company_keys: Keys, subtests: pytest.Subtests
) -> None:
    for method, path in sorted(k for k, v in ROUTES.items() if v.kind == "admin"):
        with subtests.test(f"{method} {path}"):
            response = await client.request(method, concrete(path), headers=company_keys["acme"])
            assert response.status_code == 403, response.text


async def test_company_key_on_another_companys_resource_is_refused(
    client: AsyncClient, company_keys: Keys, subtests: pytest.Subtests
) -> None:
    for method, path in sorted(k for k, v in ROUTES.items() if v.kind == "company"):
        with subtests.test(f"{method} {path}"):
            foreign = ROUTES[(method, path)].foreign
            assert foreign is not None, f"{method} {path} needs a foreign-resource request"
            url, extra = await foreign(client, company_keys)
            response = await client.request(method, url, headers=company_keys["acme"], **extra)
            assert response.status_code in (403, 404), response.text
            own = await client.request(method, url, headers=company_keys["globex"], **extra)
            assert own.status_code < 400, f"globex's own key must reach it: {own.text}"
