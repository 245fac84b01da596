"""Run in a subprocess by test_memory.py: stream a large upload through StorageService.

Prints one JSON line: the stored size and checksum, and the process's peak RSS.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import sys
from collections.abc import AsyncIterator

from tenantry import db as database
from tenantry.settings import load_settings
from tenantry.storage import StorageService

CHUNK = 1024 * 1024


def peak_rss_mb() -> float:
    """This process's own peak RSS. Not getrusage: Linux carries ru_maxrss over from the
    parent across fork+exec, so a child of a large pytest would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(total_mb: int) -> None:
    settings = load_settings()  # from the environment the test sets
    database.upgrade(settings.effective_database_url)
    db = database.Database(settings.effective_database_url)
    service = StorageService.from_settings(settings, db, "probe-secret")
    block = bytes(range(256)) * (CHUNK // 256)
    expected = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(total_mb):
            piece = block[index % 256 :] + block[: index % 256]  # no two chunks alike
            expected.update(piece)
            yield piece

    await service.health()  # the backend's client is built before the baseline is taken
    baseline = peak_rss_mb()
    stored = await service.upload(
        chunks(), company_id="acme", category="videos", filename="big.mp4", content_type="video/mp4"
    )
    download = await service.open(stored.key)
    read_back = hashlib.sha256()
    async for chunk in download.chunks:
        read_back.update(chunk)
    await db.dispose()
    print(
        json.dumps(
            {
                "size": stored.size,
                "checksum_ok": stored.checksum == expected.hexdigest() == read_back.hexdigest(),
                "baseline_rss_mb": baseline,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
