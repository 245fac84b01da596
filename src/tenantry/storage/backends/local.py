"""Files on local disk, served by the app behind signed URLs.

The write path is atomic: a file is written to `.incoming/` and renamed into
place, so no reader ever sees a partial file under its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

from tenantry.errors import InvalidInput, NotFound
from tenantry.storage.backends.base import READ_CHUNK, Capabilities
from tenantry.storage.signing import UrlSigner
from tenantry.tempfiles import remove_expired_files


class LocalBackend:
    """Files under `root`, served by the app (`/files/…` signed, `/public/…`)."""

    name = "local"
    capabilities = Capabilities(presigned_post=False, object_acl=False, public_urls=True)

    def __init__(self, root: Path, signer: UrlSigner, base_url: str | None = None) -> None:
        self.root = root.resolve()
        self._incoming = self.root / ".incoming"
        self._signer = signer
        self._base_url = (base_url or "").rstrip("/")

    def path(self, key: str) -> Path:
        """The file for `key`, refusing any key that could leave `root`."""
        parts = key.split("/")
        if (
            key.startswith("/")
            or "\\" in key
            or "\x00" in key
            or any(part in ("", ".", "..") for part in parts)
            or parts[0] == self._incoming.name
        ):
            raise InvalidInput("key is not a valid storage path", details={"field": "key"})
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidInput("key is not a valid storage path", details={"field": "key"})
        return path

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        target = self.path(key)
        await asyncio.to_thread(self._incoming.mkdir, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self._incoming, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as file:
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
                await asyncio.to_thread(_flush_and_sync, file)
            await asyncio.to_thread(_move_into_place, Path(temporary), target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)  # synchronous: must run even when the task is cancelled
            raise

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no stored object {key!r}") from None
        return _read_chunks(file)

    async def size(self, key: str) -> int | None:
        try:
            stat = await asyncio.to_thread(self.path(key).stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return stat.st_size

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def signed_url(self, key: str, expires_in: int) -> str:
        self.path(key)
        expires = int(time.time()) + expires_in
        query = urlencode({"expires": expires, "signature": self._signer.signature(key, expires)})
        return f"{self._base_url}/files/{quote(key)}?{query}"

    def public_url(self, key: str) -> str:
        return f"{self._base_url}/public/{quote(key)}"

    async def check(self) -> dict[str, Any]:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise PermissionError(f"{self.root} is not writable")
        return {"path": str(self.root)}

    async def remove_incomplete(self, older_than_seconds: float) -> int:
        # A file being written has a fresh mtime; one left by a crash stops ageing it.
        return await asyncio.to_thread(remove_expired_files, self._incoming, older_than_seconds)

    async def close(self) -> None:
        return None


def _flush_and_sync(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())  # the rename below must never publish bytes still in flight


def _move_into_place(temporary: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temporary, target)


async def _read_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    with file:
        while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
            yield chunk
