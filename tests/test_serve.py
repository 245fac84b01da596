"""`tenantry serve` in an empty folder: embedded defaults, no external service."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_runs_on_embedded_defaults(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TENANTRY_", "REDIS_", "DATABASE_", "STORAGE_", "AWS_"))
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, "the service exited during start-up"
                assert time.monotonic() < deadline, "the service did not start in 60 s"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        ready = httpx.get(f"{base}/ready", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"]["dialect"] == "sqlite"
        assert httpx.get(f"{base}/docs", timeout=5).status_code == 200

        token = (tmp_path / "data" / "admin-token").read_text().strip()
        keys = httpx.get(
            f"{base}/api/keys", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert keys.status_code == 200
        assert (tmp_path / "data" / "tenantry.db").exists()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    # The generated admin key is printed once, on the start that created it.
    assert token in output
