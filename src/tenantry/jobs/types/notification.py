"""The notification queue: POST a JSON webhook signed with HMAC-SHA256.

Headers sent with every delivery:
- `X-Tenantry-Event`: the event name;
- `X-Tenantry-Delivery`: a stable id per job, so a receiver can drop a repeat
  (jobs are delivered at least once; failed deliveries are retried with backoff);
- `X-Tenantry-Timestamp`: seconds since the epoch;
- `X-Tenantry-Signature`: `sha256=` + hex HMAC-SHA256 of `"{timestamp}.{body}"`
  with `WEBHOOK_SECRET` (default: the service's secret key).

A 2xx answer completes the job. 408, 429 and 5xx (and network errors) are retried;
any other 4xx fails the job at once, since sending it again cannot help.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import Field, field_validator

from tenantry.jobs.backends import PermanentJobError
from tenantry.jobs.queues import NOTIFICATION
from tenantry.jobs.registry import JobContext
from tenantry.jobs.types.base import JobPayload, JobRequest

NAME = "webhook"
SIGNATURE_HEADER = "X-Tenantry-Signature"
TIMESTAMP_HEADER = "X-Tenantry-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """For receivers (and tests): constant-time check of a delivery's signature."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class NotificationJob(JobPayload):
    url: str = Field(max_length=2048)
    event: str = Field("event", min_length=1, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http(s) URL")
        return url


def request(url: str, event: str, payload: dict[str, Any] | None = None) -> JobRequest:
    return JobRequest(
        NOTIFICATION, NAME, NotificationJob.build(url=url, event=event, payload=payload or {})
    )


@dataclass(frozen=True, slots=True)
class DeliverWebhook:
    """The notification handler: signs with `secret` (WEBHOOK_SECRET, else the secret key)."""

    secret: str
    timeout_seconds: float = 10.0

    async def __call__(self, job: JobContext) -> dict[str, Any]:
        notification = NotificationJob.of_job(job.data)
        delivery = f"{job.queue}:{job.id}"
        body = json.dumps(
            {
                "event": notification.event,
                "companyId": job.company_id,
                "deliveryId": delivery,
                "payload": notification.payload,
            },
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Tenantry-Event": notification.event,
            "X-Tenantry-Delivery": delivery,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
        }
        await job.log(f"attempt {job.attempt}: POST {notification.url}")
        async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
            response = await client.post(notification.url, content=body, headers=headers)
        if response.is_success:
            await job.progress(100)
            return {"status": response.status_code, "attempt": job.attempt}
        message = f"webhook answered {response.status_code}"
        await job.log(message)
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            raise PermanentJobError(message)
        raise RuntimeError(message)
