"""Removing temporary files once they are old (job exports, half-written uploads)."""

from __future__ import annotations

import time
from pathlib import Path


def remove_expired_files(directory: Path, max_age_seconds: float) -> int:
    """Delete regular files under `directory` not modified for `max_age_seconds`."""
    if not directory.is_dir():
        return 0
    cutoff = time.time() - max_age_seconds
    removed = 0
    for path in directory.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime <= cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # removed meanwhile by someone else: fine
            continue
    return removed
