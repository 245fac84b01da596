"""Many processes, one system: three serve processes and two `tenantry worker`s on one
PostgreSQL database, one Redis and one S3 bucket, driven round robin.

- a flag change through one process is seen by every process within 1 s, and a circuit
  forced open through one is open in all;
- `optimized_write` through one process drops the cached read in all: no stale read;
- a company's API rate limit and storage quota hold for the sum of the processes, and
  so does the failed-auth limit of an address;
- the dashboard shows the same figures on every process;
- a serve process SIGKILLed under load loses no job and no file record.

The five processes are started together on an empty database, so they also migrate it
together (one at a time, behind an advisory lock). The serve processes run
`tests/faults/balance_app.py`: Tenantry's app plus an application's route pair through
the read cache, served as `tenantry serve` serves. Figures: docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from alembic.script import ScriptDirectory

from tenantry.db import alembic_config
from tests.conftest import ADMIN, ADMIN_TOKEN, POSTGRES_URL, REDIS_URL, SETTINGS_VARIABLES
from tests.faults.balance_app import CREATE_TABLE
from tests.faults.report import record
from tests.live import free_port
from tests.redis_lease import leased_redis_db
from tests.storage.conftest import (
    S3_ACCESS_KEY,
    S3_ENDPOINT,
    S3_SECRET_KEY,
    empty_and_delete_bucket,
    s3_admin,
    s3_objects,
)

ROOT = Path(__file__).resolve().parents[2]
SERVERS, WORKERS = 3, 2
QUEUE = "ai-processing"
AUTH_FAILURES = 10  # TENANTRY_AUTH_FAILURES_PER_MINUTE of every process
# Seconds: the issue's "seen by every process within 1 s", as the polls' deadline.
PROPAGATION_BOUND = 1.0


@dataclass
class Process:
    """One serve or worker process of the system."""

    role: str  # "serve" | "worker"
    env: dict[str, str]
    folder: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.role == "serve":
            self.port = free_port()
            command = ["-m", "tests.faults.balance_app", "--port", str(self.port)]
        else:
            command = ["-m", "tenantry", "worker", "--queues", QUEUE]
        self.log = self.folder / f"{self.role}-{time.monotonic_ns()}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, *command],
                cwd=self.folder,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.role} exited during start-up:\n{self.log.read_text()}")
        if self.role == "worker":
            return "worker ready" in self.log.read_text(errors="replace")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(10)


def wait_until_ready(processes: list[Process], within: float = 120) -> None:
    pending = list(processes)
    deadline = time.monotonic() + within
    while pending:
        pending = [p for p in pending if not p.ready()]
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} process(es) not ready in {within} s")
        time.sleep(0.1)


@dataclass
class System:
    servers: list[Process]
    workers: list[Process]
    database_url: str
    bucket: str
    trail: Path  # job ids the workers processed, one a line (tests.jobs.worker_handlers)

    def url(self, n: int) -> str:
        """The n-th server, round robin."""
        return self.servers[n % len(self.servers)].url

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(query, args).fetchall()

    def processed(self) -> set[str]:
        return set(self.trail.read_text().split()) if self.trail.exists() else set()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    folder = tmp_path_factory.mktemp("many-processes")
    with ExitStack() as cleanup:
        database_url = cleanup.enter_context(empty_database())
        redis_url = cleanup.enter_context(leased_redis_db(REDIS_URL, "many-processes"))
        bucket_name = cleanup.enter_context(bucket())
        trail = folder / "processed.txt"
        env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
        env.update(
            PYTHONPATH=str(ROOT),
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            STORAGE_PROVIDER="s3",
            AWS_S3_BUCKET=bucket_name,
            AWS_ACCESS_KEY_ID=S3_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY,
            AWS_ENDPOINT_URL=S3_ENDPOINT,
            TENANTRY_ADMIN_TOKEN=ADMIN_TOKEN,
            TENANTRY_SECRET_KEY="many-processes-secret",
            TENANTRY_AUTH_FAILURES_PER_MINUTE=str(AUTH_FAILURES),
            TENANTRY_LOG_LEVEL="warning",
            JOB_HANDLER_MODULES="tests.jobs.worker_handlers",
        )
        processes = []
        for n, role in enumerate(["serve"] * SERVERS + ["worker"] * WORKERS):
            own = folder / f"{role}-{n}"
            own.mkdir()
            processes.append(Process(role, {**env, "TENANTRY_DATA_DIR": str(own / "data")}, own))
        for process in processes:  # all at once, as a deployment starts them
            cleanup.callback(process.kill)
            process.start()
        wait_until_ready(processes)
        yield System(processes[:SERVERS], processes[SERVERS:], database_url, bucket_name, trail)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@contextmanager
def empty_database() -> Iterator[str]:
    """An empty database (the processes migrate it) with the application's one table."""
    name = f"tenantry_many_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(CREATE_TABLE)
        yield url
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def bucket() -> Iterator[str]:
    client = s3_admin()
    name = f"tenantry-many-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        empty_and_delete_bucket(client, name)


