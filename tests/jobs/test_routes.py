"""/api/queues/*: auth, company isolation, errors; on BullMQ (Redis) and in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from tenantry.app import create_app
from tenantry.jobs import JobContext, job_handler
from tests.conftest import ADMIN, bearer
from tests.jobs.conftest import eventually


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Queue routes touch no tables but the keys: SQLite is enough."""
    return f"sqlite:///{tmp_path / 'tenantry.db'}"


@job_handler("ai-processing", "route-test")
async def route_test_handler(job: JobContext) -> dict[str, Any]:
    await job.log("running")
    await job.progress(100)
    if job.data.get("fail"):
        raise RuntimeError("asked to fail")
    return {"echo": job.data.get("value")}


@pytest.fixture(params=["in-process", "bullmq"])
async def api(
    request: pytest.FixtureRequest, settings_factory: Any
) -> AsyncIterator[tuple[AsyncClient, dict[str, dict[str, str]], Any]]:
    overrides: dict[str, Any] = {"job_max_data_bytes": 2048, "job_attempts": 1}
    if request.param == "bullmq":
        overrides |= {"redis_url": request.getfixturevalue("redis_url"), "job_workers_in_app": True}
    application = create_app(settings_factory(**overrides))
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=60):
        keys = application.state.services.keys
        acme, _ = await keys.create("acme")
        globex, _ = await keys.create("globex")
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://tenantry.test") as client:
            yield client, {"acme": bearer(acme), "globex": bearer(globex)}, application


