"""Liveness, readiness (with a dependency down), metrics and the API docs."""

from __future__ import annotations

from typing import Any

from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from tenantry.app import create_app
from tests.conftest import ADMIN, bearer


async def test_health_answers(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_database(client: AsyncClient, settings: Any) -> None:
    response = await client.get("/ready", headers=ADMIN)
    assert response.status_code == 200
    database = response.json()["checks"]["database"]
    assert database["status"] == "up"
    assert database["latencyMs"] >= 0
    expected = "sqlite" if settings.uses_embedded_database else "postgresql"
    assert database["dialect"] == expected


async def test_ready_without_the_admin_key_is_status_only(
    client: AsyncClient, settings: Any, company_keys: dict[str, dict[str, str]]
) -> None:
    for headers in ({}, company_keys["acme"]):
        response = await client.get("/ready", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"status": "ready"}
        assert str(settings.upload_dir) not in response.text
    assert (await client.get("/ready", headers=bearer("wrong"))).status_code == 401
    storage = (await client.get("/ready", headers=ADMIN)).json()["checks"]["storage"]
    assert storage["status"] == "up"


async def test_ready_details_can_be_public_for_trusted_probes(settings_factory: Any) -> None:
    app = create_app(settings_factory(ready_details_public=True))
    async with LifespanManager(app) as manager:
        transport = ASGITransport(app=manager.app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/ready")
    assert response.json()["checks"]["database"]["status"] == "up"


async def test_ready_includes_redis_when_configured(settings_factory: Any, redis_url: str) -> None:
    app = create_app(settings_factory(redis_url=redis_url))
    async with LifespanManager(app) as manager:
        transport = ASGITransport(app=manager.app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/ready", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["checks"]["redis"]["status"] == "up"


async def test_ready_is_503_when_a_dependency_is_down(settings_factory: Any) -> None:
    # Nothing listens on port 1 of loopback: the Redis check must fail, quickly.
    app = create_app(settings_factory(redis_url="redis://127.0.0.1:1/0"))
    async with LifespanManager(app) as manager:
        transport = ASGITransport(app=manager.app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            anonymous = await http.get("/ready")
            response = await http.get("/ready", headers=ADMIN)
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "not ready"}  # no Redis error text for anyone
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "up"


async def test_metrics_need_admin_and_count_requests(client: AsyncClient) -> None:
    await client.get("/health")
    assert (await client.get("/metrics")).status_code == 401
    response = await client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'tenantry_http_requests_total{method="GET",route="/health",status="200"}' in (
        response.text
    )


async def test_openapi_docs_are_served(client: AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/api/keys" in schema["paths"]
    readiness = schema["components"]["schemas"]["Readiness"]
    assert readiness["required"] == ["status"]  # the checks only come with the admin key
    assert "admin key" in readiness["properties"]["checks"]["description"]


async def test_unknown_route_uses_the_error_shape(client: AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "NOT_FOUND", "message": "Not Found", "details": None}
    }


async def test_a_stuck_dependency_cannot_hang_the_shutdown() -> None:
    import asyncio
    from contextlib import AsyncExitStack

    from tenantry.app import close_within

    closed: list[str] = []
    stack = AsyncExitStack()
    stack.push_async_callback(lambda: asyncio.sleep(3600))  # never finishes
    stack.push_async_callback(lambda: asyncio.sleep(0, closed.append("quick")))
    await asyncio.wait_for(close_within(stack, 0.2), timeout=30)  # not the hour-long close
    assert closed == ["quick"]  # what could close, closed
