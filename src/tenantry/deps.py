"""FastAPI dependencies shared by every router: the services and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tenantry.auth import Principal
from tenantry.container import Services
from tenantry.context import current_company
from tenantry.errors import Unauthorized

bearer_scheme = HTTPBearer(auto_error=False, description="The admin key or a company key.")
# Where http_limits leaves the Principal it found for a request it authenticated before
# reading its body (this function ran there); the route then reuses it.
AUTHENTICATED = "tenantry.principal"


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a sync dependency in the thread pool, a hop to a
    # worker thread and back on every request for one attribute read.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    authenticated = request.scope.get("state", {}).get(AUTHENTICATED)
    if isinstance(authenticated, Principal):
        current_company.set(authenticated.company_id)
        return authenticated
    # The key is checked first and only a failure meets the limiter: a valid key is never
    # refused because others guessed from the same address.
    client = request.client.host if request.client else "unknown"
    if credentials is None or credentials.scheme.lower() != "bearer":
        services.auth_limiter.failed(client)
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        principal = await services.keys.authenticate(credentials.credentials)
    except Unauthorized:
        services.auth_limiter.failed(client)
        raise
    current_company.set(principal.company_id)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: PrincipalDep) -> Principal:
    principal.require_admin()
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
