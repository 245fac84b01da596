"""The pure parts of Tenantry import light: no web framework, ORM or client library.

Checked in a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("fastapi", "starlette", "sqlalchemy", "bullmq", "obstore", "pglast", "redis", "httpx")


def imported_after(statement: str) -> set[str]:
    probe = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(output)}


@pytest.mark.parametrize(
    "statement",
    ["import tenantry", "import tenantry.resilience", "import tenantry.errors"],
)
def test_pure_parts_load_no_heavy_dependency(statement: str) -> None:
    assert imported_after(statement).isdisjoint(HEAVY), statement


def test_the_service_is_still_one_attribute_away() -> None:
    loaded = imported_after("from tenantry import create_app, Settings")
    assert {"fastapi", "sqlalchemy"} <= loaded  # the probe can tell light from heavy
