"""Figures from the fault-injection tests, for docs/reliability.md.

Each scenario records what it sent and saw. The figures are printed, and with
TENANTRY_UPDATE_RELIABILITY=1 merged into docs/reliability.json, from which
docs/reliability.md quotes them.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "reliability.json"


@dataclass
class Tally:
    """Requests of one phase: statuses, latencies, and what the errors said."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    retry_after_missing: int = 0
    codes: list[str | None] = field(default_factory=list)  # each answer's error code, in order

    def send(self, client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        response = client.request(method, url, **kwargs)
        self.latencies.append(time.perf_counter() - started)
        self.statuses[response.status_code] += 1
        self.codes.append(_error_code(response))
        if response.status_code == 503 and "retry-after" not in response.headers:
            self.retry_after_missing += 1
        return response

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies) or [0.0]
        return {
            "requests": self.sent,
            "byStatus": {str(k): v for k, v in sorted(self.statuses.items())},
            "medianMs": round(statistics.median(ordered) * 1000, 1),
            "maxMs": round(ordered[-1] * 1000, 1),
        }


def record(scenario: str, figures: dict[str, Any]) -> None:
    print(f"RELIABILITY {scenario}: {json.dumps(figures)}")
    if os.environ.get("TENANTRY_UPDATE_RELIABILITY") != "1":
        return
    existing = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    existing[scenario] = figures
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def _error_code(response: httpx.Response) -> str | None:
    if response.is_success or "json" not in response.headers.get("content-type", ""):
        return None
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None
