"""Liveness, readiness and per-capability health checks.

Each capability registers an async check; `/ready` runs them all concurrently,
each under a deadline, and answers 503 when any is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

HealthCheck = Callable[[], Awaitable[dict[str, Any] | None]]


class HealthChecks:
    def __init__(self, timeout_seconds: float = 2.0) -> None:
        self.timeout = timeout_seconds
        self._checks: dict[str, HealthCheck] = {}

    def register(self, name: str, check: HealthCheck) -> None:
        self._checks[name] = check

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def run(self, name: str) -> dict[str, Any]:
        """One check's status (`up` or `down`), latency, and what it reported."""
        started = time.perf_counter()
        try:
            details = await asyncio.wait_for(self._checks[name](), self.timeout)
        except TimeoutError:
            result: dict[str, Any] = {"status": "down", "error": f"no answer in {self.timeout}s"}
        except Exception as exc:
            result = {"status": "down", "error": f"{type(exc).__name__}: {exc}"}
        else:
            result = {"status": "up", **(details or {})}
        result["latencyMs"] = round((time.perf_counter() - started) * 1000, 2)
        return result

    async def run_all(self) -> tuple[bool, dict[str, Any]]:
        results = await asyncio.gather(*(self.run(name) for name in self._checks))
        checks = dict(zip(self._checks, results, strict=True))
        return all(r["status"] == "up" for r in results), checks
