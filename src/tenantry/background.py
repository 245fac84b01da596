"""Work that runs beside the requests: a step every N seconds, and stopping it in time.

Every run-forever loop of Tenantry (flag refresh, query-metrics flush, outbox relay,
dashboard sampling, start-up retries) is one of these, so each shares the same two
promises: a failing step is logged and skipped, never the end of the loop; and
stopping is bounded, so one step stuck in a dependency cannot hang a shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger("tenantry")

Step = Callable[[], Awaitable[Any]]


async def every(
    seconds: float, step: Step, *, name: str, now: bool = False, quiet: bool = False
) -> None:
    """Run `step` every `seconds` (first at once if `now`, else after one interval)."""
    level = logging.DEBUG if quiet else logging.WARNING
    if not now:
        await asyncio.sleep(seconds)
    while True:
        try:
            await step()
        except Exception as exc:  # one failed round; the next may well succeed
            log.log(level, "%s failed: %s: %s", name, type(exc).__name__, exc)
        await asyncio.sleep(seconds)


async def until_done(step: Step, *, name: str, pause: float = 5.0) -> None:
    """Run `step` until it succeeds: a dependency down at start-up is waited out."""
    while True:
        try:
            await step()
            return
        except Exception as exc:
            log.warning("%s not ready (%s); retrying in %.0f s", name, exc, pause)
            await asyncio.sleep(pause)


class Background:
    """Tasks started together and stopped together, within a bound."""

    def __init__(self, stop_within: float = 1.0) -> None:
        self.stop_within = stop_within
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=name)
        self._tasks.append(task)
        return task

    async def stop(self) -> None:
        """Cancel every task; those still busy after `stop_within` seconds are left."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=self.stop_within)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("%s had stopped: %s", task.get_name(), task.exception())
        for task in pending:
            log.warning("%s still stopping after %.0f s; left", task.get_name(), self.stop_within)
