"""Tenantry's own calls through the breakers; feature_gate, circuit(), maintenance mode."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import async_sessionmaker

from tenantry.app import create_app
from tenantry.auth import KeyRecords, KeyStore
from tenantry.db import create_engine
from tenantry.resilience.breaker import Breaker, State
from tenantry.resilience.dependencies import ExternalApiCircuit, circuit, feature_gate
from tests.conftest import ADMIN

BASE = "/api/degradation"
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"


def add_demo_routes(app: FastAPI) -> None:
    router = APIRouter(prefix="/demo")

    @router.get("/recommendations", dependencies=[feature_gate("ai-recommendations", "company")])
    async def recommendations() -> dict[str, Any]:
        return {"items": ["a", "b"]}

    @router.get("/mobile", dependencies=[feature_gate("mobile-app", "user")])
    async def mobile() -> dict[str, Any]:
        return {"ok": True}

    @router.get(
        "/eu-beta",
        dependencies=[feature_gate("eu-beta", "company", context=lambda request: {"region": "eu"})],
    )
    async def eu_beta() -> dict[str, Any]:
        return {"ok": True}

    @router.get("/ai")
    async def ai(
        breaker: Annotated[Breaker, circuit("ai-service", fallback={"items": [], "cached": True})],
    ) -> dict[str, Any]:
        return {"items": ["fresh"], "state": breaker.state.value}

    @router.get("/external")
    async def external(breaker: ExternalApiCircuit) -> dict[str, Any]:
        return {"state": breaker.state.value}

    app.include_router(router)


@pytest.fixture
async def demo(app: FastAPI, client: AsyncClient) -> AsyncClient:
    add_demo_routes(app)
    return client


def break_database(app: FastAPI, url: str = UNREACHABLE) -> None:
    """Point the running app's database at an address where nothing answers."""
    db = app.state.services.db
    db.engine = create_engine(url)
    db.sessions = async_sessionmaker(db.engine, expire_on_commit=False)


