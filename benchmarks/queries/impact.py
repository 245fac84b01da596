"""The original plan's "Performance Impact" table, measured: bare, read cache, cache + indexes.

The plan claimed, for its query layer: average query time 200 -> 50 ms, p95 500 ->
150 ms, cache hit rate 0 -> 60-80 %, slow queries 50/min -> 5/min. This benchmark
runs one multi-tenant workload three ways through Tenantry's own API and prints
Tenantry's figures beside those claims:

1. bare: the monitor on, no cache: every read runs its statement (a plain session,
   as an application without Tenantry's cache would);
2. cache: every read through `QueryOptimizer.optimized_read`, every write through
   `optimized_write` dropping the company's affected names;
3. cache + indexes: as 2, after the indexes the advisor recommended for run 1's
   workload (`GET /api/query-optimizer/indexes`) were built through
   `POST /api/query-optimizer/indexes/apply` (QUERY_APPLY_INDEXES=true).

The workload: a fresh PostgreSQL database with orders, events and products of 1,000
companies whose sizes are Zipf-skewed (s = 1.1; the largest holds ~18 % of every
table), no index but the primary keys. Traffic is Zipf-skewed the same way: 8
concurrent clients, each a loop of 80 % reads (a company's 20 most recent orders,
one of its recent orders by id, a 30-day report by status, a 7-day activity count by
kind, a product list by category) and 20 % writes (a new order, or an order's status
changed; each with an event), for a fixed time per run. The service is a real
`create_app()` app in this process (no Redis: the in-process cache); the figures are
the monitor's own, read over HTTP from `GET /api/query-optimizer/statistics` and
`/metrics` after each run (reset with `DELETE /api/query-optimizer/metrics` before).

Every read is checked against the writes that had returned before it started: the
report and activity counts must include every such insert, the recent list must show
the newest such order (unless 20 newer ones pushed it out), an order read by id must
show at least the version its last returned update wrote. A read that misses one is
stale; there must be none.

Run: python -m benchmarks.queries.impact [--quick] [--duration 30] [--concurrency 8]
[--slow-ms 100] (PostgreSQL on 127.0.0.1:5432, HypoPG for the advice; ~2.5 min, or
~10 s with --quick). The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.app import create_app
from tenantry.container import Services
from tenantry.context import company_scope
from tenantry.settings import load_settings

SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN = "bench-admin-" + uuid.uuid4().hex
API = "/api/query-optimizer"

# The original plan's table: (row, before, after).
CLAIMS = {
    "avg": ("average query time, ms", "200", "50"),
    "p95": ("p95 query time, ms", "500", "150"),
    "hit": ("cache hit rate, %", "0", "60-80"),
    "slow": ("slow queries per minute", "50", "5"),
}


@dataclass(frozen=True)
class Scale:
    companies: int
    orders: int
    events: int
    products: int
    duration: float  # seconds per run, measured
    warmup: float  # seconds of the same workload before each run, not measured
    concurrency: int
    slow_ms: float


FULL = Scale(1000, 600_000, 600_000, 100_000, 30.0, 10.0, 8, 100.0)
QUICK = Scale(100, 20_000, 20_000, 4_000, 1.5, 0.25, 4, 20.0)

SCHEMA = [
    "CREATE TABLE products (id int PRIMARY KEY, company_id text NOT NULL, name text NOT NULL,"
    " category text NOT NULL, price_cents int NOT NULL)",
    "CREATE TABLE orders (id bigserial PRIMARY KEY, company_id text NOT NULL,"
    " customer_id int NOT NULL, status text NOT NULL, total_cents int NOT NULL,"
    " version int NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    "CREATE TABLE events (id bigserial PRIMARY KEY, company_id text NOT NULL, order_id bigint,"
    " kind text NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " payload text)",
]
STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled"]
KINDS = ["order_created", "order_updated", "login", "view", "export"]
CATEGORIES = [f"cat{i}" for i in range(10)]
RECENT = 20  # orders in the recent list
HOT_IDS = 20  # a company's recent orders that are read (and updated) by id


def company_name(rank: int) -> str:
    return f"c{rank:04d}"


def zipf_cumulative(companies: int, s: float = 1.1) -> list[float]:
    weights = [1 / (k**s) for k in range(1, companies + 1)]
    total = sum(weights)
    return list(itertools.accumulate(w / total for w in weights))


def data_sql(scale: Scale, cumulative: list[float]) -> list[str]:
    """INSERTs that fill the schema, each row's company drawn Zipf-like (binary search
    of the cumulative weights by width_bucket)."""
    bounds = "ARRAY[" + ",".join(f"{b:.9f}" for b in cumulative[:-1]) + "]::float8[]"
    tenant = f"'c' || lpad((1 + width_bucket(random(), {bounds}))::text, 4, '0')"
    year = "now() - random() * interval '365 days'"
    return [
        "SELECT setseed(0.42)",
        f"INSERT INTO products SELECT g, {tenant}, 'product ' || g,"
        f" 'cat' || (random() * 9)::int, (random() * 100000)::int"
        f" FROM generate_series(1, {scale.products}) g",
        f"INSERT INTO orders (company_id, customer_id, status, total_cents, created_at)"
        f" SELECT {tenant}, (random() * 50000)::int,"
        f" (ARRAY{STATUSES!r})[1 + (random() * 4)::int], (random() * 500000)::int, {year}"
        f" FROM generate_series(1, {scale.orders}) g",
        f"INSERT INTO events (company_id, order_id, kind, created_at, payload)"
        f" SELECT {tenant}, NULL, (ARRAY{KINDS!r})[1 + (random() * 4)::int], {year}, md5(g::text)"
        f" FROM generate_series(1, {scale.events}) g",
    ]


# --- the application's statements ---------------------------------------------------
RECENT_ORDERS = text(
    "SELECT id, status, total_cents, version, created_at FROM orders"
    " WHERE company_id = :c ORDER BY created_at DESC LIMIT 20"
)
ORDER_BY_ID = text(
    "SELECT id, status, total_cents, version FROM orders WHERE id = :id AND company_id = :c"
)
REPORT = text(
    "SELECT status, count(*), sum(total_cents) FROM orders"
    " WHERE company_id = :c AND created_at >= :since GROUP BY status ORDER BY status"
)
ACTIVITY = text(
    "SELECT kind, count(*) FROM events WHERE company_id = :c AND created_at >= :since"
    " GROUP BY kind ORDER BY kind"
)
PRODUCTS = text(
    "SELECT id, name, price_cents FROM products WHERE company_id = :c AND category = :cat"
    " ORDER BY price_cents DESC LIMIT 20"
)
NEW_ORDER = text(
    "INSERT INTO orders (company_id, customer_id, status, total_cents)"
    " VALUES (:c, :customer, 'pending', :total) RETURNING id, created_at"
)
SET_STATUS = text(
    "UPDATE orders SET status = :status, version = version + 1"
    " WHERE id = :id AND company_id = :c RETURNING version"
)
NEW_EVENT = text(
    "INSERT INTO events (company_id, order_id, kind) VALUES (:c, :order, :kind)"
)  # fmt: skip

# (operation, share of all operations)
MIX = [
    ("recent", 0.30),
    ("order", 0.20),
    ("report", 0.10),
    ("activity", 0.10),
    ("products", 0.10),
    ("insert", 0.10),
    ("update", 0.10),
]
READS = {"recent", "order", "report", "activity", "products"}
# Which writes drop a read's entry (an order by id: an update of that order, one of the
# company's HOT_IDS, read and updated alike; a product list: none).
DROPPED_BY: dict[str, tuple[str, ...]] = {
    "recent": ("insert", "update"),
    "order": ("update",),
    "report": ("insert", "update"),
    "activity": ("insert", "update"),
    "products": (),
}


def hit_ceiling() -> float:
    """The hit rate of a company whose entries are never cold, given what each write drops.

    Between two writes that drop an entry come r reads of it on average (r = its read
    share / those writes' share); the first misses, so at best it hits 1 - 1 / (1 + r).
    """
    share = dict(MIX)
    hits = 0.0
    for op, writes in DROPPED_BY.items():
        dropping = sum(share[w] for w in writes)
        ratio = share[op] / dropping if dropping else float("inf")
        hits += share[op] * (1 - 1 / (1 + ratio))
    return hits / sum(share[op] for op in READS)


@dataclass
class Truth:
    """What the writes that have returned make every later read show."""

    report_since: datetime
    activity_since: datetime
    base_orders: dict[str, int]  # orders in the report window at the start
    base_events: dict[str, int]  # events in the activity window at the start
    hot_ids: dict[str, list[int]]
    inserted: dict[str, int] = field(default_factory=dict)  # returned inserts
    written: dict[str, int] = field(default_factory=dict)  # returned writes (one event each)
    newest: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)


@dataclass
class RunResult:
    label: str
    seconds: float
    reads: int
    writes: int
    checked: dict[str, int]
    stale: dict[str, int]
    statistics: dict[str, Any]
    shapes: list[dict[str, Any]]
    outside_company: int  # statements the monitor saw outside any company (Tenantry's own)
    errors: int
    busiest_hit_rate: float | None = None

    def absorb(self, warmup: RunResult) -> None:
        """The warm-up's reads were checked too: their stale reads count."""
        for op, n in warmup.checked.items():
            self.checked[op] = self.checked.get(op, 0) + n
        for op, n in warmup.stale.items():
            self.stale[op] = self.stale.get(op, 0) + n
        self.errors += warmup.errors

    @property
    def stale_reads(self) -> int:
        return sum(self.stale.values())

    @property
    def slow_per_minute(self) -> float:
        return float(self.statistics["slowCount"]) / (self.seconds / 60)

    @property
    def db_ms_per_read(self) -> float | None:
        """The monitor's total time of the workload's SELECTs over the reads asked for
        (a read the cache answered adds a read and no time)."""
        total = sum(
            company["totalMs"] or 0.0
            for shape in self.shapes
            if (shape["statement"] or "").lstrip().upper().startswith("SELECT")
            for company in shape["companies"]
            if company["companyId"] is not None
        )
        return total / self.reads if self.reads else None


def _rows(result: Any) -> list[list[Any]]:
    return [list(row) for row in result]


class Workload:
    def __init__(self, services: Services, truth: Truth, cumulative: list[float]) -> None:
        self.services = services
        self.truth = truth
        self.cumulative = cumulative

    def company(self, rng: random.Random) -> str:
        """A company drawn by traffic: large tenants make more requests."""
        rank = bisect.bisect_left(self.cumulative, rng.random())
        return company_name(min(rank, len(self.cumulative) - 1) + 1)

    async def read(self, cached: str | None, company: str, name: str,
                   fn: Callable[[AsyncSession], Awaitable[Any]]) -> Any:  # fmt: skip
        if cached is None:  # bare: the statement runs every time, monitored like any other
            with company_scope(company):
                async with self.services.db.session() as session:
                    return await fn(session)
        return await self.services.queries.optimized_read(company, cached + name, fn)

    async def operation(self, op: str, rng: random.Random, cached: str | None,
                        result: RunResult) -> None:  # fmt: skip
        truth = self.truth
        c = self.company(rng)
        # What had returned before this operation started.
        inserted, written = truth.inserted.get(c, 0), truth.written.get(c, 0)
        newest = truth.newest.get(c)
        if op == "recent":

            async def recent(session: AsyncSession) -> Any:
                rows = await session.execute(RECENT_ORDERS, {"c": c})
                return [[i, s, t, v, at.isoformat()] for i, s, t, v, at in rows]

            value = await self.read(cached, c, "orders:recent", recent)
            ok = True
            if newest is not None:
                ids = {row[0] for row in value}
                oldest = min((datetime.fromisoformat(row[4]) for row in value), default=None)
                pushed_out = len(value) == RECENT and oldest is not None and oldest > newest[1]
                ok = newest[0] in ids or pushed_out
            self._check(result, op, ok)
        elif op == "order":
            order_id = rng.choice(truth.hot_ids[c])
            version = truth.versions.get(order_id, 0)

            async def one(session: AsyncSession) -> Any:
                return _rows(await session.execute(ORDER_BY_ID, {"id": order_id, "c": c}))

            value = await self.read(cached, c, f"order:{order_id}", one)
            self._check(result, op, bool(value) and value[0][3] >= version)
        elif op == "report":

            async def report(session: AsyncSession) -> Any:
                rows = await session.execute(REPORT, {"c": c, "since": truth.report_since})
                return _rows(rows)

            value = await self.read(cached, c, "report:30d", report)
            count = sum(row[1] for row in value)
            self._check(result, op, count >= truth.base_orders.get(c, 0) + inserted)
        elif op == "activity":

            async def activity(session: AsyncSession) -> Any:
                rows = await session.execute(ACTIVITY, {"c": c, "since": truth.activity_since})
                return _rows(rows)

            value = await self.read(cached, c, "activity:7d", activity)
            count = sum(row[1] for row in value)
            self._check(result, op, count >= truth.base_events.get(c, 0) + written)
        elif op == "products":
            category = rng.choice(CATEGORIES)

            async def products(session: AsyncSession) -> Any:
                return _rows(await session.execute(PRODUCTS, {"c": c, "cat": category}))

            await self.read(cached, c, f"products:{category}", products)
            result.reads += 1
        elif op == "insert":

            async def insert(session: AsyncSession) -> tuple[int, datetime]:
                params = {"c": c, "customer": rng.randrange(50_000), "total": rng.randrange(50_000)}
                order_id, at = (await session.execute(NEW_ORDER, params)).one()
                await session.execute(
                    NEW_EVENT, {"c": c, "order": order_id, "kind": "order_created"}
                )
                return int(order_id), at

            drops = ["orders:recent", "report:*", "activity:*"]
            order_id, at = await self.services.queries.optimized_write(
                c, insert, invalidates=[cached + d for d in drops] if cached is not None else ()
            )
            truth.inserted[c] = truth.inserted.get(c, 0) + 1
            truth.written[c] = truth.written.get(c, 0) + 1
            if c not in truth.newest or truth.newest[c][1] < at:
                truth.newest[c] = (order_id, at)
            result.writes += 1
        else:  # update
            order_id = rng.choice(truth.hot_ids[c])

            async def update(session: AsyncSession) -> int:
                status = rng.choice(STATUSES)
                params = {"status": status, "id": order_id, "c": c}
                version = (await session.execute(SET_STATUS, params)).scalar_one()
                await session.execute(
                    NEW_EVENT, {"c": c, "order": order_id, "kind": "order_updated"}
                )
                return int(version)

            drops = [f"order:{order_id}", "orders:recent", "report:*", "activity:*"]
            version = await self.services.queries.optimized_write(
                c, update, invalidates=[cached + d for d in drops] if cached is not None else ()
            )
            truth.written[c] = truth.written.get(c, 0) + 1
            truth.versions[order_id] = max(truth.versions.get(order_id, 0), version)
            result.writes += 1

    @staticmethod
    def _check(result: RunResult, op: str, ok: bool) -> None:
        result.reads += 1
        result.checked[op] = result.checked.get(op, 0) + 1
        if not ok:
            result.stale[op] = result.stale.get(op, 0) + 1

    async def drive(self, label: str, cached: str | None, scale: Scale, seed: int,
                    seconds: float) -> RunResult:  # fmt: skip
        result = RunResult(label, 0.0, 0, 0, {}, {}, {}, [], 0, 0)
        ops, weights = zip(*MIX, strict=True)
        deadline = time.perf_counter() + seconds

        async def client(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while time.perf_counter() < deadline:
                op = rng.choices(ops, weights)[0]
                try:
                    await self.operation(op, rng, cached, result)
                except Exception as exc:  # counted and shown; a run with errors is not valid
                    result.errors += 1
                    if result.errors <= 3:
                        print(f"  {label}: {op} failed: {type(exc).__name__}: {exc}", flush=True)

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(scale.concurrency)))
        result.seconds = time.perf_counter() - started
        return result


