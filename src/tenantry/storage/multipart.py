"""Streaming multipart/form-data uploads: the file part flows to the backend as it arrives.

Starlette's `request.form()` spools a whole file to a temporary file before the
route sees it, which doubles the disk work of a large upload and only reports a
size limit after the fact. Here the body is parsed incrementally (python-multipart,
the parser Starlette itself uses) and the file's chunks are handed straight to
`StorageService.upload`.

Every part is counted (MAX_PARTS), every part's headers and every text field are
bounded, and every byte of every part counts against MAX_UPLOAD_BYTES, so a body
of repeated fields costs no more than one file of the same size.

The key needs the category, so fields must be known before the file is stored:
- when `category` (and `isPublic`) come before the `file` part — as httpx, requests
  and browsers' FormData send them when appended first — the file is streamed directly;
- when the file comes first, it is spooled to a temporary file (bounded memory)
  until the remaining fields have been read.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from tenantry.errors import InvalidInput, PayloadTooLarge, TenantryError
from tenantry.storage.service import StorageService, StoredFile

MAX_FIELD_BYTES = 4096  # one text field's value
MAX_PART_HEADER_BYTES = 4096  # one part's headers, all together
MAX_PARTS = 16  # every part, the file included, whatever its name
SPOOL_IN_MEMORY = 1024 * 1024
# What a body may add around its parts' data: their headers and boundary lines.
FORM_OVERHEAD = MAX_PARTS * (MAX_PART_HEADER_BYTES + 128)
_FILENAME_STAR = re.compile(rb"filename\*=(?:UTF-8|utf-8)''([^;\s]+)")
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


@dataclass(slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None


class _Parser:
    """The request body as events: ("part", Part), ("data", bytes), ("end", None)."""

    def __init__(self, request: Request, boundary: bytes, max_bytes: int) -> None:
        self._request = request
        self._max_bytes = max_bytes
        self._pending: list[tuple[str, Any]] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._field = b""
        self._value = b""
        self._parts = 0
        self._data_bytes = 0
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add("_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda d, s, e: self._data(bytes(d[s:e])),
            "on_part_end": lambda: self._pending.append(("end", None)),
        }
        self._parser = MultipartParser(boundary, callbacks)

    def _add(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)
        self._header_bytes += len(data)
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise InvalidInput(
                f"a part's headers are longer than {MAX_PART_HEADER_BYTES} bytes",
                details={"field": "body", "rule": "max_part_header_bytes"},
            )

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidInput(
                f"the upload has more than {MAX_PARTS} parts (category, isPublic, one file)",
                details={"field": "body", "rule": "max_parts", "maxParts": MAX_PARTS},
            )
        self._headers = []
        self._header_bytes = 0

    def _data(self, data: bytes) -> None:
        self._data_bytes += len(data)
        if self._data_bytes > self._max_bytes:  # text fields count like the file's bytes
            raise PayloadTooLarge(
                f"the upload is larger than the limit of {self._max_bytes} bytes"
                " (the file and the form fields together)",
                details={"field": "body", "maxBytes": self._max_bytes},
            )
        self._pending.append(("data", data))

    def _header_end(self) -> None:
        self._headers.append((self._field.lower(), self._value))
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        headers = dict(self._headers)
        disposition, options = parse_options_header(headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise InvalidInput("each part needs Content-Disposition: form-data; name=…")
        filename = _filename(headers.get(b"content-disposition", b""), options)
        content_type = headers.get(b"content-type")
        self._pending.append(
            (
                "part",
                Part(
                    _text(options[b"name"], "name"),
                    filename,
                    _text(content_type, "contentType") if content_type is not None else None,
                ),
            )
        )

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        try:
            async for data in self._request.stream():
                self._parser.write(data)
                for event in self._pending:
                    yield event
                self._pending.clear()
            self._parser.finalize()
        except TenantryError:
            raise
        except Exception as exc:  # python-multipart's parse errors
            raise InvalidInput(
                f"the multipart body is malformed: {exc}", details={"field": "body"}
            ) from None
        for event in self._pending:
            yield event


def _text(value: bytes, field: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise InvalidInput(f"{field} is not valid UTF-8", details={"field": field}) from None


def _filename(disposition: bytes, options: dict[bytes, bytes]) -> str | None:
    encoded = _FILENAME_STAR.search(disposition)  # RFC 5987 form, which the parser skips
    if encoded:
        try:
            return unquote(encoded[1].decode("ascii"), errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise InvalidInput(
                "filename is not valid UTF-8", details={"field": "filename"}
            ) from None
    if b"filename" in options:
        return _text(options[b"filename"], "filename")
    return None


class UploadForm:
    """Reads fields and the one `file` part of an upload, streaming the file."""

    def __init__(self, request: Request, max_bytes: int) -> None:
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise InvalidInput(
                "the upload must be multipart/form-data with a 'file' part",
                details={"field": "body", "rule": "multipart"},
            )
        self._events = _Parser(request, boundary, max_bytes).events()
        self.fields: dict[str, str] = {}

    async def _next(self) -> tuple[str, Any] | None:
        try:
            return await anext(self._events)
        except StopAsyncIteration:
            return None

    async def next_part(self) -> Part | None:
        while (event := await self._next()) is not None:
            if event[0] == "part":
                return event[1]  # type: ignore[no-any-return]
        return None

    async def read_field(self, part: Part) -> None:
        value = b""
        while (event := await self._next()) is not None and event[0] == "data":
            value += event[1]
            if len(value) > MAX_FIELD_BYTES:
                raise InvalidInput(f"{part.name} is too long", details={"field": part.name})
        self.fields[part.name] = _text(value, part.name)

    async def file_chunks(self, *, then_end: bool) -> AsyncIterator[bytes]:
        """The current file part's bytes; with `then_end`, nothing may follow the file."""
        while (event := await self._next()) is not None and event[0] == "data":
            yield event[1]
        if then_end and await self.next_part() is not None:
            raise InvalidInput(
                "send category and isPublic before file: fields after the file cannot be "
                "applied to a file that is already streaming",
                details={"field": "body", "rule": "field-order"},
            )

    def is_public(self) -> bool:
        value = self.fields.get("isPublic", "").strip().lower()
        if value not in _TRUE | _FALSE:
            raise InvalidInput("isPublic must be true or false", details={"field": "isPublic"})
        return value in _TRUE


