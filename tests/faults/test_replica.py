"""A real streaming replica: reads go to it per company, every company reads its own
writes while replay is paused (across processes too), a lagging replica is skipped, a
stopped one fails over to the primary; /ready and the dashboard show the lag."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.app import create_app
from tenantry.db import Database
from tenantry.queries.replicas import ReplicaGate
from tenantry.queries.service import QueryOptimizer, flag_gate, setting_gate
from tenantry.settings import async_database_url, load_settings
from tests.conftest import ADMIN, ADMIN_TOKEN, SETTINGS_VARIABLES
from tests.faults.report import record
from tests.faults.servers import OwnPostgres, OwnReplica

POLL_SECONDS = 0.05
SERVERS = ("replica", "primary")


@dataclass
class Pair:
    primary: OwnPostgres
    replica: OwnReplica


def _sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def _wait(check: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """One primary and its streaming replica for the whole module (initdb once)."""
    primary = OwnPostgres()
    replica = OwnReplica(primary=primary)
    try:
        primary.init()
        primary.start()
        _sql(primary.url, "CREATE TABLE notes (company_id text, body text)")
        _sql(primary.url, "CREATE TABLE counters (company_id text PRIMARY KEY, value int)")
        replica.init()
        replica.start()
        yield Pair(primary, replica)
    finally:
        replica.remove()
        primary.remove()


@contextmanager
def replay_paused(replica: OwnReplica) -> Iterator[None]:
    _sql(replica.url, "SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        _sql(replica.url, "SELECT pg_wal_replay_resume()")


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll `check` every 20 ms; fail after 15 s."""
    for _ in range(750):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within 15 s")


@asynccontextmanager
async def optimizer(
    pair: Pair,
    gate: ReplicaGate | None = None,
    *,
    redis: Redis | None = None,
    max_lag_ms: float = 60_000,
    replica_urls: list[str] | None = None,
) -> AsyncIterator[QueryOptimizer]:
    """A started optimizer on the pair, once the lag monitor has reached every replica."""
    db = Database(async_database_url(pair.primary.url))
    urls = replica_urls or [pair.replica.url]
    queries = QueryOptimizer(
        db,
        redis=redis,
        replica_urls=[async_database_url(url) for url in urls],
        replica_gate=gate or setting_gate(True),
        replica_max_lag_ms=max_lag_ms,
        replica_poll_seconds=POLL_SECONDS,
    )
    queries.start()
    try:
        await until(lambda: _all_up(queries))
        yield queries
    finally:
        await queries.close()
        await db.dispose()


async def _all_up(queries: QueryOptimizer) -> bool:
    return all(r.state == "up" for r in queries.replica_health())


def company() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


async def add_note(queries: QueryOptimizer, company_id: str, body: str) -> None:
    async def write(session: AsyncSession) -> None:
        statement = text("INSERT INTO notes VALUES (:company, :body)")
        await session.execute(statement, {"company": company_id, "body": body})

    await queries.optimized_write(company_id, write, invalidates=["notes"])


async def notes_of(queries: QueryOptimizer, company_id: str) -> tuple[int, list[str]]:
    """Which server answered (its port), and the company's notes as that server has them."""

    async def read(session: AsyncSession) -> list[Any]:
        port = (await session.execute(text("SELECT inet_server_port()"))).scalar_one()
        statement = text("SELECT body FROM notes WHERE company_id = :c ORDER BY body")
        rows = (await session.execute(statement, {"c": company_id})).scalars().all()
        return [port, list(rows)]

    port, bodies = await queries.optimized_read(company_id, "notes", read, cache_ttl=0)
    return port, bodies


# --- routing --------------------------------------------------------------------------


