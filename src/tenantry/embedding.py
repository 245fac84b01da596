"""Tenantry inside an application of its own: one `Tenantry` object builds the services
in the application's lifespan, tells the company of a request, mounts the management
API and the dashboard, and runs the workers with the application's job handlers.

```python
tenantry = Tenantry(load_settings(), company=lambda request: request.state.user.company_id)

@asynccontextmanager
async def lifespan(app: FastAPI):
    async with tenantry.run():
        yield

app = FastAPI(lifespan=lifespan)
tenantry.mount(app, prefix="/ops", admin=is_admin)
```

The embedding is a thin edge over what `tenantry serve` runs: the same wiring
(`tenantry.wiring.build_services`), the same management app
(`tenantry.app.management_app`), the same dependencies (`tenantry.resilience.
dependencies`) given this object's services and resolver instead of the app's state
and the caller's Tenantry key. docs/embedding.md is the guide.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from inspect import isawaitable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantry import worker
from tenantry.app import close_within, management_app
from tenantry.auth import COMPANY_ID_PATTERN, Principal
from tenantry.container import Services
from tenantry.context import current_company
from tenantry.deps import APP_ADMIN, AUTHENTICATED
from tenantry.errors import TenantryError, Unauthorized
from tenantry.http_errors import error_response
from tenantry.jobs.queues import QUEUE_NAMES
from tenantry.jobs.registry import Handler, HandlerRegistry
from tenantry.metrics import Metrics
from tenantry.resilience.breaker import _MISSING, Breaker
from tenantry.resilience.dependencies import (
    CircuitFallback,
    TargetSpec,
    circuit_dependency,
    fallback_response,
    flag_decider,
    target_resolver,
)
from tenantry.settings import Settings, load_settings
from tenantry.wiring import build_services, tracing

log = logging.getLogger("tenantry")

CompanyResolver = Callable[[Request], str | None]
AdminCheck = Callable[[Request], bool | Awaitable[bool]]
ContextSpec = Callable[[Request], Mapping[str, str] | Awaitable[Mapping[str, str]]] | None
# Where a request's company, once resolved (and once admitted), is kept for the rest of it.
COMPANY = "tenantry.company"
ADMITTED = "tenantry.company_admitted"


class NotRunning(RuntimeError):
    """`Tenantry.services` was read outside `Tenantry.run()`: nothing is built yet (or
    any more)."""


class InvalidCompanyId(TenantryError):
    """The application's company resolver answered an id Tenantry cannot use.

    A 403, not a 500: the caller may not act as a company Tenantry cannot scope to (ids
    are 1-64 letters, digits, `_`, `.`, `-`, starting with a letter or a digit), and a
    resolver that reads a token's claim must not let a client turn it into server
    errors. The id is logged, not answered.
    """

    status_code, code = 403, "INVALID_COMPANY_ID"


class Tenantry:
    """Tenantry's services in an application with its own FastAPI app, users and engine.

    Build it at import time, enter `run()` in the application's lifespan, and read
    `services` while it runs. Everything Tenantry's dependencies need to know about a
    request's caller comes from the application: the company from `company`, the
    admin from `mount(..., admin=...)`.

    Args:
        settings: Tenantry's configuration (`load_settings()`); by default read from
            the environment.
        company: The application's resolver: the company id of a request (from the
            application's own session or token), or None when it has none. Called
            without I/O on every request that asks for the company.
        engine: The application's SQLAlchemy `AsyncEngine`. Tenantry's tables live in
            its database, the query monitor times its statements, and Tenantry never
            disposes of it. By default Tenantry opens its own on `DATABASE_URL`.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        company: CompanyResolver | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.engine = engine
        self._resolver = company
        self._handlers = HandlerRegistry()
        self._metrics = Metrics()
        self._tracer = tracing(self.settings)
        self._mounted: list[FastAPI] = []
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        """The running services: `.storage`, `.jobs`, `.queries`, `.resilience`,
        `.tenants` (and the rest of `Services`).

        Raises:
            NotRunning: Outside `run()`.
        """
        if self._services is None:
            raise NotRunning(
                "Tenantry is not running: read `services` inside `async with tenantry.run():`"
                " (the application's lifespan) or in a worker's job handler"
            )
        return self._services

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Services]:
        """Build and start every service (migrating first, as `tenantry serve` does,
        unless `TENANTRY_AUTO_MIGRATE=false`); on exit, stop and close them all.

        Yields:
            The running services (also `self.services` meanwhile).
        """
        async with self._running(self.settings) as services:
            yield services

    def mount(
        self, app: FastAPI, prefix: str = "/tenantry", admin: AdminCheck | None = None
    ) -> FastAPI:
        """Mount the management API and the dashboard under `prefix` of `app`.

        The dashboard is at `{prefix}/admin`, the API at `{prefix}/api/...`, health at
        `{prefix}/health` and `{prefix}/ready`. Also installs `handle_errors(app)`.

        Args:
            app: The application's FastAPI app.
            prefix: Where to mount, e.g. "/ops".
            admin: The application's admin check, `(request) -> bool`, sync or async. A
                request it approves is the admin on the API and the dashboard, which
                then asks for no key; one it refuses gets no dashboard page (403), and
                the API still takes Tenantry's keys (`Authorization: Bearer`). Omitted:
                Tenantry's admin key and company keys, as under `tenantry serve`.

        Returns:
            The mounted sub-application.
        """
        sub = management_app(self.settings, self._metrics, self._tracer)
        if admin is not None:
            sub.add_middleware(AdminCheckMiddleware, check=admin)  # outermost
        if self._services is not None:
            sub.state.services = self._services
        self._mounted.append(sub)
        app.mount(prefix.rstrip("/"), sub)
        self.handle_errors(app)
        return sub

    def handle_errors(self, app: FastAPI) -> None:
        """Answer Tenantry's errors on the application's own routes in Tenantry's shape
        (`{"error": {"code", "message", "details"}}`), and a circuit's fallback with
        `X-Circuit-Fallback: true`. The application's other errors are left alone."""
        app.add_exception_handler(TenantryError, _tenantry_error)
        app.add_exception_handler(CircuitFallback, fallback_response)

    def company(self, request: Request) -> str:
        """The company of `request`, as the application's resolver says.

        Also sets `tenantry.context.current_company`, so the request's statements and
        logs are counted for it.

        Raises:
            Unauthorized: The resolver answered None (a 401).
            InvalidCompanyId: The resolver answered an id Tenantry cannot use (a 403).
        """
        state = request.scope.setdefault("state", {})
        company = state.get(COMPANY)
        if not isinstance(company, str):
            company = state[COMPANY] = self._resolve(request)
        current_company.set(company)
        return company

    async def rate_limit(self, request: Request) -> str:
        """A dependency: the request's company, counted against its plan's API requests
        per minute (429 `TOO_MANY_REQUESTS` past them, with `Retry-After`), once per request.

        `app.include_router(router, dependencies=[Depends(tenantry.rate_limit)])`.

        Returns:
            The company id, as `company(request)`.
        """
        company = self.company(request)
        state = request.scope["state"]
        if not state.get(ADMITTED):
            await self.services.tenants.admit_request(company)
            state[ADMITTED] = True
        return company

    def feature_gate(
        self, key: str, target: TargetSpec = "company", context: ContextSpec = None
    ) -> Callable[[Request], Awaitable[None]]:
        """A dependency answering 403 `FEATURE_DISABLED` unless flag `key` is on.

        `@app.get("/x", dependencies=[Depends(tenantry.feature_gate("beta"))])`

        Args:
            key: The flag.
            target: What the flag buckets by: "company" (the resolver's company; 401
                without one), "user" (the X-User-Id header), None (nobody: only global
                switches and 100 % rollouts), or a function of the request.
            context: Extra evaluation-context properties, `(request) -> dict`, for flags
                with strategies.
        """
        decide = flag_decider(key, context, self._services_of, self._context_company)
        if target == "company":

            async def company_gate(request: Request) -> None:
                await decide(request, self.company(request))

            return company_gate
        resolve = target_resolver(target)

        async def gate(request: Request) -> None:
            await decide(request, resolve(request))

        return gate

    def circuit(
        self, name: str, *, fallback: Any = _MISSING, fallback_status: int = 200
    ) -> Callable[[Request], Awaitable[Breaker]]:
        """A dependency giving the route the breaker `name`. While it is open the route
        answers `fallback` (a value, or a function of no argument) with
        `fallback_status` and `X-Circuit-Fallback: true`, or without a fallback 503
        with `Retry-After`.

        `ai: Annotated[Breaker, Depends(tenantry.circuit("ai-service", fallback=[]))]`
        """
        return circuit_dependency(name, fallback, fallback_status, self._services_of)

    def job_handler(self, queue: str, name: str = "*") -> Callable[[Handler], Handler]:
        """Decorator: run the function for jobs named `name` on `queue` ("*": any name),
        in `run()` (in-process queues, in-app workers) and in `run_worker()`.

        The handler receives the `JobContext`; the application's own objects reach it as
        any function's do (a closure, a module's globals), and Tenantry's services as
        `self.services`. It replaces Tenantry's handler for the same queue and name.
        """
        return self._handlers.handler(queue, name)

    async def run_worker(self, queues: Sequence[str] | None = None) -> None:
        """Be a worker process: build the services, process `queues` (default: all)
        with the application's handlers until SIGTERM or SIGINT, let the active jobs
        finish (up to `JOB_SHUTDOWN_TIMEOUT_SECONDS`), close everything.

        `asyncio.run(tenantry.run_worker(["report"]))`. Needs Redis, as `tenantry worker`.

        Raises:
            WorkerConfigError: No Redis, or an unknown queue.
        """
        names = worker.parse_queues(",".join(queues)) if queues else list(QUEUE_NAMES)
        worker.check_settings(self.settings)
        stop = worker.stop_on_signals()
        settings = worker.worker_settings(self.settings)
        async with self._running(settings) as services:
            await worker.work(services.jobs, settings, names, stop)
        print("tenantry worker stopped", flush=True)

    # --- inside --------------------------------------------------------------------

    @asynccontextmanager
    async def _running(self, settings: Settings) -> AsyncIterator[Services]:
        if self._services is not None:
            raise RuntimeError("Tenantry is already running")
        stack = AsyncExitStack()
        try:
            services = await build_services(
                settings,
                stack,
                self._metrics,
                self._tracer,
                engine=self.engine,
                handlers=self._handlers,
            )
            self._services = services
            stack.callback(self._stopped)
            for sub in self._mounted:
                sub.state.services = services
                # The dashboard's chart sampler: a mounted app's lifespan is not run.
                await stack.enter_async_context(sub.router.lifespan_context(sub))
            yield services
        finally:
            await close_within(stack, settings.shutdown_timeout_seconds)

    def _stopped(self) -> None:
        self._services = None

    def _services_of(self, _: Request) -> Services:
        return self.services

    async def _context_company(self, request: Request) -> str | None:
        """The company for a flag's evaluation context: the resolver's, if it has one."""
        try:
            return self.company(request)
        except Unauthorized:
            return None

    def _resolve(self, request: Request) -> str:
        if self._resolver is None:
            raise RuntimeError("Tenantry(company=...) is needed to tell a request's company")
        company = self._resolver(request)
        if company is None:
            raise Unauthorized("no company: sign in first")
        if not isinstance(company, str) or not COMPANY_ID_PATTERN.fullmatch(company):
            log.error("the company resolver answered an invalid company id: %.80r", company)
            raise InvalidCompanyId("the application's company id cannot be used by Tenantry")
        return company


class AdminCheckMiddleware:
    """Asks the application's admin check once per request of the mounted app; an
    approved request is the admin (`deps.authenticate` finds its Principal), and the
    dashboard reads the answer (`APP_ADMIN`)."""

    def __init__(self, app: ASGIApp, check: AdminCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            answer = self.check(Request(scope))
            approved = bool(await answer) if isawaitable(answer) else bool(answer)
            state = scope.setdefault("state", {})
            state[APP_ADMIN] = approved
            if approved:
                state[AUTHENTICATED] = Principal(is_admin=True)
        await self.app(scope, receive, send)


async def _tenantry_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TenantryError)
    return error_response(exc)
