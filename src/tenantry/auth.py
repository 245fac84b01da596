"""API keys, the caller's identity, and the company a request may reach.

Two kinds of key travel in `Authorization: Bearer <key>`:
- the admin key (`TENANTRY_ADMIN_TOKEN`, or one generated into the data directory),
  which reaches every route and every company;
- company keys (`tnt_<id>_<secret>`), created with `tenantry keys create`, which
  reach only their own company's data. Only a SHA-256 digest of the secret is
  stored: the secret is 256 random bits, so a slow password hash would add
  latency to every request without adding safety.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from redis.exceptions import RedisError
from sqlalchemy import select

from tenantry import redis_clients
from tenantry.db import ApiKey, Database, ensure_company, utcnow
from tenantry.errors import Forbidden, InvalidInput, NotFound, TenantryError, Unauthorized
from tenantry.redis_clients import AnyRedis

log = logging.getLogger("tenantry.auth")

# The one company-id rule; HTTP schemas use the same text (tenantry.schemas.CompanyId).
COMPANY_ID_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
COMPANY_ID_PATTERN = re.compile(COMPANY_ID_REGEX)
_KEY_PATTERN = re.compile(r"^tnt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def validate_company_id(company_id: str) -> str:
    if not COMPANY_ID_PATTERN.fullmatch(company_id):
        raise InvalidInput(
            "companyId must be 1-64 characters: letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
            details={"field": "companyId"},
        )
    return company_id


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the admin, or one company through one of its keys."""

    is_admin: bool
    company_id: str | None = None
    key_id: str | None = None

    def company_for(self, requested: str | None) -> str:
        """The company this call acts for; a company key may only name its own."""
        if self.is_admin:
            if requested is None:
                raise InvalidInput(
                    "companyId is required with the admin key", details={"field": "companyId"}
                )
            return validate_company_id(requested)
        assert self.company_id is not None
        if requested is not None and requested != self.company_id:
            raise Forbidden("this key belongs to another company")
        return self.company_id

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this route needs the admin key")


ADMIN = Principal(is_admin=True)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    company_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; they were stored in UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _info(row: ApiKey) -> KeyInfo:
    created = _aware(row.created_at)
    assert created is not None
    return KeyInfo(row.id, row.company_id, row.name, created, _aware(row.revoked_at))


@dataclass(frozen=True, slots=True)
class StoredKey:
    info: KeyInfo
    secret_hash: str


