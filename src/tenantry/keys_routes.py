"""HTTP face of API keys: admins manage them; a company may list its own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import Field

from tenantry.auth import KeyInfo
from tenantry.deps import AdminDep, PrincipalDep, Router, ServicesDep
from tenantry.schemas import ApiModel, CompanyId

router = Router(tags=["keys"])


class KeyOut(ApiModel):
    id: str
    company_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyOut:
        return cls(
            id=info.id,
            company_id=info.company_id,
            name=info.name,
            created_at=info.created_at,
            revoked_at=info.revoked_at,
        )


class KeyCreate(ApiModel):
    company_id: CompanyId
    name: str = Field("", max_length=100)


class KeyCreated(KeyOut):
    key: str = Field(description="The plain key. Shown once: store it now.")


class Me(ApiModel):
    is_admin: bool
    company_id: str | None
    key_id: str | None


@router.get("/api/me", response_model=Me)
async def who_am_i(principal: PrincipalDep) -> Me:
    return Me(is_admin=principal.is_admin, company_id=principal.company_id, key_id=principal.key_id)


@router.get("/api/keys", response_model=list[KeyOut])
async def list_keys(
    services: ServicesDep,
    _: AdminDep,
    company_id: Annotated[str | None, Query(alias="companyId", max_length=64)] = None,
) -> list[KeyOut]:
    return [KeyOut.of(info) for info in await services.keys.list(company_id)]


@router.post("/api/keys", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyCreate, services: ServicesDep, _: AdminDep) -> KeyCreated:
    plain, info = await services.keys.create(body.company_id, body.name)
    return KeyCreated(key=plain, **KeyOut.of(info).model_dump())


@router.delete("/api/keys/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: str, services: ServicesDep, _: AdminDep) -> KeyOut:
    return KeyOut.of(await services.keys.revoke(key_id))


@router.get("/api/companies/{company_id}/keys", response_model=list[KeyOut])
async def list_company_keys(
    company_id: str, services: ServicesDep, principal: PrincipalDep
) -> list[KeyOut]:
    company = principal.company_for(company_id)
    return [KeyOut.of(info) for info in await services.keys.list(company)]
