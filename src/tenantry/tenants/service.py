"""`TenantService`: companies, their plans and limits, and what they use.

    company = await tenants.company("acme")        # plan, effective limits, usage
    await tenants.put_company("acme", plan="pro", limits={"storageBytes": 10 * 1024**3})
    await tenants.put_plan("free", limits={"apiRequestsPerMinute": 600}, queue_weight=1)

Plans come from the settings (the built-in free, pro and enterprise, or TENANTRY_PLANS)
and may be redefined in the database (`PUT /api/plans/{plan}`); a company is on its
plan (or TENANTRY_DEFAULT_PLAN) with its own overrides on top. A company exists once
anything refers to it: a key, a file, a job, a `PUT`. Effective limits are cached
in-process for a few seconds: a change reaches every process within that time.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select, update

from tenantry.auth import validate_company_id
from tenantry.db import CompanyRow, Database, ensure_company, utcnow
from tenantry.errors import InvalidInput, NotFound
from tenantry.redis_clients import AnyRedis
from tenantry.tenants.limits import QueueLimits
from tenantry.tenants.metering import UsageMeter, UsageSort
from tenantry.tenants.plans import DEFAULT_PLANS, Limits, Plan, parse_limits, parse_weight
from tenantry.tenants.plans import queue_limits as plan_queue_limits
from tenantry.tenants.quota import StorageQuota
from tenantry.tenants.rate import RequestRate
from tenantry.tenants.records import PlanRow

log = logging.getLogger("tenantry.tenants")
Sort = Literal["id", "storageBytes", "storageFiles", "jobs", "queryTime", "apiRequests"]
PLAN_NAME_RULE = "1-64 letters, digits, '_', '-'"
MAX_PAGE = 200
# Companies with limits of their own read for `nearest_quotas`, fullest first.
MAX_OVERRIDDEN = 1000


@dataclass(frozen=True, slots=True)
class StorageUsage:
    bytes: int
    files: int


@dataclass(frozen=True, slots=True)
class Company:
    id: str
    plan: str
    overrides: Limits
    limits: Limits  # effective: the plan's, with the overrides on top
    queue_weight: int
    storage: StorageUsage


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """How full a company's storage quota is: the fuller of bytes and files (1.0 = full)."""

    company_id: str
    ratio: float


@dataclass(frozen=True, slots=True)
class CompanyPage:
    companies: list[Company]
    next_cursor: str | None


