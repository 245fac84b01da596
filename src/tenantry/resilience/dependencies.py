"""FastAPI pieces: `feature_gate`, `circuit`, and maintenance mode.

```python
@router.get("/recommendations", dependencies=[feature_gate("ai-recommendations", target="company")])
async def recommendations(ai: Annotated[Breaker, circuit("ai-service", fallback={"items": []})]):
    return await ai.call_async(fetch_recommendations)
```
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantry.auth import Principal
from tenantry.deps import APP_ADMIN, AUTHENTICATED, get_principal, route_path
from tenantry.errors import Forbidden, error_body
from tenantry.resilience.breaker import _MISSING, Breaker, CircuitOpenError, State
from tenantry.resilience.context import EvaluationContext

MAINTENANCE_FLAG = "maintenance-mode"
USER_HEADER = "X-User-Id"
SESSION_HEADER = "X-Session-Id"
MAX_HEADER_ID = 256  # longer ids are not ids: they are left out of the context
TargetSpec = Literal["company", "user"] | Callable[[Request], str | None] | None
ContextSpec = Callable[[Request], Mapping[str, str] | Awaitable[Mapping[str, str]]] | None
# Where a dependency finds the running services, and the company of a request (an
# embedding's resolver; `_MISSING`: the company of the request's Tenantry key).
ServicesOf = Callable[[Request], Any]
CompanyOf = Callable[[Request], Awaitable[object]]


class FeatureDisabled(Forbidden):
    code = "FEATURE_DISABLED"


def _header_id(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value if value and len(value) <= MAX_HEADER_ID else None


async def request_context(
    request: Request,
    extra: ContextSpec = None,
    *,
    services: Any = None,
    company: str | object | None = _MISSING,
) -> EvaluationContext:
    """The evaluation context of a request: the authenticated company and its plan (as
    property `plan`), X-User-Id, X-Session-Id, the client's address (uvicorn applies the
    forwarded-header trust rule: FORWARDED_ALLOW_IPS), the configured environment and app
    name, and whatever `extra(request)` adds as properties.

    An embedding passes its own `services` and the `company` its resolver found;
    by default they are the app's and the company of the request's Tenantry key."""
    if services is None:
        services = request.app.state.services
    if company is _MISSING:
        principal = request.scope.get("state", {}).get(AUTHENTICATED)
        company = principal.company_id if isinstance(principal, Principal) else None
    company_id = company if isinstance(company, str) else None
    properties: dict[str, str] = {}
    if company_id is not None:
        properties["plan"] = await services.tenants.plan_of(company_id)
    if extra is not None:
        added = extra(request)
        properties.update(await added if isinstance(added, Awaitable) else added)
    settings = services.settings
    return EvaluationContext(
        user_id=_header_id(request, USER_HEADER),
        company_id=company_id,
        session_id=_header_id(request, SESSION_HEADER),
        remote_address=request.client.host if request.client else None,
        environment=settings.flags_environment,
        app_name=settings.flags_app_name,
        properties=properties,
    )


def feature_gate(key: str, target: TargetSpec = None, context: ContextSpec = None) -> Any:
    """A dependency that answers 403 FEATURE_DISABLED unless `key` is on for the caller.

    `target`: None (no id: only 100 % rollouts and global switches apply), "company"
    (the authenticated caller's company; requires a key), "user" (the X-User-Id header),
    or a function of the request returning the id. A flag with strategies decides on the
    whole `request_context` (with `context(request)`'s properties added).
    """
    decide = flag_decider(key, context, app_services)

    if target == "company":

        async def company_gate(
            request: Request, principal: Annotated[Principal, Depends(get_principal)]
        ) -> None:
            await decide(request, principal.company_id)

        return Depends(company_gate)

    resolve = target_resolver(target)

    async def gate(request: Request) -> None:
        await decide(request, resolve(request))

    return Depends(gate)


def app_services(request: Request) -> Any:
    """The services of the app serving the request (`tenantry serve`'s)."""
    return request.app.state.services


async def _key_company(request: Request) -> object:
    return _MISSING  # request_context's default: the company of the request's key


def flag_decider(
    key: str,
    context: ContextSpec,
    services_of: ServicesOf,
    company_of: CompanyOf = _key_company,
) -> Callable[[Request, str | None], Awaitable[None]]:
    """`decide(request, target_id)`: raises FeatureDisabled unless `key` is on for the
    target, on the services `services_of(request)` names (an embedding's or the app's)."""

    async def context_for(request: Request, services: Any) -> EvaluationContext | None:
        """Only a flag with strategies or parents looks at more than the target id."""
        compiled = services.resilience.flags.snapshot.flags.get(key)
        if compiled is None or (compiled.flag.simple and not compiled.flag.dependencies):
            return None
        company = await company_of(request)
        return await request_context(request, context, services=services, company=company)

    async def decide(request: Request, target_id: str | None) -> None:
        services = services_of(request)
        flags = services.resilience.flags
        evaluation = flags.evaluate(key, target_id, await context_for(request, services))
        if not evaluation.enabled:
            raise FeatureDisabled(
                f"the feature {key!r} is not enabled"
                + (f" for {target_id!r}" if target_id else ""),
                details={"feature": key, "reason": evaluation.reason.value},
            )

    return decide


def target_resolver(target: TargetSpec) -> Callable[[Request], str | None]:
    """The id a feature gate buckets by, for every target but "company"."""

    def resolve(request: Request) -> str | None:
        if target is None:
            return None
        if target == "user":
            return request.headers.get(USER_HEADER)
        if callable(target):
            return target(request)
        raise ValueError(f"unknown feature_gate target {target!r}")

    return resolve


class CircuitFallback(Exception):
    """Raised by `circuit()` when open: the app answers `value` with `status_code`."""

    def __init__(self, value: Any, status_code: int = 200) -> None:
        super().__init__("circuit open: answered with the fallback")
        self.value = value
        self.status_code = status_code


def circuit(name: str, *, fallback: Any = _MISSING, fallback_status: int = 200) -> Any:
    """A dependency giving the route its breaker; when open, the fallback or 503 + Retry-After."""
    return Depends(circuit_dependency(name, fallback, fallback_status, app_services))


def circuit_dependency(
    name: str, fallback: Any, fallback_status: int, services_of: ServicesOf
) -> Callable[[Request], Awaitable[Breaker]]:
    """`circuit`'s dependency itself, on the services `services_of(request)` names."""

    async def dependency(request: Request) -> Breaker:
        breaker: Breaker = services_of(request).resilience.breakers.get(name)
        state = breaker.state
        refused = state is State.FORCED_OPEN or (state is State.OPEN and breaker.retry_after > 0)
        if refused:
            breaker.rejected_total += 1
            if fallback is not _MISSING:
                value = fallback() if callable(fallback) else fallback
                raise CircuitFallback(value, fallback_status)
            raise CircuitOpenError(name, state, breaker.retry_after)
        return breaker

    return dependency


class MaintenanceMiddleware:
    """While `maintenance-mode` is on, every request but health, metrics and admin's gets 503.

    Pure ASGI and one dict lookup per request while it is off.
    """

    EXEMPT = ("/health", "/ready", "/metrics")
    # The dashboard is admin-only (its session is the admin key), so it stays usable:
    # that is where an operator turns maintenance mode off again.
    ADMIN_PREFIX = "/admin"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in self.EXEMPT or path.startswith(self.ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        services = getattr(scope["app"].state, "services", None)
        if services is None or not services.resilience.flags.is_enabled(MAINTENANCE_FLAG):
            await self.app(scope, receive, send)
            return
        admin_key = _bearer(scope) is not None and services.keys.is_admin_token(_bearer(scope))
        if admin_key or scope.get("state", {}).get(APP_ADMIN) is True:  # an embedding's admin
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            error_body("MAINTENANCE", "the service is in maintenance; try again later"),
            status_code=503,
            headers={"Retry-After": "60"},
        )
        await response(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


async def fallback_response(_: Request, exc: Exception) -> JSONResponse:
    """The answer to a `CircuitFallback`: its value, marked as a fallback."""
    assert isinstance(exc, CircuitFallback)
    return JSONResponse(
        jsonable_encoder(exc.value),
        status_code=exc.status_code,
        headers={"X-Circuit-Fallback": "true"},
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CircuitFallback, fallback_response)
    app.add_middleware(MaintenanceMiddleware)


# Ready-made dependencies for the pre-configured circuits (503 + Retry-After while open).
DatabaseCircuit = Annotated[Breaker, circuit("database")]
ExternalApiCircuit = Annotated[Breaker, circuit("external-api")]
AiServiceCircuit = Annotated[Breaker, circuit("ai-service")]
StorageCircuit = Annotated[Breaker, circuit("storage")]
