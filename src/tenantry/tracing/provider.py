"""The SDK tracer provider that the OTEL_* variables describe.

The SDK reads the variables itself: the exporter its endpoint, headers, timeout and
compression (OTEL_EXPORTER_OTLP_*), the provider its sampler and limits, the batch
processor its OTEL_BSP_* sizes, the resource OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES. Tenantry only picks the exporter for the protocol and names
the service "tenantry" when nothing else names it.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from tenantry.settings import ConfigError, Settings

DEFAULT_SERVICE_NAME = "tenantry"


def provider_from_environment(settings: Settings) -> TracerProvider:
    provider = TracerProvider(resource=_resource())
    for name in settings.trace_exporters or ["otlp"]:
        exporter = ConsoleSpanExporter() if name == "console" else _otlp(settings)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _resource() -> Resource:
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _otlp(settings: Settings) -> SpanExporter:
    variable, protocol = settings.otlp_traces_protocol
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError:
            raise ConfigError(
                f"{variable}: grpc needs the gRPC exporter, which is not installed:"
                " pip install opentelemetry-exporter-otlp-proto-grpc"
                " (or use http/protobuf, which tenantry[otel] installs)"
            ) from None
        exporter: SpanExporter = GrpcSpanExporter()
        return exporter
    raise ConfigError(
        f"{variable}: {protocol} is not supported by the Python SDK; use http/protobuf or grpc"
    )