async def test_reads_go_to_the_replica_for_the_companies_the_flag_is_on_for(pair: Pair) -> None:
    acme, globex = company(), company()
    enabled = {acme}
    gate = flag_gate(lambda key, company_id: key == "use-read-replicas" and company_id in enabled)
    async with optimizer(pair, gate) as queries:
        assert (await notes_of(queries, acme))[0] == pair.replica.port
        assert (await notes_of(queries, globex))[0] == pair.primary.port
        enabled.add(globex)
        assert (await notes_of(queries, globex))[0] == pair.replica.port
        await add_note(queries, acme, "on the primary")  # writes never go to a replica
        assert _sql(pair.primary.url, f"SELECT body FROM notes WHERE company_id = '{acme}'")
        [health] = queries.replica_health()
        assert (health.reads, health.failures, queries.primary_reads) == (2, 0, 1)


async def test_reads_spread_round_robin(pair: Pair) -> None:
    urls = [f"{pair.replica.url}?application_name=replica-{n}" for n in (1, 2)]

    async def name(session: AsyncSession) -> str:
        return str((await session.execute(text("SHOW application_name"))).scalar_one())

    async with optimizer(pair, replica_urls=urls) as queries:
        seen = [await queries.optimized_read("acme", "name", name, 0) for _ in range(6)]
        assert Counter(seen) == {"replica-1": 3, "replica-2": 3}


async def test_a_query_error_on_a_replica_is_the_callers(pair: Pair) -> None:
    """A bad query is not a down replica: it is raised, not retried on the primary."""

    async def broken(session: AsyncSession) -> object:
        return (await session.execute(text("SELECT * FROM no_such_table"))).all()

    async with optimizer(pair) as queries:
        with pytest.raises(Exception, match="no_such_table"):
            await queries.optimized_read("acme", "broken", broken, 0)
        assert queries.replica_health()[0].state == "up"
        assert queries.primary_reads == 0


# --- read your writes -------------------------------------------------------------------


async def test_a_company_reads_its_own_write_while_replay_is_paused(pair: Pair) -> None:
    writer, other = company(), company()
    async with optimizer(pair) as queries:
        with replay_paused(pair.replica):
            await add_note(queries, writer, "new")
            assert await notes_of(queries, writer) == (pair.primary.port, ["new"])
            assert await notes_of(queries, other) == (pair.replica.port, [])
            assert queries.replica_health()[0].behind_writes == 1
            # Behind, the replica lacks the row; time alone changes nothing.
            assert not _sql(pair.replica.url, f"SELECT 1 FROM notes WHERE company_id = '{writer}'")
            assert await notes_of(queries, writer) == (pair.primary.port, ["new"])
        answers = []

        async def from_the_replica() -> bool:
            answers.append(await notes_of(queries, writer))
            return answers[-1][0] == pair.replica.port

        await until(from_the_replica)  # once it has replayed the write
        assert {tuple(bodies) for _, bodies in answers} == {("new",)}


async def test_read_your_writes_holds_across_processes_sharing_redis(
    pair: Pair, redis_url: str
) -> None:
    """The write's mark is in Redis: another process's next read waits for it too."""
    writer, other = company(), company()
    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    try:
        async with (
            optimizer(pair, redis=clients[0]) as first,
            optimizer(pair, redis=clients[1]) as second,
        ):
            with replay_paused(pair.replica):
                await add_note(first, writer, "from the first process")
                port, bodies = await notes_of(second, writer)
                assert (port, bodies) == (pair.primary.port, ["from the first process"])
                assert (await notes_of(second, other))[0] == pair.replica.port
            await until(lambda: _reads_replica(second, writer, pair))
            assert await notes_of(second, writer) == (pair.replica.port, ["from the first process"])
    finally:
        for client in clients:
            await client.aclose()


async def _reads_replica(queries: QueryOptimizer, company_id: str, pair: Pair) -> bool:
    return (await notes_of(queries, company_id))[0] == pair.replica.port


# --- lag and outages ------------------------------------------------------------------


