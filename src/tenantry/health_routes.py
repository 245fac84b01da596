"""GET /health (liveness), /ready (every dependency), /metrics (Prometheus)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from tenantry.deps import Router, ServicesDep, bearer_scheme, get_principal

router = Router(tags=["health"])  # first in the app: every other request passes it


@router.get("/health")
async def liveness() -> dict[str, Any]:
    """The process is up and serving. Checks nothing else, so it never flaps."""
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, dict[str, Any]] | None = Field(
        None,
        description="Each dependency's status (up/down), latency and details; only with the"
        " admin key (or TENANTRY_READY_DETAILS_PUBLIC=true): they name paths, circuit"
        " states and dependency errors.",
    )


@router.get(
    "/ready",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={503: {"model": Readiness, "description": "A dependency is down."}},
)
async def readiness(services: ServicesDep, request: Request) -> JSONResponse:
    """Ready when every dependency is up (200), else 503. Anyone gets the status; the
    checks' details need the admin key, since they show how the deployment is built."""
    details = services.settings.ready_details_public
    if not details and request.headers.get("authorization"):
        principal = await get_principal(request, services, await bearer_scheme(request))
        details = principal.is_admin  # a company key gets the status, like anyone
    ready, checks = await services.health.run_all()
    body: dict[str, Any] = {"status": "ready" if ready else "not ready"}
    if details:
        body["checks"] = checks
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep, request: Request) -> Response:
    """Prometheus text format; needs the admin key unless TENANTRY_METRICS_PUBLIC=true."""
    if not services.settings.metrics_public:
        principal = await get_principal(request, services, await bearer_scheme(request))
        principal.require_admin()
    await services.metrics.refresh()  # figures read from Redis and the database
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
