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

`JobService` runs the handlers of the `HandlerRegistry` it is given. The running
service's registry is built by the wiring: Tenantry's own handlers (tenantry.jobs.types,
each built with the services it needs), then every handler declared with `@job_handler`
by the modules in JOB_HANDLER_MODULES (`declared` below), which so take precedence.
A handler that needs the application's resources is a callable object holding them
(as Tenantry's own are), registered with `registry.register(queue, name, handler)`.

Jobs are delivered at least once: a worker killed mid-job leaves the job to run
again. Handlers must therefore be idempotent (Tenantry's own are: a webhook carries
a delivery id, an export is written to a key derived from the job id, and so on).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tenantry.jobs.backends import ActiveJob
from tenantry.settings import Settings

Handler = Callable[["JobContext"], Awaitable[Any]]


@dataclass(slots=True)
class JobContext:
    """What a handler receives: the job, its company, and the settings."""

    queue: str
    job: ActiveJob
    company_id: str
    settings: Settings

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


class HandlerRegistry:
    """Job handlers by queue and job name (`"*"`: any name of the queue)."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}

    def handler(self, queue: str, name: str = "*") -> Callable[[Handler], Handler]:
        """Decorator: run the function for jobs named `name` on `queue` ("*": any name)."""

        def register(function: Handler) -> Handler:
            self.register(queue, name, function)
            return function

        return register

    def register(self, queue: str, name: str, handler: Handler) -> None:
        self._handlers[(queue, name)] = handler

    def update(self, other: HandlerRegistry) -> None:
        """Take every handler of `other`, replacing ours for the same queue and name."""
        self._handlers.update(other._handlers)

    def find(self, queue: str, name: str) -> Handler | None:
        return self._handlers.get((queue, name)) or self._handlers.get((queue, "*"))

    def queues(self) -> set[str]:
        return {queue for queue, _ in self._handlers}


# Handlers declared by an application's modules (JOB_HANDLER_MODULES) with `@job_handler`;
# the wiring copies them into the registry it gives the job service.
declared = HandlerRegistry()
job_handler = declared.handler
