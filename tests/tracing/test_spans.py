"""Spans of a traced app: HTTP requests, storage calls, SQL statements, flag events."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text

from tenantry.context import company_scope
from tests.conftest import ADMIN, bearer
from tests.tracing.conftest import Traces

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


def server_span(traces: Traces, name: str) -> ReadableSpan:
    [span] = [s for s in traces.named(name) if s.kind is SpanKind.SERVER]
    return span


async def company_key(app: Any, company: str) -> dict[str, str]:
    key, _ = await app.state.services.keys.create(company, "test")
    return bearer(key)


async def test_a_request_is_one_server_span_continuing_the_callers_trace(
    traced_app: Any, traced_client: AsyncClient, traces: Traces
) -> None:
    headers = await company_key(traced_app, "acme")
    headers["traceparent"] = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"
    response = await traced_client.get("/api/storage/files", headers=headers)
    assert response.status_code == 200
    span = server_span(traces, "GET /api/storage/files")
    assert span.attributes is not None
    assert span.attributes is not None
    assert {
        "http.request.method": "GET",
        "http.route": "/api/storage/files",
        "http.response.status_code": 200,
        "company.id": "acme",  # known only once authenticated, inside the request
    }.items() <= dict(span.attributes).items()
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == CALLER_SPAN_ID
    # Inside it: the storage call and its SQL, in the same trace, for the same company.
    [listing] = traces.named("storage.list")
    assert listing.parent is not None and listing.parent.span_id == span.context.span_id
    assert listing.attributes is not None and listing.attributes["company.id"] == "acme"
    statements = [s for s in traces.spans() if s.kind is SpanKind.CLIENT and s.parent]
    assert any(s.parent.span_id == listing.context.span_id for s in statements if s.parent)


async def test_unmatched_and_failing_requests(traced_client: AsyncClient, traces: Traces) -> None:
    assert (await traced_client.get("/no/such/route")).status_code == 404
    [span] = [s for s in traces.spans() if s.kind is SpanKind.SERVER]
    assert span.name == "GET"  # no route template: the method alone, never the raw path
    assert span.attributes is not None and "http.route" not in span.attributes
    assert span.attributes["http.response.status_code"] == 404
    assert span.attributes["url.path"] == "/no/such/route"
    assert span.status.status_code is StatusCode.UNSET  # a 4xx is the client's error


async def test_storage_calls_are_spans_with_their_key(traced_app: Any, traces: Traces) -> None:
    storage = traced_app.state.services.storage
    with company_scope("acme"):
        stored = await storage.upload(
            b"hello", company_id="acme", category="documents", filename="a.txt"
        )
        download = await storage.open(stored.key, company_id="acme")
        assert b"".join([chunk async for chunk in download.chunks]) == b"hello"
        await storage.signed_url(stored.key, company_id="acme")
        await storage.list_files("acme")
        await storage.delete(stored.key, company_id="acme")
    names = ["storage.upload", "storage.download", "storage.url", "storage.list", "storage.delete"]
    for name in names:
        [span] = traces.named(name)
        assert span.attributes is not None
        assert span.attributes["company.id"] == "acme"
        if name in ("storage.download", "storage.url", "storage.delete"):
            assert span.attributes["tenantry.storage.key"] == stored.key


async def test_each_statement_is_a_span_with_its_shape_never_its_values(
    traced_app: Any, traces: Traces
) -> None:
    db = traced_app.state.services.db
    traces.exporter.clear()
    with company_scope("globex"):
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 40 + :secret AS n"), {"secret": 987654})
    [span] = [s for s in traces.spans() if s.kind is SpanKind.CLIENT]
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "db.system.name": "sqlite",
        "db.system": "sqlite",
        "db.operation.name": "SELECT",
        "db.query.text": "select ? + ? as n",
        "company.id": "globex",
    }
    assert span.name == "SELECT"
    # The monitor still times it, traced or not.
    shapes = traced_app.state.services.queries.monitor.local_series("globex")
    assert shapes


async def test_flag_evaluations_are_events_on_the_current_span(
    traced_app: Any, traced_client: AsyncClient, traces: Traces
) -> None:
    flags = traced_app.state.services.resilience.flags
    response = await traced_client.get(
        "/api/degradation/features/vision-analysis/check?targetId=acme", headers=ADMIN
    )
    assert response.status_code == 200
    span = server_span(traces, "GET /api/degradation/features/{key}/check")
    [event] = [
        e
        for e in span.events
        if e.name == "feature_flag.evaluation"
        and e.attributes is not None
        and e.attributes["feature_flag.key"] == "vision-analysis"
    ]
    assert event.attributes is not None
    enabled = response.json()["enabled"]
    assert dict(event.attributes) == {
        "feature_flag.key": "vision-analysis",
        "feature_flag.provider.name": "tenantry",
        "feature_flag.result.reason": "split",  # its 10 % rollout decided
        "feature_flag.result.variant": "on" if enabled else "off",
        "feature_flag.result.value": enabled,
        "tenantry.flag.reason": response.json()["reason"],
    }
    tracer = traced_app.state.services.jobs.tracing
    await flags.disable("advanced-analytics", actor="test")
    with tracer.span("caller") as caller:
        assert not flags.is_enabled("no-such-flag")  # the fast path is traced too
        assert not flags.is_enabled("advanced-analytics", "acme")
        assert flags.is_enabled("core-api")
    reasons = [(e.attributes or {}).get("feature_flag.result.reason") for e in caller.events]
    assert reasons == ["error", "disabled", "static"]
    assert caller.events[0].attributes["error.type"] == "flag_not_found"
    assert flags.is_enabled("core-api")  # outside any span: no event, and no error
