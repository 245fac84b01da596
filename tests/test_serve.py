"""`tenantry serve` in an empty folder: embedded defaults, no external service."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.live import live_server


def test_serve_runs_on_embedded_defaults(tmp_path: Path) -> None:
    with live_server(tmp_path) as server:
        base = server.base_url
        assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
        ready = httpx.get(f"{base}/ready", timeout=5)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}
        assert httpx.get(f"{base}/docs", timeout=5).status_code == 200

        token = (tmp_path / "data" / "admin-token").read_text().strip()
        admin = {"Authorization": f"Bearer {token}"}
        details = httpx.get(f"{base}/ready", headers=admin, timeout=5).json()
        assert details["checks"]["database"]["dialect"] == "sqlite"
        keys = httpx.get(
            f"{base}/api/keys", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert keys.status_code == 200
        assert (tmp_path / "data" / "tenantry.db").exists()
    # The generated admin key is printed once, on the start that created it.
    assert token in server.output
