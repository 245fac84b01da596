"""StorageService: the one object the rest of Tenantry (and your app) talks to for files.

An upload streams through a meter (size limit, SHA-256) into the configured
backend, and only once the bytes are safely stored is the record written; if the
record cannot be written, the object is removed again. Reads, deletes and signed
URLs go to the backend named in the file's record, so records not yet migrated
keep working after STORAGE_PROVIDER changes.

All backend I/O goes through `_backend()`; `wrap_backends()` is the seam where a
circuit breaker or instrumentation wraps every backend at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from sqlalchemy import select

from tenantry.db import Database, utcnow
from tenantry.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    TenantryError,
    UnsupportedMediaType,
)
from tenantry.settings import Settings
from tenantry.storage.backends import (
    StorageBackend,
    StorageBackendError,
    StorageUnavailable,
    backend_from_settings,
)
from tenantry.storage.keys import new_key, parse_key, validate_filename
from tenantry.storage.records import FileRecord, RecordWriter, UsageRow, count_usage
from tenantry.storage.signing import UrlSigner
from tenantry.tracing.traced import traced

if TYPE_CHECKING:
    from tenantry.tracing.tracer import Tracing

log = logging.getLogger("tenantry.storage")

MIN_EXPIRES_IN = 1
MAX_EXPIRES_IN = 7 * 24 * 3600  # SigV4 presigned URLs cannot outlive 7 days
DEFAULT_EXPIRES_IN = 3600
_CHUNK = 1024 * 1024
_CONTENT_TYPE = re.compile(
    r"^(?P<base>[a-z0-9][\w.+-]*/[a-z0-9][\w.+-]*)"
    r"(?:\s*;\s*[\w.+-]+=(?:[\w.+-]+|\"[^\"\r\n]*\"))*$"
)

KEY = "tenantry.storage.key"  # the file's key on its span (company/category/name: no content)

UploadSource = bytes | bytearray | memoryview | AsyncIterable[bytes] | Iterable[bytes] | IO[bytes]
BackendWrapper = Callable[[StorageBackend], StorageBackend]


class UploadReservation(Protocol):
    """What one upload holds against its company's quota (tenantry.tenants.quota)."""

    async def need(self, total: int) -> None: ...  # QuotaExceeded (403) when over
    async def commit(self, size: int) -> None: ...
    async def release(self) -> None: ...


class UploadQuota(Protocol):
    """The seam to per-company storage quotas: checked before a byte is stored."""

    async def begin(self, company_id: str, size_hint: int = 0) -> UploadReservation: ...
    async def removed(self, company_id: str, size: int) -> None: ...


@dataclass(frozen=True, slots=True)
class _Row:
    """The columns of a new file record (inserted by RecordWriter, no ORM object needed)."""

    key: str
    company_id: str
    category: str
    filename: str
    size: int
    content_type: str
    checksum: str
    is_public: bool
    provider: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    company_id: str
    category: str
    filename: str
    size: int
    content_type: str
    checksum: str
    is_public: bool
    provider: str
    created_at: datetime
    url: str
    cdn_url: str | None


@dataclass(frozen=True, slots=True)
class CategoryUsage:
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class CompanyStats:
    company_id: str
    total_files: int
    total_size: int
    categories: dict[str, CategoryUsage]


@dataclass(frozen=True, slots=True)
class FilePage:
    files: list[StoredFile]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Download:
    file: StoredFile
    chunks: AsyncIterator[bytes]


