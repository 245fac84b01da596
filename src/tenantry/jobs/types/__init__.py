"""Tenantry's job types, one module each: payload model, producer (`request`), handler.

email (SMTP), notification (signed webhooks), cleanup (old jobs, temporary files),
export and report (CSV through Storage, returning a signed URL), and an example
ai-processing handler for applications to replace. The handlers are built, with
the services each needs, by the wiring (`tenantry.wiring`).
"""
