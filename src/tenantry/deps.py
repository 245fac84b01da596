"""FastAPI pieces shared by every router: the services, the caller, the router class.

`PrincipalDep` and `AdminDep` are one dependency each, with no sub-dependencies:
FastAPI solves every dependency of a route on every request (a few microseconds
each), and the three nested ones they used to be (the principal, the services, the
bearer scheme) were a fifth of a flag check's CPU. Each is a `KeyAuth`, a security
scheme in FastAPI's sense, so the OpenAPI document names the same `HTTPBearer`
scheme on the same operations as `bearer_scheme` did.

`Router` and `try_first` are for routing: FastAPI tries the routes of every included
router in turn, each miss a couple of microseconds, so a request for the last router
paid for every route before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.base import SecurityBase
from starlette.routing import Match
from starlette.types import Scope

from tenantry.auth import Principal
from tenantry.container import Services
from tenantry.context import current_company
from tenantry.errors import Unauthorized

bearer_scheme = HTTPBearer(auto_error=False, description="The admin key or a company key.")
# Where the Principal found for a request is kept for the rest of it: http_limits
# authenticates a request with a body before reading it, and a second dependency that
# needs the caller (a feature gate beside PrincipalDep) reuses it.
AUTHENTICATED = "tenantry.principal"
# Where an embedding's admin check (`Tenantry.mount(app, admin=...)`) leaves its answer
# for the request, True or False; absent under `tenantry serve`. The dashboard reads it.
APP_ADMIN = "tenantry.app_admin"


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a sync dependency in the thread pool, a hop to a
    # worker thread and back on every request for one attribute read.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def services_of(request: Request) -> Services:
    """`ServicesDep` without a dependency to solve, for the hottest routes."""
    services: Services = request.scope["app"].state.services
    return services


def bearer_token(scope: Scope) -> str | None:
    """The key in `Authorization: Bearer <key>`, parsed as `bearer_scheme` parses it:
    the first Authorization header; None without one, with another scheme or no key."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if token and scheme.lower() == "bearer" else None
    return None


async def authenticate(scope: Scope, services: Services, token: str | None) -> Principal:
    """The caller behind `token` (None: no bearer key sent); once per request."""
    state = scope.get("state")
    authenticated = state.get(AUTHENTICATED) if state is not None else None
    if isinstance(authenticated, Principal):
        current_company.set(authenticated.company_id)
        return authenticated
    # The key is checked first and only a failure meets the limiter: a valid key is never
    # refused because others guessed from the same address.
    client = scope.get("client")
    host = client[0] if client else "unknown"
    if token is None:
        await services.auth_limiter.failed(host)
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        principal = await services.keys.authenticate(token)
    except Unauthorized:
        await services.auth_limiter.failed(host)
        raise
    current_company.set(principal.company_id)
    if principal.company_id is not None:
        # Every key of a company shares its plan's requests per minute (429 past them).
        await services.tenants.admit_request(principal.company_id)
    if state is None:
        state = scope["state"] = {}
    state[AUTHENTICATED] = principal
    return principal


async def get_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The caller, from the credentials `bearer_scheme` parsed (callable directly)."""
    token = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = credentials.credentials
    return await authenticate(request.scope, services, token)


class KeyAuth(SecurityBase):
    """The caller as one dependency (the admin only, with `admin`), documented in
    OpenAPI as `bearer_scheme`: the same scheme name and model."""

    def __init__(self, *, admin: bool) -> None:
        self.model = bearer_scheme.model
        self.scheme_name = bearer_scheme.scheme_name
        self.admin = admin

    async def __call__(self, request: Request) -> Principal:
        scope = request.scope
        principal = await authenticate(scope, services_of(request), bearer_token(scope))
        if self.admin:
            principal.require_admin()
        return principal


any_key = KeyAuth(admin=False)
admin_key = KeyAuth(admin=True)
PrincipalDep = Annotated[Principal, Depends(any_key)]
AdminDep = Annotated[Principal, Depends(admin_key)]


async def require_admin(principal: PrincipalDep) -> Principal:
    """The admin, as a dependency of its own (`AdminDep` is the same, in one step)."""
    principal.require_admin()
    return principal


def route_path(scope: Scope) -> str:
    """The path routes match: without the root path the app is mounted at (as Starlette)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


class Router(APIRouter):
    """An APIRouter that a request for none of its paths passes in one comparison.

    Before trying its routes one by one, it compares the request's path with their
    literal beginnings (each path up to its first parameter). Include it without a
    prefix of its own (as the app does): the paths it compares are its routes' paths.
    """

    _starts: tuple[str, ...] = ()
    _starts_of = -1  # len(self.routes) when _starts was computed

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not route_path(scope).startswith(self._literal_starts()):
            return Match.NONE, {}
        return super().matches(scope)

    def _literal_starts(self) -> tuple[str, ...]:
        if self._starts_of != len(self.routes):
            paths = (getattr(route, "path", None) for route in self.routes)
            # A route without a plain path (none yet) could match anything: never skip.
            starts = {path.split("{", 1)[0] if isinstance(path, str) else "" for path in paths}
            self._starts, self._starts_of = tuple(sorted(starts)), len(self.routes)
        return self._starts


class _TriedFirst(APIRoute):
    """A route's undocumented twin, in front of the others: a full match or none, so a
    wrong method still meets the documented route (and its 405 names its methods)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        return (match, child_scope) if match is Match.FULL else (Match.NONE, {})


def try_first(
    router: APIRouter, path: str, method: str, **route: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@router.<method>(path, **route)`, matched before the router's other routes.

    FastAPI tries routes in order and documents them in that order: the route stays
    where it is declared, in the OpenAPI document too, and an undocumented twin at the
    front of the router answers. Only for a route that no route declared before it
    could match (with the same method): the twin would take its requests.
    """

    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(path, endpoint, methods=[method], **route)
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            include_in_schema=False,
            route_class_override=_TriedFirst,
            **route,
        )
        router.routes.insert(0, router.routes.pop())
        getattr(router, "_mark_routes_changed", lambda: None)()  # FastAPI caches routes
        return endpoint

    return register
