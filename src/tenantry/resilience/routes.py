"""/api/degradation/*: circuits and feature flags, for the admin key only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Path, Query, Request, Response

from tenantry.auth import Principal
from tenantry.deps import AdminDep, Router, ServicesDep, admin_key, services_of, try_first
from tenantry.resilience.dependencies import install_handlers
from tenantry.resilience.schemas import (
    AuditOut,
    CheckOut,
    CircuitOut,
    CloseBody,
    EvaluateBody,
    EvaluateOut,
    FlagCreate,
    FlagKey,
    FlagOut,
    FlagPatch,
    ImportOut,
    RolloutBody,
    SegmentBody,
    SegmentOut,
    TargetBody,
    TargetId,
)
from tenantry.resilience.service import FlagService

# Every route needs the admin key; the routes that name the admin get the same one
# dependency (FastAPI solves it once per request).
router = Router(prefix="/api/degradation", tags=["degradation"], dependencies=[Depends(admin_key)])
KeyPath = Annotated[str, Path(description="The flag key (percent-encoded).")]
SegmentId = Annotated[int, Path(ge=0, le=2**31 - 1, description="The segment id.")]


def _actor(principal: Principal) -> str:
    return principal.key_id or "admin"


def _flags(services: Any) -> FlagService:
    flags: FlagService = services.resilience.flags
    return flags


# --- circuits --------------------------------------------------------------------------
@router.get("/circuits")
async def list_circuits(services: ServicesDep) -> list[CircuitOut]:
    return [CircuitOut.of(breaker) for breaker in services.resilience.breakers]


@router.get("/circuits/{name}")
async def get_circuit(name: str, services: ServicesDep) -> CircuitOut:
    return CircuitOut.of(services.resilience.breakers.get(name))


@router.post("/circuits/{name}/reset")
async def reset_circuit(name: str, services: ServicesDep) -> CircuitOut:
    """Closed, with its counters cleared."""
    breaker = services.resilience.breakers.get(name)
    breaker.reset()
    return CircuitOut.of(breaker)


@router.post("/circuits/{name}/open")
async def open_circuit(name: str, services: ServicesDep) -> CircuitOut:
    """Forced open: every call gets the fallback or 503 until closed or reset."""
    breaker = services.resilience.breakers.get(name)
    breaker.force_open("forced open through the API")
    return CircuitOut.of(breaker)


@router.post("/circuits/{name}/close")
async def close_circuit(
    name: str, services: ServicesDep, body: Annotated[CloseBody | None, Body()] = None
) -> CircuitOut:
    """Closed again; with {"force": true}, disabled (always closed) until reset."""
    breaker = services.resilience.breakers.get(name)
    if body is not None and body.force:
        breaker.disable("disabled through the API")
    else:
        breaker.close("closed through the API")
    return CircuitOut.of(breaker)


# --- flags -----------------------------------------------------------------------------
@router.get("/features")
async def list_features(services: ServicesDep) -> list[FlagOut]:
    return [FlagOut.of(flag) for flag in await _flags(services).all()]


@router.post("/features/import")
async def import_features(
    document: Annotated[Any, Body(description="An Unleash client features document.")],
    services: ServicesDep,
    admin: AdminDep,
) -> ImportOut:
    """Unleash's `{"version": 1|2, "features", "segments"}`: same names replaced, all or nothing."""
    imported = await _flags(services).import_document(document, actor=_actor(admin))
    return ImportOut(imported=imported)


@router.get("/features/export")
async def export_features(services: ServicesDep) -> dict[str, Any]:
    """Every flag and segment as an Unleash client features document (version 2)."""
    return _flags(services).export_document()


@router.post("/features", status_code=201)
async def create_feature(body: FlagCreate, services: ServicesDep, admin: AdminDep) -> FlagOut:
    return FlagOut.of(await _flags(services).create(body.to_flag(), actor=_actor(admin)))


@router.get("/features/{key}")
async def get_feature(key: KeyPath, services: ServicesDep) -> FlagOut:
    return FlagOut.of(await _flags(services).get(key))


@router.patch("/features/{key}")
async def update_feature(
    key: KeyPath, body: FlagPatch, services: ServicesDep, admin: AdminDep
) -> FlagOut:
    changes = body.changes()
    flags = _flags(services)
    if not changes:
        return FlagOut.of(await flags.get(key))
    return FlagOut.of(await flags.update(key, actor=_actor(admin), **changes))


@router.delete("/features/{key}", status_code=204)
async def delete_feature(key: KeyPath, services: ServicesDep, admin: AdminDep) -> Response:
    await _flags(services).delete(key, actor=_actor(admin))
    return Response(status_code=204)


