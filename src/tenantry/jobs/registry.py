"""Job handlers: registered with a decorator, run with a `JobContext`.

    from tenantry.jobs import JobContext, job_handler

    @job_handler("ai-processing")
    async def summarise(job: JobContext) -> dict:
        await job.progress(10)
        await job.log("calling the model")
        ...
        return {"summary": text}

A handler is found by queue and job name, falling back to the queue's `"*"`
handler. Registering again for the same queue and name replaces the earlier one,
so an application overrides Tenantry's example handlers simply by registering.

Jobs are delivered at least once: a worker killed mid-job leaves the job to run
again. Handlers must therefore be idempotent (Tenantry's own are: a webhook carries
a delivery id, an export is written to a key derived from the job id, and so on).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenantry.jobs.backends import ActiveJob, PermanentJobError
from tenantry.settings import Settings

if TYPE_CHECKING:
    from tenantry.container import Services

Handler = Callable[["JobContext"], Awaitable[Any]]


@dataclass(slots=True)
class JobContext:
    """What a handler receives: the job, its company, and the app's services."""

    queue: str
    job: ActiveJob
    company_id: str
    settings: Settings
    services: Services | None = None

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def data(self) -> dict[str, Any]:
        return self.job.data

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, ..."""
        return self.job.attempts_made + 1

    async def progress(self, value: int | dict[str, Any]) -> None:
        """Report progress: a percentage, or any JSON object."""
        await self.job.update_progress(value)

    async def log(self, line: str) -> None:
        """A log line kept with the job (shown by GET /api/queues/{queue}/jobs/{id})."""
        await self.job.log(line)

    def require_services(self) -> Services:
        if self.services is None:
            raise PermanentJobError(f"the {self.queue} handler needs the app's services")
        return self.services


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}

    def handler(self, queue: str, name: str = "*") -> Callable[[Handler], Handler]:
        """Decorator: run the function for jobs named `name` on `queue` ("*": any name)."""

        def register(function: Handler) -> Handler:
            self._handlers[(queue, name)] = function
            return function

        return register

    def find(self, queue: str, name: str) -> Handler | None:
        return self._handlers.get((queue, name)) or self._handlers.get((queue, "*"))

    def queues(self) -> set[str]:
        return {queue for queue, _ in self._handlers}


# The registry the app and `tenantry worker` use: Tenantry's handlers register here
# (tenantry.jobs.handlers), and so do an application's.
registry = HandlerRegistry()
job_handler = registry.handler
