"""Tenantry's own job handlers; importing this package registers them.

email (SMTP), notification (signed webhooks), cleanup (old jobs, temporary files),
export and report (CSV through Storage, returning a signed URL), and an example
ai-processing handler for applications to replace.
"""

from tenantry.jobs.handlers import ai, cleanup, email, export, notification

__all__ = ["ai", "cleanup", "email", "export", "notification"]
