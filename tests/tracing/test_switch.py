"""Off by default (nothing imported, no span); on by the standard OTEL_* variables, over
OTLP/HTTP to a receiver on loopback; clear errors when it cannot be."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tenantry.app import create_app
from tenantry.settings import ConfigError
from tenantry.tracing.middleware import TracingMiddleware
from tenantry.wiring import tracing
from tests.conftest import SETTINGS_VARIABLES, client_from

# What the `otel` extra brings. FastAPI depends on opentelemetry-api and imports it (for
# its own telemetry, on the global provider), and redis-py imports the SDK's metrics when
# it is installed; the trace SDK and the exporters only Tenantry's tracing imports.
OTEL_EXTRA = ("opentelemetry.sdk", "opentelemetry.exporter")
TRACING = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "tenantry.tracing.tracer")
# The app is created with tracing off, then asked which of those were imported.
OFF_PROBE = f"""
import sys
from tenantry.app import create_app
from tenantry.settings import load_settings
create_app(load_settings(data_dir=sys.argv[1]))
heavy = {TRACING!r} + ("tenantry.tracing.provider",)
print(sorted(m for m in sys.modules if m.startswith(heavy)))
"""
# The same with tracing on, where the extra's packages fail to import, as if not installed.
MISSING_PROBE = f"""
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.startswith({OTEL_EXTRA!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, NotInstalled())
from tenantry.app import create_app
from tenantry.settings import ConfigError, load_settings
try:
    create_app(load_settings(data_dir=sys.argv[1]))
except ConfigError as exc:
    print(exc)
"""


def probe(script: str, tmp_path: Any, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_off_by_default_nothing_imports_opentelemetry(tmp_path: Any) -> None:
    assert probe(OFF_PROBE, tmp_path) == "[]"


def test_on_without_the_packages_is_one_clear_error(tmp_path: Any) -> None:
    message = probe(MISSING_PROBE, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert message == (
        "OTEL_EXPORTER_OTLP_ENDPOINT: tracing is on but OpenTelemetry is not installed:"
        " pip install 'tenantry[otel]'"
    )


async def test_off_the_app_makes_no_span(app: Any, client: Any) -> None:
    services = app.state.services
    tracers = [services.jobs, services.storage, services.resilience.flags, services.queries.monitor]
    assert [service.tracing for service in tracers] == [None] * 4
    assert TracingMiddleware not in [m.cls for m in app.user_middleware]
    assert (await client.get("/health")).status_code == 200


def test_grpc_without_its_exporter_is_a_configuration_error(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Missing whether or not this machine has it: a None in sys.modules fails the import.
    for name in ("opentelemetry.exporter.otlp.proto.grpc",
                 "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"):  # fmt: skip
        monkeypatch.setitem(sys.modules, name, None)
    settings = settings_factory(
        otel_exporter_otlp_endpoint="http://127.0.0.1:4317", otel_exporter_otlp_protocol="grpc"
    )
    with pytest.raises(ConfigError, match=r"^OTEL_EXPORTER_OTLP_PROTOCOL: grpc .*pip install"):
        tracing(settings)


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector of one path: decodes each ExportTraceServiceRequest."""

    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf":
            self.received.append(ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []
    handler = type("Handler", (Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


async def test_spans_reach_an_otlp_http_receiver(
    settings_factory: Any,
    receiver: tuple[str, list[ExportTraceServiceRequest]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, received = receiver
    settings_factory()  # clears the developer's variables first
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    app = create_app(settings_factory())
    from asgi_lifespan import LifespanManager

    async with LifespanManager(app, startup_timeout=30):
        async with client_from(app) as client:
            assert (await client.get("/health")).status_code == 200
        tracer = app.state.services.jobs.tracing
        assert tracer.owned
        await asyncio.to_thread(tracer.provider.force_flush)
    spans = [
        (resource.resource, span)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    [(resource, span)] = [(r, s) for r, s in spans if s.name == "GET /health"]
    service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
    assert service == "tenantry"
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["http.route"].string_value == "/health"
    assert attributes["http.response.status_code"].int_value == 200
