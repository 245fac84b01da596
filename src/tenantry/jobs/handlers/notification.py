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
from typing import Any

import httpx

from tenantry.jobs.backends import PermanentJobError
from tenantry.jobs.queues import NOTIFICATION
from tenantry.jobs.registry import JobContext, job_handler

SIGNATURE_HEADER = "X-Tenantry-Signature"
TIMESTAMP_HEADER = "X-Tenantry-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """For receivers (and tests): constant-time check of a delivery's signature."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def webhook_secret(job: JobContext) -> str:
    configured = job.settings.webhook_secret
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value()
    return job.require_services().secret_key


@job_handler(NOTIFICATION)
async def deliver_webhook(job: JobContext) -> dict[str, Any]:
    url = job.data.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise PermanentJobError("'url' must be an http(s) URL")
    event = str(job.data.get("event", "event"))
    body = json.dumps(
        {
            "event": event,
            "companyId": job.company_id,
            "deliveryId": f"{job.queue}:{job.id}",
            "payload": job.data.get("payload") or {},
        },
        separators=(",", ":"),
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Tenantry-Event": event,
        "X-Tenantry-Delivery": f"{job.queue}:{job.id}",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(webhook_secret(job), timestamp, body),
    }
    await job.log(f"attempt {job.attempt}: POST {url}")
    async with httpx.AsyncClient(timeout=job.settings.webhook_timeout_seconds) as client:
        response = await client.post(url, content=body, headers=headers)
    if response.is_success:
        await job.progress(100)
        return {"status": response.status_code, "attempt": job.attempt}
    message = f"webhook answered {response.status_code}"
    await job.log(message)
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        raise PermanentJobError(message)
    raise RuntimeError(message)
