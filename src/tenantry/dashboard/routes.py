"""The dashboard's pages and actions. Each page asks the services, never SQL/Redis/S3."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from tenantry.dashboard import (
    circuits,
    companies,
    flags,
    overview,
    queries,
    queues,
    rollouts,
    segments,
    stale,
    storage,
)
from tenantry.dashboard.auth import ActionDep, LoginRequired, SessionsDep, app_admin
from tenantry.dashboard.headers import DashboardHeaders
from tenantry.dashboard.history import History
from tenantry.dashboard.views import HERE, render
from tenantry.deps import ServicesDep, route_path
from tenantry.errors import Forbidden, TenantryError, Unauthorized
from tenantry.http_errors import error_response
from tenantry.sessions import (
    COOKIE_NAME,
    MAX_AGE_SECONDS,
    DashboardSession,
    DashboardSessions,
)

router = APIRouter(prefix="/admin", include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only same-site dashboard paths: never an open redirect."""
    if not target:
        return "/admin"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not parsed.path.startswith("/admin"):
        return "/admin"
    return target


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, sessions: SessionsDep, next: str | None = None) -> Response:
    admin = app_admin(request)
    if admin is not None:  # behind the embedding application's admin check: no key asked
        if not admin:
            raise Forbidden("the application's admin check refused this request")
        return await _signed_in(request, sessions, _safe_next(next))
    return render(request, "login.html", None, next=_safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    services: ServicesDep,
    sessions: SessionsDep,
    key: Annotated[str, Form(max_length=512)],
    next: Annotated[str, Form(max_length=2048)] = "/admin",
) -> Response:
    if app_admin(request) is not None:  # the application's check decides, not a key
        return await login_page(request, sessions, next)
    try:
        principal = await services.keys.authenticate(key.strip())
    except Unauthorized:
        principal = None
    if principal is None or not principal.is_admin:
        # Only a failed login meets the limiter: the admin key always gets in.
        await services.auth_limiter.failed(request.client.host if request.client else "unknown")
        return render(
            request,
            "login.html",
            None,
            next=_safe_next(next),
            error="That is not the admin key.",
            status_code=401,
        )
    return await _signed_in(request, sessions, _safe_next(next))


async def _signed_in(request: Request, sessions: DashboardSessions, target: str) -> Response:
    """A new session's cookie (scoped to the dashboard's path), and the way on to `target`."""
    cookie, _ = await sessions.issue()
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=MAX_AGE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=_cookie_path(request),
    )
    return response


def _cookie_path(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root + "/admin"


@router.post("/logout")
async def logout(request: Request, session: ActionDep, sessions: SessionsDep) -> Response:
    await sessions.revoke(session)  # the cookie, if replayed, is refused from now on
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path=_cookie_path(request))
    return response


async def _session_or_none(request: Request) -> DashboardSession | None:
    sessions: DashboardSessions = request.app.state.services.sessions
    try:
        return await sessions.read(request.cookies.get(COOKIE_NAME))
    except Exception:  # the error page must render even when the database is what failed
        return None


def install(app: FastAPI) -> None:
    """Mount the dashboard: its pages, its local assets, and the login redirect."""
    app.state.dashboard_history = History()
    app.add_middleware(DashboardHeaders)
    app.include_router(router)
    # A flag's rollout forms before the flag pages: `/{key}/{listing}` would match them.
    pages = (overview, queues, queries, circuits, rollouts, flags, segments, storage, companies)
    for page in pages:
        app.include_router(page.router, include_in_schema=False)
    app.include_router(stale.router, include_in_schema=False)  # flag usage, stale flags
    app.mount("/admin/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")

    @app.exception_handler(TenantryError)
    async def _error(request: Request, exc: TenantryError) -> Response:
        """Dashboard pages answer errors with a page; the API keeps its JSON shape."""
        if not route_path(request.scope).startswith("/admin") or request.method != "GET":
            return error_response(exc)
        session = await _session_or_none(request)
        return render(
            request,
            "error.html",
            session,
            status_code=exc.status_code,
            code=exc.code,
            message=exc.message,
        )

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("hx-request") == "true":
            return JSONResponse({}, status_code=200, headers={"HX-Redirect": exc.location})
        return RedirectResponse(exc.location, status_code=303)