async def test_a_lagging_replica_is_skipped_until_it_catches_up(pair: Pair) -> None:
    reader = company()
    async with optimizer(pair, max_lag_ms=250) as queries:
        # An idle primary is no lag, however long ago the replica last replayed a commit.
        for _ in range(5):
            await queries.replicas.poll()
            assert (queries.replica_health()[0].lag_ms or 0) < POLL_SECONDS * 1000
        with replay_paused(pair.replica):
            await add_note(queries, company(), "missed by the replica")
            await until(lambda: _state(queries, "lagging"))
            [health] = queries.replica_health()
            assert health.lag_ms is not None and health.lag_ms > 250
            assert health.lag_bytes is not None and health.lag_bytes > 0
            assert (await notes_of(queries, reader))[0] == pair.primary.port
            assert queries.replica_health()[0].skipped_for_lag >= 1
        await until(lambda: _state(queries, "up"))
        assert (await notes_of(queries, reader))[0] == pair.replica.port


async def _state(queries: QueryOptimizer, state: str) -> bool:
    return queries.replica_health()[0].state == state


async def test_a_stopped_replica_fails_over_to_the_primary(pair: Pair) -> None:
    reader = company()
    async with optimizer(pair) as queries:
        assert (await notes_of(queries, reader))[0] == pair.replica.port
        pair.replica.stop("immediate")
        try:
            answers = [await notes_of(queries, reader) for _ in range(10)]
            assert answers == [(pair.primary.port, [])] * 10  # no error reached the caller
            await until(lambda: _state(queries, "down"))
            assert queries.replica_health()[0].error
        finally:
            pair.replica.start()
        await until(lambda: _reads_replica(queries, reader, pair))


# --- in the app: the flag, /ready, the dashboard ----------------------------------------


