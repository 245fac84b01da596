"""Who may call what: one row per route of the app, checked generically.

Every route must appear in ROUTES (routes are read from the OpenAPI document, so
every route must be in it) — a new route that is not in the matrix fails
`test_every_route_is_in_the_matrix`. For each row:
- no key → 401 (unless the route is public);
- an admin route with a company key → 403;
- a company-scoped route, called with acme's key on globex's resource → 403 or 404.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from httpx import AsyncClient

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


PUBLIC, ADMIN_ONLY, ANY_KEY = Access("public"), Access("admin"), Access("key")

ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): ADMIN_ONLY,
    ("GET", "/api/me"): ANY_KEY,
    ("GET", "/api/keys"): ADMIN_ONLY,
    ("POST", "/api/keys"): ADMIN_ONLY,
    ("DELETE", "/api/keys/{key_id}"): ADMIN_ONLY,
    ("GET", "/api/companies/{company_id}/keys"): Access("company", _globex_keys),
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


@pytest.mark.parametrize(("method", "path"), sorted(ROUTES))
async def test_no_key_is_401(client: AsyncClient, method: str, path: str) -> None:
    if ROUTES[(method, path)].kind == "public":
        response = await client.request(method, concrete(path))
        assert response.status_code < 400
        return
    response = await client.request(method, concrete(path))
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(
    ("method", "path"), sorted(k for k, v in ROUTES.items() if v.kind == "admin")
)
async def test_company_key_on_admin_route_is_403(
    client: AsyncClient, company_keys: Keys, method: str, path: str
) -> None:
    response = await client.request(method, concrete(path), headers=company_keys["acme"])
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(
    ("method", "path"), sorted(k for k, v in ROUTES.items() if v.kind == "company")
)
async def test_company_key_on_another_companys_resource_is_refused(
    client: AsyncClient, company_keys: Keys, method: str, path: str
) -> None:
    foreign = ROUTES[(method, path)].foreign
    assert foreign is not None, f"{method} {path} needs a foreign-resource request"
    url, extra = await foreign(client, company_keys)
    response = await client.request(method, url, headers=company_keys["acme"], **extra)
    assert response.status_code in (403, 404), response.text
    own = await client.request(method, url, headers=company_keys["globex"], **extra)
    assert own.status_code < 400, f"globex's own key must reach it: {own.text}"
