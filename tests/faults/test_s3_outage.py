"""The S3 server stopped mid-upload and mid-migration.

Uploads answer 503 (never a 500 or a hang) and leave nothing behind: no object and
no record. A multipart upload cut off mid-way cannot be aborted while the server is
gone; the cleanup job aborts it once the server is back. A migration cut off by the
outage fails the files it could not copy, resumes when the server is back, and
`--verify` passes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.faults.report import Tally, record
from tests.faults.servers import S3_ACCESS_KEY, S3_SECRET_KEY, OwnSeaweed, wait_until
from tests.live import live_server
from tests.storage.conftest import s3_admin, s3_objects, s3_pending_uploads

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BUCKET = "tenantry-faults"
BIG = 24 * 1024 * 1024  # several 5 MB parts: a multipart upload
OUTAGE_SECONDS = 5.0


@pytest.fixture
def seaweed() -> Iterator[OwnSeaweed]:
    # Not tmp_path, which pytest keeps: the server's data (~150 MB) is removed afterwards.
    server = OwnSeaweed(Path(tempfile.mkdtemp(prefix="tenantry-s3-")))
    try:
        server.start()
        s3_client(server).create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


def s3_client(server: OwnSeaweed) -> Any:
    return s3_admin(server.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)


def s3_env(server: OwnSeaweed, database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "TENANTRY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTRY_DATA_DIR": str(tmp_path / "data"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "STORAGE_PROVIDER": "s3",
        "AWS_S3_BUCKET": BUCKET,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_ENDPOINT_URL": server.endpoint,
    }


# --- uploads ---------------------------------------------------------------------------


class PacedFile(io.RawIOBase):
    """A file that arrives slowly, so the server can be stopped while it is uploading."""

    def __init__(self, data: bytes, seconds: float) -> None:
        self.data = memoryview(data)
        self.position = 0
        self.pause = seconds / max(1, len(data) // 65536)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 65536 if size < 0 else min(size, 65536)
        chunk = bytes(self.data[self.position : self.position + size])
        self.position += len(chunk)
        time.sleep(self.pause if chunk else 0)
        return chunk


@dataclass
class Uploads:
    """Every upload the test made: what it sent, and what the service answered."""

    http: httpx.Client
    headers: dict[str, str]
    stored: dict[str, str] = field(default_factory=dict)  # key -> SHA-256 of the bytes sent
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def upload(self, tally: Tally, data: bytes, *, paced: float = 0.0) -> int:
        body: Any = PacedFile(data, paced) if paced else data
        try:
            response = tally.send(
                self.http,
                "POST",
                "/api/storage/files",
                headers=self.headers,
                data={"category": "docs"},
                files={"file": ("report.bin", body, "application/octet-stream")},
            )
        except httpx.TransportError:
            with self.lock:
                self.transport_errors += 1
            return 0
        if response.status_code == 201:
            answer = response.json()
            assert answer["checksum"] == hashlib.sha256(data).hexdigest()
            with self.lock:
                self.stored[answer["key"]] = answer["checksum"]
        return response.status_code


def small_files(count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield os.urandom(int.from_bytes(os.urandom(2)) % 60_000 + 1)


def test_s3_stopped_mid_upload_answers_503_and_leaves_nothing_behind(
    tmp_path: Path, seaweed: OwnSeaweed, postgres_url: str
) -> None:
    env = s3_env(seaweed, postgres_url, tmp_path)
    # Open after 3 failures; try again 2 s later.
    env["CIRCUIT_BREAKERS"] = json.dumps({"storage": {"failureThreshold": 3, "timeout": 2000}})
    with (
        live_server(tmp_path, env) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as http,
    ):
        created = http.post("/api/keys", json={"companyId": "acme"}, headers=ADMIN)
        uploads = Uploads(http, {"Authorization": f"Bearer {created.json()['key']}"})

        before = Tally()
        for data in [*small_files(30), os.urandom(BIG)]:
            assert uploads.upload(before, data) == 201

        outage, big = outage_under_load(seaweed, uploads)
        assert set(big.statuses) <= {503}, big.statuses
        assert set(outage.statuses) == {503}, outage.statuses
        assert outage.retry_after_missing == 0
        assert uploads.transport_errors == 0  # every upload got an answer

        seaweed.start()
        restarted = time.monotonic()
        recovery = Tally()
        while uploads.upload(recovery, next(small_files(1))) != 201:
            assert time.monotonic() - restarted < 30, recovery.statuses
            time.sleep(0.1)
        recovered_after = time.monotonic() - restarted

        after = Tally()
        for data in [*small_files(30), os.urandom(BIG)]:
            assert uploads.upload(after, data) == 201

        recorded = listed_keys(http, uploads.headers)
        client = s3_client(seaweed)
        cut_off = s3_pending_uploads(BUCKET, client)
        assert len(cut_off) == 3  # the big uploads the outage cut off mid-way
        cleanup = run_cleanup(http)
        assert cleanup["incompleteUploadsRemoved"] == len(cut_off)

    objects = s3_objects(BUCKET, client)
    still_open = s3_pending_uploads(BUCKET, client)
    assert recorded == sorted(uploads.stored)  # no orphan record, none missing
    assert objects == sorted(uploads.stored)  # no partial or orphan object
    assert still_open == []  # no multipart upload left open
    for key, checksum in uploads.stored.items():  # every 201 is readable, byte for byte
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == checksum

    record(
        "s3-outage-uploads",
        {
            "before": before.summary(),
            "bigUploadsCutOff": big.summary(),
            "outage": outage.summary(),
            "transportErrors": uploads.transport_errors,
            "recoverySeconds": round(recovered_after, 2),
            "duringRecovery": recovery.summary(),
            "after": after.summary(),
            "filesUploaded": len(uploads.stored),
            "filesVerified": len(objects),
            "orphanRecords": len(set(recorded) - set(objects)),
            "orphanObjects": len(set(objects) - set(recorded)),
            "multipartUploadsLeftOpenByTheOutage": len(cut_off),
            "multipartUploadsAbortedByCleanup": cleanup["incompleteUploadsRemoved"],
            "multipartUploadsOpenAfterCleanup": len(still_open),
        },
    )


def outage_under_load(seaweed: OwnSeaweed, uploads: Uploads) -> tuple[Tally, Tally]:
    """Stop S3 for 5 s once three big uploads are mid-way; small ones go on meanwhile."""
    big, small = Tally(), Tally()
    stop = threading.Event()

    def paced_big_upload() -> None:
        uploads.upload(big, os.urandom(BIG), paced=8.0)

    def small_uploads() -> None:
        while not stop.is_set():
            uploads.upload(small, next(small_files(1)))

    cut_off = [threading.Thread(target=paced_big_upload) for _ in range(3)]
    for thread in cut_off:
        thread.start()
    client = s3_client(seaweed)
    # Mid-upload: each big one has begun its multipart upload, none can have finished.
    wait_until(lambda: len(s3_pending_uploads(BUCKET, client)) == 3, 7, "3 multipart uploads")
    seaweed.stop()
    looping = threading.Thread(target=small_uploads)
    looping.start()
    time.sleep(OUTAGE_SECONDS)
    stop.set()
    for thread in [*cut_off, looping]:
        thread.join(timeout=60)
        assert not thread.is_alive()
    return small, big


def run_cleanup(http: httpx.Client) -> dict[str, Any]:
    """The cleanup job, with no grace period (nothing is uploading now); its result."""
    job = {"name": "cleanup", "companyId": "system", "data": {"olderThanSeconds": 0}}
    created = http.post("/api/queues/cleanup/jobs", json=job, headers=ADMIN)
    assert created.status_code == 201, created.text
    url = f"/api/queues/cleanup/jobs/{created.json()['id']}"
    deadline = time.monotonic() + 30
    while (status := http.get(url, headers=ADMIN).json())["state"] != "completed":
        assert status["state"] != "failed", status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    result: dict[str, Any] = status["result"]
    return result


def listed_keys(http: httpx.Client, headers: dict[str, str]) -> list[str]:
    keys: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = http.get("/api/storage/files", params=params, headers=headers).json()
        keys += [file["key"] for file in page["files"]]
        if not (cursor := page["nextCursor"]):
            return sorted(keys)


# --- migration -------------------------------------------------------------------------

MIGRATED_FILES = 400


def migrate(env: dict[str, str], cwd: Path, *arguments: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STORAGE_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "tenantry", "migrate-storage", *arguments],
        cwd=cwd,
        env={**clean, **env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_s3_stopped_mid_migration_resumes_and_verifies(
    tmp_path: Path, seaweed: OwnSeaweed, postgres_url: str
) -> None:
    local = {**s3_env(seaweed, postgres_url, tmp_path), "STORAGE_PROVIDER": "local"}
    with (
        live_server(tmp_path, local) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as http,
    ):
        created = http.post("/api/keys", json={"companyId": "acme"}, headers=ADMIN)
        uploads = Uploads(http, {"Authorization": f"Bearer {created.json()['key']}"})
        to_disk = Tally()
        for index in range(MIGRATED_FILES):
            assert uploads.upload(to_disk, os.urandom(16_384 + index * 512)) == 201
    total_bytes = sum(16_384 + index * 512 for index in range(MIGRATED_FILES))

    env = s3_env(seaweed, postgres_url, tmp_path)
    client = s3_client(seaweed)
    first = migrate(env, tmp_path, "--concurrency", "4", "--retries", "1")
    wait_until(lambda: len(s3_objects(BUCKET, client)) >= MIGRATED_FILES // 4, 120, "copy")
    copied_before_stop = len(s3_objects(BUCKET, client))
    seaweed.stop()
    stopped = time.monotonic()
    first_code, first_output = finished(first)
    first_ended_after = time.monotonic() - stopped
    assert first_code == 1, first_output
    assert "Stopped early" in first_output  # it gave up on the server, not file by file
    first_copied, _, first_failed, not_attempted = copy_counts(first_output)

    seaweed.start()
    second_code, second_output = finished(migrate(env, tmp_path))
    assert second_code == 0, second_output
    copied, skipped, failed, _ = copy_counts(second_output)
    assert failed == 0 and copied + skipped == MIGRATED_FILES
    assert skipped >= copied_before_stop - 4 * 2  # at most the files in flight are redone

    verify_code, verify_output = finished(migrate(env, tmp_path, "--verify"))
    assert verify_code == 0, verify_output
    assert f"All {MIGRATED_FILES} files verified" in verify_output
    assert s3_objects(BUCKET, client) == sorted(uploads.stored)
    assert s3_pending_uploads(BUCKET, client) == []

    record(
        "s3-outage-migration",
        {
            "files": MIGRATED_FILES,
            "bytes": total_bytes,
            "copiedBeforeStop": copied_before_stop,
            "firstRunExitCode": first_code,
            "firstRunEndedSecondsAfterStop": round(first_ended_after, 1),
            "firstRunCopied": first_copied,
            "firstRunFailed": first_failed,
            "firstRunNotAttempted": not_attempted,
            "resumedCopied": copied,
            "resumedSkipped": skipped,
            "verified": MIGRATED_FILES,
            "verifyExitCode": verify_code,
        },
    )


def copy_counts(output: str) -> tuple[int, int, int, int]:
    """(copied, skipped, failed, not attempted) from the copy's summary line."""
    summary = re.search(
        r"Copied (\d+), skipped (\d+) already copied and verified, failed (\d+), "
        r"not attempted (\d+)\.",
        output,
    )
    assert summary, output
    copied, skipped, failed, not_attempted = (int(number) for number in summary.groups())
    return copied, skipped, failed, not_attempted
