"""The examples under examples/ run, against real PostgreSQL and Redis.

The shop (examples/shop) is served in-process on its own engine; the worker
(examples/worker) is started as the plain process it is, and stopped with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from examples.shop.app import create_shop
from httpx import AsyncClient

from tenantry import Tenantry
from tenantry.settings import load_settings
from tenantry.testing.jobs import eventually
from tests.conftest import SETTINGS_VARIABLES, client_from

ROOT = Path(__file__).resolve().parents[1]
ADA = {"X-User": "ada"}  # acme's admin
BOB = {"X-User": "bob"}  # globex, no admin


def _values(tmp_path: Path, database_url: str, redis_url: str) -> dict[str, Any]:
    return {
        "data_dir": tmp_path / "data",
        "upload_dir": tmp_path / "uploads",
        "database_url": database_url,
        "redis_url": redis_url,
        "secret_key": "test-secret-key",
        "admin_token": "test-admin-token-0123456789abcdef",
    }


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS_VARIABLES & set(os.environ):
        monkeypatch.delenv(name)


@pytest.fixture
async def shop(
    clean_environment: None,
    tmp_path: Path,
    migrated_database: Callable[[str], str],
    redis_url: str,
) -> AsyncIterator[tuple[Any, AsyncClient]]:
    url = migrated_database("postgresql")
    settings = load_settings(**_values(tmp_path, url, redis_url), job_workers_in_app=True)
    app = create_shop(settings, url.replace("postgresql://", "postgresql+psycopg://"))
    async with LifespanManager(app, startup_timeout=30), client_from(app) as client:
        yield app, client


async def test_the_shop_embeds_every_capability(shop: tuple[Any, AsyncClient]) -> None:
    app, client = shop
    tenantry: Tenantry = app.state.tenantry
    assert (await client.get("/products")).status_code == 401  # signed out: no company

    product = (await client.post("/products", json={"name": "Anvil"}, headers=ADA)).json()
    image = {"image": ("anvil.png", b"\x89PNG not really", "image/png")}
    uploaded = await client.post(f"/products/{product['id']}/image", files=image, headers=ADA)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["key"].startswith("companies/acme/product-images/")

    # Cached reads: the second read of the list is a hit, and another company's is its own.
    first = (await client.get("/products", headers=ADA)).json()
    assert first == [{"id": product["id"], "name": "Anvil", "image_key": uploaded.json()["key"]}]
    assert (await client.get("/products", headers=ADA)).json() == first
    assert await tenantry.services.queries.cache_hit_rate("acme") == 0.5
    assert (await client.get("/products", headers=BOB)).json() == []

    job = (await client.post("/reports", headers=ADA)).json()

    async def report() -> dict[str, Any]:
        answer: dict[str, Any] = (await client.get(f"/reports/{job['id']}", headers=ADA)).json()
        return answer

    done = await eventually(report, lambda status: status["state"] in ("completed", "failed"))
    assert done["state"] == "completed", done
    assert (await client.get(f"/reports/{job['id']}", headers=BOB)).status_code == 404


async def test_the_gated_ai_route_and_its_breaker(shop: tuple[Any, AsyncClient]) -> None:
    app, client = shop
    flag = "/ops/api/degradation/features"
    created = await client.post(flag, json={"key": "shop-ai-recommendations"}, headers=ADA)
    assert created.status_code == 201, created.text
    refused = await client.get("/recommendations", headers=ADA)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "FEATURE_DISABLED")
    # Only the shop's admins reach the management API (or Tenantry's keys, here none).
    enable = f"{flag}/shop-ai-recommendations/enable"
    assert (await client.post(enable, headers=BOB)).status_code == 401
    assert (await client.post(enable, headers=ADA)).status_code == 200
    ok = await client.get("/recommendations", headers=BOB)
    assert ok.json() == {"items": ["bestseller for globex"], "fallback": False}

    app.state.recommender.healthy = False  # the AI service fails: the fallback answers
    answers = [await client.get("/recommendations", headers=BOB) for _ in range(4)]
    assert [a.json()["fallback"] for a in answers] == [True] * 4
    # Its third failure opened the circuit: the dependency answers before the route runs.
    assert answers[-1].headers.get("X-Circuit-Fallback") == "true"
    breaker = app.state.tenantry.services.resilience.breakers.get("ai-service")
    assert breaker.state.value == "open"


async def test_the_dashboard_under_the_mount(shop: tuple[Any, AsyncClient]) -> None:
    _, client = shop
    assert (await client.get("/ops/admin", headers=BOB)).status_code == 403
    entry = await client.get("/ops/admin", headers=ADA)
    assert entry.status_code == 303
    assert entry.headers["location"].startswith("/ops/admin/login?next=")
    signed_in = await client.get(entry.headers["location"], headers=ADA)
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/ops/admin")
    assert "Path=/ops/admin" in signed_in.headers["set-cookie"]
    page = await client.get("/ops/admin/flags", headers=ADA)
    assert page.status_code == 200
    assert 'href="/ops/admin/static/dashboard.css"' in page.text
    assert 'href="/admin' not in page.text and 'action="/admin' not in page.text
    assert (await client.get("/ops/admin/static/dashboard.css")).status_code == 200
    # The session alone is no pass: the shop's admin check decides on every page.
    assert (await client.get("/ops/admin/flags", headers=BOB)).status_code == 403


@pytest.fixture
def worker_process(
    tmp_path: Path, migrated_database: Callable[[str], str], redis_url: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    url = migrated_database("postgresql")
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        TENANTRY_DATA_DIR=str(tmp_path / "data"),
        TENANTRY_SECRET_KEY="test-secret-key",
        TENANTRY_ADMIN_TOKEN="test-admin-token-0123456789abcdef",
    )
    output = tmp_path / "worker.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "examples.worker.worker"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, output, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


async def test_the_worker_runs_the_application_handler(
    clean_environment: None,
    tmp_path: Path,
    redis_url: str,
    worker_process: tuple[subprocess.Popen[bytes], Path, str],
) -> None:
    process, output, url = worker_process

    async def log() -> str:
        return output.read_text() if output.exists() else ""

    await eventually(log, lambda text: "worker ready" in text or process.poll() is not None, 30)
    assert process.poll() is None, output.read_text()
    # The producer: the application's web side, which runs no workers of its own.
    producer = Tenantry(load_settings(**_values(tmp_path / "producer", url, redis_url)))
    async with producer.run() as services:
        job_id = await services.jobs.ai_processing_job(
            "acme", "price-basket", {"items": ["apple", "pear", "pear"]}
        )

        async def status() -> Any:
            return await services.jobs.get_job_status("ai-processing", job_id)

        done = await eventually(status, lambda s: s.state in ("completed", "failed"), 30)
        assert (done.state, done.job.result) == ("completed", {"total": 11, "files": 0})
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, output.read_text()
    assert "tenantry worker stopped" in output.read_text()
