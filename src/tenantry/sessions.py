"""The dashboard's login session: a signed, HTTP-only cookie naming a row in the database.

The admin key is entered once; the cookie then carries a session id, a CSRF token
and a fingerprint of the admin key, signed with TENANTRY_SECRET_KEY, so changing
either key ends every session. The session id must also name a live row of
`tenantry_dashboard_sessions`: logging out deletes it, which ends the session in
every process that shares the database (no Redis needed). Only a digest of the id
is stored. State-changing requests must echo the CSRF token (form field `csrf` or
header `X-CSRF-Token`); the cookie is also SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import DateTime, String, delete
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db import Base, Database, utcnow

COOKIE_NAME = "tenantry_admin"
MAX_AGE_SECONDS = 12 * 3600


class SessionRow(Base):
    """A live dashboard session; expired rows are deleted at the next login."""

    __tablename__ = "tenantry_dashboard_sessions"

    id_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass(frozen=True, slots=True)
class DashboardSession:
    id: str
    csrf: str

    def csrf_matches(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SessionRecords:
    """The sessions table, by digest of the session id. The wiring puts it behind the
    `database` circuit breaker, so an outage answers 503 fast."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def store(self, digest: str) -> None:
        now = utcnow()
        async with self._db.session() as db:
            # Bounded table: every login sweeps away the sessions that have expired.
            await db.execute(delete(SessionRow).where(SessionRow.expires_at < now))
            db.add(
                SessionRow(
                    id_digest=digest,
                    created_at=now,
                    expires_at=now + timedelta(seconds=MAX_AGE_SECONDS),
                )
            )

    async def is_live(self, digest: str) -> bool:
        async with self._db.session() as db:
            row = await db.get(SessionRow, digest)
            return row is not None and _aware(row.expires_at) > utcnow()

    async def delete(self, digest: str) -> None:
        async with self._db.session() as db:
            await db.execute(delete(SessionRow).where(SessionRow.id_digest == digest))


class DashboardSessions:
    """Issues, reads and revokes sessions."""

    def __init__(self, records: SessionRecords, secret_key: str, admin_fingerprint: str) -> None:
        self._records = records
        self._serializer = URLSafeTimedSerializer(secret_key, salt="tenantry-dashboard")
        self._fingerprint = admin_fingerprint

    async def issue(self) -> tuple[str, DashboardSession]:
        """A new session (its row stored) and the cookie that carries it."""
        session = DashboardSession(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(24))
        await self._records.store(_digest(session.id))
        data = {"sid": session.id, "csrf": session.csrf, "key": self._fingerprint}
        return self._serializer.dumps(data), session

    async def read(self, cookie: str | None) -> DashboardSession | None:
        """The session behind a cookie: correctly signed, not expired, not logged out."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("key") != self._fingerprint:
            return None
        sid, csrf = data.get("sid"), data.get("csrf")
        if not isinstance(sid, str) or not isinstance(csrf, str):
            return None
        if not await self._records.is_live(_digest(sid)):
            return None
        return DashboardSession(id=sid, csrf=csrf)

    async def revoke(self, session: DashboardSession) -> None:
        """End the session everywhere: its cookie is refused from now on."""
        await self._records.delete(_digest(session.id))
