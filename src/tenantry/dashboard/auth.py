"""Dashboard access: the session cookie for pages, plus the CSRF token for actions."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from tenantry.deps import APP_ADMIN, ServicesDep, route_path
from tenantry.errors import Forbidden
from tenantry.sessions import COOKIE_NAME, DashboardSession, DashboardSessions


class LoginRequired(Exception):
    """No valid session: answered with a redirect to the login page (see routes.install)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


async def dashboard_sessions(services: ServicesDep) -> DashboardSessions:
    return services.sessions


SessionsDep = Annotated[DashboardSessions, Depends(dashboard_sessions)]


def app_admin(request: Request) -> bool | None:
    """The embedding application's admin check for this request (`Tenantry.mount(app,
    admin=...)`): True or False; None when there is none (`tenantry serve`)."""
    answer = request.scope.get("state", {}).get(APP_ADMIN)
    return answer if isinstance(answer, bool) else None


async def current_session(request: Request, sessions: SessionsDep) -> DashboardSession:
    if app_admin(request) is False:
        # Behind the application's admin check, a session is no pass by itself: one
        # outliving the application's own (its user logged out, or is no admin any more).
        raise Forbidden("the application's admin check refused this request")
    session = await sessions.read(request.cookies.get(COOKIE_NAME))
    if session is None:
        path = route_path(request.scope)
        target = path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(f"/admin/login?next={quote(target, safe='')}")
    return session


SessionDep = Annotated[DashboardSession, Depends(current_session)]


async def checked_session(request: Request, session: SessionDep) -> DashboardSession:
    """For state-changing requests: the session, and a CSRF token that matches it."""
    token = request.headers.get("x-csrf-token")
    if token is None:
        form = await request.form()
        value = form.get("csrf")
        token = value if isinstance(value, str) else None
    if not session.csrf_matches(token):
        raise Forbidden("missing or invalid CSRF token; reload the page and try again")
    return session


ActionDep = Annotated[DashboardSession, Depends(checked_session)]
