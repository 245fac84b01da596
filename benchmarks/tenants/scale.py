"""Company views at 10,000 companies: what a company's own views and the admin's pages
cost when the data is large and skewed.

    python -m benchmarks.tenants.scale [--companies 10000] [--jobs 1000000]
        [--files 1000000] [--samples 200]

Data, spread Zipf-like (P(k) ~ 1/k) over `--companies` companies, made directly, not
one HTTP call each: file records with one INSERT ... SELECT in PostgreSQL (and each
company's storage counters from them, as uploads keep them), and jobs through
`JobService.add` (32 at a time) on the `ai-processing` queue, left waiting. Then one
`tenantry serve` process (PostgreSQL, Redis, default settings) answers, over loopback
HTTP, for `--samples` companies drawn uniformly and for the largest company on its own:
its job stats, its waiting-job list, its storage stats and its query statistics; and
each dashboard page, logged in. Reported: p50 and p99 per view, and the server's RSS.
Goals (issue 14): every company view p99 < 50 ms, every dashboard page < 300 ms,
RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from benchmarks.http.serve import free_port, server
from sqlalchemy import create_engine, text
from tests.redis_lease import leased_redis_db

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
ADMIN = "bench-admin-" + uuid.uuid4().hex
QUEUE = "ai-processing"
PAGES = ["/admin", "/admin/queues", "/admin/queries", "/admin/storage", "/admin/companies"]


def zipf_company(companies: int, rng: random.Random) -> str:
    """Company k with probability ~ 1/k: log-uniform over 1..companies."""
    return f"c{int(math.exp(rng.random() * math.log(companies))):05d}"


def create_database() -> str:
    name = f"tenantry_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def fill_files(url: str, files: int, companies: int) -> None:
    """`files` file records (and each company's counters) in one statement each."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tenantry_storage_files (key, company_id, category, filename, size,"
                " content_type, checksum, is_public, provider, created_at) "
                "SELECT 'companies/' || c || '/documents/' || n || '-f.bin', c, "
                "(ARRAY['documents','images','exports'])[1 + n % 3], 'f.bin', "
                "1 + (n::bigint * 7919) % 100000, 'application/octet-stream', md5(n::text), false, "
                "'local', now() - (n % 1000) * interval '1 minute' "
                "FROM (SELECT n, 'c' || lpad(floor(exp(random() * ln(:companies)))::int::text,"
                " 5, '0') AS c FROM generate_series(1, :files) AS n) AS spread"
            ),
            {"files": files, "companies": companies},
        )
        conn.execute(
            text(
                "INSERT INTO tenantry_companies (id, limits, storage_bytes, storage_files,"
                " created_at) SELECT company_id, '{}', SUM(size), COUNT(*), now() "
                "FROM tenantry_storage_files GROUP BY company_id "
                "ON CONFLICT (id) DO UPDATE SET storage_bytes = excluded.storage_bytes,"
                " storage_files = excluded.storage_files"
            )
        )
        conn.execute(
            text(
                "INSERT INTO tenantry_storage_usage (company_id, category, files, bytes) "
                "SELECT company_id, category, COUNT(*), SUM(size) FROM tenantry_storage_files "
                "GROUP BY company_id, category"
            )
        )
        conn.execute(text("ANALYZE"))
    engine.dispose()