class KeyRecords:
    """The API keys table. The wiring puts it behind the `database` circuit breaker, so an
    outage answers 503 fast instead of hanging every authenticated request."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, row: ApiKey) -> None:
        async with self._db.session() as session:
            await ensure_company(session, row.company_id)  # a key makes the company known
            session.add(row)

    async def list(self, company_id: str | None = None) -> list[KeyInfo]:
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if company_id is not None:
            query = query.where(ApiKey.company_id == company_id)
        async with self._db.session() as session:
            return [_info(row) for row in (await session.scalars(query)).all()]

    async def find(self, key_id: str) -> StoredKey | None:
        async with self._db.session() as session:
            row = await session.get(ApiKey, key_id)
            return None if row is None else StoredKey(_info(row), row.secret_hash)

    async def revoke(self, key_id: str) -> KeyInfo | None:
        async with self._db.session() as session:
            row = await session.get(ApiKey, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _info(row)


class KeyStore:
    """Creates, lists, revokes and verifies company keys, and checks the admin key."""

    def __init__(self, records: KeyRecords, admin_token: str | None) -> None:
        self._records = records
        self._admin_digest = _digest(admin_token) if admin_token else None

    @property
    def admin_fingerprint(self) -> str:
        """A digest prefix of the admin key: sessions bound to it end when the key changes."""
        return (self._admin_digest or "")[:16]

    async def create(self, company_id: str, name: str = "") -> tuple[str, KeyInfo]:
        """A new key for `company_id`; the plain key is returned once and never stored."""
        validate_company_id(company_id)
        if len(name) > 100:
            raise InvalidInput("name must be at most 100 characters", details={"field": "name"})
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = ApiKey(
            id=key_id,
            company_id=company_id,
            name=name,
            secret_hash=_digest(secret),
            created_at=utcnow(),
        )
        info = _info(row)
        await self._records.add(row)
        return f"tnt_{key_id}_{secret}", info

    async def list(self, company_id: str | None = None) -> list[KeyInfo]:
        return await self._records.list(company_id)

    async def get(self, key_id: str) -> KeyInfo:
        stored = await self._records.find(key_id)
        if stored is None:
            raise NotFound(f"no key with id {key_id!r}")
        return stored.info

    async def revoke(self, key_id: str) -> KeyInfo:
        info = await self._records.revoke(key_id)
        if info is None:
            raise NotFound(f"no key with id {key_id!r}")
        return info

    async def authenticate(self, token: str) -> Principal:
        """The principal behind `token`, or `Unauthorized`. Comparisons are constant-time."""
        if self.is_admin_token(token):
            return ADMIN
        match = _KEY_PATTERN.fullmatch(token)
        if match is None:
            raise Unauthorized("invalid API key")
        key_id, secret = match.groups()
        stored = await self._records.find(key_id)
        expected = stored.secret_hash if stored is not None else _digest("")
        valid = hmac.compare_digest(_digest(secret), expected)
        if stored is None or not valid or stored.info.revoked_at is not None:
            raise Unauthorized("invalid API key")
        return Principal(is_admin=False, company_id=stored.info.company_id, key_id=key_id)

    def is_admin_token(self, token: str) -> bool:
        """Whether `token` is the admin key (constant-time; no database access)."""
        return bool(self._admin_digest) and hmac.compare_digest(
            _digest(token), self._admin_digest or ""
        )


class TooManyFailures(TenantryError):
    status_code, code = 429, "TOO_MANY_REQUESTS"


# KEYS: the address's failures (a sorted set of times).  ARGV: limit, window ms, a unique
# member. Counts one failure and returns -1, or, at the limit, the ms until one expires.
_FAILED = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - window))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


class FailedAuthLimiter:
    """Caps failed authentications per client address in a sliding window.

    Only failures are limited: a valid key is always let through, so guessing from
    an address cannot lock its legitimate users out. Once an address is over the
    limit its failures answer 429 instead of 401 (and stop being counted, so memory
    stays bounded). With Redis the failures are counted there, by one script (atomic,
    on Redis's clock), so the limit holds for the whole deployment, not per process;
    without Redis, or while it fails, each process counts its own.
    """

    def __init__(
        self,
        max_failures: int = 20,
        window_seconds: float = 60.0,
        *,
        redis: AnyRedis | None = None,
        prefix: str = "tenantry:auth-failures:",
        retry_after: float = 1.0,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self.prefix = prefix
        self.retry_after = retry_after  # after a Redis failure, count locally this long
        self._script = redis_clients.script(redis, _FAILED) if redis is not None else None
        self._down_until = 0.0
        self._failures: dict[str, deque[float]] = {}

    async def failed(self, client: str) -> None:
        """Count a failed authentication from `client`; `TooManyFailures` past the limit."""
        if self.max_failures == 0:  # limiting switched off
            return
        if self._script is not None and time.monotonic() >= self._down_until:
            try:
                wait = await self._shared(client)
            except RedisError as exc:
                log.warning("failed-auth limiter: Redis unavailable, counting per process: %s", exc)
                self._down_until = time.monotonic() + self.retry_after
                wait = self._local(client)
        else:
            wait = self._local(client)
        if wait is not None:
            raise TooManyFailures(
                "too many failed authentications from this address; try again later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    async def _shared(self, client: str) -> float | None:
        """Counts the failure in Redis: None, or the seconds to wait when over the limit."""
        assert self._script is not None
        args: list[int | str] = [self.max_failures, round(self.window * 1000), secrets.token_hex(8)]
        wait_ms = int(await self._script(keys=[self.prefix + client], args=args))
        return None if wait_ms < 0 else wait_ms / 1000

    def _local(self, client: str) -> float | None:
        """As `_shared`, in this process's memory."""
        failures = self._recent(client)
        if failures is not None and len(failures) >= self.max_failures:
            return failures[0] + self.window - time.monotonic()
        if len(self._failures) > 100_000:  # bound memory under a spray of addresses
            self._failures.clear()
        self._failures.setdefault(client, deque()).append(time.monotonic())
        return None

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        cutoff = time.monotonic() - self.window
        while failures and failures[0] < cutoff:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures


def load_or_create_secret(path: Path) -> tuple[str, bool]:
    """Read a generated secret from `path`, or create it (mode 0600). Returns (secret, created)."""
    if path.exists():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret, True
