"""Job types: one payload model checks a job at both ends.

A producer's bad payload is a 422 naming the field, before anything is enqueued; a job
that arrives with bad data from another producer (Node, the generic route) fails at
once in its handler, without retries.
"""

from __future__ import annotations

from typing import Any

import pytest

from tenantry.errors import InvalidInput
from tenantry.jobs.backends import PermanentJobError
from tenantry.jobs.types import cleanup, email, notification, report
from tenantry.jobs.types.report import ReportJob


def test_a_producer_names_the_field_as_the_job_data_spells_it() -> None:
    with pytest.raises(InvalidInput) as error:
        report.request("revenue", "2026-01-01", "2026-01-31")
    assert error.value.details == {"field": "reportType", "rule": "literal_error"}
    with pytest.raises(InvalidInput, match="end must not be before start") as error:
        report.request("usage", "2026-02-01", "2026-01-01")
    assert error.value.details["field"] == "end"
    with pytest.raises(InvalidInput) as error:
        notification.request("ftp://example.com", "ping")
    assert error.value.details["field"] == "url"
    with pytest.raises(InvalidInput) as error:
        email.request("not an address", "Hi", "plain")
    assert error.value.details["field"] == "to"


def test_a_request_carries_the_data_node_producers_write() -> None:
    request = report.request("usage", "2026-01-01", "2026-01-31")
    data = request.payload.to_data()
    assert (request.queue, request.name) == ("report", "generate-report")
    assert data["reportType"] == "usage" and data["start"] == "2026-01-01"
    assert set(data) == {"reportType", "start", "end", "format", "requestId"}
    assert ReportJob.of_job(data) == request.payload
    assert cleanup.request().payload.to_data() == {"olderThanSeconds": None}


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        (ReportJob, {"reportType": "usage", "start": "2026-02-01", "end": "2026-01-01"}, "end"),
        (notification.NotificationJob, {"event": "x"}, "url: Field required"),
        (cleanup.CleanupJob, {"olderThanSeconds": True}, "whole number >= 0, not True"),
        (email.EmailJob, {"to": [], "template": "plain"}, "to: List should have at least 1"),
    ],
)
def test_a_handler_refuses_bad_data_permanently(model: Any, data: Any, message: str) -> None:
    with pytest.raises(PermanentJobError, match=message):
        model.of_job(data)