async def company_key(
    http: httpx.AsyncClient, system: System, name: str, limits: dict[str, Any] | None = None
) -> dict[str, str]:
    """A new company (with `limits`, set before any process has looked it up) and a key."""
    company = f"{name}-{uuid.uuid4().hex[:8]}"
    created = await http.post(
        f"{system.url(0)}/api/keys", json={"companyId": company}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    if limits is not None:
        put = await http.put(
            f"{system.url(1)}/api/companies/{company}", json={"limits": limits}, headers=ADMIN
        )
        assert put.status_code == 200, put.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


async def seen_everywhere(
    http: httpx.AsyncClient,
    system: System,
    path: str,
    wanted: Callable[[dict[str, Any]], bool],
    since: float,
    within: float = 5,
) -> list[float]:
    """Poll `path` on every process until each answers as `wanted`; seconds after `since`."""

    async def one(url: str) -> float:
        deadline = since + within
        while True:
            response = await http.get(url + path, headers=ADMIN)
            if response.status_code == 200 and wanted(response.json()):
                return time.monotonic() - since
            assert time.monotonic() < deadline, f"{url}{path}: {response.text}"
            await asyncio.sleep(0.005)

    return list(await asyncio.gather(*(one(server.url) for server in system.servers)))


# --- the processes came up together ---------------------------------------------------


async def processes_started_together_on_an_empty_database_all_serve(
    system: System, http: httpx.AsyncClient
) -> None:
    assert all(p.process and p.process.poll() is None for p in system.servers + system.workers)
    heads = ScriptDirectory.from_config(alembic_config(system.database_url)).get_heads()
    versions = system.sql("SELECT version_num FROM tenantry_alembic_version")
    assert sorted(v for (v,) in versions) == sorted(heads)


# --- flags and circuits --------------------------------------------------------------


async def a_flag_change_through_one_process_is_seen_by_all_within_a_second(
    system: System, http: httpx.AsyncClient
) -> None:
    key = f"many-{uuid.uuid4().hex[:8]}"
    created = await http.post(
        f"{system.url(0)}/api/degradation/features",
        json={"key": key, "enabled": False},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    check = f"/api/degradation/features/{key}/check?targetId=acme"
    await seen_everywhere(
        http, system, check, lambda b: b["reason"] == "disabled", time.monotonic()
    )
    delays: list[float] = []
    for n, action in enumerate(["enable", "disable", "enable"]):  # through each process
        changed = await http.post(
            f"{system.url(n)}/api/degradation/features/{key}/{action}", headers=ADMIN
        )
        assert changed.status_code == 200, changed.text
        answered = time.monotonic()
        delays += await seen_everywhere(
            http, system, check, _enabled(action == "enable"), answered, PROPAGATION_BOUND
        )
    record("many-processes-flags", {"changes": 3, "processes": SERVERS, **_spread(delays)})


async def a_circuit_forced_open_through_one_process_is_open_in_all(
    system: System, http: httpx.AsyncClient
) -> None:
    path = "/api/degradation/circuits/ai-service"
    opened = await http.post(f"{system.url(1)}{path}/open", headers=ADMIN)
    assert opened.status_code == 200, opened.text
    answered = time.monotonic()
    delays = await seen_everywhere(
        http, system, path, lambda b: b["state"] == "forced_open", answered, PROPAGATION_BOUND
    )
    reset = await http.post(f"{system.url(2)}{path}/reset", headers=ADMIN)
    assert reset.status_code == 200
    answered = time.monotonic()
    closed = lambda b: b["state"] == "closed"  # noqa: E731
    delays += await seen_everywhere(http, system, path, closed, answered, PROPAGATION_BOUND)
    record("many-processes-circuits", {"changes": 2, "processes": SERVERS, **_spread(delays)})


def _enabled(on: bool) -> Callable[[dict[str, Any]], bool]:
    return lambda check: check["enabled"] is on


def _spread(delays: list[float]) -> dict[str, float]:
    ordered = sorted(delays)
    return {
        "medianMs": round(ordered[len(ordered) // 2] * 1000, 1),
        "maxMs": round(ordered[-1] * 1000, 1),
    }


# --- the read cache ------------------------------------------------------------------


async def a_write_through_one_process_leaves_no_stale_read_in_any(
    system: System, http: httpx.AsyncClient
) -> None:
    """After each write returns, a read on every process has the new value; and readers
    hammering every process meanwhile (to race the invalidation) never read a value
    older than the last write that had returned when they asked."""
    key = await company_key(http, system, "cache")
    writes = 20
    acknowledged = 0  # the last value whose write has returned
    stale: list[tuple[int, int]] = []
    reads = Counter[str]()
    done = asyncio.Event()

    async def read(n: int) -> None:
        floor = acknowledged
        response = await http.get(f"{system.url(n)}/app/balance", headers=key)
        assert response.status_code == 200, response.text
        reads["total"] += 1
        if response.json()["value"] < floor:
            stale.append((floor, response.json()["value"]))

    async def hammer(n: int) -> None:
        for m in itertools.count(n):
            if done.is_set():
                return
            await read(m)

    readers = [asyncio.create_task(hammer(n)) for n in range(SERVERS)]
    try:
        for value in range(1, writes + 1):
            written = await http.put(
                f"{system.url(value)}/app/balance", json={"value": value}, headers=key
            )
            assert written.status_code == 200, written.text
            acknowledged = value
            reads["afterWrite"] += SERVERS
            await asyncio.gather(*(read(n) for n in range(SERVERS)))
    finally:
        done.set()
        await asyncio.gather(*readers)
    figures = {"writes": writes, "reads": reads["total"], "staleReads": len(stale)}
    record("many-processes-cache", {**figures, "readsRightAfterAWrite": reads["afterWrite"]})
    assert not stale, f"{len(stale)} stale reads (wanted at least, got): {stale[:5]}"


# --- limits --------------------------------------------------------------------------


async def a_company_rate_limit_holds_for_the_sum_of_the_processes(
    system: System, http: httpx.AsyncClient
) -> None:
    limit, sent = 20, 45  # 15 a process: under the limit in each, over it in all
    key = await company_key(http, system, "rate", {"apiRequestsPerMinute": limit})
    responses = await asyncio.gather(
        *(http.get(f"{system.url(n)}/api/me", headers=key) for n in range(sent))
    )
    statuses = Counter(r.status_code for r in responses)
    record("many-processes-rate-limit", {"limit": limit, "sent": sent, **_by_status(statuses)})
    assert statuses == {200: limit, 429: sent - limit}


async def a_storage_quota_holds_for_the_sum_of_the_processes(
    system: System, http: httpx.AsyncClient
) -> None:
    quota, sent = 7, 15
    key = await company_key(http, system, "quota", {"storageFiles": quota})
    responses = await asyncio.gather(*(_upload(http, system.url(n), key, n) for n in range(sent)))
    statuses = Counter(r.status_code for r in responses)
    company = (await http.get(f"{system.url(0)}/api/me", headers=key)).json()["companyId"]
    stored = system.sql(
        "SELECT count(*) FROM tenantry_storage_files WHERE company_id = %s", company
    )
    record("many-processes-quota", {"quota": quota, "sent": sent, **_by_status(statuses)})
    assert statuses == {201: quota, 403: sent - quota}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 403} == {
        "QUOTA_EXCEEDED"
    }
    assert stored == [(quota,)]


async def the_failed_auth_limit_of_an_address_holds_for_the_sum_of_the_processes(
    system: System, http: httpx.AsyncClient
) -> None:
    """From an address of its own (127.0.0.2), so the other tests' addresses keep theirs."""
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport, timeout=30) as guesser:
        wrong = {"Authorization": "Bearer tnt_000000000000_" + "a" * 43}
        sent = 3 * AUTH_FAILURES
        responses = await asyncio.gather(
            *(guesser.get(f"{system.url(n)}/api/me", headers=wrong) for n in range(sent))
        )
        statuses = Counter(r.status_code for r in responses)
        valid = [(await guesser.get(f"{s.url}/api/me", headers=ADMIN)) for s in system.servers]
    record("many-processes-failed-auth", {"limit": AUTH_FAILURES, **_by_status(statuses)})
    assert statuses == {401: AUTH_FAILURES, 429: sent - AUTH_FAILURES}
    assert [r.status_code for r in valid] == [200] * SERVERS  # a valid key still gets in


def _by_status(statuses: Counter[int]) -> dict[str, Any]:
    return {"byStatus": {str(k): v for k, v in sorted(statuses.items())}}


async def _upload(
    http: httpx.AsyncClient, url: str, key: dict[str, str], n: int, size: int = 2048
) -> httpx.Response:
    content = os.urandom(size)
    return await http.post(
        f"{url}/api/storage/files",
        data={"category": "many"},
        files={"file": (f"f{n}.bin", content, "application/octet-stream")},
        headers=key,
    )


# --- the dashboard -------------------------------------------------------------------

PAGES = ["/admin", "/admin/queues", "/admin/storage", "/admin/companies", "/admin/circuits"]
PAGES += ["/admin/flags"]


class SharedText(HTMLParser):
    """A page's visible text, without what is marked as this process's own
    (`data-this-process`) and without the charts (sampled by each process)."""

    SKIP = {"script", "style", "svg"}
    VOID = {"input", "br", "img", "meta", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping: list[str] = []  # the open elements of a skipped subtree

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        own = any(name == "data-this-process" for name, _ in attrs)
        if tag not in self.VOID and (self._skipping or own or tag in self.SKIP):
            self._skipping.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._skipping:  # also closes what was left open inside it
            while self._skipping.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if not self._skipping and data.strip():
            self.parts.append(" ".join(data.split()))

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return "\n".join(parser.parts)


async def the_dashboard_shows_the_same_figures_on_every_process(
    system: System, http: httpx.AsyncClient
) -> None:
    # Something to count: files, a failed job (no trail to write to), a circuit forced open.
    key = await company_key(http, system, "dash")
    for n in range(SERVERS):
        assert (await _upload(http, system.url(n), key, n)).status_code == 201
    job = {"name": "tick", "companyId": "dash", "data": {}, "options": {"attempts": 1}}
    added = await http.post(f"{system.url(1)}/api/queues/{QUEUE}/jobs", json=job, headers=ADMIN)
    assert added.status_code == 201, added.text
    failed = f"/api/queues/{QUEUE}/jobs/{added.json()['id']}"
    await _until(lambda: _state(http, system.url(2) + failed), "failed")
    circuit = "/api/degradation/circuits/external-api"
    assert (await http.post(f"{system.url(2)}{circuit}/open", headers=ADMIN)).status_code == 200
    await seen_everywhere(
        http, system, circuit, lambda b: b["state"] == "forced_open", time.monotonic()
    )
    # One login, through one process, is a session on every process.
    login = await http.post(
        f"{system.url(0)}/admin/login", data={"key": ADMIN_TOKEN, "next": "/admin"}
    )
    assert login.status_code == 303, login.text
    cookies = "; ".join(f"{k}={v}" for k, v in login.cookies.items())
    try:
        pages = await _same_everywhere(http, system, cookies)
    finally:
        await http.post(f"{system.url(0)}{circuit}/reset", headers=ADMIN)
    overview = pages["/admin"]
    assert re.search(r"\b1\nopen circuits\b", overview), overview
    assert re.search(r"\b[1-9]\d*\njobs failed\b", overview), overview
    record("many-processes-dashboard", {"pages": len(PAGES), "processes": SERVERS, "differ": 0})


async def _same_everywhere(http: httpx.AsyncClient, system: System, cookies: str) -> dict[str, str]:
    return {page: await _same_on_all(http, system, page, cookies) for page in PAGES}


async def _same_on_all(http: httpx.AsyncClient, system: System, page: str, cookies: str) -> str:
    """The page's shared text, once it is the same on every process. Each try fetches it
    from all processes at once; a few tries, as counts move while workers run, and the
    slow-query log reaches Redis at each process's flush (QUERY_METRICS_FLUSH_SECONDS)."""
    deadline = time.monotonic() + 8
    while True:
        texts = await asyncio.gather(
            *(_page(http, server.url + page, cookies) for server in system.servers)
        )
        if len(set(texts)) == 1:
            return texts[0]
        if time.monotonic() > deadline:
            first = texts[0].splitlines()
            diffs = [difflib.unified_diff(first, t.splitlines(), lineterm="") for t in texts[1:]]
            pytest.fail(f"{page} differs between processes:\n" + "\n".join(map("\n".join, diffs)))
        await asyncio.sleep(0.1)


async def _page(http: httpx.AsyncClient, url: str, cookies: str) -> str:
    response = await http.get(url, headers={"Cookie": cookies})
    assert response.status_code == 200, (url, response.status_code)
    return SharedText.of(response.text)


async def _state(http: httpx.AsyncClient, url: str) -> str:
    return str((await http.get(url, headers=ADMIN)).json()["state"])


async def _until(check: Callable[[], Awaitable[Any]], wanted: Any, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while (got := await check()) != wanted:
        assert time.monotonic() < deadline, f"still {got!r}, wanted {wanted!r}"
        await asyncio.sleep(0.05)


# --- a serve process killed under load ------------------------------------------------


@dataclass
class Load:
    """Uploads and enqueues, round robin. A request that fails at the connection level is
    sent again to the next process, as a load balancer retries on another backend; an
    enqueue names its job id, so a retried one is the same job, never a second."""

    system: System
    key: dict[str, str]
    company: str
    statuses: Counter[str] = field(default_factory=Counter)
    connection_errors: Counter[int] = field(default_factory=Counter)  # by server index
    uploaded: dict[str, int] = field(default_factory=dict)  # key → size, of every 201
    enqueued: set[str] = field(default_factory=set)  # job ids of every 201

    async def send(self, http: httpx.AsyncClient, n: int) -> None:
        if n % 2:
            body = {
                "name": "tick",
                "companyId": self.company,
                "data": {"trail": str(self.system.trail), "seconds": 0},
                "options": {"jobId": f"kill-{n}"},
            }
            path = f"/api/queues/{QUEUE}/jobs"
            response = await self._retrying(
                n, lambda url: http.post(url + path, json=body, headers=ADMIN)
            )
            self.statuses[f"enqueue {response.status_code}"] += 1
            if response.status_code == 201:
                self.enqueued.add(response.json()["id"])
        else:
            response = await self._retrying(n, lambda url: _upload(http, url, self.key, n))
            self.statuses[f"upload {response.status_code}"] += 1
            if response.status_code == 201:
                self.uploaded[response.json()["key"]] = response.json()["size"]

    async def _retrying(
        self, n: int, request: Callable[[str], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        for attempt in range(SERVERS):
            index = (n + attempt) % SERVERS
            try:
                return await request(self.system.servers[index].url)
            except httpx.TransportError:
                self.connection_errors[index] += 1
        raise AssertionError(f"request {n}: no process answered")


async def a_serve_process_killed_under_load_loses_no_job_and_no_file(
    system: System, http: httpx.AsyncClient
) -> None:
    key = await company_key(http, system, "kill")
    company = (await http.get(f"{system.url(0)}/api/me", headers=key)).json()["companyId"]
    load, victim = Load(system, key, company), system.servers[-1]
    operations, clients, kill_at = 150, 6, 50
    sequence = itertools.count()

    async def client() -> None:
        while (n := next(sequence)) < operations:
            if n == kill_at:
                victim.kill()  # SIGKILL: in-flight requests get no answer
            await load.send(http, n)

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    load_seconds = time.monotonic() - started
    for _ in range(600):  # up to 60 s for the workers
        if load.enqueued <= system.processed():
            break
        await asyncio.sleep(0.1)
    lost_jobs = load.enqueued - system.processed()
    query = "SELECT key, size FROM tenantry_storage_files WHERE company_id = %s"
    records = dict(system.sql(query, company))
    objects = {o for o in s3_objects(system.bucket) if o.startswith(f"companies/{company}/")}
    lost_files = [
        k for k, size in load.uploaded.items() if records.get(k) != size or k not in objects
    ]
    record(
        "many-processes-kill",
        {
            "operations": operations,
            "loadSeconds": round(load_seconds, 1),
            "byStatus": dict(sorted(load.statuses.items())),
            "connectionErrorsRetried": sum(load.connection_errors.values()),
            "jobsEnqueued": len(load.enqueued),
            "jobsProcessed": len(load.enqueued & system.processed()),
            "jobsLost": len(lost_jobs),
            "filesUploaded": len(load.uploaded),
            "fileRecords": len(records),
            "filesLost": len(lost_files),
            "objectsWithoutRecord": len(objects - set(records)),
        },
    )
    assert set(load.connection_errors) == {SERVERS - 1}, load.connection_errors  # the victim's
    assert all(status.split()[1].startswith("2") for status in load.statuses), load.statuses
    assert not lost_jobs, f"{len(lost_jobs)} jobs lost"
    assert not lost_files, f"{len(lost_files)} files lost"


# --- the test ------------------------------------------------------------------------

PARTS = [
    processes_started_together_on_an_empty_database_all_serve,
    a_flag_change_through_one_process_is_seen_by_all_within_a_second,
    a_circuit_forced_open_through_one_process_is_open_in_all,
    a_write_through_one_process_leaves_no_stale_read_in_any,
    a_company_rate_limit_holds_for_the_sum_of_the_processes,
    a_storage_quota_holds_for_the_sum_of_the_processes,
    the_failed_auth_limit_of_an_address_holds_for_the_sum_of_the_processes,
    the_dashboard_shows_the_same_figures_on_every_process,
    a_serve_process_killed_under_load_loses_no_job_and_no_file,  # last: it leaves two
]


async def test_many_processes_behave_as_one_system(
    system: System, http: httpx.AsyncClient, subtests: pytest.Subtests
) -> None:
    """One test in named parts (each reported on its own), so the five processes start
    once: pytest-xdist's worksteal hands separate tests of a module to other workers,
    and each worker would start five processes of its own."""
    for part in PARTS:
        with subtests.test(part.__name__):
            await part(system, http)
