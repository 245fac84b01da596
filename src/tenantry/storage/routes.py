"""HTTP face of storage: /api/storage/… (keys required) and the app-served local files.

`/files/{key}?expires=&signature=` serves local files behind signed URLs and
`/public/{key}` serves local public files; both need no key, only a valid URL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from tenantry.auth import Principal
from tenantry.deps import AdminDep, PrincipalDep, Router, ServicesDep
from tenantry.schemas import ApiModel, CompanyQuery
from tenantry.storage.keys import parse_key
from tenantry.storage.multipart import receive_upload
from tenantry.storage.service import (
    DEFAULT_EXPIRES_IN,
    MAX_EXPIRES_IN,
    MIN_EXPIRES_IN,
    CompanyStats,
    Download,
    StoredFile,
)

router = Router(tags=["storage"])
UPLOAD_PATH = "/api/storage/files"  # its body limit is MAX_UPLOAD_BYTES (app.py)


class FileOut(ApiModel):
    key: str
    url: str
    cdn_url: str | None
    size: int
    content_type: str
    checksum: str
    is_public: bool
    category: str
    filename: str
    provider: str
    created_at: datetime

    @classmethod
    def of(cls, file: StoredFile) -> FileOut:
        return cls(
            key=file.key,
            url=file.url,
            cdn_url=file.cdn_url,
            size=file.size,
            content_type=file.content_type,
            checksum=file.checksum,
            is_public=file.is_public,
            category=file.category,
            filename=file.filename,
            provider=file.provider,
            created_at=file.created_at,
        )


class FileList(ApiModel):
    files: list[FileOut]
    next_cursor: str | None


class SignedUrl(ApiModel):
    url: str
    expires_in: int
    expires_at: datetime


class CategoryOut(ApiModel):
    files: int
    bytes: int


class StatsOut(ApiModel):
    company_id: str
    total_files: int
    total_size: int
    categories: dict[str, CategoryOut]

    @classmethod
    def of(cls, stats: CompanyStats) -> StatsOut:
        return cls(
            company_id=stats.company_id,
            total_files=stats.total_files,
            total_size=stats.total_size,
            categories={
                name: CategoryOut(files=usage.files, bytes=usage.bytes)
                for name, usage in stats.categories.items()
            },
        )


def _company_of_key(principal: Principal, key: str) -> str:
    """The company a key belongs to, if the caller may reach it (422 bad key, 403 other)."""
    return principal.company_for(parse_key(key).company_id)


@router.post(
    UPLOAD_PATH,
    response_model=FileOut,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "category"],
                        "properties": {
                            "category": {"type": "string"},
                            "isPublic": {"type": "boolean"},
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    },
)
async def upload_file(
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    company_id: CompanyQuery = None,
) -> FileOut:
    """Upload one file (multipart: category and isPublic, then file). Streams to storage."""
    company = principal.company_for(company_id)
    return FileOut.of(await receive_upload(request, services.storage, company))


@router.get("/api/storage/files", response_model=FileList)
async def list_files(
    services: ServicesDep,
    principal: PrincipalDep,
    company_id: CompanyQuery = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FileList:
    company = principal.company_for(company_id)
    page = await services.storage.list_files(company, category=category, cursor=cursor, limit=limit)
    return FileList(files=[FileOut.of(f) for f in page.files], next_cursor=page.next_cursor)


@router.get("/api/storage/files/{key:path}/signed-url", response_model=SignedUrl)
async def signed_url(
    key: str,
    services: ServicesDep,
    principal: PrincipalDep,
    expires_in: Annotated[
        int, Query(alias="expiresIn", ge=MIN_EXPIRES_IN, le=MAX_EXPIRES_IN)
    ] = DEFAULT_EXPIRES_IN,
) -> SignedUrl:
    company = _company_of_key(principal, key)
    url = await services.storage.signed_url(key, expires_in, company_id=company)
    expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
    return SignedUrl(url=url, expires_in=expires_in, expires_at=expires_at)


@router.get("/api/storage/files/{key:path}/content")
async def download_file(key: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    """The file's content, streamed."""
    company = _company_of_key(principal, key)
    return _stream(await services.storage.open(key, company_id=company))


@router.get("/api/storage/files/{key:path}", response_model=FileOut)
async def file_info(key: str, services: ServicesDep, principal: PrincipalDep) -> FileOut:
    company = _company_of_key(principal, key)
    return FileOut.of(await services.storage.get(key, company_id=company))


@router.delete("/api/storage/files/{key:path}", status_code=204)
async def delete_file(key: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    company = _company_of_key(principal, key)
    await services.storage.delete(key, company_id=company)
    return Response(status_code=204)


@router.get("/api/storage/stats", response_model=StatsOut)
async def stats(
    services: ServicesDep, principal: PrincipalDep, company_id: CompanyQuery = None
) -> StatsOut:
    company = principal.company_for(company_id)
    return StatsOut.of(await services.storage.company_stats(company))


@router.get("/api/storage/health", responses={503: {"description": "Storage is down."}})
async def health(services: ServicesDep, _: AdminDep) -> JSONResponse:
    """The provider, its capabilities and bucket (admin only: infrastructure detail)."""
    result: dict[str, Any] = await services.health.run("storage")
    return JSONResponse(result, status_code=200 if result["status"] == "up" else 503)


@router.get("/files/{key:path}", include_in_schema=True)
async def signed_file(
    key: str,
    services: ServicesDep,
    expires: str = "",  # unchecked here: any tampering is the signer's 403, never a 422
    signature: str = "",
) -> Response:
    """A local file behind a signed URL; a tampered or expired URL is answered 403."""
    return _stream(await services.storage.open_signed(key, expires, signature))


@router.get("/public/{key:path}")
async def public_file(key: str, services: ServicesDep) -> Response:
    """A public local file (private files answer 404)."""
    return _stream(await services.storage.open_public(key))


def _stream(download: Download) -> StreamingResponse:
    file = download.file
    return StreamingResponse(
        download.chunks,
        media_type=file.content_type,
        headers={
            "Content-Length": str(file.size),
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(file.filename)}",
            # Uploaded content is never trusted as active content on the API's origin.
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cache-Control": "public, max-age=3600" if file.is_public else "private, no-store",
        },
    )
