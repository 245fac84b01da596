"""Tracing fixtures: an SDK provider whose spans land in memory, and a traced app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import AsyncClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tenantry.app import create_app
from tests.conftest import client_from


@dataclass
class Traces:
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    async def first(self, match: Callable[[ReadableSpan], bool], within: float = 15) -> Any:
        """The first finished span that matches, waiting for it (jobs end in the background)."""
        deadline = time.monotonic() + within
        while True:
            found = [span for span in self.spans() if match(span)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, [span.name for span in self.spans()]
            await asyncio.sleep(0.02)


@pytest.fixture
def traces() -> Iterator[Traces]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Traces(provider, exporter)
    provider.shutdown()


@pytest.fixture
def database_url(migrated_database: Callable[[str], str]) -> str:
    """SQLite only: tracing does not depend on the database (the suite's default runs twice)."""
    return migrated_database("sqlite")


@pytest.fixture
async def traced_app(settings_factory: Any, traces: Traces) -> AsyncIterator[Any]:
    application = create_app(settings_factory(), tracer_provider=traces.provider)
    async with LifespanManager(application, startup_timeout=30):
        yield application


@pytest.fixture
async def traced_client(traced_app: Any) -> AsyncIterator[AsyncClient]:
    async with client_from(traced_app) as http:
        yield http