async def test_ready_and_the_dashboard_show_each_replicas_lag(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS_VARIABLES & set(os.environ):
        monkeypatch.delenv(name)
    settings = load_settings(
        data_dir=tmp_path / "data",
        upload_dir=tmp_path / "uploads",
        database_url=pair.primary.url,
        database_replica_urls=pair.replica.url,
        replica_poll_ms=POLL_SECONDS * 1000,
        admin_token=ADMIN_TOKEN,
        secret_key="test-secret-key",
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30):
        queries = app.state.services.queries
        await until(lambda: _all_up(queries))
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            flag = "/api/degradation/features/use-read-replicas"
            assert (await notes_of(queries, "acme"))[0] == pair.primary.port
            assert (await http.post(f"{flag}/enable", headers=ADMIN)).status_code == 200
            try:
                assert (await notes_of(queries, "acme"))[0] == pair.replica.port
            finally:
                assert (await http.post(f"{flag}/disable", headers=ADMIN)).status_code == 200
            assert (await notes_of(queries, "acme"))[0] == pair.primary.port

            ready = await http.get("/ready", headers=ADMIN)
            assert ready.status_code == 200
            [replica] = ready.json()["checks"]["queries"]["replicas"]
            assert replica["state"] == "up" and replica["up"] is True
            assert replica["lagMs"] is not None and replica["lagBytes"] is not None
            assert replica["reads"] == 1 and replica["replayLsn"]
            assert str(pair.replica.port) in replica["url"]

            login = await http.post("/admin/login", data={"key": ADMIN_TOKEN, "next": "/admin"})
            assert login.status_code == 303
            page = await http.get("/admin/queries")
            assert page.status_code == 200
            assert 'id="replicas"' in page.text and "Lag ms" in page.text
            assert f"127.0.0.1:{pair.replica.port}" in page.text


# --- a short load -------------------------------------------------------------------------


async def test_no_stale_read_under_load_with_replay_paused_and_resumed(
    pair: Pair, redis_url: str
) -> None:
    """Two processes sharing Redis: each round one writes a company's counter and one
    reads a company's (half the time the one just written); a read older than the last
    write that returned is stale. Replay is paused every other phase, long enough for
    the replica to lag past REPLICA_MAX_LAG_MS."""
    companies = [company() for _ in range(8)]
    values = ", ".join(f"('{c}', 0)" for c in companies)
    _sql(pair.primary.url, f"INSERT INTO counters VALUES {values}")
    expect = f"SELECT count(*) FROM counters WHERE company_id = '{companies[-1]}'"
    _wait(lambda: _sql(pair.replica.url, expect) == [(1,)], what="the seed replayed")
    latest = dict.fromkeys(companies, 0)
    rng = random.Random(16)
    served: Counter[tuple[str, str]] = Counter()  # (phase, server)
    latencies: list[float] = []
    stale = errors = rounds = pauses = 0
    max_lag = 0.0

    async def increment(session: AsyncSession, company_id: str) -> int:
        statement = text(
            "UPDATE counters SET value = value + 1 WHERE company_id = :c RETURNING value"
        )
        return int((await session.execute(statement, {"c": company_id})).scalar_one())

    async def value_of(session: AsyncSession, company_id: str) -> list[int]:
        port = (await session.execute(text("SELECT inet_server_port()"))).scalar_one()
        statement = text("SELECT value FROM counters WHERE company_id = :c")
        return [port, (await session.execute(statement, {"c": company_id})).scalar_one()]

    async def one_round(processes: list[QueryOptimizer], phase: str) -> None:
        nonlocal stale, errors, rounds, max_lag
        rounds += 1
        writer, reader = rng.choice(processes), rng.choice(processes)
        written = rng.choice(companies)
        target = written if rng.random() < 0.5 else rng.choice(companies)
        try:
            latest[written] = await writer.optimized_write(written, lambda s: increment(s, written))
            expected = latest[target]
            started = time.perf_counter()
            port, value = await reader.optimized_read(
                target, "counter", lambda s: value_of(s, target), cache_ttl=0
            )
            latencies.append(time.perf_counter() - started)
        except Exception:
            errors += 1
            return
        served[phase, "replica" if port == pair.replica.port else "primary"] += 1
        stale += value < expected
        max_lag = max(max_lag, reader.replica_health()[0].lag_ms or 0.0)

    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    try:
        async with (
            optimizer(pair, redis=clients[0], max_lag_ms=150) as first,
            optimizer(pair, redis=clients[1], max_lag_ms=150) as second,
        ):
            processes = [first, second]
            for phase in range(5):
                paused = phase % 2 == 1
                with replay_paused(pair.replica) if paused else nullcontext():
                    pauses += paused
                    for _ in range(60):
                        await one_round(processes, "paused" if paused else "running")
                    deadline = time.monotonic() + 10
                    while paused and not await _state(first, "lagging"):
                        assert time.monotonic() < deadline, "the replica never lagged"
                        await one_round(processes, "paused")  # until it lags past the bound
            health = [p.replica_health()[0] for p in processes]
            primary_reads = sum(p.primary_reads for p in processes)
    finally:
        for client in clients:
            await client.aclose()

    assert errors == 0 and stale == 0
    on_replica, on_primary = (sum(n for (_, at), n in served.items() if at == s) for s in SERVERS)
    assert served["running", "replica"] > 0 and served["paused", "replica"] > 0
    assert on_primary > 0
    assert sum(h.skipped_for_lag for h in health) > 0
    assert sum(h.behind_writes for h in health) > 0
    assert on_primary == primary_reads
    ordered = sorted(latencies)
    record(
        "replica-read-your-writes",
        {
            "rounds": rounds,
            "writes": rounds,
            "reads": len(latencies),
            "readsOnReplica": on_replica,
            "readsOnPrimary": on_primary,
            "byPhase": {
                phase: {server: served[phase, server] for server in SERVERS}
                for phase in ("running", "paused")
            },
            "primaryBecauseBehindTheCompanysWrite": sum(h.behind_writes for h in health),
            "primaryBecauseLagging": sum(h.skipped_for_lag for h in health),
            "replayPauses": pauses,
            "maxLagMsSeen": round(max_lag, 1),
            "maxLagMsAllowed": 150,
            "errors": errors,
            "staleReads": stale,
            "readMedianMs": round(statistics.median(ordered) * 1000, 2),
            "readMaxMs": round(ordered[-1] * 1000, 2),
        },
    )
