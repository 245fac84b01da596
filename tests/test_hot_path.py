"""The lean HTTP path (deps.KeyAuth, deps.Router, deps.try_first, the metrics cache,
the log formatter) answers exactly as the plain FastAPI pieces it replaces did."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from httpx import ASGITransport, AsyncClient
from starlette.routing import Match

from tenantry.deps import AdminDep, PrincipalDep, Router, bearer_token, try_first
from tenantry.jobs.routes import router as jobs_router
from tenantry.logs import TextFormatter
from tenantry.metrics import Metrics
from tenantry.resilience.routes import router as resilience_router
from tests.conftest import ADMIN

FLAG_CHECK = "/api/degradation/features/{key}/check"
ENQUEUE = "/api/queues/{queue}/jobs"


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer abc")],
        [(b"authorization", b"bearer   abc  ")],
        [(b"authorization", b"BEARER abc def")],
        [(b"authorization", b"Basic abc")],
        [(b"authorization", b"Bearer")],
        [(b"authorization", b"Bearer ")],
        [(b"authorization", b"")],
        [(b"authorization", b"Token abc"), (b"authorization", b"Bearer abc")],
        [(b"x-other", b"1"), (b"authorization", b"Bearer \xe9t\xe9")],
    ],
)
async def test_the_bearer_token_is_read_as_fastapis_bearer_scheme_reads_it(
    headers: list[tuple[bytes, bytes]],
) -> None:
    from starlette.requests import Request

    scope = {"type": "http", "headers": headers}
    credentials = await HTTPBearer(auto_error=False)(Request(scope))
    expected = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        expected = credentials.credentials
    assert bearer_token(scope) == expected


def test_hot_routes_solve_one_dependency_and_are_tried_first(app: Any) -> None:
    for router, path, method in (
        (resilience_router, FLAG_CHECK, "GET"),
        (jobs_router, ENQUEUE, "POST"),
    ):
        assert router.routes[0].path == path  # the first its router tries
        routes = [
            route
            for route in router.routes
            if isinstance(route, APIRoute) and route.path == path and method in route.methods
        ]
        assert [route.include_in_schema for route in routes] == [False, True]
        twin, documented = routes
        assert twin.endpoint is documented.endpoint
        # One dependency, the caller (a security scheme: no sub-dependencies of its own).
        assert [len(dep.dependencies) for dep in twin.dependant.dependencies] == [0]
    schema = app.openapi()
    for path, method in ((FLAG_CHECK, "get"), (ENQUEUE, "post")):
        assert schema["paths"][path][method]["security"] == [{"HTTPBearer": []}]
    assert schema["components"]["securitySchemes"] == {
        "HTTPBearer": {
            "type": "http",
            "description": "The admin key or a company key.",
            "scheme": "bearer",
        }
    }


async def test_hot_routes_answer_as_before(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    created = await client.post(
        "/api/degradation/features", json={"key": "f", "enabled": True}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    check = await client.get("/api/degradation/features/f/check?targetId=u1", headers=ADMIN)
    assert check.status_code == 200
    assert check.json() == {
        "key": "f",
        "targetId": "u1",
        "enabled": True,
        "reason": check.json()["reason"],
        "variant": None,
    }
    path = "/api/degradation/features/f/check"
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=company_keys["acme"])).status_code == 403
    assert (
        await client.get("/api/degradation/features/nope/check", headers=ADMIN)
    ).status_code == (404)
    # Validation still comes after the key: no key, no 422.
    assert (await client.get(path + "?targetId=a/b")).status_code == 401
    assert (await client.get(path + "?targetId=a/b", headers=ADMIN)).status_code == 422
    # A method no route takes on the path names the methods of the first route that has it.
    refused = await client.delete("/api/queues/email/jobs", headers=ADMIN)
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET"


def asgi_client(app: FastAPI) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://t")


async def test_a_router_passes_requests_for_none_of_its_paths_without_trying_them() -> None:
    router = Router(prefix="/api/things")
    tried: list[str] = []

    @router.get("/{thing}")
    async def thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    @router.get("/")
    async def things() -> list[str]:
        return []

    app = FastAPI()
    app.include_router(router)
    original = APIRoute.matches

    def counting(self: APIRoute, scope: Any) -> Any:
        tried.append(scope["path"])
        return original(self, scope)

    APIRoute.matches = counting  # type: ignore[method-assign]
    try:
        async with asgi_client(app) as http:
            assert (await http.get("/api/things/a")).json() == {"thing": "a"}
            assert tried  # the router's own routes were tried
            tried.clear()
            assert (await http.get("/elsewhere")).status_code == 404
        assert tried == []  # not one of them for a path outside its prefix
    finally:
        APIRoute.matches = original  # type: ignore[method-assign]
    scope = {"type": "http", "path": "/api/thingsx", "root_path": "", "method": "GET"}
    assert router._literal_starts() == ("/api/things/",)
    assert router.matches(scope)[0] is Match.NONE


async def test_a_route_tried_first_keeps_the_documented_order_and_405s() -> None:
    router = Router(prefix="/r")

    @router.get("/{name}")
    async def read(name: str) -> dict[str, str]:
        return {"read": name}

    @try_first(router, "/{name}/hot", "POST", status_code=201)
    async def hot(name: str) -> dict[str, str]:
        return {"hot": name}

    @router.delete("/{name}")
    async def delete(name: str) -> None:
        return None

    app = FastAPI()
    app.include_router(router)
    assert list(app.openapi()["paths"]) == ["/r/{name}", "/r/{name}/hot"]
    async with asgi_client(app) as http:
        answer = await http.post("/r/x/hot")
        assert (answer.status_code, answer.json()) == (201, {"hot": "x"})
        assert (await http.get("/r/x")).json() == {"read": "x"}
        wrong = await http.get("/r/x/hot")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"


def test_principal_dependencies_are_the_documented_scheme() -> None:
    app = FastAPI()

    @app.get("/any")
    async def any_key(principal: PrincipalDep) -> dict[str, bool]:
        return {"admin": principal.is_admin}

    @app.get("/admin")
    async def admin_only(principal: AdminDep) -> dict[str, bool]:
        return {"admin": principal.is_admin}

    schema = app.openapi()
    assert schema["paths"]["/any"]["get"]["security"] == [{"HTTPBearer": []}]
    assert schema["paths"]["/admin"]["get"]["security"] == [{"HTTPBearer": []}]
    assert list(schema["components"]["securitySchemes"]) == ["HTTPBearer"]


async def test_metrics_count_every_request_through_cached_children(client: AsyncClient) -> None:
    for _ in range(3):
        await client.get("/health")
    await client.get("/nope")
    text = (await client.get("/metrics", headers=ADMIN)).text
    assert 'tenantry_http_requests_total{method="GET",route="/health",status="200"} 3.0' in text
    assert 'tenantry_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'tenantry_http_request_duration_seconds_count{method="GET",route="/health"} 3.0' in text


def test_the_children_cache_is_bounded() -> None:
    metrics = Metrics()
    for index in range(5000):
        metrics.observe(f"M{index}", "/r", 200, 0.001)
    metrics.observe("M0", "/r", 200, 0.001)
    assert len(metrics._children) == 4096
    assert metrics.requests.labels("M0", "/r", "200")._value.get() == 2
    assert metrics.requests.labels("M4999", "/r", "200")._value.get() == 1


@pytest.mark.parametrize("created", [1_700_000_000.0, 1_700_000_000.9995, 1_700_000_059.5, 0.25])
def test_the_text_formatter_writes_what_logging_formatter_writes(created: float) -> None:
    fmt = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    plain, cached = logging.Formatter(fmt), TextFormatter(fmt)
    for _ in range(2):  # formatted, then from the cache
        record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s", ("x",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert cached.format(record) == plain.format(record)
