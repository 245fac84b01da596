"""Node BullMQ and Tenantry share the queues: same keys, same scripts, both directions.

Node and the `bullmq` npm package are installed by scripts/services.sh
(NODE_BULLMQ_DIR, default /tmp/tenantry-node-bullmq).
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

import pytest

from tenantry.jobs import BullMQBackend, HandlerRegistry, JobContext, JobService
from tenantry.jobs.queues import QUEUE_NAMES
from tests.jobs.conftest import eventually, job_settings

NODE_MODULES = Path(os.environ.get("NODE_BULLMQ_DIR", "/tmp/tenantry-node-bullmq")) / "node_modules"

NODE_SCRIPT = """
const { Queue, Worker } = require('bullmq');
const connection = JSON.parse(process.argv[2]);
(async () => {
  const worker = new Worker('ai-processing', async (job) => {
    await job.updateProgress(55);
    await job.log('from node');
    return { seenBy: 'node', companyId: job.data.companyId, text: job.data.text };
  }, { connection, prefix: 'bull' });
  await new Promise((resolve) => worker.on('completed', resolve));
  await worker.close();
  const queue = new Queue('report', { connection, prefix: 'bull' });
  const job = await queue.add('from-node', { companyId: 'acme', n: 7 }, { attempts: 2 });
  console.log(JSON.stringify({ added: job.id }));
  await queue.close();
})().catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture
def node() -> str:
    executable = shutil.which("node")
    # The test command installs both (scripts/services.sh): missing is a failure.
    assert executable is not None and (NODE_MODULES / "bullmq").is_dir(), (
        "Node or its bullmq package is missing: run scripts/services.sh"
    )
    return executable


async def test_node_runs_tenantrys_jobs_and_tenantry_runs_nodes(
    node: str, redis_url: str, tmp_path: Path
) -> None:
    registry = HandlerRegistry()
    ran: list[dict[str, Any]] = []

    @registry.handler("report", "from-node")
    async def from_node(job: JobContext) -> str:
        ran.append({"company": job.company_id, **job.data})
        return "python was here"

    backend = BullMQBackend(redis_url, "bull", QUEUE_NAMES)
    service = JobService(job_settings(tmp_path), backend, registry)
    try:
        job_id = await service.add("ai-processing", "summarise", {"text": "hi"}, "acme")
        parts = urlsplit(redis_url)
        connection = {"host": parts.hostname, "port": parts.port, "db": int(parts.path[1:])}
        script = tmp_path / "interop.js"
        script.write_text(NODE_SCRIPT)
        process = await asyncio.create_subprocess_exec(
            node,
            str(script),
            json.dumps(connection),
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()

        status = await service.get_job_status("ai-processing", job_id)
        assert status.state == "completed"
        assert status.job.result == {"seenBy": "node", "companyId": "acme", "text": "hi"}
        assert status.job.progress == 55
        assert status.logs == ["from node"]

        node_job = json.loads(out.decode().strip().splitlines()[-1])["added"]
        await service.start_workers(["report"])
        done = await eventually(
            lambda: service.get_job_status("report", node_job), lambda s: s.state == "completed"
        )
        assert done.job.result == "python was here"
        assert done.job.attempts == 2
        assert ran == [{"company": "acme", "companyId": "acme", "n": 7}]
        # Fair scheduling leaves Node's job alone (it went straight into `wait`): found by
        # id, the company's own included; not in the company's index, so not in its lists.
        assert (await service.get_job_status("report", node_job, "acme")).state == "completed"
        listed = await service.list_jobs("report", "completed", company_id="acme")
        assert node_job not in [job.id for job in listed]
    finally:
        await service.stop_workers(5)
        await service.close()


NODE_WORKER = """
const { Worker } = require('bullmq');
const connection = JSON.parse(process.argv[2]);
const expected = Number(process.argv[3]);
(async () => {
  let done = 0;
  const worker = new Worker('ai-processing', async (job) => job.data.companyId,
    { connection, prefix: 'bull', concurrency: 2 });
  await new Promise((resolve) => worker.on('completed', () => {
    if (++done === expected) resolve();
  }));
  await worker.close();
})().catch((error) => { console.error(error); process.exit(1); });
"""


async def test_a_node_worker_is_fed_staged_jobs_by_the_dispatcher(
    node: str, redis_url: str, tmp_path: Path
) -> None:
    # More jobs than `wait` is kept deep (6 on ai-processing): the rest stay staged
    # until the dispatch loop (what the wiring runs in the background) moves them.
    service = JobService(job_settings(tmp_path), BullMQBackend(redis_url, "bull", QUEUE_NAMES))
    ids = [await service.add("ai-processing", "t", {}, "acme") for _ in range(15)]
    parts = urlsplit(redis_url)
    connection = {"host": parts.hostname, "port": parts.port, "db": int(parts.path[1:])}
    script = tmp_path / "worker.js"
    script.write_text(NODE_WORKER)

    async def dispatch_loop() -> None:
        while True:
            await service.dispatch_all()
            await asyncio.sleep(0.1)

    loop = asyncio.create_task(dispatch_loop())
    try:
        process = await asyncio.create_subprocess_exec(
            node, str(script), json.dumps(connection), str(len(ids)),
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)}, stderr=subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        for job_id in ids:
            assert (await service.get_job_status("ai-processing", job_id)).state == "completed"
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await service.close()
