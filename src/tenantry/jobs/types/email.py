"""The email queue: render a template and send it over SMTP (`SMTP_*` settings).

    await jobs.submit(email.request(["ada@example.com"], "Welcome", "welcome", {"name": "Ada"}),
                      "acme")   # or jobs.send_email_job("acme", "ada@example.com", ...)

Templates are `string.Template` texts (`$name` placeholders) registered by name;
an application adds its own with `register_template`. The Message-ID is derived
from the job id, so a job delivered twice (after a worker crash) sends a message
a receiving server can recognise as the same one.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib
from pydantic import Field, field_validator

from tenantry.jobs.backends import PermanentJobError
from tenantry.jobs.queues import EMAIL
from tenantry.jobs.registry import JobContext
from tenantry.jobs.types.base import JobPayload, JobRequest
from tenantry.settings import Settings

NAME = "send-email"


@dataclass(frozen=True, slots=True)
class EmailTemplate:
    text: str


TEMPLATES: dict[str, EmailTemplate] = {
    "plain": EmailTemplate("$body"),
    "welcome": EmailTemplate("Hello $name,\n\nWelcome to $product.\n"),
    "report-ready": EmailTemplate("Your $reportType report is ready: $url\n"),
    "export-ready": EmailTemplate("Your export is ready: $url\n"),
}


def register_template(name: str, text: str) -> None:
    TEMPLATES[name] = EmailTemplate(text)


def render(template: str, data: dict[str, Any]) -> str:
    found = TEMPLATES.get(template)
    if found is None:
        raise PermanentJobError(f"no email template named {template!r}")
    try:
        return string.Template(found.text).substitute({k: str(v) for k, v in data.items()})
    except KeyError as exc:
        raise PermanentJobError(f"template {template!r} needs {exc.args[0]!r} in data") from None


class EmailJob(JobPayload):
    to: list[str] = Field(min_length=1, max_length=100)
    subject: str = Field("", max_length=998)  # RFC 5322's line limit
    template: str
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("to")
    @classmethod
    def _addresses(cls, to: list[str]) -> list[str]:
        if not all("@" in address for address in to):
            raise ValueError("every recipient must be an email address")
        return to


def request(
    to: str | list[str], subject: str, template: str, data: dict[str, Any] | None = None
) -> JobRequest:
    recipients = [to] if isinstance(to, str) else list(to)
    payload = EmailJob.build(to=recipients, subject=subject, template=template, data=data or {})
    return JobRequest(EMAIL, NAME, payload)


@dataclass(frozen=True, slots=True)
class Smtp:
    """Where and how mail is sent (the `SMTP_*` settings)."""

    host: str | None
    port: int = 587
    username: str | None = None
    password: str | None = None
    sender: str = "tenantry@localhost"
    starttls: bool = True
    timeout_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Smtp:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=password or None,
            sender=settings.smtp_from,
            starttls=settings.smtp_starttls,
            timeout_seconds=settings.smtp_timeout_seconds,
        )


@dataclass(frozen=True, slots=True)
class SendEmail:
    """The email handler."""

    smtp: Smtp

    async def __call__(self, job: JobContext) -> dict[str, Any]:
        smtp = self.smtp
        if not smtp.host:
            raise PermanentJobError("SMTP_HOST is not set; email cannot be sent")
        email = EmailJob.of_job(job.data)
        body = render(email.template, email.data)
        await job.progress(30)

        message = EmailMessage()
        message["From"] = smtp.sender
        message["To"] = ", ".join(email.to)
        message["Subject"] = email.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = f"<tenantry.{job.queue}.{job.id}.{job.company_id}@tenantry>"
        message.set_content(body)
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            start_tls=smtp.starttls,
            timeout=smtp.timeout_seconds,
        )
        await job.log(f"sent to {len(email.to)} recipient(s) via {smtp.host}")
        await job.progress(100)
        return {"messageId": message["Message-ID"], "recipients": email.to}
