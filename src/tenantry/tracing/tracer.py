"""`Tracing`: the spans and events Tenantry makes, on an OpenTelemetry SDK provider.

Imported only when tracing is on. Every span gets `company.id` from the current
company (`CompanyProcessor`, at its start); the HTTP span, which starts before the
caller is known, gets it again at its end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from tenantry.context import current_company
from tenantry.version import __version__

COMPANY = "company.id"
# HTTP methods a span is named after; others are `_OTHER` (the client picks the method,
# and span names must stay few).
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
Attributes = Mapping[str, AttributeValue]


class CompanyProcessor(SpanProcessor):
    """Stamps each span with the current company as it starts: no call site forgets it."""

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        company = current_company.get()
        if company is not None:
            span.set_attribute(COMPANY, company)


class Tracing:
    """Spans on `provider`. `owned`: built from the OTEL_* variables, so `close` shuts it
    down; a provider the caller passed (a test's) is only flushed."""

    def __init__(self, provider: TracerProvider, *, owned: bool = False) -> None:
        provider.add_span_processor(CompanyProcessor())
        self.provider = provider
        self.owned = owned
        self.tracer = provider.get_tracer("tenantry", __version__)

    @contextmanager
    def span(
        self,
        name: str,
        attributes: Attributes | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        parent: Context | None = None,
    ) -> Iterator[Span]:
        """A span, current while the block runs (an exception is recorded on it)."""
        with self.tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=attributes
        ) as span:
            yield span

    # --- HTTP ------------------------------------------------------------------------
    @contextmanager
    def server_span(self, scope: Mapping[str, Any]) -> Iterator[Span]:
        """The SERVER span of one request, continuing the caller's W3C `traceparent`."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = _method(scope)
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        if method == "_OTHER":
            attributes["http.request.method_original"] = scope["method"]
        with self.span(method, attributes, SpanKind.SERVER, propagate.extract(headers)) as span:
            yield span

    def end_server_span(self, span: Span, scope: Mapping[str, Any], status: int) -> None:
        """What is known once the app has answered: the route template, status, company."""
        route = getattr(scope.get("route"), "path", None)
        if route is not None:
            span.update_name(f"{_method(scope)} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(StatusCode.ERROR)
        company = current_company.get()  # set by authentication, inside the request
        if company is not None:
            span.set_attribute(COMPANY, company)

    # --- jobs ------------------------------------------------------------------------
    def job_metadata(self) -> str | None:
        """The current trace as BullMQ's `opts.telemetry.metadata`: bullmq-otel injects
        the context into an object with the propagation API and JSON.stringify's it."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return json.dumps(carrier, separators=(",", ":")) if carrier else None

    @contextmanager
    def job_span(
        self, queue: str, job_id: str, job_name: str, metadata: str | None
    ) -> Iterator[Span]:
        """The CONSUMER span of one job run, a child of the span that enqueued it."""
        attributes = {
            "messaging.system": "bullmq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": job_id,
            "bullmq.job.name": job_name,
        }
        with self.span(f"process {queue}", attributes, SpanKind.CONSUMER, _parent(metadata)) as s:
            yield s

    # --- SQL -------------------------------------------------------------------------
    def statement_span(self, system: str, query_text: str | None) -> AbstractContextManager[Span]:
        """A CLIENT span for one statement; its text is the normalised shape (literals
        and parameters are `?`), never the values."""
        operation = query_text.split(" ", 1)[0].upper() if query_text else ""
        attributes: dict[str, AttributeValue] = {"db.system.name": system, "db.system": system}
        if operation:
            attributes["db.operation.name"] = operation
        if query_text:
            attributes["db.query.text"] = query_text
        return self.span(operation or system, attributes, SpanKind.CLIENT)

    # --- events (flag evaluations) ---------------------------------------------------
    def event(self, name: str, attributes: Attributes) -> None:
        """An event on the current span; outside any span, nothing."""
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attributes)

    async def close(self) -> None:
        """Export what is buffered; shut the provider down if it is ours."""
        await asyncio.to_thread(self.provider.force_flush)
        if self.owned:
            await asyncio.to_thread(self.provider.shutdown)


def _method(scope: Mapping[str, Any]) -> str:
    method: str = scope["method"]
    return method if method in _METHODS else "_OTHER"


def _parent(metadata: str | None) -> Context:
    """The context a job's metadata carries; without one, an empty context (a root
    span, not a child of whatever task happened to start the worker)."""
    try:
        carrier = json.loads(metadata) if metadata else None
    except ValueError:
        carrier = None
    if not isinstance(carrier, dict):
        return Context()
    return propagate.extract(carrier, context=Context())