@try_first(router, "/features/{key}/check", "GET")  # the hot route: services ask it often
async def check_feature(
    key: KeyPath,
    request: Request,
    target_id: Annotated[TargetId | None, Query(alias="targetId")] = None,
) -> CheckOut:
    """How the flag evaluates for `targetId` right now: on/off, why, and the variant."""
    flags = _flags(services_of(request))  # a hot route: no ServicesDep to solve
    await flags.get(key)  # 404 for an unknown flag
    return CheckOut.of(flags.evaluate(key, target_id))


@router.post("/features/{key}/evaluate")
async def evaluate_feature(
    key: KeyPath, request: Request, body: Annotated[EvaluateBody | None, Body()] = None
) -> EvaluateOut:
    """How the flag decides for an Unleash context; an unknown flag is off, as in Unleash."""
    context = (body or EvaluateBody()).context.to_context()
    return EvaluateOut.of(_flags(services_of(request)).evaluate(key, context=context))


@router.post("/features/{key}/enable")
async def enable_feature(key: KeyPath, services: ServicesDep, admin: AdminDep) -> FlagOut:
    return FlagOut.of(await _flags(services).enable(key, actor=_actor(admin)))


@router.post("/features/{key}/disable")
async def disable_feature(key: KeyPath, services: ServicesDep, admin: AdminDep) -> FlagOut:
    return FlagOut.of(await _flags(services).disable(key, actor=_actor(admin)))


@router.post("/features/{key}/rollout")
async def set_rollout(
    key: KeyPath, body: RolloutBody, services: ServicesDep, admin: AdminDep
) -> FlagOut:
    flag = await _flags(services).set_rollout(key, body.percentage, actor=_actor(admin))
    return FlagOut.of(flag)


@router.post("/features/{key}/allow")
async def allow_target(
    key: KeyPath, body: TargetBody, services: ServicesDep, admin: AdminDep
) -> FlagOut:
    return FlagOut.of(await _flags(services).allow(key, body.target_id, actor=_actor(admin)))


@router.delete("/features/{key}/allow/{target_id}")
async def unallow_target(
    key: KeyPath, target_id: str, services: ServicesDep, admin: AdminDep
) -> FlagOut:
    return FlagOut.of(await _flags(services).unallow(key, target_id, actor=_actor(admin)))


@router.post("/features/{key}/block")
async def block_target(
    key: KeyPath, body: TargetBody, services: ServicesDep, admin: AdminDep
) -> FlagOut:
    return FlagOut.of(await _flags(services).block(key, body.target_id, actor=_actor(admin)))


@router.delete("/features/{key}/block/{target_id}")
async def unblock_target(
    key: KeyPath, target_id: str, services: ServicesDep, admin: AdminDep
) -> FlagOut:
    return FlagOut.of(await _flags(services).unblock(key, target_id, actor=_actor(admin)))


@router.get("/features/{key}/audit")
async def feature_audit(
    key: KeyPath,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    return [AuditOut.of(entry) for entry in await _flags(services).audit(key, limit)]


# --- segments --------------------------------------------------------------------------
@router.get("/segments")
async def list_segments(services: ServicesDep) -> list[SegmentOut]:
    return [SegmentOut.of(segment) for segment in _flags(services).segments()]


@router.post("/segments", status_code=201)
async def create_segment(body: SegmentBody, services: ServicesDep, admin: AdminDep) -> SegmentOut:
    """A new segment, numbered after the highest id."""
    flags = _flags(services)
    next_id = max((segment.id for segment in flags.segments()), default=0) + 1
    segment = await flags.put_segment(body.to_segment(next_id), actor=_actor(admin))
    return SegmentOut.of(segment)


@router.get("/segments/{segment_id}")
async def get_segment(segment_id: SegmentId, services: ServicesDep) -> SegmentOut:
    return SegmentOut.of(_flags(services).segment(segment_id))


@router.put("/segments/{segment_id}")
async def put_segment(
    segment_id: SegmentId, body: SegmentBody, services: ServicesDep, admin: AdminDep
) -> SegmentOut:
    segment = await _flags(services).put_segment(body.to_segment(segment_id), actor=_actor(admin))
    return SegmentOut.of(segment)


@router.delete("/segments/{segment_id}", status_code=204)
async def delete_segment(segment_id: SegmentId, services: ServicesDep, admin: AdminDep) -> Response:
    """409 while a flag's strategy uses it."""
    await _flags(services).delete_segment(segment_id, actor=_actor(admin))
    return Response(status_code=204)


# --- health ----------------------------------------------------------------------------
@router.get("/health")
async def degradation_health(services: ServicesDep) -> dict[str, Any]:
    """Circuit states, open circuits, flag count, and whether flags answer from a stale copy."""
    resilience = services.resilience
    body = resilience.health()
    body["status"] = "degraded" if body["openCircuits"] or body["flagStoreDegraded"] else "ok"
    return body


def install(app: FastAPI) -> None:
    app.include_router(router)
    install_handlers(app)


__all__ = ["FlagKey", "install", "router"]
