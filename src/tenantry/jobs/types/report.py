"""The report queue: one kind of a company's data for files created between two dates.

    await jobs.generate_report_job("acme", "usage", "2026-11-01", "2026-11-30")

`start` and `end` are inclusive dates (UTC). The CSV is stored as a private file of the
company (category `reports`); see company_data.py for the kinds and the result.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from tenantry.jobs.queues import REPORT
from tenantry.jobs.registry import JobContext
from tenantry.jobs.types.base import JobPayload, JobRequest
from tenantry.jobs.types.company_data import CompanyData, Format, Kind, output_id

NAME = "generate-report"


class ReportJob(JobPayload):
    report_type: Kind
    start: date
    end: date
    format: Format = "csv"
    request_id: str | None = Field(None, max_length=64)

    @field_validator("end")
    @classmethod
    def _not_before_start(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is not None and end < start:
            raise ValueError("end must not be before start")
        return end


def request(
    report_type: str, start: date | str, end: date | str, format: str = "csv"
) -> JobRequest:
    payload = ReportJob.build(
        report_type=report_type,
        start=start,
        end=end,
        format=format,
        request_id=uuid.uuid4().hex,
    )
    return JobRequest(REPORT, NAME, payload)


@dataclass(frozen=True, slots=True)
class GenerateReport:
    """The report handler."""

    data: CompanyData

    async def __call__(self, job: JobContext) -> dict[str, Any]:
        report = ReportJob.of_job(job.data)
        since = datetime.combine(report.start, datetime.min.time(), UTC)
        until = datetime.combine(report.end + timedelta(days=1), datetime.min.time(), UTC)
        await job.progress(10)
        content, rows = await self.data.csv(job.company_id, report.report_type, since, until)
        await job.progress(60)
        period = f"{report.start.isoformat()}-{report.end.isoformat()}"
        filename = f"{report.report_type}-report-{period}-{output_id(job, report.request_id)}.csv"
        return await self.data.store(job, "reports", filename, content, rows)
