"""PostgreSQL restarted under load: requests fail fast through the database circuit
(503 with Retry-After, never a hang or a 500), and the service recovers by itself."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.faults.report import Tally, record
from tests.faults.servers import OwnPostgres
from tests.live import live_server

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


def test_postgres_restart_fails_fast_and_recovers(
    tmp_path: Path, postgres: OwnPostgres, redis_url: str
) -> None:
    env = {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis_url,
        "TENANTRY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTRY_DATA_DIR": str(tmp_path / "data"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        # Open after 3 failures, try again after 2 s, give up on a hung call after 1 s.
        "CIRCUIT_BREAKERS": json.dumps(
            {"database": {"failureThreshold": 3, "timeout": 2000, "callTimeout": 1000}}
        ),
    }
    with (
        live_server(tmp_path, env) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        created = http.post("/api/keys", json={"companyId": "acme"}, headers=ADMIN)
        acme = {"Authorization": f"Bearer {created.json()['key']}"}
        route = "/api/companies/acme/keys"

        before = Tally()
        for _ in range(50):
            before.send(http, "GET", route, headers=acme)
        assert before.statuses == {200: 50}

        postgres.stop("immediate")
        outage = Tally()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            outage.send(http, "GET", route, headers=acme)
        assert set(outage.statuses) == {503}, outage.statuses
        assert outage.retry_after_missing == 0
        # Never a hang (the client's 10 s timeout would raise); once open, the circuit
        # answers nearly every request itself, without trying the database (the rest
        # are its half-open trials, each reopening it).
        opened = outage.codes.index("CIRCUIT_OPEN")
        after = Counter(outage.codes[opened:])
        assert set(after) <= {"CIRCUIT_OPEN", "SERVICE_UNAVAILABLE"}, after
        assert after["CIRCUIT_OPEN"] >= 0.9 * sum(after.values()), after
        assert outage.sent - opened >= outage.sent * 0.5, after

        postgres.start()
        restarted = time.monotonic()
        recovery = Tally()
        while recovery.send(http, "GET", route, headers=acme).status_code != 200:
            assert time.monotonic() - restarted < 30, recovery.statuses
            time.sleep(0.1)
        recovered_after = time.monotonic() - restarted

        after = Tally()
        for _ in range(50):
            after.send(http, "GET", route, headers=acme)
        assert after.statuses == {200: 50}
        assert (http.get("/ready")).status_code == 200

    record(
        "postgres-restart",
        {
            "before": before.summary(),
            "outage": outage.summary(),
            "recoverySeconds": round(recovered_after, 2),
            "duringRecovery": recovery.summary(),
            "after": after.summary(),
            "serverErrorsOther503": outage.server_errors + after.server_errors,
        },
    )
