"""The storage HTTP API on the full app: uploads, limits, bad input, auth, local URLs."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from httpx import AsyncClient

from tenantry.settings import Settings
from tests.conftest import ADMIN
from tests.raw_asgi import raw_request
from tests.storage.conftest import stored_files

Keys = dict[str, dict[str, str]]
BOUNDARY = "tenantry-test-boundary"


def multipart(*parts: tuple[str, bytes | None, str | None, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart body in exactly the given part order: (name, filename, type, content)."""
    body = b""
    for name, filename, content_type, content in parts:
        disposition = f'form-data; name="{name}"'.encode()
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += f"--{BOUNDARY}\r\n".encode() + b"Content-Disposition: " + disposition + b"\r\n"
        if content_type:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + content + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def upload(
    client: AsyncClient,
    headers: dict[str, str],
    content: bytes = b"%PDF-1.7 hello",
    *,
    filename: str = "report.pdf",
    content_type: str = "application/pdf",
    category: str = "documents",
    is_public: bool = False,
    params: dict[str, str] | None = None,
) -> Any:
    return await client.post(
        "/api/storage/files",
        data={"category": category, "isPublic": "true" if is_public else "false"},
        files={"file": (filename, content, content_type)},
        headers=headers,
        params=params,
    )


def assert_error(response: Any, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if field is not None:
        assert field in error["message"] or field in str(error["details"]), error


def files_on_disk(settings: Settings) -> list[str]:
    return stored_files(settings.upload_dir)


async def test_upload_returns_201_with_the_stored_file(
    client: AsyncClient, company_keys: Keys, settings: Settings
) -> None:
    data = os.urandom(3000)
    response = await upload(client, company_keys["acme"], data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["key"].startswith("companies/acme/documents/")
    assert body["size"] == 3000
    assert body["checksum"] == hashlib.sha256(data).hexdigest()
    assert body["contentType"] == "application/pdf"
    assert body["cdnUrl"] is None
    assert body["isPublic"] is False
    assert files_on_disk(settings) == [body["key"]]
    signed = await client.get(body["url"])
    assert signed.status_code == 200
    assert signed.content == data
    assert signed.headers["x-content-type-options"] == "nosniff"


async def test_list_is_paginated_filtered_and_scoped(
    client: AsyncClient, company_keys: Keys
) -> None:
    keys = [
        (await upload(client, company_keys["acme"], category=category)).json()["key"]
        for category in ("documents", "avatars", "documents", "documents", "avatars")
    ]
    await upload(client, company_keys["globex"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/api/storage/files", params=params, headers=company_keys["acme"])
        ).json()
        assert len(page["files"]) <= 2
        seen += [f["key"] for f in page["files"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(keys))
    listed = (await client.get("/api/storage/files", headers=company_keys["acme"])).json()
    for file in listed["files"]:  # read back from the database, SQLite too: still zoned
        assert datetime.fromisoformat(file["createdAt"].replace("Z", "+00:00")).tzinfo
    documents = await client.get(
        "/api/storage/files", params={"category": "documents"}, headers=company_keys["acme"]
    )
    assert {f["key"] for f in documents.json()["files"]} == {keys[0], keys[2], keys[3]}
    bad_cursor = await client.get(
        "/api/storage/files", params={"cursor": "!!"}, headers=company_keys["acme"]
    )
    assert_error(bad_cursor, 422, "cursor")


async def test_stats_for_the_company_and_for_admin(client: AsyncClient, company_keys: Keys) -> None:
    await upload(client, company_keys["acme"], b"a" * 10, category="documents")
    await upload(client, company_keys["acme"], b"b" * 20, category="documents")
    await upload(client, company_keys["acme"], b"c" * 5, category="avatars")
    await upload(client, company_keys["globex"], b"d" * 99)
    own = await client.get("/api/storage/stats", headers=company_keys["acme"])
    assert own.json() == {
        "companyId": "acme",
        "totalFiles": 3,
        "totalSize": 35,
        "categories": {"avatars": {"files": 1, "bytes": 5}, "documents": {"files": 2, "bytes": 30}},
    }
    other = await client.get(
        "/api/storage/stats", params={"companyId": "globex"}, headers=company_keys["acme"]
    )
    assert_error(other, 403)
    admin = await client.get("/api/storage/stats", params={"companyId": "globex"}, headers=ADMIN)
    assert admin.json()["totalSize"] == 99
    assert_error(await client.get("/api/storage/stats", headers=ADMIN), 422, "companyId")


async def test_storage_health(client: AsyncClient, company_keys: Keys) -> None:
    refused = await client.get("/api/storage/health", headers=company_keys["acme"])
    assert refused.status_code == 403  # the provider and bucket are the operator's business
    response = await client.get("/api/storage/health", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["status"] == "up"
    assert response.json()["provider"] == "local"
    assert response.json()["capabilities"] == {
        "presignedPost": False,
        "objectAcl": False,
        "publicUrls": True,
    }
    assert (await client.get("/api/storage/health")).status_code == 401
    ready = await client.get("/ready", headers=ADMIN)
    assert ready.json()["checks"]["storage"]["status"] == "up"


# --- limits and bad input ------------------------------------------------------------


@pytest.fixture
def settings(settings_factory: Any) -> Settings:
    made: Settings = settings_factory(max_upload_bytes=64 * 1024)
    return made


async def test_too_large_upload_is_413_and_nothing_is_kept(
    client: AsyncClient, company_keys: Keys, settings: Settings
) -> None:
    response = await upload(client, company_keys["acme"], os.urandom(64 * 1024 + 1))
    assert_error(response, 413, "65536")
    # The limit counts every byte of every part: the file, "documents" and "false".
    exactly = await upload(client, company_keys["acme"], os.urandom(64 * 1024 - 14))
    assert exactly.status_code == 201
    assert files_on_disk(settings) == [exactly.json()["key"]]


async def test_too_large_chunked_upload_is_stopped_midway(
    client: AsyncClient, company_keys: Keys, settings: Settings
) -> None:
    """No Content-Length: the limit is enforced while streaming; the partial file is removed."""
    head, headers = multipart(("category", None, None, b"documents"))
    head = head[: -len(f"--{BOUNDARY}--\r\n")]
    head += f"--{BOUNDARY}\r\n".encode()
    head += b'Content-Disposition: form-data; name="file"; filename="x.bin"\r\n'
    head += b"Content-Type: application/octet-stream\r\n\r\n"

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(40):  # 40 x 16 KiB = 640 KiB, ten times the limit
            yield os.urandom(16 * 1024)
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    response = await client.post(
        "/api/storage/files", content=body(), headers={**company_keys["acme"], **headers}
    )
    assert_error(response, 413)
    assert files_on_disk(settings) == []
    stats = await client.get("/api/storage/stats", headers=company_keys["acme"])
    assert stats.json()["totalFiles"] == 0


async def assert_nothing_stored(
    client: AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    assert files_on_disk(settings) == []
    stats = await client.get("/api/storage/stats", headers=headers)
    assert stats.json()["totalFiles"] == 0


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    """No Content-Length: only what the parser counts can stop it."""
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]


async def test_every_part_counts_and_each_parts_headers_are_bounded(
    client: AsyncClient, company_keys: Keys, settings: Settings
) -> None:
    acme = company_keys["acme"]
    file = ("file", b"a.txt", "text/plain", b"abc")
    # The reproduction: 20,000 repeated `category` parts next to a 3-byte file.
    repeated, headers = multipart(*[("category", None, None, b"documents")] * 20_000, file)
    response = await client.post(
        "/api/storage/files", content=repeated, headers={**acme, **headers}
    )
    assert_error(response, 413, "maxBytes")  # its Content-Length alone is too much
    response = await client.post(
        "/api/storage/files", content=chunked(repeated), headers={**acme, **headers}
    )
    assert_error(response, 422, "more than 16 parts")
    # One part whose few headers add up to more than its header budget.
    long_headers, headers = multipart(("category", None, None, b"documents"), file)
    extra = b"".join(b"\r\nX-%d: " % i + b"y" * 2000 for i in range(3))
    long_headers = long_headers.replace(b"\r\n\r\ndocuments", extra + b"\r\n\r\ndocuments")
    response = await client.post(
        "/api/storage/files", content=long_headers, headers={**acme, **headers}
    )
    assert_error(response, 422, "headers are longer than 4096 bytes")
    await assert_nothing_stored(client, acme, settings)


async def test_text_fields_count_against_the_upload_limit(
    client: AsyncClient, company_keys: Keys, settings: Settings
) -> None:
    """MAX_UPLOAD_BYTES (64 KiB here) counts every part: a category, 14 notes of 4 KiB, 8 KiB of
    file."""
    acme = company_keys["acme"]
    fields = [("category", None, None, b"documents")]
    fields += [(f"note{i}", None, None, b"n" * 4096) for i in range(14)]
    for file_first in (False, True):  # streamed straight through, or spooled first
        file = ("file", b"a.txt", "text/plain", b"f" * 8192)
        parts = [file, *fields] if file_first else [*fields, file]
        body, headers = multipart(*parts)
        response = await client.post(
            "/api/storage/files", content=chunked(body), headers={**acme, **headers}
        )
        assert_error(response, 413, "65536")
        assert "form fields" in response.json()["error"]["message"]
    too_long, headers = multipart(("category", None, None, b"d" * 4097), file)
    response = await client.post(
        "/api/storage/files", content=too_long, headers={**acme, **headers}
    )
    assert_error(response, 422, "category is too long")
    await assert_nothing_stored(client, acme, settings)


# The tables of bad input below run on one app each, a subtest a case.
async def test_content_type_outside_the_list_is_415(
    client: AsyncClient, company_keys: Keys, settings: Settings, subtests: pytest.Subtests
) -> None:
    for content_type in ["text/html", "application/x-msdownload", "image/svg+xml"]:
        with subtests.test(content_type):
            response = await upload(
                client, company_keys["acme"], b"<script>", content_type=content_type
            )
            assert_error(response, 415, "contentType")
            assert files_on_disk(settings) == []


async def test_allowed_content_types_are_configurable(settings_factory: Any) -> None:
    from asgi_lifespan import LifespanManager
    from httpx import ASGITransport

    from tenantry.app import create_app
    from tests.conftest import ADMIN as admin

    app = create_app(settings_factory(storage_allowed_content_types="image/*, text/plain"))
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client,
    ):
        params = {"companyId": "acme"}
        ok = await upload(client, admin, b"gif", content_type="image/gif", params=params)
        assert ok.status_code == 201
        text = await upload(
            client, admin, b"t", content_type="text/plain; charset=utf-8", params=params
        )
        assert text.status_code == 201
        assert text.json()["contentType"] == "text/plain; charset=utf-8"
        pdf = await upload(client, admin, b"%PDF", content_type="application/pdf", params=params)
        assert_error(pdf, 415)


BAD_CATEGORIES = [
    "",
    "../etc",
    "a/b",
    "with space",
    "x" * 65,
    "-leading",
    "ümlaut",
    "a\\b",
    "..",
    "%2e%2e",
]


async def test_bad_category_is_422(
    client: AsyncClient, company_keys: Keys, settings: Settings, subtests: pytest.Subtests
) -> None:
    for category in BAD_CATEGORIES:
        with subtests.test(category=category):
            response = await upload(client, company_keys["acme"], category=category)
            assert_error(response, 422, "category")
            assert files_on_disk(settings) == []


async def test_bad_filename_is_422(
    client: AsyncClient, company_keys: Keys, settings: Settings, subtests: pytest.Subtests
) -> None:
    for filename in [
        b"../../etc/passwd",
        b"/etc/passwd",
        b"..",
        b".",
        b"   ",
        b"a\x00b.pdf",
        b"a\x07b.pdf",
        b"x" * 256 + b".pdf",
        b"\xff\xfe.pdf",
    ]:
        with subtests.test(filename=filename):
            body, headers = multipart(
                ("category", None, None, b"documents"),
                ("file", filename, "application/pdf", b"%PDF"),
            )
            response = await client.post(
                "/api/storage/files", content=body, headers={**company_keys["acme"], **headers}
            )
            assert_error(response, 422, "filename")
            assert files_on_disk(settings) == []


async def test_upload_form_problems_are_422(client: AsyncClient, company_keys: Keys) -> None:
    acme = company_keys["acme"]
    no_file = await client.post("/api/storage/files", data={"category": "x"}, headers=acme)
    assert_error(no_file, 422, "file")
    no_category = await client.post(
        "/api/storage/files", files={"file": ("a.pdf", b"x", "application/pdf")}, headers=acme
    )
    assert_error(no_category, 422, "category")
    json_body = await client.post("/api/storage/files", json={"category": "x"}, headers=acme)
    assert_error(json_body, 422, "multipart")
    bad_flag = await client.post(
        "/api/storage/files",
        data={"category": "x", "isPublic": "maybe"},
        files={"file": ("a.pdf", b"x", "application/pdf")},
        headers=acme,
    )
    assert_error(bad_flag, 422, "isPublic")
    broken, headers = multipart(("category", None, None, b"x"))
    truncated = await client.post(
        "/api/storage/files", content=broken[:-10], headers={**acme, **headers}
    )
    assert truncated.status_code in (201, 422)  # never a 500
    assert truncated.status_code == 422


async def test_expires_in_out_of_range_is_422(
    client: AsyncClient, company_keys: Keys, subtests: pytest.Subtests
) -> None:
    key = (await upload(client, company_keys["acme"])).json()["key"]
    for expires_in in ["0", "-1", "604801", "abc", "1.5"]:
        with subtests.test(expires_in=expires_in):
            response = await client.get(
                f"/api/storage/files/{key}/signed-url",
                params={"expiresIn": expires_in},
                headers=company_keys["acme"],
            )
            assert_error(response, 422, "expiresIn")


async def test_expires_in_bounds_are_accepted(
    client: AsyncClient, company_keys: Keys, subtests: pytest.Subtests
) -> None:
    key = (await upload(client, company_keys["acme"])).json()["key"]
    for expires_in in [1, 3600, 604800]:
        with subtests.test(expires_in=expires_in):
            response = await client.get(
                f"/api/storage/files/{key}/signed-url",
                params={"expiresIn": str(expires_in)},
                headers=company_keys["acme"],
            )
            assert response.status_code == 200
            body = response.json()
            assert body["expiresIn"] == expires_in
            expires = int(dict(parse_qsl(urlsplit(body["url"]).query))["expires"])
            assert abs(expires - (time.time() + expires_in)) < 5


# --- field order (streaming) ---------------------------------------------------------


async def test_file_before_fields_is_spooled_and_stored(
    client: AsyncClient, company_keys: Keys, settings: Settings
) -> None:
    data = os.urandom(40_000)
    body, headers = multipart(
        ("file", b"late.pdf", "application/pdf", data),
        ("category", None, None, b"documents"),
        ("isPublic", None, None, b"true"),
    )
    response = await client.post(
        "/api/storage/files", content=body, headers={**company_keys["acme"], **headers}
    )
    assert response.status_code == 201, response.text
    assert response.json()["isPublic"] is True
    assert response.json()["checksum"] == hashlib.sha256(data).hexdigest()
    assert files_on_disk(settings) == [response.json()["key"]]


async def test_field_after_a_streaming_file_is_refused_and_nothing_kept(
    client: AsyncClient, company_keys: Keys, settings: Settings
) -> None:
    body, headers = multipart(
        ("category", None, None, b"documents"),
        ("file", b"a.pdf", "application/pdf", b"%PDF streaming"),
        ("isPublic", None, None, b"true"),
    )
    response = await client.post(
        "/api/storage/files", content=body, headers={**company_keys["acme"], **headers}
    )
    assert_error(response, 422, "before file")
    assert files_on_disk(settings) == []


# --- isolation between companies ---------------------------------------------------


async def test_a_company_key_cannot_touch_another_companys_file(
    client: AsyncClient, company_keys: Keys
) -> None:
    key = (await upload(client, company_keys["acme"], b"acme only")).json()["key"]
    globex = company_keys["globex"]
    attempts = [
        await client.get(f"/api/storage/files/{key}/signed-url", headers=globex),
        await client.get(f"/api/storage/files/{key}/content", headers=globex),
        await client.get(f"/api/storage/files/{key}", headers=globex),
        await client.delete(f"/api/storage/files/{key}", headers=globex),
        await client.get("/api/storage/files", params={"companyId": "acme"}, headers=globex),
        await upload(client, globex, params={"companyId": "acme"}),
    ]
    for response in attempts:
        assert response.status_code in (403, 404), response.text
        assert b"acme only" not in response.content
    own = await client.get("/api/storage/files", headers=globex)
    assert own.json()["files"] == []
    still = await client.get(f"/api/storage/files/{key}/content", headers=company_keys["acme"])
    assert still.content == b"acme only"
    # The admin reaches any company's file.
    assert (
        await client.get(f"/api/storage/files/{key}/signed-url", headers=ADMIN)
    ).status_code == 200
    assert (await client.delete(f"/api/storage/files/{key}", headers=ADMIN)).status_code == 204
    assert (
        await client.get(f"/api/storage/files/{key}", headers=company_keys["acme"])
    ).status_code == 404


async def test_file_routes_need_a_key(client: AsyncClient, company_keys: Keys) -> None:
    key = (await upload(client, company_keys["acme"])).json()["key"]
    for response in (
        await client.get("/api/storage/files"),
        await client.get(f"/api/storage/files/{key}/signed-url"),
        await client.delete(f"/api/storage/files/{key}"),
        await client.post("/api/storage/files", data={"category": "x"}),
    ):
        assert_error(response, 401)


# --- path traversal ------------------------------------------------------------------

TRAVERSALS = [
    "../../etc/passwd",
    "companies/acme/../../../etc/passwd",
    "companies/acme/documents/../../globex/documents/x",
    "%2e%2e/%2e%2e/etc/passwd",
    "%252e%252e%252fetc%252fpasswd",
    "companies%2Facme%2F..%2F..%2Fsecret.txt",
    "/etc/passwd",
    "//etc/passwd",
    "companies/acme/documents/0123456789abcdef0123456789abcdef-x%00.pdf",
    "companies/acme/documents/0123456789abcdef0123456789abcdef-..",
    "companies\\acme\\documents\\x",
    ".incoming/upload-x",
]


async def test_path_traversal_is_impossible(
    app: Any, company_keys: Keys, settings: Settings, subtests: pytest.Subtests
) -> None:
    """Sent raw (httpx would drop the dot segments first): every key reaches the key
    validator, which names the expected form; signed downloads fail their signature."""
    secret = settings.upload_dir.parent / "secret.txt"
    secret.write_text("TOP SECRET")
    (settings.upload_dir / "companies").mkdir(parents=True, exist_ok=True)
    acme = company_keys["acme"]
    signed = "expires=9999999999&signature=x"
    for key in TRAVERSALS:  # one app, a subtest a key
        with subtests.test(key):
            validated = [
                await raw_request(app, "GET", f"/api/storage/files/{key}/signed-url", acme),
                await raw_request(app, "GET", f"/api/storage/files/{key}/content", acme),
                await raw_request(app, "DELETE", f"/api/storage/files/{key}", acme),
                await raw_request(app, "GET", f"/api/storage/files/{key}/content", ADMIN),
                await raw_request(app, "GET", f"/public/{key}"),
            ]
            for response in validated:
                assert response.status_code == 422, (key, response.status_code)
                assert b"is not a storage key" in response.content
            download = await raw_request(app, "GET", f"/files/{key}", query=signed)
            assert download.status_code == 403
            assert all(b"TOP SECRET" not in r.content for r in [*validated, download])
            assert secret.read_text() == "TOP SECRET"


def test_local_backend_refuses_paths_outside_its_root(tmp_path: Path) -> None:
    from tenantry.errors import InvalidInput
    from tenantry.storage.backends import LocalBackend
    from tenantry.storage.signing import UrlSigner

    backend = LocalBackend(tmp_path / "root", UrlSigner("s"))
    for key in (
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a\\b",
        "a\x00b",
        ".incoming/x",
    ):
        with pytest.raises(InvalidInput):
            backend.path(key)
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(InvalidInput):
        backend.path("link/file")  # a symlink cannot lead out of the root either
    assert backend.path("companies/a/b/c") == (tmp_path / "root/companies/a/b/c").resolve()


# --- local signed and public URLs ----------------------------------------------------


async def test_local_signed_urls_reject_tampering_expiry_and_reuse(
    client: AsyncClient, company_keys: Keys
) -> None:
    acme = company_keys["acme"]
    first = (await upload(client, acme, b"first file")).json()["key"]
    second = (await upload(client, acme, b"second file")).json()["key"]
    signed = await client.get(f"/api/storage/files/{first}/signed-url", headers=acme)
    url = signed.json()["url"]
    query = dict(parse_qsl(urlsplit(url).query))
    assert (await client.get(url)).content == b"first file"

    forged = [
        (f"/files/{quote(first)}", {**query, "signature": query["signature"][:-1] + "x"}),
        (f"/files/{quote(first)}", {**query, "expires": str(int(query["expires"]) + 60)}),
        (f"/files/{quote(second)}", query),  # a signature reused for another key
        (f"/files/{quote(first)}", {"expires": query["expires"]}),
        (f"/files/{quote(first)}", {}),
        (f"/files/{quote(first)}", {**query, "expires": "-5"}),
        (f"/files/{quote(first)}", {**query, "expires": "9" * 40}),
        (f"/files/{quote(first)}", {**query, "signature": "A" * 5000}),
    ]
    for path, params in forged:
        response = await client.get(path, params=params)
        assert_error(response, 403)
        assert b"file" not in response.content.replace(b"signed URL", b"")

    short = await client.get(
        f"/api/storage/files/{first}/signed-url", params={"expiresIn": "1"}, headers=acme
    )
    import asyncio

    await asyncio.sleep(2.1)
    expired = await client.get(short.json()["url"])
    assert_error(expired, 403, "expired")


async def test_public_local_files_are_served_and_private_ones_are_not(
    client: AsyncClient, company_keys: Keys
) -> None:
    acme = company_keys["acme"]
    public = (await upload(client, acme, b"logo", content_type="image/png", is_public=True)).json()
    private = (await upload(client, acme, b"payroll")).json()
    assert public["url"] == f"/public/{quote(public['key'])}"
    response = await client.get(public["url"])
    assert response.status_code == 200
    assert response.content == b"logo"
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-security-policy"] == "sandbox"
    hidden = await client.get(f"/public/{private['key']}")
    assert_error(hidden, 404)


async def test_cdn_urls_only_for_public_files(settings_factory: Any) -> None:
    from asgi_lifespan import LifespanManager
    from httpx import ASGITransport

    from tenantry.app import create_app

    app = create_app(settings_factory(cdn_base_url="https://cdn.example.test/"))
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client,
    ):
        params = {"companyId": "acme"}
        public = (await upload(client, ADMIN, is_public=True, params=params)).json()
        private = (await upload(client, ADMIN, params=params)).json()
    assert public["cdnUrl"] == f"https://cdn.example.test/{quote(public['key'])}"
    assert public["url"] == public["cdnUrl"]
    assert private["cdnUrl"] is None
    assert "cdn.example.test" not in private["url"]
    assert "signature=" in private["url"]


async def test_unicode_filename_round_trips(client: AsyncClient, company_keys: Keys) -> None:
    response = await upload(
        client, company_keys["acme"], b"cv", filename="Résumé 2024 \u2013 José.pdf"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["filename"] == "Résumé 2024 \u2013 José.pdf"
    assert body["key"].endswith("-Résumé-2024-José.pdf")
    download = await client.get(
        f"/api/storage/files/{body['key']}/content", headers=company_keys["acme"]
    )
    assert download.content == b"cv"
    assert quote("Résumé") in download.headers["content-disposition"]
