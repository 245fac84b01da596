"""Uploads to a loopback S3 server: Tenantry's StorageService vs bare obstore vs `rclone copy`.

Two cases on the same data: 2,000 files of 4-64 KB at concurrency 16, and one
256 MB file. Each contender runs in its own process with its own empty bucket on
the loopback SeaweedFS that scripts/services.sh starts; the figures are wall time
(files/s, MB/s) and the process's peak resident memory (from wait4), and the
ratios Tenantry ÷ peer. Each contender runs BENCH_ROUNDS times (default 2, in
alternating order) and its best run counts: the machine may be shared. Times of
the Python contenders start after imports and client set-up; rclone's include its
start (a few tens of ms) and its listing of the destination, as `rclone copy` does.

Tenantry does more per file than the peers: it validates, hashes (SHA-256) and
writes a database record for every upload (here: PostgreSQL on loopback if it
answers, else embedded SQLite), so the ratio shows what that costs.

Setup (once): `scripts/services.sh` (SeaweedFS, PostgreSQL) and
`apt-get install -y rclone` (Debian's rclone, pointed only at 127.0.0.1 below).
Run from the repository root: `python -m benchmarks.storage.upload`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENDPOINT = os.environ.get("BENCH_S3_ENDPOINT", "http://127.0.0.1:18333")
ACCESS_KEY = os.environ.get("BENCH_S3_ACCESS_KEY", "tenantry-test")
SECRET_KEY = os.environ.get("BENCH_S3_SECRET_KEY", "tenantry-test-secret")
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SMALL_FILES = 2000
BIG_MB = 256
CONCURRENCY = 16
CONTENDERS = ("tenantry", "obstore", "rclone")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))  # best of N per contender


# --- data and buckets (the parent stays lean: its memory is inherited by children) ---


def make_data(root: Path) -> None:
    rng = random.Random(2026)
    small = root / "small"
    small.mkdir(parents=True)
    for index in range(SMALL_FILES):
        (small / f"file-{index:04d}.bin").write_bytes(rng.randbytes(rng.randint(4, 64) * 1024))
    big = root / "big"
    big.mkdir()
    block = rng.randbytes(1024 * 1024)
    with (big / "big.bin").open("wb") as file:
        for index in range(BIG_MB):
            file.write(block[index:] + block[:index])


def clean_env() -> dict[str, str]:
    """The environment without AWS_* (a CA bundle or profile meant for AWS would leak in)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}


def rclone_env() -> dict[str, str]:
    return {
        **clean_env(),
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "SeaweedFS",
        "RCLONE_CONFIG_BENCH_ENDPOINT": ENDPOINT,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ACCESS_KEY,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET_KEY,
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
    }