async def test_feature_gate_by_company(
    app: FastAPI, demo: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    acme = company_keys["acme"]
    assert (await demo.get("/demo/recommendations", headers=acme)).status_code == 200
    await demo.post(
        f"{BASE}/features/ai-recommendations/block", json={"targetId": "acme"}, headers=ADMIN
    )
    blocked = await demo.get("/demo/recommendations", headers=acme)
    assert blocked.status_code == 403
    assert blocked.json()["error"]["code"] == "FEATURE_DISABLED"
    assert blocked.json()["error"]["details"]["reason"] == "blocked"
    assert (
        await demo.get("/demo/recommendations", headers=company_keys["globex"])
    ).status_code == 200
    await demo.post(f"{BASE}/features/ai-recommendations/disable", headers=ADMIN)
    off = await demo.get("/demo/recommendations", headers=company_keys["globex"])
    assert off.json()["error"]["details"]["reason"] == "disabled"
    assert (await demo.get("/demo/recommendations")).status_code == 401


async def test_feature_gate_decides_on_the_whole_request_context(
    app: FastAPI, demo: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    """Plan (from the company), X-User-Id, the client address and the app's own properties."""
    await app.state.services.tenants.put_company("acme", plan="enterprise")
    constraints = [
        {"contextName": "plan", "operator": "IN", "values": ["enterprise"]},
        {"contextName": "region", "operator": "IN", "values": ["eu"]},
        {"contextName": "userId", "operator": "STR_STARTS_WITH", "values": ["staff-"]},
        {"contextName": "remoteAddress", "operator": "IN_CIDR", "values": ["127.0.0.0/8"]},
    ]
    flag = {"key": "eu-beta", "enabled": True,
            "strategies": [{"name": "default", "constraints": constraints}]}  # fmt: skip
    assert (await demo.post(f"{BASE}/features", json=flag, headers=ADMIN)).status_code == 201
    staff = {**company_keys["acme"], "X-User-Id": "staff-7"}
    allowed = await demo.get("/demo/eu-beta", headers=staff)
    assert allowed.status_code == 200, allowed.text
    customer = await demo.get("/demo/eu-beta", headers={**staff, "X-User-Id": "cust-1"})
    assert customer.json()["error"]["details"]["reason"] == "no_strategy_match"
    other_plan = await demo.get(
        "/demo/eu-beta", headers={**company_keys["globex"], "X-User-Id": "staff-7"}
    )
    assert other_plan.status_code == 403


async def test_feature_gate_by_user(demo: AsyncClient) -> None:
    flags = demo._transport.app.state.services.resilience.flags  # type: ignore[attr-defined]
    users = [f"user-{n}" for n in range(400)]
    inside = next(u for u in users if flags.is_enabled("mobile-app", u))
    outside = next(u for u in users if not flags.is_enabled("mobile-app", u))
    assert (await demo.get("/demo/mobile", headers={"X-User-Id": inside})).status_code == 200
    refused = await demo.get("/demo/mobile", headers={"X-User-Id": outside})
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["reason"] == "rollout_miss"
    assert (await demo.get("/demo/mobile")).status_code == 403  # no user: 5 % excludes you


async def test_circuit_dependency_answers_fallback_or_503(demo: AsyncClient) -> None:
    assert (await demo.get("/demo/ai")).json() == {"items": ["fresh"], "state": "closed"}
    await demo.post(f"{BASE}/circuits/ai-service/open", headers=ADMIN)
    fallback = await demo.get("/demo/ai")
    assert fallback.status_code == 200
    assert fallback.json() == {"items": [], "cached": True}
    assert fallback.headers["x-circuit-fallback"] == "true"

    await demo.post(f"{BASE}/circuits/external-api/open", headers=ADMIN)
    refused = await demo.get("/demo/external")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "CIRCUIT_OPEN"
    assert int(refused.headers["retry-after"]) >= 1
    await demo.post(f"{BASE}/circuits/external-api/reset", headers=ADMIN)
    assert (await demo.get("/demo/external")).status_code == 200


async def test_maintenance_mode_spares_health_metrics_and_admin(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    await client.post(f"{BASE}/features/maintenance-mode/enable", headers=ADMIN)
    refused = await client.get("/api/me", headers=company_keys["acme"])
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "MAINTENANCE"
    assert refused.headers["retry-after"] == "60"
    assert (await client.get("/api/keys")).status_code == 503
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/ready")).status_code == 200
    assert (await client.get("/metrics", headers=ADMIN)).status_code == 200
    assert (await client.get("/api/me", headers=ADMIN)).status_code == 200
    await client.post(f"{BASE}/features/maintenance-mode/disable", headers=ADMIN)
    assert (await client.get("/api/me", headers=company_keys["acme"])).status_code == 200


async def test_database_outage_makes_auth_answer_503_fast(
    app: FastAPI, client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    break_database(app)
    acme = company_keys["acme"]
    first = await client.get("/api/me", headers=acme)
    assert first.status_code == 503
    assert first.headers["retry-after"] == "1"
    for _ in range(4):
        await client.get("/api/me", headers=acme)
    assert app.state.services.resilience.breakers["database"].state is State.OPEN
    # CIRCUIT_OPEN means the breaker answered without calling the database.
    fast = await client.get("/api/me", headers=acme)
    assert fast.status_code == 503
    assert fast.json()["error"]["code"] == "CIRCUIT_OPEN"
    assert 25 <= int(fast.headers["retry-after"]) <= 30
    # The admin key needs no database: operators keep their console.
    health = await client.get(f"{BASE}/health", headers=ADMIN)
    assert health.json()["openCircuits"] == ["database"]
    ready = await client.get("/ready", headers=ADMIN)
    assert ready.status_code == 503
    assert "circuit database is open" in ready.json()["checks"]["database"]["error"]


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_hanging_database_times_out_instead_of_hanging(settings_factory: Any) -> None:
    settings = settings_factory(circuit_breakers={"database": {"callTimeout": 300}})
    app = create_app(settings)
    async with LifespanManager(app), black_hole() as port:
        # Made outside the 300 ms circuit: on a loaded machine the write alone can take
        # that long, and this test is about the lookup of a request.
        unguarded = KeyStore(KeyRecords(app.state.services.db), admin_token=None)
        plain, _ = await unguarded.create("acme")
        break_database(app, f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
            # The black hole never answers: without the call timeout this waits forever. The
            # deadline is far above 300 ms so that a loaded CI machine cannot fail it.
            request = http.get("/api/me", headers={"Authorization": f"Bearer {plain}"})
            response = await asyncio.wait_for(request, timeout=30)
    assert response.status_code == 503


async def test_flags_keep_answering_from_the_snapshot_when_the_store_is_down(
    app: FastAPI, client: AsyncClient
) -> None:
    flags = app.state.services.resilience.flags
    await client.post(f"{BASE}/features/advanced-analytics/disable", headers=ADMIN)
    break_database(app)
    await flags.refresh()  # fails underneath; the last snapshot stays
    assert flags.is_enabled("advanced-analytics", "acme") is False
    assert flags.is_enabled("core-api") is True
    listed = await client.get(f"{BASE}/features", headers=ADMIN)
    assert listed.status_code == 200 and len(listed.json()) == 10
    health = (await client.get(f"{BASE}/health", headers=ADMIN)).json()
    assert health["flagStoreDegraded"] is True
    write = await client.post(f"{BASE}/features/advanced-analytics/enable", headers=ADMIN)
    assert write.status_code == 503  # never silently dropped
    assert flags.is_enabled("advanced-analytics", "acme") is False


async def test_bad_circuit_breakers_setting_stops_start_up(settings_factory: Any) -> None:
    from tenantry.settings import ConfigError

    app = create_app(settings_factory(circuit_breakers={"database": {"failureThreshold": 0}}))
    with pytest.raises(ConfigError, match="CIRCUIT_BREAKERS: database: failure_threshold"):
        async with LifespanManager(app):
            pass


async def test_seeding_is_idempotent_and_respects_deletions(settings_factory: Any) -> None:
    settings = settings_factory()
    app = create_app(settings)
    async with LifespanManager(app):
        flags = app.state.services.resilience.flags
        await flags.delete("mobile-app", actor="admin")
        await flags.disable("core-api", actor="admin")
    again = create_app(settings)
    async with LifespanManager(again):
        flags = again.state.services.resilience.flags
        keys = [flag.key for flag in await flags.all()]
        assert "mobile-app" not in keys and len(keys) == 9
        assert flags.is_enabled("core-api") is False  # a restart never overwrites a change
        assert len(await flags.audit("core-api")) == 2


async def test_maintenance_mode_refuses_wrong_and_company_keys(
    app: FastAPI, client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    await app.state.services.resilience.flags.enable("maintenance-mode", actor="admin")
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": "Basic eA=="}, {}):
        response = await client.get(f"{BASE}/features", headers=headers)
        assert response.status_code == 503
    # Operators switch it off through the API with the admin key.
    off = await client.post(f"{BASE}/features/maintenance-mode/disable", headers=ADMIN)
    assert off.status_code == 200
    assert (await client.get("/api/me", headers=company_keys["globex"])).status_code == 200


async def test_feature_gate_with_a_function_of_the_request(
    app: FastAPI, client: AsyncClient
) -> None:
    router = APIRouter()

    @router.get(
        "/tenant/{tenant}/vision",
        dependencies=[feature_gate("vision-analysis", lambda r: r.path_params["tenant"])],
    )
    async def vision(tenant: str) -> dict[str, str]:
        return {"tenant": tenant}

    app.include_router(router)
    flags = app.state.services.resilience.flags
    tenants = [f"t{n}" for n in range(200)]
    inside = next(t for t in tenants if flags.is_enabled("vision-analysis", t))
    outside = next(t for t in tenants if not flags.is_enabled("vision-analysis", t))
    assert (await client.get(f"/tenant/{inside}/vision")).status_code == 200
    refused = await client.get(f"/tenant/{outside}/vision")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "FEATURE_DISABLED"
