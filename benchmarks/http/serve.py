"""Requests per second through one `tenantry serve` process and a bare FastAPI app.

    python -m benchmarks.http.serve [--duration 10] [--connections 16] [--rounds 2]

Each side runs as one uvicorn process on a free loopback port, started and stopped
here, one at a time (the other side is down while one is measured): `tenantry serve`
on a fresh PostgreSQL database and a leased Redis db, with its default settings (text
logs at info, access log on, to a file), and `uvicorn benchmarks.http.bare_app:app`
(same uvicorn, same access log) on the same Redis. The load generator is wrk
(`apt-get install -y wrk`, Debian's 4.1), two threads and `--connections` keep-alive
connections for `--duration` seconds per case; without wrk, a small asyncio client in
this file does the same (it spends CPU the servers then lack: ratios stay fair,
absolute figures drop). Three cases:

- health:  `GET /health`, against a constant answer;
- flag:    `GET /api/degradation/features/bench-flag/check?targetId=u1` with the admin
           key, against a lookup in a dict;
- enqueue: `POST /api/queues/email/jobs` with the admin key, against a pydantic body
           and a bare bullmq `Queue.add` with the same job options.

Every response must be 2xx (a run with an error fails). Rounds interleave the sides;
the best round per case is kept. Ratios are Tenantry ÷ bare.

Beside each rate, the server process's own CPU time per request (user + system, from
/proc, over the same seconds; the lowest round's): what the layer costs, and far less
sensitive to what else runs on the machine than a rate is. A side whose rate is below
1 / (its CPU per request) spent the difference waiting (on Redis, on its client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.redis_lease import leased_redis_db

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
ROOT = Path(__file__).resolve().parents[2]
ADMIN = "bench-admin-" + uuid.uuid4().hex
FLAG = "bench-flag"
JOB = json.dumps({"name": "welcome", "companyId": "acme", "data": {"to": "a@example.com"}})
CASES: dict[str, tuple[str, str, str | None]] = {  # name: method, path, body
    "health": ("GET", "/health", None),
    "flag": ("GET", f"/api/degradation/features/{FLAG}/check?targetId=u1", None),
    "enqueue": ("POST", "/api/queues/email/jobs", JOB),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(port: int, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body.encode() if body else None,
        method=method,
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def server(side: str, port: int, env: dict[str, str], log: Path) -> Iterator[int]:
    """One server process on `port`, up (its /health answers) until the block ends."""
    bin_dir = Path(sys.executable).parent
    if side == "tenantry":
        cmd = [str(bin_dir / "tenantry"), "serve", "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "benchmarks.http.bare_app:app"]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{side} exited with {proc.returncode}; see {log}")
            try:
                if request(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{side} did not answer /health in 60 s; see {log}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- load


def run_wrk(port: int, case: str, duration: float, connections: int, scratch: Path) -> float:
    method, path, body = CASES[case]
    script = scratch / f"{case}.lua"
    lines = [f'wrk.method = "{method}"', 'wrk.headers["Content-Type"] = "application/json"']
    lines.append(f'wrk.headers["Authorization"] = "Bearer {ADMIN}"')
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body)}")
    script.write_text("\n".join(lines) + "\n")
    url = f"http://127.0.0.1:{port}{path}"
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise RuntimeError(f"{case}: errors under load:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


async def _client(port: int, raw: bytes, until: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = re.search(rb"(?i)content-length: (\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            if not 200 <= status < 300:
                raise RuntimeError(f"status {status}")
            counts[0] += 1
    finally:
        writer.close()


async def _python_load(port: int, case: str, duration: float, connections: int) -> float:
    method, path, body = CASES[case]
    data = (body or "").encode()
    raw = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    counts = [0]
    started = time.perf_counter()
    until = started + duration
    await asyncio.gather(*(_client(port, raw, until, counts) for _ in range(connections)))
    return counts[0] / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    port: int, pid: int, case: str, duration: float, connections: int, scratch: Path
) -> tuple[float, float]:
    """Requests per second, and the server's CPU microseconds per request."""
    cpu = cpu_seconds(pid)
    if shutil.which("wrk"):
        rate = run_wrk(port, case, duration, connections, scratch)
    else:
        rate = asyncio.run(_python_load(port, case, duration, connections))
    return rate, (cpu_seconds(pid) - cpu) * 1e6 / max(1.0, rate * duration)


# --------------------------------------------------------------------------- setup


@contextmanager
def fresh_database() -> Iterator[str]:
    import psycopg

    name = f"tenantry_bench_http_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(side: str, port: int) -> None:
    """What the cases need: the flag (Tenantry keeps it in its database)."""
    if side == "tenantry":
        body = json.dumps({"key": FLAG, "enabled": True})
        status, text = request(port, "POST", "/api/degradation/features", body)
        if status not in (201, 409):
            raise RuntimeError(f"creating the flag: {status} {text!r}")
    for case, (method, path, payload) in CASES.items():
        status, text = request(port, method, path, payload)
        if not 200 <= status < 300:
            raise RuntimeError(f"{side} {case}: {status} {text!r}")


def table(
    best: dict[str, dict[str, float]], cpu: dict[str, dict[str, float]], cases: list[str], wrk: bool
) -> str:
    rows = [
        "| case | Tenantry req/s | bare FastAPI req/s | Tenantry ÷ bare"
        " | Tenantry CPU µs/req | bare CPU µs/req |"
    ]
    rows.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for case in cases:
        ours, bare = best["tenantry"][case], best["bare"][case]
        rows.append(
            f"| {case} | {ours:,.0f} | {bare:,.0f} | {ours / bare:.2f}"
            f" | {cpu['tenantry'][case]:,.0f} | {cpu['bare'][case]:,.0f} |"
        )
    rows.append(f"\nload generator: {'wrk' if wrk else 'asyncio client (no wrk)'}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per case")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved; best kept")
    parser.add_argument("--only", help="comma-separated cases: " + ",".join(CASES))
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    cases = args.only.split(",") if args.only else list(CASES)
    best: dict[str, dict[str, float]] = {"tenantry": {}, "bare": {}}
    cpu: dict[str, dict[str, float]] = {"tenantry": {}, "bare": {}}  # µs per request
    with (
        tempfile.TemporaryDirectory(prefix="bench-http-") as tmp,
        leased_redis_db(REDIS, owner="bench") as redis_url,
        fresh_database() as database_url,
    ):
        scratch = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "TENANTRY_ADMIN_TOKEN": ADMIN,
            "TENANTRY_DATA_DIR": str(scratch / "data"),
            "BENCH_REDIS_URL": redis_url,
        }
        for round_ in range(args.rounds):
            for side in ("tenantry", "bare") if round_ % 2 == 0 else ("bare", "tenantry"):
                port = free_port()
                with server(side, port, env, scratch / f"{side}.log") as pid:
                    prepare(side, port)
                    for case in cases:
                        rate, used = measure(
                            port, pid, case, args.duration, args.connections, scratch
                        )
                        best[side][case] = max(best[side].get(case, 0.0), rate)
                        cpu[side][case] = min(cpu[side].get(case, float("inf")), used)
                        print(
                            f"round {round_ + 1} {side:8} {case:8} {rate:9,.0f} req/s"
                            f" {used:7,.0f} µs CPU/req"
                        )
    print()
    print(table(best, cpu, cases, bool(shutil.which("wrk"))))
    if args.json:
        print(json.dumps({"rate": best, "cpu_us_per_request": cpu}))


if __name__ == "__main__":
    main()
