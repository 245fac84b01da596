"""The export queue: everything of one kind of a company's data, as a CSV file.

    await jobs.export_data_job("acme", "files")     # kinds: files, usage, queries

The file is stored as a private file of the company (category `exports`); see
company_data.py for the kinds, the result and why a re-run stores nothing twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from tenantry.jobs.queues import EXPORT
from tenantry.jobs.registry import JobContext
from tenantry.jobs.types.base import JobPayload, JobRequest
from tenantry.jobs.types.company_data import CompanyData, Format, Kind, output_id

NAME = "export-data"


class ExportJob(JobPayload):
    kind: Kind = "files"
    format: Format = "csv"
    request_id: str | None = Field(None, max_length=64)


def request(kind: str = "files", format: str = "csv") -> JobRequest:
    payload = ExportJob.build(kind=kind, format=format, request_id=uuid.uuid4().hex)
    return JobRequest(EXPORT, NAME, payload)


@dataclass(frozen=True, slots=True)
class ExportData:
    """The export handler."""

    data: CompanyData

    async def __call__(self, job: JobContext) -> dict[str, Any]:
        export = ExportJob.of_job(job.data)
        await job.progress(10)
        content, rows = await self.data.csv(job.company_id, export.kind)
        await job.progress(60)
        filename = f"{export.kind}-export-{output_id(job, export.request_id)}.csv"
        return await self.data.store(job, "exports", filename, content, rows)
