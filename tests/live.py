"""A real `tenantry serve` in a subprocess, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

_OWN_PREFIXES = ("TENANTRY_", "REDIS_", "DATABASE_", "STORAGE_", "AWS_", "CLOUDFLARE_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[str]
    output: str = ""


@contextmanager
def live_server(
    cwd: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[LiveServer]:
    """Start the service with only `env` as its configuration; stop it afterwards."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "serve", "--port", str(port), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", process)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        process.terminate()
        server.output, _ = process.communicate(timeout=30)


def _wait_until_serving(server: LiveServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{server.base_url}/health", timeout=1)
            return
        except httpx.TransportError:
            if server.process.poll() is not None:
                output = server.process.stdout.read() if server.process.stdout else ""
                raise RuntimeError(f"the service exited during start-up:\n{output}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start in {timeout} s") from None
            time.sleep(0.2)
