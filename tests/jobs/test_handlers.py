"""Tenantry's own handlers against real loopback servers: SMTP, a webhook receiver, files."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from tenantry.app import create_app
from tenantry.jobs.types.notification import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.jobs.conftest import eventually

WEBHOOK_SECRET = "whsec-test-0123456789"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """These handlers touch no tables: SQLite is enough (exports run on both, below)."""
    return f"sqlite:///{tmp_path / 'tenantry.db'}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


def documented_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature as the notification docs define it, computed here and not by the
    product's own `sign()`, so a change to the formula fails the tests."""
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class Receiver(BaseHTTPRequestHandler):
    """Answers with `server.statuses` in turn (then 200); records what it verified."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = documented_signature(WEBHOOK_SECRET, self.headers[TIMESTAMP_HEADER], body)
        valid = hmac.compare_digest(expected, self.headers[SIGNATURE_HEADER])
        server: Any = self.server
        server.deliveries.append(
            {
                "valid": valid,
                "body": json.loads(body),
                "headers": dict(self.headers),
                "at": time.monotonic(),
            }
        )
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status if valid else 401)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def receiver(statuses: list[int]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.deliveries, server.statuses = [], list(statuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks", server.deliveries
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with receiver([503]) as server:
        yield server


@pytest.fixture
async def jobs_app(
    settings_factory: Any, smtp_server: tuple[int, Inbox]
) -> AsyncIterator[tuple[Any, AsyncClient]]:
    """The app on the in-process backend (no Redis), its handlers running in its loop."""
    port, _ = smtp_server
    settings = settings_factory(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_from="noreply@tenantry.test",
        webhook_secret=WEBHOOK_SECRET,
        job_backoff_ms=100,
    )
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=60):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://tenantry.test") as client:
            yield application, client


async def completed(service: Any, queue: str, job_id: str) -> Any:
    status = await eventually(
        lambda: service.get_job_status(queue, job_id),
        lambda s: s.state in ("completed", "failed"),
    )
    assert status.state == "completed", status.job.failed_reason
    return status


async def test_an_email_job_delivers_real_mail(
    jobs_app: tuple[Any, AsyncClient], smtp_server: tuple[int, Inbox]
) -> None:
    app, _ = jobs_app
    _, inbox = smtp_server
    service = app.state.services.jobs
    job_id = await service.send_email_job(
        "acme", "ada@example.com", "Welcome aboard", "welcome", {"name": "Ada", "product": "Acme"}
    )
    status = await completed(service, "email", job_id)
    assert status.job.progress == 100
    assert status.job.result["recipients"] == ["ada@example.com"]
    assert len(inbox.messages) == 1
    sender, recipients, raw = inbox.messages[0]
    message = message_from_bytes(raw)
    assert sender == "noreply@tenantry.test"
    assert recipients == ["ada@example.com"]
    assert message["Subject"] == "Welcome aboard"
    assert message.get_payload().replace("\r\n", "\n") == "Hello Ada,\n\nWelcome to Acme.\n"
    assert message["Message-ID"] == f"<tenantry.email.{job_id}.acme@tenantry>"


async def test_an_email_with_a_missing_template_value_fails_without_retrying(
    jobs_app: tuple[Any, AsyncClient], smtp_server: tuple[int, Inbox]
) -> None:
    app, _ = jobs_app
    _, inbox = smtp_server
    service = app.state.services.jobs
    job_id = await service.send_email_job("acme", "ada@example.com", "Hi", "welcome", {})
    status = await eventually(
        lambda: service.get_job_status("email", job_id), lambda s: s.state == "failed"
    )
    assert status.job.attempts_made == 1
    assert "needs 'name'" in status.job.failed_reason
    assert inbox.messages == []


async def test_a_webhook_is_signed_and_retried_until_accepted(
    jobs_app: tuple[Any, AsyncClient], webhook_server: tuple[str, list[dict[str, Any]]]
) -> None:
    app, _ = jobs_app
    url, deliveries = webhook_server
    service = app.state.services.jobs
    job_id = await service.send_notification_job("acme", url, "invoice.paid", {"invoice": 7})
    status = await completed(service, "notification", job_id)
    assert status.job.attempts_made == 2  # 503 first, then 200
    assert status.job.result == {"status": 200, "attempt": 2}
    assert [d["valid"] for d in deliveries] == [True, True]
    body = deliveries[-1]["body"]
    assert body == {
        "event": "invoice.paid",
        "companyId": "acme",
        "deliveryId": f"notification:{job_id}",
        "payload": {"invoice": 7},
    }
    # Both attempts carry the same delivery id, so the receiver can drop a repeat.
    assert {d["headers"]["X-Tenantry-Delivery"] for d in deliveries} == {f"notification:{job_id}"}


@pytest.mark.parametrize("refusals", [[408], [429], [429, 408]])
async def test_a_webhook_answered_408_or_429_is_retried_with_backoff(
    jobs_app: tuple[Any, AsyncClient], refusals: list[int]
) -> None:
    """Timeouts and rate limits are the receiver's "not now": retried, after the backoff."""
    app, _ = jobs_app
    service = app.state.services.jobs
    with receiver(refusals) as (url, deliveries):
        job_id = await service.send_notification_job("acme", url, "invoice.paid")
        status = await completed(service, "notification", job_id)
    assert status.job.attempts_made == len(refusals) + 1
    assert [d["valid"] for d in deliveries] == [True] * (len(refusals) + 1)
    backoff = app.state.services.settings.job_backoff_ms / 1000
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(deliveries)]
    assert all(gap >= backoff * 0.9 for gap in gaps), gaps