async def add(client: AsyncClient, company: str, **data: Any) -> str:
    response = await client.post(
        "/api/queues/ai-processing/jobs",
        json={"name": "route-test", "companyId": company, "data": data},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


async def job(client: AsyncClient, job_id: str, headers: dict[str, str] = ADMIN) -> Any:
    return await client.get(f"/api/queues/ai-processing/jobs/{job_id}", headers=headers)


async def until_state(
    client: AsyncClient, job_id: str, state: str, attempts: int | None = None
) -> dict[str, Any]:
    """Polls the job until it is in `state` (after `attempts` attempts, if given)."""

    async def probe() -> dict[str, Any]:
        body: dict[str, Any] = (await job(client, job_id)).json()
        return body

    def reached(body: dict[str, Any]) -> bool:
        ran = attempts is None or body["attemptsMade"] == attempts
        return body["state"] == state and ran

    return await eventually(probe, reached)


async def test_health_says_whether_the_backend_is_durable(api: Any) -> None:
    client, keys, app = api
    assert (await client.get("/api/queues/health", headers=keys["acme"])).status_code == 403
    response = await client.get("/api/queues/health", headers=ADMIN)
    assert response.status_code == 200
    durable = app.state.services.settings.redis_url is not None
    expected: dict[str, Any] = {"backend": "bullmq" if durable else "in-process"}
    expected["durable"] = durable
    if durable:  # jobs enqueued while Redis is unreachable wait in the database outbox
        expected["outboxPending"] = 0
    assert response.json() == expected
    ready = (await client.get("/ready", headers=ADMIN)).json()
    assert ready["checks"]["jobs"]["status"] == "up"
    assert (await client.get("/api/queues/health")).status_code == 401


async def test_a_job_through_the_api(api: Any) -> None:
    client, _, _ = api
    job_id = await add(client, "acme", value=42)
    body = await until_state(client, job_id, "completed")
    assert body["result"] == {"echo": 42}
    assert body["progress"] == 100
    assert body["logs"] == ["running"]
    assert body["data"] == {"value": 42, "companyId": "acme"}
    assert body["companyId"] == "acme" and body["attemptsMade"] == 1
    assert body["finishedAt"] is not None

    stats = (await client.get("/api/queues/stats", headers=ADMIN)).json()
    assert stats["ai-processing"]["completed"] == 1
    listed = await client.get(
        "/api/queues/ai-processing/jobs", params={"state": "completed"}, headers=ADMIN
    )
    assert [item["id"] for item in listed.json()] == [job_id]


async def test_a_company_key_reaches_only_its_own_jobs(api: Any) -> None:
    client, keys, _ = api
    mine = await add(client, "acme", fail=True)
    theirs = await add(client, "globex", fail=True)
    await until_state(client, mine, "failed")
    await until_state(client, theirs, "failed")

    assert (await job(client, mine, keys["acme"])).status_code == 200
    other = await job(client, theirs, keys["acme"])
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "NOT_FOUND"
    retry = await client.post(
        f"/api/queues/ai-processing/jobs/{theirs}/retry", headers=keys["acme"]
    )
    assert retry.status_code == 404

    listed = await client.get(
        "/api/queues/ai-processing/jobs", params={"state": "failed"}, headers=keys["acme"]
    )
    assert [item["id"] for item in listed.json()] == [mine]
    forbidden = await client.get(
        "/api/queues/ai-processing/jobs",
        params={"state": "failed", "companyId": "globex"},
        headers=keys["acme"],
    )
    assert forbidden.status_code == 403
    stats = (await client.get("/api/queues/stats", headers=keys["acme"])).json()
    assert stats["ai-processing"]["failed"] == 1

    for method, path, body in [
        ("post", "/api/queues/ai-processing/pause", None),
        ("post", "/api/queues/ai-processing/resume", None),
        ("post", "/api/queues/ai-processing/retry-failed", None),
        ("post", "/api/queues/ai-processing/clean", {"state": "failed"}),
        ("get", "/api/queues/ai-processing/schedules", None),
        ("put", "/api/queues/ai-processing/schedules/x", {"every": 60000}),
        ("post", "/api/queues/ai-processing/jobs", {"name": "n", "companyId": "acme"}),
    ]:
        response = await client.request(method, path, json=body, headers=keys["acme"])
        assert response.status_code == 403, (method, path)

    retried = await client.post(
        f"/api/queues/ai-processing/jobs/{mine}/retry", headers=keys["acme"]
    )
    assert retried.status_code == 200
    assert retried.json()["state"] in ("waiting", "active", "failed")


async def test_retry_failed_pause_resume_and_clean(api: Any) -> None:
    client, _, _ = api
    ids = [await add(client, "acme", fail=True) for _ in range(2)]
    for job_id in ids:
        await until_state(client, job_id, "failed")
    retried = await client.post("/api/queues/ai-processing/retry-failed", headers=ADMIN)
    assert retried.json() == {"retried": 2}
    for job_id in ids:  # a second attempt ran, and failed again: the data says so
        await until_state(client, job_id, "failed", attempts=2)

    paused = await client.post("/api/queues/ai-processing/pause", headers=ADMIN)
    assert paused.json() == {"queue": "ai-processing", "isPaused": True}
    held = await add(client, "acme", value=1)
    stats = (await client.get("/api/queues/stats", headers=ADMIN)).json()["ai-processing"]
    assert stats["isPaused"] is True and stats["paused"] == 1
    await client.post("/api/queues/ai-processing/resume", headers=ADMIN)
    await until_state(client, held, "completed")

    cleaned = await client.post(
        "/api/queues/ai-processing/clean",
        json={"state": "failed", "graceSeconds": 0},
        headers=ADMIN,
    )
    assert sorted(cleaned.json()["removed"]) == sorted(ids)
    bad = await client.post(
        "/api/queues/ai-processing/clean", json={"state": "active"}, headers=ADMIN
    )
    assert bad.status_code == 422


async def test_schedules_through_the_api(api: Any) -> None:
    client, _, _ = api
    body = {"pattern": "0 3 * * *", "tz": "UTC", "data": {"scope": "all"}, "companyId": "acme"}
    for _ in range(2):
        put = await client.put("/api/queues/report/schedules/nightly", json=body, headers=ADMIN)
        assert put.status_code == 200, put.text
    listed = (await client.get("/api/queues/report/schedules", headers=ADMIN)).json()
    assert [(s["id"], s["pattern"], s["tz"]) for s in listed] == [("nightly", "0 3 * * *", "UTC")]
    assert listed[0]["data"] == {"scope": "all", "companyId": "acme"}
    assert listed[0]["nextRunAt"] is not None

    one = await client.get("/api/queues/report/schedules/nightly", headers=ADMIN)
    assert one.json()["id"] == "nightly"
    gone = await client.delete("/api/queues/report/schedules/nightly", headers=ADMIN)
    assert gone.status_code == 204
    missing = await client.get("/api/queues/report/schedules/nightly", headers=ADMIN)
    assert missing.status_code == 404
    again = await client.delete("/api/queues/report/schedules/nightly", headers=ADMIN)
    assert again.status_code == 404


async def test_an_invalid_cron_pattern_is_422_naming_it(api: Any) -> None:
    client, _, _ = api
    response = await client.put(
        "/api/queues/cleanup/schedules/bad", json={"pattern": "every day"}, headers=ADMIN
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert "'every day'" in error["message"] and error["details"]["field"] == "pattern"
    both = await client.put(
        "/api/queues/cleanup/schedules/bad",
        json={"pattern": "* * * * *", "every": 60000},
        headers=ADMIN,
    )
    assert both.status_code == 422
    zone = await client.put(
        "/api/queues/cleanup/schedules/bad",
        json={"pattern": "* * * * *", "tz": "Mars/Olympus"},
        headers=ADMIN,
    )
    assert zone.status_code == 422 and "Mars/Olympus" in zone.json()["error"]["message"]


async def test_unknown_queue_is_404_and_oversized_data_is_413(api: Any) -> None:
    client, keys, _ = api
    for path in ("/api/queues/sms/jobs", "/api/queues/sms/jobs/1", "/api/queues/sms/schedules"):
        response = await client.get(path, headers=ADMIN)
        assert response.status_code == 404, path
        assert "sms" in response.json()["error"]["message"]
    assert (await client.post("/api/queues/sms/pause", headers=ADMIN)).status_code == 404

    big = await client.post(
        "/api/queues/email/jobs",
        json={"name": "x", "companyId": "acme", "data": {"blob": "x" * 4000}},
        headers=ADMIN,
    )
    assert big.status_code == 413
    assert big.json()["error"]["details"]["limit"] == 2048
    assert (await client.get("/api/queues/stats", headers=ADMIN)).json()["email"]["waiting"] == 0

    bad_state = await client.get(
        "/api/queues/email/jobs", params={"state": "sleeping"}, headers=keys["acme"]
    )
    assert bad_state.status_code == 422
    missing = await client.get("/api/queues/email/jobs/404", headers=ADMIN)
    assert missing.status_code == 404
    bad_company = await client.post(
        "/api/queues/email/jobs", json={"name": "x", "companyId": "../x"}, headers=ADMIN
    )
    assert bad_company.status_code == 422


# Names BullMQ gives the queue's own Redis keys (bull:<queue>:<name>), which a job id
# must never be: the reproductions first, then the rest of bullmq's QueueKeys.
KEY_NAMES = ["id", "events", "failed", "repeat", "meta", "wait", "paused", "active", "delayed"]
KEY_NAMES += ["completed", "prioritized", "stalled", "stalled-check", "limiter", "marker"]
KEY_NAMES += ["pc", "de", "metrics", "waiting-children"]


async def test_bullmq_key_names_are_never_job_ids(api: Any) -> None:
    client, keys, _ = api
    await add(client, "acme", value=1)  # the queue's keys exist in Redis
    for name in KEY_NAMES:
        for headers in (keys["acme"], ADMIN):
            looked_up = await job(client, name, headers)
            assert looked_up.status_code == 404, (name, looked_up.text)
            retried = await client.post(
                f"/api/queues/ai-processing/jobs/{name}/retry", headers=headers
            )
            assert retried.status_code == 404, (name, retried.text)
        created = await client.post(
            "/api/queues/ai-processing/jobs",
            json={"name": "route-test", "companyId": "acme", "options": {"jobId": name}},
            headers=ADMIN,
        )
        assert created.status_code == 422, (name, created.text)
        error = created.json()["error"]
        assert error["details"][0]["field"] == "options.jobId", error
        assert "reserved" in error["message"], error
    # A sub-key of a job (its log list) is not a job either.
    job_id = await add(client, "acme", value=2)
    assert (await job(client, f"{job_id}:logs", keys["acme"])).status_code == 404


def test_the_reserved_ids_are_the_installed_bullmqs_key_names() -> None:
    from bullmq.queue_keys import QueueKeys

    from tenantry.jobs.queues import RESERVED_JOB_IDS

    key_names = set(QueueKeys().getKeys("q")) - {""}
    assert key_names <= RESERVED_JOB_IDS
    assert set(KEY_NAMES) == RESERVED_JOB_IDS


async def test_out_of_range_numbers_are_422_naming_the_field(
    api: Any, subtests: pytest.Subtests
) -> None:
    client, _, _ = api
    for method, path, body, field in [  # one app, a subtest a case
        ("post", "clean", {"state": "completed", "graceSeconds": 1e308}, "graceSeconds"),
        ("get", "jobs?end=9223372036854775807", None, "end"),
        ("get", "jobs?start=9223372036854775807&end=9223372036854775807", None, "start"),
        ("get", "jobs?start=0&end=5000", None, "end"),
        ("put", "schedules/often", {"every": 10**20}, "every"),
        ("put", "schedules/often", {"every": 1e20}, "every"),
    ]:
        with subtests.test(f"{method} {path}", body=body):
            url = f"/api/queues/email/{path}"
            response = await client.request(method, url, json=body, headers=ADMIN)
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert field in error["message"], error


async def test_the_cleanup_schedule_is_registered_once_per_deploy(
    api: Any, settings_factory: Any
) -> None:
    client, _, app = api
    listed = (await client.get("/api/queues/cleanup/schedules", headers=ADMIN)).json()
    assert [(s["id"], s["pattern"]) for s in listed] == [("tenantry-cleanup", "0 3 * * *")]
    # A second start (the next deploy) against the same queues keeps one schedule.
    second = create_app(app.state.services.settings)
    async with LifespanManager(second, startup_timeout=60, shutdown_timeout=60):
        schedules = await second.state.services.jobs.list_schedules("cleanup")
        assert [s.id for s in schedules] == ["tenantry-cleanup"]
    assert len((await client.get("/api/queues/cleanup/schedules", headers=ADMIN)).json()) == 1


async def test_an_invalid_cleanup_cron_stops_start_up_naming_the_variable(
    settings_factory: Any,
) -> None:
    from tenantry.settings import ConfigError

    application = create_app(settings_factory(job_cleanup_cron="at midnight"))
    with pytest.raises(ConfigError, match="JOB_CLEANUP_CRON: pattern 'at midnight'"):
        async with LifespanManager(application, startup_timeout=60, shutdown_timeout=60):
            pass


async def test_with_redis_down_the_app_serves_and_jobs_wait_in_the_outbox(
    settings_factory: Any,
) -> None:
    """Nothing listens on port 1: start-up still completes, and an enqueued job is kept."""
    import time

    application = create_app(settings_factory(redis_url="redis://127.0.0.1:1/0"))
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://tenantry.test") as client:
            started = time.monotonic()
            response = await client.post(
                "/api/queues/email/jobs", json={"name": "x", "companyId": "acme"}, headers=ADMIN
            )
            assert response.status_code == 201
            assert time.monotonic() - started < 20
            job_id = response.json()["id"]
            status = await client.get(f"/api/queues/email/jobs/{job_id}", headers=ADMIN)
            assert status.status_code == 200, status.text
            assert status.json()["state"] == "waiting"
            outbox = application.state.services.jobs.outbox
            assert await outbox.pending() == 1
            health = await client.get("/api/queues/health", headers=ADMIN)
            assert health.status_code == 503
            ready = await client.get("/ready", headers=ADMIN)
            assert ready.status_code == 503
            assert ready.json()["checks"]["jobs"]["status"] == "down"
