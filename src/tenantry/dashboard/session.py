"""The dashboard's login session: a signed, HTTP-only cookie, and its CSRF token.

The admin key is entered once; the cookie then carries a CSRF token and a
fingerprint of the admin key, signed with TENANTRY_SECRET_KEY, so changing
either key ends every session. State-changing requests must echo the CSRF token
(form field `csrf` or header `X-CSRF-Token`); the cookie is also SameSite=Strict.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "tenantry_admin"
MAX_AGE_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class DashboardSession:
    csrf: str

    def csrf_matches(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)


class SessionSigner:
    def __init__(self, secret_key: str, admin_fingerprint: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="tenantry-dashboard")
        self._fingerprint = admin_fingerprint

    def issue(self) -> tuple[str, DashboardSession]:
        session = DashboardSession(csrf=secrets.token_urlsafe(24))
        cookie = self._serializer.dumps({"csrf": session.csrf, "key": self._fingerprint})
        return cookie, session

    def read(self, cookie: str | None) -> DashboardSession | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("key") != self._fingerprint:
            return None
        csrf = data.get("csrf")
        return DashboardSession(csrf=csrf) if isinstance(csrf, str) else None