async def test_a_tampered_webhook_fails_verification(
    webhook_server: tuple[str, list[dict[str, Any]]],
) -> None:
    from tenantry.jobs.types.notification import sign

    signature = sign(WEBHOOK_SECRET, "1700000000", b'{"a":1}')
    assert signature == documented_signature(WEBHOOK_SECRET, "1700000000", b'{"a":1}')
    assert verify(WEBHOOK_SECRET, "1700000000", b'{"a":1}', signature)
    assert not verify(WEBHOOK_SECRET, "1700000000", b'{"a":2}', signature)
    assert not verify("other-secret", "1700000000", b'{"a":1}', signature)
    assert not verify(WEBHOOK_SECRET, "1700000001", b'{"a":1}', signature)


async def test_a_webhook_to_a_refusing_receiver_fails_at_once(
    jobs_app: tuple[Any, AsyncClient],
) -> None:
    """A 4xx (other than 408/429) cannot improve by retrying."""
    app, _ = jobs_app

    class Gone(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(410)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gone)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        service = app.state.services.jobs
        url = f"http://127.0.0.1:{server.server_port}/"
        job_id = await service.send_notification_job("acme", url, "ping")
        status = await eventually(
            lambda: service.get_job_status("notification", job_id), lambda s: s.state == "failed"
        )
        assert status.job.failed_reason == "webhook answered 410"
        assert status.job.attempts_made == 1
    finally:
        server.shutdown()
        server.server_close()


async def test_cleanup_removes_old_jobs_and_expired_temp_files(
    jobs_app: tuple[Any, AsyncClient],
) -> None:
    import os
    import time

    app, _ = jobs_app
    services = app.state.services
    temp = services.settings.data_dir / "tmp"
    (temp / "nested").mkdir(parents=True)
    old, fresh = temp / "nested" / "old.part", temp / "fresh.part"
    old.write_text("x")
    fresh.write_text("y")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    incoming = services.settings.upload_dir / ".incoming"  # an upload cut off by a crash
    incoming.mkdir(parents=True)
    (incoming / "upload-abandoned").write_text("half")

    done = await services.jobs.ai_processing_job("acme", "summarise", {"text": "a b c"})
    await completed(services.jobs, "ai-processing", done)
    job_id = await services.jobs.cleanup_job(older_than_seconds=60)
    status = await completed(services.jobs, "cleanup", job_id)
    assert status.job.result["filesRemoved"] == 1
    assert status.job.result["incompleteUploadsRemoved"] == 0  # younger than a day
    assert not old.exists() and fresh.exists()
    # The ai job finished under a minute ago: kept. Now with no grace: removed.
    assert (await services.jobs.queue_stats("ai-processing")).completed == 1
    job_id = await services.jobs.cleanup_job(older_than_seconds=0)
    status = await completed(services.jobs, "cleanup", job_id)
    assert status.job.result["jobsRemoved"] >= 2  # the ai job and the first cleanup job
    assert status.job.result["incompleteUploadsRemoved"] == 1
    assert not (incoming / "upload-abandoned").exists()
    assert (await services.jobs.queue_stats("ai-processing")).completed == 0


async def test_the_example_ai_handler_reports_progress_and_a_result(
    jobs_app: tuple[Any, AsyncClient],
) -> None:
    app, _ = jobs_app
    service = app.state.services.jobs
    job_id = await service.ai_processing_job("acme", "classify", {"text": "one two three"})
    status = await completed(service, "ai-processing", job_id)
    assert status.job.result == {"task": "classify", "words": 3, "example": True}
    assert status.job.progress == 100
    assert "replace it" in status.logs[0]


async def test_cleanup_refuses_a_negative_age_and_removes_nothing(
    jobs_app: tuple[Any, AsyncClient],
) -> None:
    app, _ = jobs_app
    services = app.state.services
    temp = services.settings.data_dir / "tmp"
    temp.mkdir(parents=True)
    (temp / "export.part").write_text("still being written")
    for bad in (-1, "60", 1.5):
        job_id = await services.jobs.add("cleanup", "cleanup", {"olderThanSeconds": bad}, "system")
        status = await eventually(
            lambda job_id=job_id: services.jobs.get_job_status("cleanup", job_id),
            lambda s: s.state == "failed",
        )
        assert "olderThanSeconds must be a whole number >= 0" in status.job.failed_reason
        assert status.job.attempts_made == 1  # not retried: it would fail the same way
    assert (temp / "export.part").exists()
