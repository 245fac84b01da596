"""What timing every statement costs: the query monitor vs no monitor vs OpenTelemetry.

The same cheap statement (so the overhead is not lost in the statement's own time)
runs N times through one SQLAlchemy connection on in-memory SQLite: bare, with
Tenantry's QueryMonitor attached (under a company, so the per-company path is the
one measured), and with OpenTelemetry's SQLAlchemy instrumentation (spans to a
no-op exporter) when it is installed (`pip install -e '.[bench]'`). Each variant
runs several rounds and keeps its best, the usual way to read through noise on a
shared machine. Run: python -m benchmarks.queries.monitor_overhead
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tenantry.context import company_scope
from tenantry.queries.monitor import QueryMonitor

STATEMENTS = 5_000
ROUNDS = 15
QUERY = text("SELECT :a + 1")


def _round(engine: Engine) -> float:
    """Seconds per statement over one round."""
    with engine.connect() as conn, company_scope("acme"):
        started = time.perf_counter()
        for i in range(STATEMENTS):
            conn.execute(QUERY, {"a": i})
        return (time.perf_counter() - started) / STATEMENTS


def bare() -> Engine:
    return create_engine("sqlite://")


def monitored() -> Engine:
    engine = create_engine("sqlite://")
    QueryMonitor().attach(engine)
    return engine


def traced() -> Engine | None:
    """The QueryMonitor with Tenantry's tracing on: a span per statement, discarded."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        from tenantry.tracing.tracer import Tracing
    except ImportError:
        return None
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_discard()))
    engine = create_engine("sqlite://")
    monitor = QueryMonitor()
    monitor.attach(engine)
    monitor.trace_with(Tracing(provider))
    return engine


def _discard() -> object:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return Discard()


def opentelemetry() -> Engine | None:
    try:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
    except ImportError:
        return None

    class Discard(SpanExporter):
        def export(self, spans: object) -> object:
            from opentelemetry.sdk.trace.export import SpanExportResult

            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    engine = create_engine("sqlite://")
    # The instrumentation's version check stops at SQLAlchemy 2.0; its hooks work on 2.1.
    SQLAlchemyInstrumentor().instrument(
        engine=engine, tracer_provider=provider, skip_dep_check=True
    )
    return engine


def main() -> None:
    variants: list[tuple[str, Callable[[], Engine | None]]] = [
        ("no monitor", bare),
        ("tenantry QueryMonitor", monitored),
        ("QueryMonitor, tracing on", traced),
        ("OpenTelemetry SQLAlchemy", opentelemetry),
    ]
    engines: dict[str, Engine] = {}
    for name, make in variants:
        engine = make()
        if engine is None:
            print(f"{name}: not installed (pip install -e '.[bench]'), skipped")
            continue
        engines[name] = engine
        _round(engine)  # warm up: compiled statement cache, shape cache
    # Rounds interleave the variants, so a busy moment on the machine hits them all.
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(ROUNDS):
        for name, engine in engines.items():
            samples[name].append(_round(engine))
    results = {name: min(values) for name, values in samples.items()}
    spread = {name: statistics.median(values) for name, values in samples.items()}
    for engine in engines.values():
        engine.dispose()
    base = results["no monitor"]
    print(f"{STATEMENTS:,} statements x {ROUNDS} interleaved rounds; best round (median)")
    print(f"{'variant':28} {'µs/statement':>13} {'added µs':>9} {'x bare':>7} {'(median)':>9}")
    for name, seconds in results.items():
        added = (seconds - base) * 1e6
        median = spread[name] * 1e6
        print(f"{name:28} {seconds * 1e6:13.2f} {added:9.2f} {seconds / base:7.2f} {median:9.2f}")
    if "OpenTelemetry SQLAlchemy" in results:
        ours = results["tenantry QueryMonitor"] - base
        theirs = results["OpenTelemetry SQLAlchemy"] - base
        print(f"OpenTelemetry adds {theirs / ours:.1f}x what the QueryMonitor adds")


if __name__ == "__main__":
    main()
