"""The email queue: render a template and send it over SMTP (`SMTP_*` settings).

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

from tenantry.jobs.backends import PermanentJobError
from tenantry.jobs.queues import EMAIL
from tenantry.jobs.registry import JobContext, job_handler


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


@job_handler(EMAIL)
async def send_email(job: JobContext) -> dict[str, Any]:
    settings = job.settings
    if not settings.smtp_host:
        raise PermanentJobError("SMTP_HOST is not set; email cannot be sent")
    recipients = job.data.get("to") or []
    if not recipients or not all(isinstance(r, str) and "@" in r for r in recipients):
        raise PermanentJobError("'to' must be a list of email addresses")
    body = render(str(job.data.get("template", "")), dict(job.data.get("data") or {}))
    await job.progress(30)

    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = str(job.data.get("subject", ""))
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<tenantry.{job.queue}.{job.id}.{job.company_id}@tenantry>"
    message.set_content(body)

    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username or None,
        password=password or None,
        start_tls=settings.smtp_starttls,
        timeout=settings.smtp_timeout_seconds,
    )
    await job.log(f"sent to {len(recipients)} recipient(s) via {settings.smtp_host}")
    await job.progress(100)
    return {"messageId": message["Message-ID"], "recipients": recipients}
