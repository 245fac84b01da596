"""`tenantry serve --demo`: a living dashboard on first start.

Fills the running service, through its own services, with what a newcomer should
see: three companies with keys and files, jobs (some of them failed), a recorded
query workload with a slow statement and an index worth adding, flags mid-rollout
and A/B variants, and a circuit that opened. It runs once per database: a second
start finds the demo table and leaves everything as it is.
"""

from __future__ import annotations

import contextlib
import logging
import random

from sqlalchemy import Column, Integer, MetaData, Numeric, String, Table, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.container import Services
from tenantry.context import company_scope
from tenantry.errors import Conflict
from tenantry.resilience.flags import Flag, Target, Variant

log = logging.getLogger("tenantry.demo")

COMPANIES = ("acme", "globex", "initech")
DEMO_TABLE = "tenantry_demo_orders"
DEMO_METADATA = MetaData()
# An application's table, deliberately with no index beyond its key.
ORDERS = Table(
    DEMO_TABLE,
    DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("company_id", String(64), nullable=False),
    Column("customer_id", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount", Numeric(10, 2), nullable=False),
    Column("day", Integer, nullable=False),
)
# A loopback port nothing listens on: webhooks to it fail, so failed jobs show up.
UNREACHABLE_WEBHOOK = "http://127.0.0.1:9/hooks/orders"


async def seed_demo(services: Services) -> bool:
    """Seed the demo data unless it is there already; returns whether it seeded."""
    if await _already_seeded(services):
        log.info("demo data already present")
        return False
    await _orders(services)
    await _files(services)
    await _jobs(services)
    await _flags(services)
    await _workload(services)
    _open_circuit(services)
    for company in COMPANIES:
        plain, _ = await services.keys.create(company, "demo")
        print(f"Demo key for {company}: {plain}")
    log.info("demo data seeded")
    return True


async def _already_seeded(services: Services) -> bool:
    async with services.db.engine.connect() as connection:
        try:
            await connection.execute(text(f"SELECT 1 FROM {DEMO_TABLE} LIMIT 1"))  # noqa: S608
        except DBAPIError:
            return False
    return True


async def _orders(services: Services) -> None:
    """An application table with no index beyond its key: the advisor's material."""
    rng = random.Random(7)  # noqa: S311  (repeatable demo data, not secrets)
    statuses = ("new", "paid", "shipped", "refunded")
    rows = [
        {
            "company_id": rng.choice(COMPANIES),
            "customer_id": rng.randrange(1, 5_000),
            "status": rng.choice(statuses),
            "amount": round(rng.uniform(5, 500), 2),
            "day": rng.randrange(0, 365),
        }
        for _ in range(30_000)
    ]
    async with services.db.engine.begin() as connection:
        await connection.run_sync(DEMO_METADATA.create_all)
    async with services.db.session() as session:
        await session.execute(insert(ORDERS), rows)
        if services.db.dialect == "postgresql":
            await session.execute(text(f"ANALYZE {DEMO_TABLE}"))


async def _files(services: Services) -> None:
    rng = random.Random(11)  # noqa: S311
    for company in COMPANIES:
        for index in range(rng.randrange(4, 9)):
            category = rng.choice(("documents", "images", "exports"))
            size = rng.randrange(2_000, 200_000)
            await services.storage.upload(
                rng.randbytes(size),
                company_id=company,
                category=category,
                filename=f"{category[:-1]}-{index + 1}.bin",
                content_type="application/octet-stream",
                is_public=category == "images",
            )


async def _jobs(services: Services) -> None:
    jobs = services.jobs
    for company in COMPANIES:
        for n in range(3):
            await jobs.ai_processing_job(company, "summarise", {"text": f"order batch {n} " * 20})
        await jobs.send_notification_job(company, UNREACHABLE_WEBHOOK, "order.created", {"n": 1})
        await jobs.export_data_job(company, "files", "csv")


async def _flags(services: Services) -> None:
    flags = services.resilience.flags
    await flags.set_rollout("vision-analysis", 30, actor="demo")
    await flags.allow("ai-recommendations", "acme", actor="demo")
    await flags.block("bulk-operations", "initech", actor="demo")
    checkout = Flag(
        "new-checkout",
        "A/B test of the new checkout flow, half of the companies.",
        enabled=True,
        target=Target.COMPANY,
        rollout=50,
        variants=(Variant("control", 50), Variant("one-page", 50)),
    )
    with contextlib.suppress(Conflict):  # created by an earlier, interrupted demo start
        await flags.create(checkout, actor="demo")


async def _workload(services: Services) -> None:
    """Statements through the monitored engine and the read cache, plus one slow one."""
    rng = random.Random(3)  # noqa: S311
    queries = services.queries
    for _ in range(60):
        company = rng.choice(COMPANIES)
        customer = rng.randrange(1, 5_000)
        with company_scope(company):
            async with services.db.session() as session:
                await session.execute(
                    text(
                        f"SELECT id, amount FROM {DEMO_TABLE} "  # noqa: S608
                        "WHERE company_id = :c AND customer_id = :k ORDER BY day DESC LIMIT 20"
                    ),
                    {"c": company, "k": customer},
                )
                await session.execute(
                    text(
                        f"SELECT status, count(*) FROM {DEMO_TABLE} "  # noqa: S608
                        "WHERE company_id = :c AND day BETWEEN :a AND :b GROUP BY status"
                    ),
                    {"c": company, "a": 30, "b": 60},
                )

        async def totals(session: AsyncSession, company: str = company) -> float:
            result = await session.execute(
                text(f"SELECT sum(amount) FROM {DEMO_TABLE} WHERE company_id = :c"),  # noqa: S608
                {"c": company},
            )
            return float(result.scalar() or 0)

        await queries.optimized_read(company, "revenue", totals, cache_ttl=300)
    await _slow_statement(services)


async def _slow_statement(services: Services) -> None:
    slow = (
        "SELECT pg_sleep(:s)"
        if services.db.dialect == "postgresql"
        # SQLite has no sleep: a counting CTE long enough to cross the slow threshold.
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000000) "
        "SELECT count(*) FROM n WHERE :s > 0"
    )
    seconds = services.settings.slow_query_ms / 1000 + 0.2
    with company_scope("globex"):
        async with services.db.session() as session:
            await session.execute(text(slow), {"s": seconds})


def _open_circuit(services: Services) -> None:
    """The external API 'fails' until its circuit opens, as an outage would."""
    breaker = services.resilience.breakers["external-api"]

    def call_partner_api() -> None:
        raise ConnectionError("partner API unreachable (demo)")

    for _ in range(breaker.config.failure_threshold or 5):
        try:
            breaker.call(call_partner_api)
        except Exception:  # noqa: S112  (the failures are the point)
            continue