class TenantService:
    def __init__(
        self,
        db: Database,
        *,
        plans: Mapping[str, Plan] | None = None,
        default_plan: str = "free",
        cache_seconds: float = 5.0,
        queues: Collection[str] | None = None,
        redis: AnyRedis | None = None,
        meter: UsageMeter | None = None,
    ) -> None:
        self.db = db
        self.queues = queues  # the queue names a per-queue limit may name
        self.configured_plans = dict(plans or DEFAULT_PLANS)
        if default_plan not in self.configured_plans:
            raise ValueError(f"the default plan {default_plan!r} is not defined")
        self.default_plan = default_plan
        self.cache_seconds = cache_seconds
        self.quota = StorageQuota(db, self.limits)
        self.rate = RequestRate(redis)
        self.meter = meter or UsageMeter(db)
        self._cache: dict[str, tuple[float, Company]] = {}
        self._listeners: list[Callable[[str], Awaitable[None]]] = []
        self._plans: tuple[float, dict[str, Plan]] | None = None

    def listen(self, on_change: Callable[[str], Awaitable[None]]) -> None:
        """Call `on_change(company_id)` after a company's plan or limits are set (the job
        queues apply them at once; a plan's change reaches them at the next enqueue)."""
        self._listeners.append(on_change)

    # --- plans ---------------------------------------------------------------------
    async def plans(self) -> dict[str, Plan]:
        """Every plan: the configured ones, as redefined in the database."""
        if self._plans is not None and time.monotonic() - self._plans[0] < self.cache_seconds:
            return self._plans[1]
        plans = dict(self.configured_plans)
        async with self.db.session() as session:
            for row in (await session.scalars(select(PlanRow))).all():
                plans[row.name] = Plan(row.name, _stored_limits(row.limits), row.queue_weight)
        self._plans = (time.monotonic(), plans)
        return plans

    async def plan(self, name: str) -> Plan:
        found = (await self.plans()).get(name)
        if found is None:
            raise NotFound(f"no plan named {name!r}", details={"plan": name})
        return found

    async def put_plan(
        self, name: str, *, limits: Mapping[str, Any] | None, queue_weight: Any = 1
    ) -> Plan:
        _check_plan_name(name)
        plan = Plan(name, parse_limits(limits, queues=self.queues), parse_weight(queue_weight))
        encoded = json.dumps(plan.limits.set_only())
        async with self.db.session() as session:
            row = await session.get(PlanRow, name)
            if row is None:
                session.add(
                    PlanRow(
                        name=name, limits=encoded, queue_weight=plan.queue_weight,
                        updated_at=utcnow(),
                    )
                )  # fmt: skip
            else:
                row.limits, row.queue_weight, row.updated_at = encoded, plan.queue_weight, utcnow()
        self._forget()
        return plan

    # --- companies -----------------------------------------------------------------
    async def company(self, company_id: str) -> Company:
        """A company's plan, effective limits and usage; 404 if nothing refers to it."""
        validate_company_id(company_id)
        async with self.db.session() as session:
            row = await session.get(CompanyRow, company_id)
        if row is None:
            raise NotFound(f"no company {company_id!r}", details={"companyId": company_id})
        return await self._company(row)

    async def plan_of(self, company_id: str) -> str:
        """The company's plan's name (cached with its limits, see `limits`)."""
        await self.limits(company_id)
        cached = self._cache.get(company_id)
        return cached[1].plan if cached is not None else (await self.company(company_id)).plan

    async def limits(self, company_id: str) -> Limits:
        """The company's effective limits (cached for `cache_seconds`); the company is
        recorded if this is the first time anything refers to it."""
        cached = self._cache.get(company_id)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1].limits
        async with self.db.session() as session:
            await ensure_company(session, company_id)
            row = await session.get(CompanyRow, company_id)
        assert row is not None
        company = await self._company(row)
        if len(self._cache) > 100_000:  # bounded, whatever the number of companies
            self._cache.clear()
        self._cache[company_id] = (time.monotonic(), company)
        return company.limits

    async def admit_request(self, company_id: str) -> None:
        """Count one API request of the company; 429 with Retry-After over its rate."""
        limits = await self.limits(company_id)
        await self.rate.hit(company_id, limits.api_requests_per_minute)
        self.meter.api_request(company_id)

    async def queue_limits(self, company_id: str, queue: str) -> QueueLimits:
        """For the job queues (tenantry.tenants.limits.QueueLimitSource)."""
        await self.limits(company_id)
        company = self._cache[company_id][1]
        return plan_queue_limits(
            Plan(company.plan, company.limits, company.queue_weight), company.limits, queue
        )

    async def put_company(
        self, company_id: str, *, plan: str | None = None, limits: Mapping[str, Any] | None = None
    ) -> Company:
        """Set a company's plan (None: the default plan) and overrides (replacing them)."""
        validate_company_id(company_id)
        if plan is not None and plan not in await self.plans():
            raise InvalidInput(f"unknown plan {plan!r}", details={"field": "plan", "value": plan})
        overrides = json.dumps(parse_limits(limits, queues=self.queues).set_only())
        async with self.db.session() as session:
            await ensure_company(session, company_id)
            await session.execute(
                update(CompanyRow)
                .where(CompanyRow.id == company_id)
                .values(plan=plan, limits=overrides)
            )
            row = await session.get(CompanyRow, company_id)
        self._cache.pop(company_id, None)
        assert row is not None
        for on_change in self._listeners:
            try:
                await on_change(company_id)
            except Exception as exc:  # stored already; the queues read it at the next enqueue
                log.warning("new limits of %s not pushed to the queues: %s", company_id, exc)
        return await self._company(row)

    async def list_companies(
        self, *, cursor: str | None = None, sort: Sort = "id", limit: int = 50
    ) -> CompanyPage:
        """A page of companies, by id or by storage used (largest first)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1-{MAX_PAGE}", details={"field": "limit"})
        if sort == "jobs" or sort == "queryTime" or sort == "apiRequests":
            return await self._by_usage(sort, cursor, limit)
        query = select(CompanyRow)
        after = _decode_cursor(cursor, sort) if cursor else None
        if sort == "id":
            query = query.order_by(CompanyRow.id)
            if after is not None:
                query = query.where(CompanyRow.id > after[1])
        else:
            column = (
                CompanyRow.storage_bytes if sort == "storageBytes" else CompanyRow.storage_files
            )
            query = query.order_by(column.desc(), CompanyRow.id)
            if after is not None:
                value, last_id = int(after[0]), after[1]
                query = query.where(
                    (column < value) | ((column == value) & (CompanyRow.id > last_id))
                )
        async with self.db.session() as session:
            rows = list((await session.scalars(query.limit(limit + 1))).all())
        page = [await self._company(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            counts = {"storageBytes": last.storage_bytes, "storageFiles": last.storage_files}
            next_cursor = _encode_cursor(sort, str(counts.get(sort, "")), last.id)
        return CompanyPage(page, next_cursor)

    async def _by_usage(self, sort: UsageSort, cursor: str | None, limit: int) -> CompanyPage:
        """Ranked by the last 24 hours of usage: companies that used nothing are left out."""
        offset = int(_decode_cursor(cursor, sort)[0]) if cursor else 0
        ranked = await self.meter.top(sort, limit=limit + 1, offset=offset)
        async with self.db.session() as session:
            ids = [r.company_id for r in ranked[:limit]]
            rows = {
                row.id: row
                for row in (await session.scalars(select(CompanyRow).where(CompanyRow.id.in_(ids))))
            }
        page = [await self._company(rows[i]) for i in ids if i in rows]
        more = len(ranked) > limit
        return CompanyPage(page, _encode_cursor(sort, str(offset + limit), "") if more else None)

    async def storage_totals(self) -> StorageUsage:
        """Every company's stored bytes and files, summed (from the counters: one row
        per company, not one per file)."""
        query = select(
            func.coalesce(func.sum(CompanyRow.storage_bytes), 0),
            func.coalesce(func.sum(CompanyRow.storage_files), 0),
        )
        async with self.db.session() as session:
            total_bytes, total_files = (await session.execute(query)).one()
        return StorageUsage(int(total_bytes), int(total_files))

    async def nearest_quotas(self, top: int) -> list[QuotaUse]:
        """The `top` companies nearest their storage quota, fullest first. A plan's
        companies share its quota, so only its `top` fullest (by bytes, by files) can be
        nearest; companies with limits of their own are read apart (MAX_OVERRIDDEN)."""
        rows: dict[str, CompanyRow] = {}
        async with self.db.session() as session:
            for query in self._quota_candidates(await self.plans(), top):
                rows.update((row.id, row) for row in await session.scalars(query))
        uses = [_quota_use(await self._company(row)) for row in rows.values()]
        ranked = sorted((u for u in uses if u is not None), key=lambda u: (-u.ratio, u.company_id))
        return ranked[:top]

    def _quota_candidates(self, plans: Mapping[str, Plan], top: int) -> list[Any]:
        plan_of = func.coalesce(CompanyRow.plan, self.default_plan)
        plain = select(CompanyRow).where(CompanyRow.limits == "{}")
        queries = [
            plain.where(plan_of == name).order_by(column.desc(), CompanyRow.id).limit(top)
            for name in plans
            for column in (CompanyRow.storage_bytes, CompanyRow.storage_files)
        ]
        overridden = select(CompanyRow).where(CompanyRow.limits != "{}")
        queries.append(overridden.order_by(CompanyRow.storage_bytes.desc()).limit(MAX_OVERRIDDEN))
        return queries

    # --- internals -----------------------------------------------------------------
    async def _company(self, row: CompanyRow) -> Company:
        plans = await self.plans()
        plan = plans.get(row.plan or self.default_plan) or plans[self.default_plan]
        overrides = _stored_limits(row.limits)
        return Company(
            id=row.id,
            plan=plan.name,
            overrides=overrides,
            limits=overrides.over(plan.limits),
            queue_weight=plan.queue_weight,
            storage=StorageUsage(row.storage_bytes, row.storage_files),
        )

    def _forget(self) -> None:
        self._plans = None
        self._cache.clear()


def _quota_use(company: Company) -> QuotaUse | None:
    """None for a company without a storage quota."""
    pairs = [
        (company.storage.bytes, company.limits.storage_bytes),
        (company.storage.files, company.limits.storage_files),
    ]
    ratios = [used / limit for used, limit in pairs if limit]
    return QuotaUse(company.id, max(ratios)) if ratios else None


def _stored_limits(raw: str) -> Limits:
    return parse_limits(json.loads(raw or "{}"))


def _check_plan_name(name: str) -> None:
    plain = name.replace("_", "").replace("-", "")
    if not (1 <= len(name) <= 64 and name.isascii() and plain.isalnum()):
        raise InvalidInput(f"plan: {PLAN_NAME_RULE}", details={"field": "plan"})


def _encode_cursor(sort: str, value: str, last_id: str) -> str:
    raw = json.dumps([sort, value, last_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, value, last_id = json.loads(raw)
        well_formed = kind == sort and isinstance(value, str) and isinstance(last_id, str)
        numeric = value.isascii() and value.isdigit() and len(value) <= 18
        if well_formed and (sort == "id" or numeric):
            return value, last_id
    except (binascii.Error, ValueError, TypeError):
        pass
    raise InvalidInput(
        "cursor is not one this API returned for this sort", details={"field": "cursor"}
    )
