"""/api/degradation: flag usage (evaluations per hour) and the stale-flag report, admin only.

The figures are those every process has flushed (each every
TENANTRY_FLAG_USAGE_FLUSH_SECONDS); see `tenantry.resilience.usage` and `.stale`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Query

from tenantry.deps import Router, ServicesDep, admin_key
from tenantry.resilience.service import FlagService
from tenantry.resilience.stale import StaleCode, StaleFlag, StaleReport
from tenantry.resilience.usage import FlagUsageReport, HourCount
from tenantry.schemas import ApiModel

router = Router(prefix="/api/degradation", tags=["degradation"], dependencies=[Depends(admin_key)])
KeyPath = Annotated[str, Path(description="The flag key (percent-encoded).")]
MAX_HOURS = 24 * 3660  # the longest retention TENANTRY_FLAG_USAGE_RETENTION_DAYS allows
MAX_DAYS = 3650


class HourOut(ApiModel):
    hour: datetime
    yes: int
    no: int

    @classmethod
    def of(cls, hour: HourCount) -> HourOut:
        return cls(hour=hour.hour, yes=hour.yes, no=hour.no)


class FlagUsageOut(ApiModel):
    key: str
    yes: int
    no: int
    first_evaluated: datetime | None
    last_evaluated: datetime | None
    hours: list[HourOut]

    @classmethod
    def of(cls, report: FlagUsageReport) -> FlagUsageOut:
        return cls(
            key=report.key,
            yes=report.yes,
            no=report.no,
            first_evaluated=report.first_evaluated,
            last_evaluated=report.last_evaluated,
            hours=[HourOut.of(hour) for hour in report.hours],
        )


class StaleReasonOut(ApiModel):
    code: StaleCode
    text: str


class StaleFlagOut(ApiModel):
    key: str
    enabled: bool
    fully_on: bool
    last_changed: datetime | None
    last_evaluated: datetime | None
    yes: int
    no: int
    reasons: list[StaleReasonOut]

    @classmethod
    def of(cls, stale: StaleFlag) -> StaleFlagOut:
        activity = stale.activity
        return cls(
            key=activity.key,
            enabled=activity.enabled,
            fully_on=activity.fully_on,
            last_changed=activity.last_changed,
            last_evaluated=activity.last_evaluated,
            yes=activity.yes,
            no=activity.no,
            reasons=[StaleReasonOut(code=r.code, text=r.text) for r in stale.reasons],
        )


class StaleReportOut(ApiModel):
    days: int
    as_of: datetime
    usage_recorded_since: datetime | None
    usage_known: bool  # evaluations recorded for the whole window: "unused" can be claimed
    flags: list[StaleFlagOut]

    @classmethod
    def of(cls, report: StaleReport) -> StaleReportOut:
        return cls(
            days=report.days,
            as_of=report.now,
            usage_recorded_since=report.recording_since,
            usage_known=report.usage_known,
            flags=[StaleFlagOut.of(stale) for stale in report.stale],
        )


def _flags(services: ServicesDep) -> FlagService:
    flags: FlagService = services.resilience.flags
    return flags


@router.get("/features/{key}/usage")
async def feature_usage(
    key: KeyPath,
    services: ServicesDep,
    hours: Annotated[int, Query(ge=1, le=MAX_HOURS, description="Hours back, this one in.")] = 24,
) -> FlagUsageOut:
    """Evaluations of the flag per hour (yes and no, every process), and when last evaluated."""
    return FlagUsageOut.of(await _flags(services).usage_of(key, hours))


@router.get("/stale-flags")
async def stale_flags(
    services: ServicesDep,
    days: Annotated[
        int | None,
        Query(ge=1, le=MAX_DAYS, description="N (default: TENANTRY_FLAG_STALE_DAYS)."),
    ] = None,
) -> StaleReportOut:
    """Flags with no change and no evaluation for N days, or 100 % on for N days."""
    return StaleReportOut.of(await _flags(services).stale_flags(days))