class StorageService:
    def __init__(
        self,
        db: Database,
        provider: str,
        backend_factory: Callable[[str], StorageBackend],
        *,
        signer: UrlSigner,
        max_upload_bytes: int,
        allowed_content_types: Iterable[str],
        cdn_base_url: str | None = None,
        quota: UploadQuota | None = None,
    ) -> None:
        self.db = db
        self.quota = quota
        self.provider = provider
        self.signer = signer
        self.max_upload_bytes = max_upload_bytes
        self.allowed_content_types = tuple(t.strip().lower() for t in allowed_content_types)
        self.cdn_base_url = cdn_base_url.rstrip("/") if cdn_base_url else None
        self._factory = backend_factory
        self._backends: dict[str, StorageBackend] = {}
        self._wrappers: list[BackendWrapper] = []
        self.records = RecordWriter(db)
        self.tracing: Tracing | None = None  # a span per call below, when set (the wiring)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        secret_key: str,
        quota: UploadQuota | None = None,
    ) -> StorageService:
        signer = UrlSigner(secret_key)
        return cls(
            db,
            settings.storage_provider,
            lambda provider: backend_from_settings(settings, signer, provider),
            signer=signer,
            max_upload_bytes=settings.max_upload_bytes,
            allowed_content_types=settings.storage_allowed_content_types.split(","),
            cdn_base_url=settings.cdn_base_url,
            quota=quota,
        )

    # --- the seam: every byte in or out passes through one of these backends -------

    def _backend(self, provider: str) -> StorageBackend:
        backend = self._backends.get(provider)
        if backend is None:
            backend = self._factory(provider)
            for wrap in self._wrappers:
                backend = wrap(backend)
            self._backends[provider] = backend
        return backend

    @property
    def backend(self) -> StorageBackend:
        """The backend new uploads go to (STORAGE_PROVIDER)."""
        return self._backend(self.provider)

    def wrap_backends(self, wrapper: BackendWrapper) -> None:
        """Wrap every backend, present and future (e.g. in a circuit breaker)."""
        self._wrappers.append(wrapper)
        self._backends = {name: wrapper(backend) for name, backend in self._backends.items()}

    async def close(self) -> None:
        await self.records.close()
        for backend in self._backends.values():
            await backend.close()

    # --- writing ---------------------------------------------------------------------

    def check_content_type(self, content_type: str | None) -> str:
        """The normalised content type, or 415 when it is malformed or not allowed."""
        value = (content_type or "application/octet-stream").strip().lower()
        match = _CONTENT_TYPE.fullmatch(value)
        if match is None or not self._allowed(match["base"]):
            raise UnsupportedMediaType(
                f"content type {value[:100]!r} is not accepted; allowed: "
                + ", ".join(self.allowed_content_types),
                details={"field": "contentType", "allowed": list(self.allowed_content_types)},
            )
        return value

    def _allowed(self, base: str) -> bool:
        for allowed in self.allowed_content_types:
            if allowed.endswith("*"):
                if base.startswith(allowed[:-1]):
                    return True
            elif base == allowed:
                return True
        return False

    def check_size(self, size: int) -> None:
        if size > self.max_upload_bytes:
            raise PayloadTooLarge(
                f"file is larger than the limit of {self.max_upload_bytes} bytes",
                details={"field": "file", "maxBytes": self.max_upload_bytes},
            )

    @traced("storage.upload")
    async def upload(
        self,
        data: UploadSource,
        *,
        company_id: str,
        category: str,
        filename: str,
        content_type: str | None = None,
        is_public: bool = False,
    ) -> StoredFile:
        """Store a company's file; bytes, a file object or (async) iterables of chunks.

        Streams: memory stays bounded whatever the size. Raises 422 (bad category or
        filename), 415 (content type) or 413 (over MAX_UPLOAD_BYTES); on any failure
        nothing is left behind, neither the object nor its record. With a quota, 403
        QUOTA_EXCEEDED before the bytes over it are stored (it is reserved as they arrive).
        """
        key = str(new_key(company_id, category, filename))
        content_type = self.check_content_type(content_type)
        known = len(data) if isinstance(data, bytes | bytearray | memoryview) else 0
        self.check_size(known)
        reservation = await self.quota.begin(company_id, known) if self.quota else None
        try:
            stored = await self._store(
                data, key, company_id, category, filename, content_type, is_public, reservation
            )
        except BaseException:
            if reservation is not None:
                await asyncio.shield(reservation.release())
            raise
        if reservation is not None:
            await asyncio.shield(reservation.commit(stored.size))
        return stored

    async def _store(
        self,
        data: UploadSource,
        key: str,
        company_id: str,
        category: str,
        filename: str,
        content_type: str,
        is_public: bool,
        reservation: UploadReservation | None,
    ) -> StoredFile:
        meter = _Meter(self, reservation)
        backend = self.backend
        with _provider_errors(backend.name):
            await backend.put(key, meter.measure(_chunks(data)), content_type)
        row = _Row(
            key=key,
            company_id=company_id,
            category=category,
            filename=validate_filename(filename),
            size=meter.size,
            content_type=content_type,
            checksum=meter.sha256.hexdigest(),
            is_public=is_public,
            provider=backend.name,
            created_at=utcnow(),
        )
        written = self.records.submit({name: getattr(row, name) for name in _Row.__slots__})
        try:
            await asyncio.shield(written)
        except BaseException:
            # Failed or cancelled: keep the object only if its record made it in.
            await asyncio.shield(_drop_if_unrecorded(written, backend, key))
            raise
        return await self._stored(row)

    async def remove_incomplete_uploads(self, older_than_seconds: float) -> int:
        """Remove what uploads that never finished left at the provider (cleanup job)."""
        with _provider_errors(self.provider):
            return await self.backend.remove_incomplete(older_than_seconds)

    @traced("storage.delete", KEY)
    async def delete(self, key: str, *, company_id: str | None = None) -> None:
        """Remove the file and its record; the record stays if the object cannot be removed."""
        async with self.db.session() as session:
            record = await self._record(session, key, company_id)
            await session.delete(record)
            await session.flush()
            removed = {"company_id": record.company_id, "category": record.category}
            await count_usage(session, [{**removed, "size": record.size}], sign=-1)
            with _provider_errors(record.provider):
                await self._backend(record.provider).delete(key)
            if record.migrated_to and record.migrated_to != record.provider:
                await self._delete_copy(record.migrated_to, key)
        if self.quota is not None:
            await self.quota.removed(record.company_id, record.size)

    async def _delete_copy(self, provider: str, key: str) -> None:
        """Best effort: a migrated copy that cannot be removed must not block the delete."""
        try:
            await self._backend(provider).delete(key)
        except (StorageBackendError, OSError, StorageUnavailable) as exc:
            log.warning("could not delete the %s copy of %s: %s", provider, key, exc)

    # --- reading ---------------------------------------------------------------------

    async def get(self, key: str, *, company_id: str | None = None) -> StoredFile:
        async with self.db.session() as session:
            record = await self._record(session, key, company_id)
        return await self._stored(record)

    @traced("storage.download", KEY)
    async def open(self, key: str, *, company_id: str | None = None) -> Download:
        """The file's metadata and its content as a stream of chunks."""
        async with self.db.session() as session:
            record = await self._record(session, key, company_id)
        with _provider_errors(record.provider):
            chunks = await self._backend(record.provider).open(key)
        return Download(await self._stored(record), chunks)

    async def open_signed(self, key: str, expires: str, signature: str) -> Download:
        """A local signed URL's file: 403 unless the signature covers this key and is fresh."""
        self.signer.verify(key, expires, signature)
        return await self.open(key)

    async def open_public(self, key: str) -> Download:
        """A public file; private ones are answered as if they did not exist."""
        download = await self.open(key)
        if not download.file.is_public:
            await _discard(download.chunks)
            raise NotFound(f"no public file {key!r}")
        return download

    @traced("storage.url", KEY)
    async def signed_url(
        self, key: str, expires_in: int = DEFAULT_EXPIRES_IN, *, company_id: str | None = None
    ) -> str:
        _check_expires_in(expires_in)
        async with self.db.session() as session:
            record = await self._record(session, key, company_id)
        with _provider_errors(record.provider):
            return await self._backend(record.provider).signed_url(key, expires_in)

    @traced("storage.list")
    async def list_files(
        self,
        company_id: str,
        *,
        category: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> FilePage:
        """A company's files, newest first, `limit` at a time; pass `next_cursor` on."""
        query = select(FileRecord).where(FileRecord.company_id == company_id)
        if category is not None:
            query = query.where(FileRecord.category == category)
        if cursor is not None:
            query = query.where(FileRecord.id < _decode_cursor(cursor))
        query = query.order_by(FileRecord.id.desc()).limit(limit + 1)
        async with self.db.session() as session:
            records = list((await session.scalars(query)).all())
        more = len(records) > limit
        records = records[:limit]
        files = [await self._stored(record) for record in records]
        next_cursor = _encode_cursor(records[-1].id) if more else None
        return FilePage(files, next_cursor)

    async def company_stats(self, company_id: str) -> CompanyStats:
        """Files and bytes per category (from the usage counters: a few rows)."""
        return (await self.usage_of([company_id]))[0]

    async def usage_of(self, company_ids: list[str]) -> list[CompanyStats]:
        """These companies' usage per category, in the order given: one query on the
        usage counters, whatever the number of their files (a dashboard page)."""
        query = select(UsageRow).where(UsageRow.company_id.in_(company_ids), UsageRow.files > 0)
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        per_company: dict[str, dict[str, CategoryUsage]] = {c: {} for c in company_ids}
        for row in rows:
            per_company[row.company_id][row.category] = CategoryUsage(row.files, row.bytes)
        return [
            CompanyStats(
                company,
                sum(u.files for u in categories.values()),
                sum(u.bytes for u in categories.values()),
                dict(sorted(categories.items())),
            )
            for company, categories in per_company.items()
        ]

    async def usage_by_company(self) -> list[CompanyStats]:
        """Every company's usage (files and bytes, per category), largest first: one row
        per company and category. For pages of companies, `usage_of`."""
        async with self.db.session() as session:
            companies = list(await session.scalars(select(UsageRow.company_id).distinct()))
        usage = [stats for stats in await self.usage_of(companies) if stats.total_files]
        return sorted(usage, key=lambda stats: (-stats.total_size, stats.company_id))

    async def recent_files(self, limit: int = 25) -> list[StoredFile]:
        """The newest files across every company (for the admin dashboard)."""
        query = select(FileRecord).order_by(FileRecord.id.desc()).limit(limit)
        async with self.db.session() as session:
            records = list((await session.scalars(query)).all())
        return [await self._stored(record) for record in records]

    async def health(self) -> dict[str, Any]:
        backend = self.backend
        details = await backend.check()
        capabilities = backend.capabilities
        return {
            "provider": backend.name,
            **details,
            "capabilities": {
                "presignedPost": capabilities.presigned_post,
                "objectAcl": capabilities.object_acl,
                "publicUrls": capabilities.public_urls,
            },
        }

    # --- helpers ---------------------------------------------------------------------

    async def _record(self, session: Any, key: str, company_id: str | None) -> FileRecord:
        parsed = parse_key(key)
        if company_id is not None and parsed.company_id != company_id:
            raise NotFound(f"no file {key!r}")
        record: FileRecord | None = await session.scalar(
            select(FileRecord).where(FileRecord.key == key)
        )
        if record is None:
            raise NotFound(f"no file {key!r}")
        return record

    async def _stored(self, record: FileRecord | _Row) -> StoredFile:
        cdn_url = None
        if record.is_public and self.cdn_base_url:
            cdn_url = f"{self.cdn_base_url}/{quote(record.key)}"
        backend = self._backend(record.provider)
        url = cdn_url or (backend.public_url(record.key) if record.is_public else None)
        if url is None:  # private files (and public ones a provider cannot serve plainly)
            with _provider_errors(record.provider):
                url = await backend.signed_url(record.key, DEFAULT_EXPIRES_IN)
        return StoredFile(
            key=record.key,
            company_id=record.company_id,
            category=record.category,
            filename=record.filename,
            size=record.size,
            content_type=record.content_type,
            checksum=record.checksum,
            is_public=record.is_public,
            provider=record.provider,
            # SQLite hands timestamps back without their zone; they were stored in UTC.
            created_at=_in_utc(record.created_at),
            url=url,
            cdn_url=cdn_url,
        )


class UploadInterrupted(TenantryError):
    """The data being uploaded stopped arriving (the client went away, a read failed)."""

    status_code, code = 400, "UPLOAD_INTERRUPTED"


@contextmanager
def _provider_errors(provider: str) -> Iterator[None]:
    """A provider's failure, once past the backend seam, is a 503 that says which one."""
    try:
        yield
    except (StorageBackendError, OSError) as exc:
        raise StorageUnavailable(
            f"storage provider {provider} is unavailable: {exc}", details={"provider": provider}
        ) from exc


class _Meter:
    """Counts and hashes an upload as it streams; stops it at the size limit."""

    def __init__(self, service: StorageService, reservation: UploadReservation | None) -> None:
        self._service = service
        self._reservation = reservation
        self.size = 0
        self.sha256 = hashlib.sha256()

    async def measure(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                if self.size == 0:  # refused before anything is kept, like an oversized one
                    raise InvalidInput(
                        "file is empty", details={"field": "file", "rule": "not_empty"}
                    ) from None
                return
            except TenantryError:
                raise
            except Exception as exc:
                # The source failed, not the storage: say so (and keep a breaker around
                # the backend from counting a client's disconnect as a storage failure).
                raise UploadInterrupted(
                    f"the upload stopped before its end: {type(exc).__name__}: {exc}"
                ) from exc
            if not chunk:
                continue
            self.size += len(chunk)
            self._service.check_size(self.size)
            if self._reservation is not None:
                await self._reservation.need(self.size)  # before the chunk is stored
            self.sha256.update(chunk)
            yield chunk


async def _drop_if_unrecorded(
    written: asyncio.Future[None], backend: StorageBackend, key: str
) -> None:
    await asyncio.wait([written])
    if written.cancelled() or written.exception() is not None:
        await backend.delete(key)


async def _chunks(data: UploadSource) -> AsyncIterator[bytes]:
    if isinstance(data, bytes) and len(data) <= _CHUNK:
        yield data  # the common small upload: no copy
    elif isinstance(data, bytes | bytearray | memoryview):
        for start in range(0, len(data), _CHUNK):
            yield bytes(data[start : start + _CHUNK])
    elif isinstance(data, AsyncIterable):
        async for chunk in data:
            yield bytes(chunk)
    elif hasattr(data, "read"):
        while chunk := await asyncio.to_thread(data.read, _CHUNK):
            yield bytes(chunk)
    else:
        for chunk in data:
            yield bytes(chunk)


async def _discard(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


def _in_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _check_expires_in(expires_in: int) -> None:
    if not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
        raise InvalidInput(
            f"expiresIn must be between {MIN_EXPIRES_IN} and {MAX_EXPIRES_IN} seconds (7 days)",
            details={"field": "expiresIn", "rule": "range"},
        )


def _encode_cursor(record_id: int) -> str:
    return base64.urlsafe_b64encode(str(record_id).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if value.isascii() and value.isdigit() and len(value) < 20:
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidInput("cursor is not one this API returned", details={"field": "cursor"})
