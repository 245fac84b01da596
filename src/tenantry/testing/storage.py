"""The storage-backend contract: what every `StorageBackend` must do, as plain async checks.

Each check takes the backend under test and a `fetch` function, which GETs a URL the
backend signed and answers `(status, body)`; it raises `ContractViolation` (an
`AssertionError`, so pytest reports it as a failure) when the backend breaks the
contract. Nothing here imports pytest or a web client (importing it loads
`tenantry.storage`, and with it obstore and SQLAlchemy, Tenantry's own dependencies).

Run every check at once::

    from tenantry.testing.storage import run_storage_contract

    async def test_my_backend_keeps_the_storage_contract(tmp_path):
        await run_storage_contract(MyBackend(tmp_path), fetch=my_fetch)

or one pytest test per check, so a failure names the check::

    import pytest
    from tenantry.testing.storage import STORAGE_CONTRACT

    @pytest.mark.parametrize("check", STORAGE_CONTRACT, ids=lambda check: check.__name__)
    async def test_storage_contract(check, tmp_path):
        await check(MyBackend(tmp_path), my_fetch)

`my_fetch` is, for a backend whose URLs a web server answers, for example::

    async def my_fetch(url: str) -> tuple[int, bytes]:
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        return response.status_code, response.content

What the checks assume:
- Keys are shaped like Tenantry's (`companies/{company}/{category}/{32 hex}-{name}`,
  the name possibly non-ASCII), all under `companies/tenantry-contract/`, each unique;
  a check deletes what it wrote.
- `remove_incomplete(0)` is called: nothing else may be uploading to the same place
  while the checks run.
- A refused URL answers 403 when its signature does not match (another key, a changed
  signature, a lengthened expiry) or it has expired, as S3 and R2 do; other malformed
  URLs may answer any 4xx.
- The expiry check waits about two seconds; the whole contract takes a few more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tenantry.errors import NotFound
from tenantry.storage.backends.base import Capabilities, StorageBackend

Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]
"""GET a URL; answer its status code and body."""

Check = Callable[[StorageBackend, Fetch], Awaitable[None]]

PREFIX = "companies/tenantry-contract/"
# Past two parts of S3's 5 MiB minimum: an upload this size is multipart there.
LARGE_UPLOAD_BYTES = 2 * 5 * 1024 * 1024 + 3 * 256 * 1024


class ContractViolation(AssertionError):
    """The backend under test broke the storage contract; the message says how."""


class SourceFailed(Exception):
    """Raised by a check's own upload stream, to see what a backend does with it."""


# --- the checks ---------------------------------------------------------------------


async def check_describes_itself(backend: StorageBackend, fetch: Fetch) -> None:
    """A non-empty `name`, `Capabilities`, and `check()` answering a dict when healthy."""
    _expect(isinstance(backend.name, str) and backend.name != "", "name is a non-empty str")
    _expect(
        isinstance(backend.capabilities, Capabilities),
        f"capabilities is a Capabilities, not {type(backend.capabilities).__name__}",
    )
    details = await backend.check()
    _expect(isinstance(details, dict), f"check() answers a dict, not {type(details).__name__}")


async def check_put_then_open_returns_the_same_bytes(backend: StorageBackend, fetch: Fetch) -> None:
    data = os.urandom(5000)
    async with _keys(backend) as new_key:
        key = new_key("report.pdf")
        await backend.put(
            key, _stream(data[:1000], data[1000:4096], data[4096:]), "application/pdf"
        )
        _expect(await _read(backend, key) == data, "open() returns the bytes put()")
        await _expect_size(backend, key, len(data))


async def check_large_streamed_put_round_trips(backend: StorageBackend, fetch: Fetch) -> None:
    """Many small chunks adding up to more than two S3 multipart parts."""
    chunk = os.urandom(256 * 1024)
    count = LARGE_UPLOAD_BYTES // len(chunk)
    async with _keys(backend) as new_key:
        key = new_key("clip.mp4")
        await backend.put(key, _stream(*[chunk] * count), "video/mp4")
        digest = hashlib.sha256()
        async for part in await backend.open(key):
            digest.update(part)
        _expect(
            digest.hexdigest() == hashlib.sha256(chunk * count).hexdigest(),
            "a large streamed upload reads back byte for byte",
        )
        await _expect_size(backend, key, len(chunk) * count)
        await _expect_no_unfinished_uploads(backend, "after a finished large upload")


async def check_a_missing_key(backend: StorageBackend, fetch: Fetch) -> None:
    """size() is None, open() raises NotFound (before any chunk), delete() is no error."""
    key = _key("never-stored.txt")
    _expect(await backend.size(key) is None, "size() of a missing key is None")
    await _expect_not_found(backend, key)
    await backend.delete(key)