async def fill_jobs(env: dict[str, str], jobs: int, companies: int) -> dict[str, int]:
    """`jobs` waiting jobs through the job service; returns jobs per company."""
    from tenantry.settings import load_settings
    from tenantry.wiring import build_services

    settings = load_settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        admin_token=ADMIN,
        data_dir=Path(env["TENANTRY_DATA_DIR"]),
        upload_dir=Path(env["UPLOAD_DIR"]),
        auto_migrate=True,
    )
    rng = random.Random(7)
    per_company: dict[str, int] = {}
    async with AsyncExitStack() as stack:
        services = await build_services(settings, stack)
        await services.jobs.pause(QUEUE)  # nothing runs them: they stay waiting
        semaphore = asyncio.Semaphore(32)  # more only queues up behind one Redis

        async def add(index: int) -> None:
            company = zipf_company(companies, rng)
            per_company[company] = per_company.get(company, 0) + 1
            async with semaphore:
                await services.jobs.add(QUEUE, "summarise", {"n": index}, company)

        started = time.perf_counter()
        for batch in range(0, jobs, 10_000):
            await asyncio.gather(*(add(i) for i in range(batch, min(jobs, batch + 10_000))))
        rate = jobs / (time.perf_counter() - started)
        print(f"  {jobs:,} jobs enqueued at {rate:,.0f}/s", flush=True)
    return per_company


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(port: int, companies: list[str], largest: str) -> dict[str, dict[str, float]]:
    views = {
        "job stats": "/api/queues/stats?companyId={c}",
        "job list": f"/api/queues/{QUEUE}/jobs?state=waiting&companyId={{c}}",
        "storage stats": "/api/storage/stats?companyId={c}",
        "query statistics": "/api/query-optimizer/statistics?companyId={c}",
    }
    results: dict[str, dict[str, float]] = {}
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        for name, template in views.items():
            timings = []
            for company in companies:
                started = time.perf_counter()
                response = await http.get(template.format(c=company), headers=headers)
                timings.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            started = time.perf_counter()
            (await http.get(template.format(c=largest), headers=headers)).raise_for_status()
            results[name] = {
                "p50": statistics.median(timings),
                "p99": percentile(timings, 0.99),
                "largest": (time.perf_counter() - started) * 1000,
            }
        login = await http.post("/admin/login", data={"key": ADMIN, "next": "/admin"})
        assert login.status_code == 303, login.text
        for path in PAGES:
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                response = await http.get(path)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            results[f"page {path}"] = {
                "p50": statistics.median(timings),
                "p99": max(timings),
                "bytes": float(len(response.content)),
            }
    return results


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()

    url = create_database()
    try:
        with leased_redis_db(REDIS) as redis_url, tempfile.TemporaryDirectory() as scratch:
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "REDIS_URL": redis_url,
                "TENANTRY_ADMIN_TOKEN": ADMIN,
                "TENANTRY_SECRET_KEY": "bench-secret",
                "TENANTRY_DATA_DIR": f"{scratch}/data",
                "UPLOAD_DIR": f"{scratch}/uploads",
                "LOG_LEVEL": "warning",
            }
            print(f"filling: {args.companies:,} companies, {args.jobs:,} jobs, "
                  f"{args.files:,} files", flush=True)  # fmt: skip
            per_company = asyncio.run(fill_jobs(env, args.jobs, args.companies))
            started = time.perf_counter()
            fill_files(url, args.files, args.companies)
            print(f"  {args.files:,} file records in {time.perf_counter() - started:.1f} s")
            largest = max(per_company, key=lambda c: per_company[c])
            rng = random.Random(11)
            sample = [f"c{rng.randint(1, args.companies - 1):05d}" for _ in range(args.samples)]
            port = free_port()
            with server("tenantry", port, env, Path(scratch) / "serve.log") as pid:
                results = asyncio.run(measure(port, sample, largest))
                rss = rss_mb(pid)
    finally:
        drop_database(url)
    print(f"\nlargest company: {largest} ({per_company[largest]:,} jobs)")
    print(f"{'view':<28}{'p50 ms':>10}{'p99 ms':>10}{'largest ms':>12}")
    for name, figures in results.items():
        largest_ms = figures.get("largest")
        tail = f"{largest_ms:>12.1f}" if largest_ms is not None else f"{'':>12}"
        print(f"{name:<28}{figures['p50']:>10.1f}{figures['p99']:>10.1f}{tail}")
    print(f"server RSS after the run: {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
