"""schemathesis against Tenantry's own OpenAPI document: no 5xx, responses match the schema.

The service runs for real (PostgreSQL, Redis) in a subprocess; schemathesis sends
a bounded number of generated requests per route with the admin key, so every
route's handler is reached, not just its auth check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.live import live_server

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = os.environ.get("TENANTRY_FUZZ_EXAMPLES", "30")
# The routes in groups, each fuzzed by a test of its own so that the workers share the
# run (one run of every route took up to 3 min of a loaded suite). A group keeps what
# its requests create and find, so a family of routes stays together: split further,
# the flag routes lost the flag keys their list hands to the others and answered only
# 404s. The last group is every route the others leave out: each route is fuzzed,
# whatever routes are added.
GROUPS = {
    "flags-circuits-segments-schedules": r"^/api/degradation/",
    "queries-companies-plans-keys": r"^/api/(query-optimizer|companies|plans|keys|me)(/|$)",
}
EVERYTHING_ELSE = "storage-jobs-and-everything-else"
# Forcing a circuit open makes the service answer 503 on purpose; that is tested in
# tests/resilience, not something to fuzz into every other route.
FORCE_OPEN = r"^/api/degradation/circuits/\{name\}/open$"


def selection(group: str) -> list[str]:
    """schemathesis's filters for `group` (each option once: a repeated one replaces)."""
    if group == EVERYTHING_ELSE:
        return ["--exclude-path-regex", "|".join([FORCE_OPEN, *GROUPS.values()])]
    return ["--include-path-regex", GROUPS[group], "--exclude-path-regex", FORCE_OPEN]


@pytest.mark.parametrize("group", [*GROUPS, EVERYTHING_ELSE])
def test_fuzz_openapi_has_no_server_errors(
    group: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "TENANTRY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTRY_DATA_DIR": str(tmp_path / "data"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        # schemathesis probes routes without the key on purpose: keep those probes from
        # locking its own address out (the limiter itself is tested in test_auth.py).
        "TENANTRY_AUTH_FAILURES_PER_MINUTE": "0",
    }
    st = Path(sys.executable).with_name("st")
    with live_server(tmp_path, env) as server:
        result = subprocess.run(
            [
                str(st),
                "run",
                f"{server.base_url}/openapi.json",
                "--header",
                f"Authorization: Bearer {ADMIN_TOKEN}",
                "--checks",
                CHECKS,
                *selection(group),  # a group that matches no route fails (exit code 2)
                # Storage keys have a strict shape; let schemathesis try them regardless.
                "--suppress-health-check",
                "filter_too_much",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                MAX_EXAMPLES,
                "--seed",
                "1",
                "--workers",
                "1",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