async def check_delete_removes_the_object(backend: StorageBackend, fetch: Fetch) -> None:
    async with _keys(backend) as new_key:
        key = new_key("to-be-deleted.txt")
        kept = new_key("kept.txt")
        await backend.put(key, _stream(b"to be deleted"), "text/plain")
        await backend.put(kept, _stream(b"kept"), "text/plain")
        await backend.delete(key)
        _expect(await backend.size(key) is None, "size() is None once deleted")
        await _expect_not_found(backend, key)
        await backend.delete(key)  # twice: still no error
        _expect(await _read(backend, kept) == b"kept", "delete() removes only its key")


async def check_a_failed_upload_leaves_nothing(backend: StorageBackend, fetch: Fetch) -> None:
    """The source's own exception reaches the caller, and no object or partial upload stays."""
    chunk = os.urandom(1024 * 1024)

    async def breaks_midway() -> AsyncIterator[bytes]:
        for _ in range(LARGE_UPLOAD_BYTES // len(chunk)):  # past the first S3 part
            yield chunk
        raise SourceFailed("the client went away")

    key = _key("cut.mp4")
    try:
        await backend.put(key, breaks_midway(), "video/mp4")
    except Exception as exc:
        _expect(
            _caused_by(exc, SourceFailed),
            f"put() raises the source's exception, not {type(exc).__name__}: {exc}",
        )
    else:
        raise ContractViolation("put() returned although its source failed")
    _expect(await backend.size(key) is None, "a failed upload stores no object")
    await _expect_not_found(backend, key)
    await _expect_no_unfinished_uploads(backend, "after a failed upload")


async def check_signed_url_serves_the_object(backend: StorageBackend, fetch: Fetch) -> None:
    data = b"private report " * 100
    async with _keys(backend) as new_key:
        key = new_key("report.pdf")
        await backend.put(key, _stream(data), "application/pdf")
        status, body = await fetch(await backend.signed_url(key, 60))
        _expect(status == 200, f"a signed URL answers 200, not {status}")
        _expect(body == data, "a signed URL serves the object's bytes")


async def check_forged_signed_urls_are_refused(backend: StorageBackend, fetch: Fetch) -> None:
    """Any changed query parameter or key refuses the URL.

    A changed signature, a lengthened expiry or another object's key is answered 403, as
    S3 does; any other changed parameter (a malformed date, …) may be any 4xx.
    """
    secret = b"secret " + uuid.uuid4().hex.encode()
    async with _keys(backend) as new_key:
        key, other = new_key("secret.pdf"), new_key("other.pdf")
        await backend.put(key, _stream(secret), "application/pdf")
        await backend.put(other, _stream(b"other " + secret), "application/pdf")
        url = await backend.signed_url(key, 600)
        forgeries = list(_tampered(url))
        _expect(forgeries != [], f"a signed URL carries its signature in the query: {url}")
        other_key = url.replace(key.rsplit("/", 1)[1], other.rsplit("/", 1)[1])
        _expect(other_key != url, "a signed URL names its key's last segment")
        for forged, forbidden in [*forgeries, (other_key, True)]:
            status, body = await fetch(forged)
            if forbidden:
                _expect(status == 403, f"a forged URL is answered 403, not {status}: {forged}")
            else:
                _expect(400 <= status < 500, f"a forged URL is refused, not {status}: {forged}")
            _expect(secret not in body, f"a forged URL serves nothing: {forged}")
        status, _ = await fetch(url)
        _expect(status == 200, f"the genuine URL still answers 200, not {status}")


async def check_expired_signed_url_is_refused(backend: StorageBackend, fetch: Fetch) -> None:
    data = b"short-lived " + uuid.uuid4().hex.encode()  # never in an error body naming the key
    async with _keys(backend) as new_key:
        key = new_key("expiring.txt")
        await backend.put(key, _stream(data), "text/plain")
        url = await backend.signed_url(key, 1)
        await asyncio.sleep(2.2)  # whole seconds in the URL, and a little clock skew
        status, body = await fetch(url)
        _expect(status == 403, f"an expired URL is answered 403, not {status}")
        _expect(data not in body, "an expired URL serves nothing")


async def check_unicode_keys_round_trip(backend: StorageBackend, fetch: Fetch) -> None:
    async with _keys(backend) as new_key:
        key = new_key("Résumé-履歴書-final-.pdf")
        await backend.put(key, _stream(b"cv"), "application/pdf")
        _expect(await _read(backend, key) == b"cv", "a non-ASCII key round-trips")
        await _expect_size(backend, key, 2)
        status, body = await fetch(await backend.signed_url(key, 60))
        _expect((status, body) == (200, b"cv"), f"a non-ASCII key's URL serves it ({status})")


async def check_concurrent_puts_all_land(backend: StorageBackend, fetch: Fetch) -> None:
    payloads = [os.urandom(100 + index) for index in range(40)]
    async with _keys(backend) as new_key:
        keys = [new_key(f"f{index}.bin") for index in range(len(payloads))]
        await asyncio.gather(
            *(
                backend.put(key, _stream(data), "application/octet-stream")
                for key, data in zip(keys, payloads, strict=True)
            )
        )
        for key, data in zip(keys, payloads, strict=True):
            _expect(await _read(backend, key) == data, f"concurrent put() of {key} landed whole")


async def check_remove_incomplete_keeps_finished_objects(
    backend: StorageBackend, fetch: Fetch
) -> None:
    async with _keys(backend) as new_key:
        key = new_key("finished.pdf")
        await backend.put(key, _stream(b"a finished file"), "application/pdf")
        await _expect_no_unfinished_uploads(backend, "with only finished objects stored")
        _expect(await _read(backend, key) == b"a finished file", "finished objects are kept")


async def check_public_url_follows_the_capabilities(backend: StorageBackend, fetch: Fetch) -> None:
    """A URL (str) when `capabilities.public_urls`, else None."""
    key = _key("logo.png")
    url = backend.public_url(key)
    if backend.capabilities.public_urls:
        _expect(isinstance(url, str) and url != "", f"public_url() is a URL, not {url!r}")
    else:
        _expect(url is None, f"public_url() is None without public URLs, not {url!r}")


STORAGE_CONTRACT: tuple[Check, ...] = (
    check_describes_itself,
    check_put_then_open_returns_the_same_bytes,
    check_large_streamed_put_round_trips,
    check_a_missing_key,
    check_delete_removes_the_object,
    check_a_failed_upload_leaves_nothing,
    check_signed_url_serves_the_object,
    check_forged_signed_urls_are_refused,
    check_expired_signed_url_is_refused,
    check_unicode_keys_round_trip,
    check_concurrent_puts_all_land,
    check_remove_incomplete_keeps_finished_objects,
    check_public_url_follows_the_capabilities,
)
"""Every check, in a sensible order (cheap ones first)."""


async def run_storage_contract(backend: StorageBackend, fetch: Fetch) -> None:
    """Run every check against `backend`; the first violation is raised."""
    for check in STORAGE_CONTRACT:
        await check(backend, fetch)


# --- helpers ------------------------------------------------------------------------


def _expect(condition: bool, rule: str) -> None:
    # Not `assert`: the checks must hold under `python -O` too.
    if not condition:
        raise ContractViolation(rule)


def _key(name: str) -> str:
    return f"{PREFIX}checks/{uuid.uuid4().hex}-{name}"


@contextlib.asynccontextmanager
async def _keys(backend: StorageBackend) -> AsyncIterator[Callable[[str], str]]:
    """Fresh keys for one check, deleted afterwards so checks can share a backend."""
    made: list[str] = []

    def new_key(name: str) -> str:
        made.append(_key(name))
        return made[-1]

    try:
        yield new_key
    finally:
        for key in made:
            with contextlib.suppress(Exception):  # cleanup must not hide the check's failure
                await backend.delete(key)


async def _stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _read(backend: StorageBackend, key: str) -> bytes:
    return b"".join([chunk async for chunk in await backend.open(key)])


async def _expect_size(backend: StorageBackend, key: str, expected: int) -> None:
    size = await backend.size(key)
    _expect(size == expected, f"size() is the stored size {expected}, not {size}")


async def _expect_not_found(backend: StorageBackend, key: str) -> None:
    try:
        await backend.open(key)
    except NotFound:
        return
    raise ContractViolation("open() of a missing key raises NotFound when called")


async def _expect_no_unfinished_uploads(backend: StorageBackend, when: str) -> None:
    removed = await backend.remove_incomplete(0)
    _expect(removed == 0, f"no unfinished upload is left {when}, found {removed}")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _tampered(url: str) -> Iterable[tuple[str, bool]]:
    """`url` with one query value changed at a time: digits moved an hour on, else one char.

    Each with whether the change must be a 403: a lengthened expiry or a changed signature.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    for index, (name, value) in enumerate(query):
        if value.isdigit():
            changed = str(int(value) + 3600)
        else:
            changed = value[:-1] + ("A" if value[-1:] != "A" else "B")
        forged = [*query[:index], (name, changed), *query[index + 1 :]]
        forbidden = value.isdigit() or "sig" in name.lower()
        yield urlunsplit(parts._replace(query=urlencode(forged))), forbidden