def rclone(*arguments: str) -> None:
    subprocess.run(["rclone", *arguments], env=rclone_env(), check=True, capture_output=True)


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run `command`; its wall time, peak RSS in MB (wait4), and its stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed: {stderr.decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, stdout.decode()


def run_case(contender: str, case: str, data: Path, bucket: str, database: str) -> dict[str, Any]:
    source = data / case
    if contender == "rclone":
        flags = ["--transfers", str(CONCURRENCY), "--checkers", str(CONCURRENCY)]
        command = ["rclone", "copy", str(source), f"bench:{bucket}/{case}", *flags]
        elapsed, peak, _ = measure(command, rclone_env())
    else:
        command = [
            sys.executable, "-m", "benchmarks.storage.upload", "--worker", contender,
            "--case", case, "--data", str(data), "--bucket", bucket, "--database", database,
        ]  # fmt: skip
        _, peak, output = measure(command, clean_env())
        elapsed = json.loads(output.strip().splitlines()[-1])["seconds"]  # excludes start-up
    files = sorted(source.iterdir())
    size = sum(path.stat().st_size for path in files)
    return {
        "contender": contender,
        "case": case,
        "seconds": elapsed,
        "files_per_s": len(files) / elapsed,
        "mb_per_s": size / 1e6 / elapsed,
        "peak_rss_mb": peak,
    }


def pick_database(scratch: Path) -> tuple[str, str]:
    """A fresh PostgreSQL database on loopback if one answers, else SQLite in `scratch`."""
    try:
        import psycopg

        name = f"tenantry_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return POSTGRES.rsplit("/", 1)[0] + "/" + name, name
    except Exception:
        return f"sqlite:///{scratch / 'bench.db'}", ""


def drop_database(name: str) -> None:
    if name:
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    host = urlsplit(ENDPOINT).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"BENCH_S3_ENDPOINT must be a loopback address, not {host}")
    if shutil.which("rclone") is None:
        sys.exit("rclone is missing: apt-get install -y rclone")
    scratch = Path(tempfile.mkdtemp(prefix="tenantry-bench-storage-"))
    database, database_name = pick_database(scratch)
    results = []
    try:
        print(f"Generating {SMALL_FILES} files of 4-64 KB and one {BIG_MB} MB file…", flush=True)
        make_data(scratch / "data")
        for case in ("small", "big"):
            best: dict[str, dict[str, Any]] = {}
            for round_ in range(ROUNDS):  # alternate the order: a busy moment hits everyone
                order = CONTENDERS if round_ % 2 == 0 else tuple(reversed(CONTENDERS))
                for contender in order:
                    bucket = f"bench-{contender}-{uuid.uuid4().hex[:8]}"
                    rclone("mkdir", f"bench:{bucket}")
                    try:
                        result = run_case(contender, case, scratch / "data", bucket, database)
                    finally:
                        rclone("purge", f"bench:{bucket}")
                    if contender not in best or result["seconds"] < best[contender]["seconds"]:
                        best[contender] = result
            for contender in CONTENDERS:
                result = best[contender]
                results.append(result)
                print(
                    f"  {case:5} {contender:8} {result['seconds']:6.2f} s "
                    f"{result['files_per_s']:8.1f} files/s {result['mb_per_s']:7.1f} MB/s "
                    f"peak {result['peak_rss_mb']:5.0f} MB",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        drop_database(database_name)
    report(results, "PostgreSQL" if database_name else "SQLite")


def report(results: list[dict[str, Any]], database: str) -> None:
    by = {(r["case"], r["contender"]): r for r in results}
    print(f"\nTenantry's records in {database}; best of {ROUNDS} runs each.")
    print(
        "| case | contender | files/s | MB/s | peak RSS MB "
        "| Tenantry speed ÷ peer | Tenantry memory ÷ peer |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (case, contender), r in by.items():
        ours = by[(case, "tenantry")]
        print(
            f"| {case} | {contender} | {r['files_per_s']:.1f} | {r['mb_per_s']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {ours['seconds'] and r['seconds'] / ours['seconds']:.2f} | "
            f"{ours['peak_rss_mb'] / r['peak_rss_mb']:.2f} |"
        )
    print(json.dumps(results))


# --- the in-process contenders (run as `--worker NAME` in a child process) ------------


def worker(name: str, case: str, data: Path, bucket: str, database: str) -> None:
    import asyncio

    files = sorted((data / case).iterdir())
    runner = tenantry_upload if name == "tenantry" else obstore_upload
    seconds = asyncio.run(runner(files, bucket, database))
    print(json.dumps({"seconds": seconds}))


async def obstore_upload(files: list[Path], bucket: str, _database: str) -> float:
    import asyncio

    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=ENDPOINT,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        client_options={"allow_http": True},
    )
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(path: Path) -> None:
        async with limit:
            if len(files) == 1:  # the big file: obstore streams it from disk, multipart
                await obstore.put_async(store, f"bench/{path.name}", path)
            else:
                data = await asyncio.to_thread(path.read_bytes)
                await obstore.put_async(store, f"bench/{path.name}", data)

    started = time.perf_counter()
    await asyncio.gather(*(one(path) for path in files))
    return time.perf_counter() - started


async def tenantry_upload(files: list[Path], bucket: str, database: str) -> float:
    import asyncio

    from tenantry import db
    from tenantry.settings import load_settings
    from tenantry.storage import StorageService

    settings = load_settings(
        storage_provider="s3",
        aws_s3_bucket=bucket,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_endpoint_url=ENDPOINT,
        database_url=database,
        max_upload_bytes=2 * 1024**3,
    )
    await asyncio.to_thread(db.upgrade, settings.effective_database_url)
    database_ = db.Database(settings.effective_database_url, pool_size=CONCURRENCY)
    service = StorageService.from_settings(settings, database_, "bench-secret")
    await service.health()  # connect once before the clock starts, as obstore's client does
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(path: Path) -> None:
        async with limit:
            if len(files) == 1:
                with path.open("rb") as file:  # streamed in chunks, never read whole
                    await service.upload(
                        file, company_id="bench", category="big", filename=path.name
                    )
            else:
                data = await asyncio.to_thread(path.read_bytes)
                await service.upload(data, company_id="bench", category="small", filename=path.name)

    started = time.perf_counter()
    await asyncio.gather(*(one(path) for path in files))
    elapsed = time.perf_counter() - started
    await database_.dispose()
    return elapsed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--worker", choices=("tenantry", "obstore"))
    parser.add_argument("--case", choices=("small", "big"))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--bucket")
    parser.add_argument("--database", default="")
    arguments = parser.parse_args()
    if arguments.worker:
        worker(
            arguments.worker, arguments.case, arguments.data, arguments.bucket, arguments.database
        )
    else:
        main()
