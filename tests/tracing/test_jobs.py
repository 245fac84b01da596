"""A job runs in the trace of the request that enqueued it: in-process, on BullMQ, in Node.

The context travels as Node BullMQ with bullmq-otel carries it: `opts.telemetry.metadata`,
stored as `tm` in the job's `opts` (a JSON string of the W3C carrier).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tenantry.app import create_app
from tenantry.jobs import BullMQBackend, HandlerRegistry, JobContext, JobService
from tenantry.jobs.queues import QUEUE_NAMES
from tenantry.tracing.tracer import Tracing
from tests.conftest import ADMIN, client_from
from tests.jobs.conftest import job_settings
from tests.tracing.conftest import Traces

NODE_MODULES = Path(os.environ.get("NODE_BULLMQ_DIR", "/tmp/tenantry-node-bullmq")) / "node_modules"


def traceparent(span: ReadableSpan) -> str:
    """W3C trace context: version 00, trace id, parent span id, trace flags (sampled,
    and in level 2 random: 03), each in lower-case hex."""
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


async def enqueue_and_run(app: Any, traces: Traces) -> tuple[ReadableSpan, ReadableSpan, str]:
    """POST a job as the admin for acme; (the request's span, the job's span, its id)."""
    async with client_from(app) as client:
        response = await client.post(
            "/api/queues/ai-processing/jobs",
            json={"name": "summarise", "companyId": "acme", "data": {"input": {"text": "a b"}}},
            headers=ADMIN,
        )
    assert response.status_code == 201, response.text
    [request] = traces.named("POST /api/queues/{queue}/jobs")
    job = await traces.first(lambda s: s.name == "process ai-processing")
    return request, job, response.json()["id"]


def assert_child(job: ReadableSpan, request: ReadableSpan, job_id: str) -> None:
    assert job.kind is SpanKind.CONSUMER
    assert job.context.trace_id == request.context.trace_id
    assert job.parent is not None and job.parent.span_id == request.context.span_id
    assert job.attributes is not None
    assert {
        "messaging.system": "bullmq",
        "messaging.destination.name": "ai-processing",
        "messaging.message.id": job_id,
        "company.id": "acme",  # the job's company, though an admin enqueued it
    }.items() <= dict(job.attributes).items()


async def test_in_process_job_is_a_child_of_the_request(traced_app: Any, traces: Traces) -> None:
    assert not traced_app.state.services.jobs.durable
    request, job, job_id = await enqueue_and_run(traced_app, traces)
    assert_child(job, request, job_id)


async def test_bullmq_job_is_a_child_and_stores_the_context_as_node_does(
    settings_factory: Any, traces: Traces, redis_url: str
) -> None:
    settings = settings_factory(redis_url=redis_url, job_workers_in_app=True)
    app = create_app(settings, tracer_provider=traces.provider)
    async with LifespanManager(app, startup_timeout=30):
        assert app.state.services.jobs.durable
        request, job, job_id = await enqueue_and_run(app, traces)
    assert_child(job, request, job_id)
    async with aioredis.from_url(redis_url) as client:
        raw = await client.hget(f"bull:ai-processing:{job_id}", "opts")
    stored = json.loads(raw)
    # bullmq-otel: propagation.inject into {} then JSON.stringify (no spaces).
    assert stored["tm"] == '{"traceparent":"' + traceparent(request) + '"}'
    assert "telemetry" not in stored


NODE_WORKER = """
const { Worker } = require('bullmq');
const { BullMQOtel } = require('bullmq-otel');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } =
  require('@opentelemetry/sdk-trace-base');
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider();
provider.addSpanProcessor(new SimpleSpanProcessor(exporter));
provider.register();  // the global tracer and the W3C propagator bullmq-otel uses
const connection = JSON.parse(process.argv[2]);
(async () => {
  const worker = new Worker('ai-processing', async () => 'node was here',
    { connection, prefix: 'bull', telemetry: new BullMQOtel('node-worker') });
  await new Promise((resolve) => worker.on('completed', resolve));
  await worker.close();
  const span = exporter.getFinishedSpans().find((s) => s.name === 'process ai-processing');
  console.log(JSON.stringify({
    traceId: span.spanContext().traceId, parentSpanId: span.parentSpanId }));
})().catch((error) => { console.error(error); process.exit(1); });
"""


async def test_a_node_worker_with_bullmq_otel_continues_the_trace(
    traces: Traces, redis_url: str, tmp_path: Path
) -> None:
    node = shutil.which("node")
    # The test command installs them (scripts/services.sh): missing is a failure.
    assert node is not None and (NODE_MODULES / "bullmq-otel").is_dir(), (
        "Node, bullmq or bullmq-otel is missing: run scripts/services.sh"
    )
    service = JobService(job_settings(tmp_path), BullMQBackend(redis_url, "bull", QUEUE_NAMES))
    tracing = service.tracing = Tracing(traces.provider)
    try:
        with tracing.span("enqueuing request") as enqueuing:
            await service.add("ai-processing", "summarise", {"text": "hi"}, "acme")
        parts = urlsplit(redis_url)
        connection = {"host": parts.hostname, "port": parts.port, "db": int(parts.path[1:])}
        script = tmp_path / "worker.js"
        script.write_text(NODE_WORKER)
        process = await asyncio.create_subprocess_exec(
            node,
            str(script),
            json.dumps(connection),
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await service.close()
    assert process.returncode == 0, err.decode()
    seen = json.loads(out.decode().strip().splitlines()[-1])
    context = enqueuing.get_span_context()
    assert seen == {
        "traceId": f"{context.trace_id:032x}",
        "parentSpanId": f"{context.span_id:016x}",
    }


async def test_a_node_enqueued_trace_reaches_the_python_worker(
    traces: Traces, redis_url: str, tmp_path: Path
) -> None:
    """The other way: a job stored with Node's `tm` runs in that trace here."""
    registry = HandlerRegistry()
    ran = asyncio.Event()

    @registry.handler("report", "from-node")
    async def handler(job: JobContext) -> None:
        ran.set()

    backend = BullMQBackend(redis_url, "bull", QUEUE_NAMES)
    service = JobService(job_settings(tmp_path), backend, registry)
    service.tracing = Tracing(traces.provider)
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    metadata = json.dumps({"traceparent": f"00-{trace_id}-{parent}-01"}, separators=(",", ":"))
    queue = backend._queue("report")
    await queue.add("from-node", {"companyId": "acme"}, {"tm": metadata})  # as Node stores it
    await service.start_workers(["report"])
    try:
        await asyncio.wait_for(ran.wait(), 15)
        job = await traces.first(lambda s: s.name == "process report")
    finally:
        await service.close()
    assert f"{job.context.trace_id:032x}" == trace_id
    assert job.parent is not None and f"{job.parent.span_id:016x}" == parent