# --- setup ----------------------------------------------------------------------------
def server_url(name: str) -> str:
    return f"{SERVER.rsplit('/', 1)[0]}/{name}"


def build_data(url: str, scale: Scale, cumulative: list[float]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in SCHEMA + data_sql(scale, cumulative):
            conn.execute(sql)
        conn.execute("VACUUM ANALYZE products, orders, events")


def load_truth(url: str, now: datetime) -> Truth:
    report_since, activity_since = now - timedelta(days=30), now - timedelta(days=7)
    with psycopg.connect(url) as conn:
        orders = conn.execute(
            "SELECT company_id, count(*) FROM orders WHERE created_at >= %s GROUP BY 1",
            (report_since,),
        ).fetchall()
        events = conn.execute(
            "SELECT company_id, count(*) FROM events WHERE created_at >= %s GROUP BY 1",
            (activity_since,),
        ).fetchall()
        hot = conn.execute(
            "SELECT company_id, id FROM (SELECT company_id, id, row_number() OVER"
            " (PARTITION BY company_id ORDER BY created_at DESC) AS n FROM orders) AS ranked"
            f" WHERE n <= {HOT_IDS}"
        ).fetchall()
    hot_ids: dict[str, list[int]] = {}
    for company, order_id in hot:
        hot_ids.setdefault(company, []).append(order_id)
    return Truth(report_since, activity_since, dict(orders), dict(events), hot_ids)


# --- the service's own figures, over HTTP ---------------------------------------------
async def figures(http: AsyncClient, result: RunResult) -> None:
    stats = await http.get(f"{API}/statistics")
    stats.raise_for_status()
    result.statistics = stats.json()
    metrics = await http.get(f"{API}/metrics")
    metrics.raise_for_status()
    result.shapes = metrics.json()["shapes"]
    result.outside_company = sum(
        company["calls"]
        for shape in result.shapes
        for company in shape["companies"]
        if company["companyId"] is None
    )
    busiest = await http.get(f"{API}/statistics", params={"companyId": company_name(1)})
    busiest.raise_for_status()
    result.busiest_hit_rate = busiest.json()["cacheHitRate"]


async def apply_indexes(
    http: AsyncClient, max_indexes: int
) -> tuple[dict[str, Any], list[str], str | None]:
    """The advisor's recommendations for the workload recorded so far, each built through
    the apply route: (the advice, the statements applied, why not all were, or None)."""
    response = await http.get(f"{API}/indexes", params={"maxIndexes": max_indexes})
    response.raise_for_status()
    advice: dict[str, Any] = response.json()
    applied: list[str] = []
    problem = None
    for recommendation in advice["recommendations"]:
        statement = recommendation["createStatement"]
        answer = await http.post(f"{API}/indexes/apply", json={"statement": statement})
        if answer.status_code in (404, 405):
            return (
                advice,
                applied,
                (
                    f"POST {API}/indexes/apply answered {answer.status_code}:"
                    " the apply route is not in this tree"
                ),
            )
        if answer.status_code == 422 and "NOT_A_RECOMMENDATION" in answer.text:
            # Building one can make another unnecessary: the advice follows the indexes.
            problem = f"no longer recommended once the others were built: {statement}"
            continue
        if answer.status_code >= 300:
            return advice, applied, f"apply answered {answer.status_code}: {answer.text[:300]}"
        applied.append(answer.json()["statement"])
    changes = await http.get(f"{API}/indexes/changes")
    changes.raise_for_status()
    entries = changes.json()["changes"]
    print(f"  audit log (GET {API}/indexes/changes), oldest first: {len(entries)} entries")
    for entry in reversed(entries):
        print(f"    #{entry['id']} {entry['step']:<9} {entry['indexName']}: {entry['detail']}")
    return advice, applied, problem


# --- report ---------------------------------------------------------------------------
def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(runs: list[RunResult], slow_ms: float) -> str:
    labels = ["claimed before", "claimed after", *(r.label for r in runs)]
    out = [f"| row | {' | '.join(labels)} |", "| --- |" + " ---: |" * len(labels)]

    def line(key: str, values: list[str]) -> None:
        name, before, after = CLAIMS[key]
        out.append(f"| {name} | {before} | {after} | {' | '.join(values)} |")

    line("avg", [_num(r.statistics["avgMs"]) for r in runs])
    line("p95", [_num(r.statistics["p95Ms"]) for r in runs])
    line("hit", [_num(100 * (r.statistics["cacheHitRate"] or 0.0), 1) for r in runs])
    line("slow", [_num(r.slow_per_minute, 1) for r in runs])

    def share(r: RunResult) -> str:
        calls = r.statistics["calls"]
        return _num(100 * r.statistics["slowCount"] / calls if calls else None, 1)

    busiest = company_name(1)
    extra = [
        ("p99 query time, ms", [_num(r.statistics["p99Ms"]) for r in runs]),
        ("statements timed", [f"{r.statistics['calls']:,}" for r in runs]),
        (f"slow statements (>= {slow_ms:g} ms)", [str(r.statistics["slowCount"]) for r in runs]),
        ("slow statements, % of statements", [share(r) for r in runs]),
        (
            "DB time per read, ms (monitor's SELECT time / reads)",
            [_num(r.db_ms_per_read) for r in runs],
        ),
        (
            f"cache hit rate of the busiest company ({busiest}), %",
            [_num(100 * (r.busiest_hit_rate or 0.0)) for r in runs],
        ),
        ("reads/s", [_num(r.reads / r.seconds) for r in runs]),
        ("writes/s", [_num(r.writes / r.seconds) for r in runs]),
        (
            "stale reads (warm-up included)",
            [f"{r.stale_reads} of {sum(r.checked.values()):,}" for r in runs],
        ),
    ]
    for name, values in extra:
        out.append(f"| {name} | | | {' | '.join(values)} |")
    return "\n".join(out)


def shape_lines(result: RunResult) -> list[str]:
    lines = [f"  {result.label}: the busiest shapes by total time (monitor, /metrics)"]
    for shape in result.shapes[:6]:
        statement = " ".join((shape["statement"] or "?").split())[:70]
        lines.append(
            f"    {shape['calls']:>7,} calls  mean {_num(shape['meanMs'], 2):>7} ms"
            f"  p95 {_num(shape['p95Ms'], 2):>7} ms  slow {shape['slowCount']:>5}  {statement}"
        )
    return lines


# --- main -----------------------------------------------------------------------------
async def benchmark(scale: Scale, max_indexes: int = 5, verbose: bool = True) -> dict[str, Any]:
    """Runs the three runs; returns their results, the advice and what was applied."""

    def say(message: str) -> None:
        if verbose:
            print(message, flush=True)

    name = f"tenantry_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = server_url(name)
    cumulative = zipf_cumulative(scale.companies)
    runs: list[RunResult] = []
    outcome: dict[str, Any] = {"runs": runs, "slow_ms": scale.slow_ms}
    try:
        started = time.perf_counter()
        build_data(url, scale, cumulative)
        truth = load_truth(url, datetime.now(UTC))
        say(
            f"data: {scale.companies:,} companies (Zipf s=1.1), {scale.orders:,} orders,"
            f" {scale.events:,} events, {scale.products:,} products;"
            f" loaded in {time.perf_counter() - started:.1f} s"
        )
        with tempfile.TemporaryDirectory() as scratch:
            settings = load_settings(
                database_url=url,
                admin_token=ADMIN,
                secret_key="bench-secret",
                data_dir=Path(scratch) / "data",
                upload_dir=Path(scratch) / "uploads",
                log_level="warning",
                slow_query_ms=scale.slow_ms,
                query_apply_indexes=True,
            )
            app = create_app(settings)
            async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
                services: Services = app.state.services
                workload = Workload(services, truth, cumulative)
                transport = ASGITransport(app=app, client=("127.0.0.1", 123))
                headers = {"Authorization": f"Bearer {ADMIN}"}
                async with AsyncClient(
                    transport=transport, base_url="http://tenantry.test", headers=headers,
                    timeout=120,
                ) as http:  # fmt: skip
                    health = (await http.get(f"{API}/health")).json()
                    outcome["slow_ms"] = health["slowQueryMs"]
                    plan = [("1 bare", None), ("2 cache", "r2:"), ("3 cache+indexes", "r3:")]
                    for seed, (label, cached) in enumerate(plan, start=1):
                        if seed == 3:
                            say("indexes: the advisor's, for run 2's workload, applied over HTTP")
                            advice, applied, problem = await apply_indexes(http, max_indexes)
                            outcome["advice"], outcome["applied"] = advice, applied
                            outcome["apply_problem"] = problem
                            for statement in applied:
                                say(f"  applied: {statement}")
                            if problem is not None:
                                say(f"  {problem}")
                            if not applied:
                                say("  run 3 not run: no index was applied")
                                break
                        say(
                            f"run {label}: {scale.warmup:g} s warm-up, then {scale.duration:g} s"
                            f" measured, {scale.concurrency} clients"
                        )
                        warmup = await workload.drive(label, cached, scale, seed, scale.warmup)
                        (await http.delete(f"{API}/metrics")).raise_for_status()
                        result = await workload.drive(
                            label, cached, scale, seed + 10, scale.duration
                        )
                        await figures(http, result)
                        result.absorb(warmup)
                        runs.append(result)
    finally:
        with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return outcome


def report(outcome: dict[str, Any]) -> str:
    runs: list[RunResult] = outcome["runs"]
    advice = outcome.get("advice") or {}
    lines = [""]
    if advice:
        lines.append(
            f"advisor ({advice['method']}): {len(advice['recommendations'])} recommendations,"
            f" estimated workload cost {advice['workloadCostBefore']:,.0f} ->"
            f" {advice['workloadCostAfter']:,.0f}"
        )
        for rec in advice["recommendations"]:
            lines.append(
                f"  {rec['priority']:>6}  {100 * rec['estimatedImprovement']:5.1f} %"
                f"  {rec['createStatement']}"
            )
    lines.append("")
    for result in runs:
        lines += shape_lines(result)
    lines += ["", table(runs, outcome["slow_ms"]), ""]
    lines.append(
        f"Slow = the monitor's SLOW_QUERY_MS = {outcome['slow_ms']:g} ms, set for this run (the"
        " original's threshold was presumably Tenantry's default, 1 s, over an average of"
        " 200 ms; this workload's sequential scans take a few hundred ms, none a second)."
        " Clients run in a closed loop, so a faster run also runs more statements a minute:"
        " the share of slow statements is beside the rate."
    )
    lines.append(
        "Query times are the monitor's, per SQL statement (reads and writes): a read the"
        " cache answers runs no statement, so it is in the hit rate and in 'DB time per"
        " read', not in the statement times."
    )
    lines.append(
        f"Hit-rate ceiling of this mix for a company whose entries are never cold: "
        f"{100 * hit_ceiling():.0f} % (each write drops the entries it changes:"
        " the recent list, the report and the activity on every write, an order on its"
        " update); the long tail of 1,000 companies adds cold misses below that."
    )
    outside = [r.outside_company for r in runs]
    lines.append(f"Statements outside any company (Tenantry's own) per run: {outside}.")
    if outcome.get("apply_problem"):
        lines.append(f"Applying the advice: {outcome['apply_problem']}.")
    errors = [r.errors for r in runs]
    if any(errors):
        lines.append(f"ERRORS per run: {errors}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (~10 s)")
    parser.add_argument("--duration", type=float, help="seconds per run, measured")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each run")
    parser.add_argument("--concurrency", type=int, help="concurrent clients")
    parser.add_argument("--slow-ms", type=float, help="SLOW_QUERY_MS for the monitor")
    parser.add_argument("--max-indexes", type=int, default=5)
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    scale = Scale(
        scale.companies, scale.orders, scale.events, scale.products,
        args.duration or scale.duration,
        args.warmup if args.warmup is not None else scale.warmup,
        args.concurrency or scale.concurrency,
        args.slow_ms if args.slow_ms is not None else scale.slow_ms,
    )  # fmt: skip
    outcome = asyncio.run(benchmark(scale, args.max_indexes))
    print(report(outcome))
    runs: list[RunResult] = outcome["runs"]
    return 1 if any(r.stale_reads or r.errors for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