async def receive_upload(request: Request, storage: StorageService, company_id: str) -> StoredFile:
    """Parse a multipart upload and store its file for `company_id`, streaming it."""
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit():
        storage.check_size(max(0, int(length) - FORM_OVERHEAD))
    form = UploadForm(request, storage.max_upload_bytes)
    stored: StoredFile | None = None
    while (part := await form.next_part()) is not None:
        if part.filename is None:
            await form.read_field(part)
            continue
        if part.name != "file" or stored is not None:
            raise InvalidInput(
                "send exactly one file, in the 'file' field", details={"field": "file"}
            )
        arguments = {
            "company_id": company_id,
            "filename": part.filename,
            "content_type": part.content_type,
        }
        if "category" in form.fields:
            return await storage.upload(
                form.file_chunks(then_end=True),
                category=form.fields["category"],
                is_public=form.is_public(),
                **arguments,  # type: ignore[arg-type]
            )
        stored = await _spool_then_upload(form, storage, arguments)
    if stored is None:
        raise InvalidInput("the upload has no 'file' part", details={"field": "file"})
    return stored


async def _spool_then_upload(
    form: UploadForm, storage: StorageService, arguments: dict[str, Any]
) -> StoredFile:
    """The file came before the fields: keep it aside (disk past 1 MB) until they arrive."""
    storage.check_content_type(arguments["content_type"])  # refuse early, before spooling
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        size = 0
        async for chunk in form.file_chunks(then_end=False):
            size += len(chunk)
            storage.check_size(size)
            spool.write(chunk)
        while (part := await form.next_part()) is not None:
            if part.filename is not None:
                raise InvalidInput("send exactly one file", details={"field": "file"})
            await form.read_field(part)
        if "category" not in form.fields:
            raise InvalidInput("category is required", details={"field": "category"})
        spool.seek(0)
        return await storage.upload(
            spool,
            category=form.fields["category"],
            is_public=form.is_public(),
            **arguments,
        )
