"""Durations as people type them on the dashboard: `30m`, `1h`, `1h30m`, `2d` (s, m, h, d)."""

from __future__ import annotations

import re

UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d{1,9}[dhms])+")
_PART = re.compile(r"(\d{1,9})([dhms])")


def parse_duration(text: str) -> int:
    """Seconds of `1h30m` (spaces allowed between parts); ValueError saying what is wanted."""
    compact = "".join(text.split()).lower()
    if not _DURATION.fullmatch(compact):
        raise ValueError(f"{text.strip()[:40]!r} is not a duration like 30m, 1h, 1h30m or 2d")
    return sum(int(number) * UNITS[unit] for number, unit in _PART.findall(compact))


def format_duration(seconds: int | float | None) -> str:
    """`5400` as `1h30m` (what `parse_duration` reads back); `0` as `0s`."""
    left = int(seconds or 0)
    if left <= 0:
        return "0s"
    parts = []
    for unit, size in UNITS.items():
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)
