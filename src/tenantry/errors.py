"""The errors a caller can act on, and their one shape: {"error": {"code", "message",
"details"}}. Pure Python: the services raise these without importing a web framework;
http_errors.py renders them as responses.
"""

from __future__ import annotations

from typing import Any


class TenantryError(Exception):
    """An error a caller can act on. Services raise these; the app renders them."""

    status_code = 400
    code = "BAD_REQUEST"
    default_headers: dict[str, str] = {}  # sent unless the raiser gives its own

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = {**self.default_headers, **(headers or {})} or None
        if code:
            self.code = code


class Unauthorized(TenantryError):
    status_code, code = 401, "UNAUTHORIZED"


class Forbidden(TenantryError):
    status_code, code = 403, "FORBIDDEN"


class NotFound(TenantryError):
    status_code, code = 404, "NOT_FOUND"


class Conflict(TenantryError):
    status_code, code = 409, "CONFLICT"


class PayloadTooLarge(TenantryError):
    status_code, code = 413, "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(TenantryError):
    status_code, code = 415, "UNSUPPORTED_MEDIA_TYPE"


class InvalidInput(TenantryError):
    status_code, code = 422, "VALIDATION_ERROR"


class ServiceUnavailable(TenantryError):
    """A dependency is down. Always says when to try again (Retry-After, 5 s unless given)."""

    status_code, code = 503, "SERVICE_UNAVAILABLE"
    default_headers = {"Retry-After": "5"}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


class QuotaExceeded(TenantryError):
    """A company is at one of its plan's limits; details name the limit, usage, allowed."""

    status_code, code = 403, "QUOTA_EXCEEDED"
