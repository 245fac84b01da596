"""Uploads stream: a 1 GB upload keeps resident memory far below the file's size.

Measured in separate processes so the figure is the upload's alone: once through
StorageService (local disk and S3), once through the real HTTP server (`tenantry
serve`) with a chunked multipart body, reading the server's peak RSS (VmHWM).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.storage.conftest import S3_ACCESS_KEY, S3_ENDPOINT, S3_SECRET_KEY, stored_files

UPLOAD_MB = 1024
PEAK_LIMIT_MB = 150

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and ru_maxrss in KiB (Linux)"
)


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TENANTRY_", "AWS_", "STORAGE_", "CLOUDFLARE_", "REDIS_"))
        and name not in ("DATABASE_URL", "UPLOAD_DIR", "MAX_UPLOAD_BYTES")
    }
    env.update(
        {
            "TENANTRY_DATA_DIR": str(tmp_path / "data"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'tenantry.db'}",
            "MAX_UPLOAD_BYTES": str(2 * 1024**3),
            "TENANTRY_ADMIN_TOKEN": ADMIN_TOKEN,
            "TENANTRY_SECRET_KEY": "memory-test",
            "ENABLE_JOB_QUEUES": "false",
        }
    )
    return env


def run_probe(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("memory_probe.py")), str(UPLOAD_MB)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"peak RSS {report['peak_rss_mb']:.0f} MB "
        f"(before the upload {report['baseline_rss_mb']:.0f} MB)"
    )
    return report


def test_service_upload_to_disk_streams(tmp_path: Path) -> None:
    report = run_probe(base_env(tmp_path), tmp_path)
    assert report["size"] == UPLOAD_MB * 1024 * 1024
    assert report["checksum_ok"]
    assert report["peak_rss_mb"] < PEAK_LIMIT_MB, report
    assert [p for p in stored_files(tmp_path / "uploads") if p.startswith(".incoming")] == []


def test_service_upload_to_s3_streams(tmp_path: Path, s3_bucket: str) -> None:
    env = base_env(tmp_path)
    env.update(
        {
            "STORAGE_PROVIDER": "s3",
            "AWS_S3_BUCKET": s3_bucket,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_ENDPOINT_URL": S3_ENDPOINT,
        }
    )
    report = run_probe(env, tmp_path)
    assert report["size"] == UPLOAD_MB * 1024 * 1024
    assert report["checksum_ok"]
    assert report["peak_rss_mb"] < PEAK_LIMIT_MB, report


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "serve", "--port", str(port)],
        env=base_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "tenantry serve did not start in 60 s"
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_http_upload_streams_through_the_server(server: tuple[str, int], tmp_path: Path) -> None:
    url, pid = server
    boundary = "memory-test-boundary"
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="category"\r\n\r\nvideos\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"'
            "\r\nContent-Type: video/mp4\r\n\r\n"
        ).encode()
        for index in range(UPLOAD_MB):
            piece = block[index:] + block[:index]
            digest.update(piece)
            yield piece
        yield f"\r\n--{boundary}--\r\n".encode()

    before_kib = memory_kib(pid, "VmRSS")
    response = httpx.post(
        f"{url}/api/storage/files",
        params={"companyId": "acme"},
        content=body(),
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
        timeout=300,
    )
    peak_mb = memory_kib(pid, "VmHWM") / 1024
    assert response.status_code == 201, response.text
    assert response.json()["size"] == UPLOAD_MB * 1024 * 1024
    assert response.json()["checksum"] == digest.hexdigest()
    print(f"server RSS before {before_kib / 1024:.0f} MB, peak {peak_mb:.0f} MB")
    assert peak_mb < PEAK_LIMIT_MB
    assert peak_mb - before_kib / 1024 < 64  # the upload itself adds little
