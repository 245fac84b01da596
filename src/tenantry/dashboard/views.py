"""Jinja2 templates and the helpers every page shares."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from tenantry.dashboard.durations import format_duration
from tenantry.sessions import DashboardSession

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

NAV = [
    ("overview", "/admin", "Overview"),
    ("queues", "/admin/queues", "Queues"),
    ("queries", "/admin/queries", "Queries"),
    ("circuits", "/admin/circuits", "Circuits"),
    ("flags", "/admin/flags", "Flags"),
    ("segments", "/admin/segments", "Segments"),
    ("flag-usage", "/admin/flag-usage", "Flag usage"),
    ("storage", "/admin/storage", "Storage"),
    ("companies", "/admin/companies", "Companies"),
]


def render(
    request: Request,
    template: str,
    session: DashboardSession | None,
    page: str = "",
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page, or only its live block for the every-few-seconds htmx refresh."""
    context.update(
        root=request.scope.get("root_path", ""),  # a mount's prefix; every link starts so
        nav=NAV,
        page=page,
        csrf=session.csrf if session else "",
        partial=request.headers.get("hx-request") == "true"
        and request.headers.get("hx-target") == "live",
    )
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def human_bytes(size: float | int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def ms_time(epoch_ms: int | None) -> str:
    """BullMQ's epoch milliseconds as a UTC time people read."""
    if not epoch_ms:
        return "—"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def utc_time(moment: datetime | None) -> str:
    """An aware datetime as the UTC time people read (the dashboard says every time in UTC)."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["bytes"] = human_bytes
templates.env.filters["ms_time"] = ms_time
templates.env.filters["utc"] = utc_time
templates.env.filters["duration"] = format_duration
