"""HTTP face of the tenants: /api/companies and /api/plans. Thin: the rules are in
TenantService.

Admin key: every route. Company key: `GET /api/companies/{its own id}` only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import ConfigDict, Field

from tenantry.auth import COMPANY_ID_REGEX
from tenantry.deps import AdminDep, PrincipalDep, Router, ServicesDep
from tenantry.schemas import ApiModel
from tenantry.tenants.metering import Usage
from tenantry.tenants.plans import Limits, Plan
from tenantry.tenants.service import Company

router = Router(tags=["tenants"])

CompanyPath = Annotated[str, PathParam(max_length=64, pattern=COMPANY_ID_REGEX)]
PlanPath = Annotated[str, PathParam(min_length=1, max_length=64)]
LIMITS_EXAMPLE = {
    "storageBytes": 1024,
    "storageFiles": 10,
    "apiRequestsPerMinute": 600,
    "jobsPerMinute": {"email": 100},
    "jobConcurrency": {"report": 2},
}


class LimitsOut(ApiModel):
    storage_bytes: int | None
    storage_files: int | None
    api_requests_per_minute: int | None
    jobs_per_minute: dict[str, int]
    job_concurrency: dict[str, int]

    @classmethod
    def of(cls, limits: Limits) -> LimitsOut:
        return cls.model_validate(limits.to_wire())


class UsageOut(ApiModel):
    storage_bytes: int
    storage_files: int


class CompanyOut(ApiModel):
    company_id: str
    plan: str
    queue_weight: int
    limits: LimitsOut = Field(description="Effective: the plan's, with the overrides on top.")
    overrides: dict[str, Any] = Field(description="The company's own limits, as set.")
    usage: UsageOut

    @classmethod
    def of(cls, company: Company) -> CompanyOut:
        return cls(
            company_id=company.id,
            plan=company.plan,
            queue_weight=company.queue_weight,
            limits=LimitsOut.of(company.limits),
            overrides=company.overrides.set_only(),
            usage=UsageOut(
                storage_bytes=company.storage.bytes, storage_files=company.storage.files
            ),
        )


class UsageFiguresOut(ApiModel):
    api_requests: int
    jobs_run: int
    job_ms: float
    query_calls: int
    query_ms: float

    @classmethod
    def of(cls, usage: Usage) -> UsageFiguresOut:
        return cls(
            api_requests=usage.api_requests,
            jobs_run=usage.jobs_run,
            job_ms=round(usage.job_ms, 3),
            query_calls=usage.query_calls,
            query_ms=round(usage.query_ms, 3),
        )


class HourOut(UsageFiguresOut):
    hour: datetime


class CompanyDetailOut(CompanyOut):
    last_24_hours: UsageFiguresOut = Field(description="Summed over every process.")
    hourly: list[HourOut] = Field(description="The last 24 hours, oldest first.")


class CompanyPageOut(ApiModel):
    companies: list[CompanyOut]
    next_cursor: str | None


class CompanyPut(ApiModel):
    model_config = ConfigDict(extra="forbid")

    plan: str | None = Field(None, max_length=64, description="None: the default plan.")
    limits: dict[str, Any] | None = Field(None, examples=[LIMITS_EXAMPLE])


class PlanOut(ApiModel):
    plan: str
    queue_weight: int
    limits: LimitsOut

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        return cls(plan=plan.name, queue_weight=plan.queue_weight, limits=LimitsOut.of(plan.limits))


class PlanPut(ApiModel):
    model_config = ConfigDict(extra="forbid")

    limits: dict[str, Any] | None = Field(None, examples=[LIMITS_EXAMPLE])
    queue_weight: Any = Field(1, description="1-1000: its share of a queue against others.")


@router.get("/api/companies", response_model=CompanyPageOut)
async def list_companies(
    services: ServicesDep,
    _: AdminDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    sort: Literal["id", "storageBytes", "storageFiles", "jobs", "queryTime", "apiRequests"] = "id",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CompanyPageOut:
    """Every company, a page at a time, with its plan and usage: by id, by storage (largest
    first), or by the last 24 hours of jobs, query time or API requests (busiest first)."""
    page = await services.tenants.list_companies(cursor=cursor, sort=sort, limit=limit)
    return CompanyPageOut(
        companies=[CompanyOut.of(c) for c in page.companies], next_cursor=page.next_cursor
    )


@router.get("/api/companies/{company_id}", response_model=CompanyDetailOut)
async def get_company(
    company_id: CompanyPath, services: ServicesDep, principal: PrincipalDep
) -> CompanyDetailOut:
    """A company's plan, effective limits and usage, with its last 24 hours hour by hour
    (the admin, or that company's key)."""
    tenants = services.tenants
    company = await tenants.company(principal.company_for(company_id))
    hours = await tenants.meter.hours(company.id)
    total = Usage()
    for hour in hours:
        total.add(hour.usage)
    return CompanyDetailOut(
        **CompanyOut.of(company).model_dump(),
        last_24_hours=UsageFiguresOut.of(total),
        hourly=[HourOut(hour=h.hour, **UsageFiguresOut.of(h.usage).model_dump()) for h in hours],
    )


@router.put("/api/companies/{company_id}", response_model=CompanyOut)
async def put_company(
    company_id: CompanyPath, body: CompanyPut, services: ServicesDep, _: AdminDep
) -> CompanyOut:
    """Put a company on a plan, with its own limits on top (replacing earlier ones)."""
    company = await services.tenants.put_company(company_id, plan=body.plan, limits=body.limits)
    return CompanyOut.of(company)


@router.get("/api/plans", response_model=list[PlanOut])
async def list_plans(services: ServicesDep, _: AdminDep) -> list[PlanOut]:
    return [PlanOut.of(plan) for plan in (await services.tenants.plans()).values()]


@router.get("/api/plans/{plan}", response_model=PlanOut)
async def get_plan(plan: PlanPath, services: ServicesDep, _: AdminDep) -> PlanOut:
    return PlanOut.of(await services.tenants.plan(plan))


@router.put("/api/plans/{plan}", response_model=PlanOut)
async def put_plan(plan: PlanPath, body: PlanPut, services: ServicesDep, _: AdminDep) -> PlanOut:
    """Define or redefine a plan: its limits and queue weight, for every company on it."""
    defined = await services.tenants.put_plan(
        plan, limits=body.limits, queue_weight=body.queue_weight
    )
    return PlanOut.of(defined)
