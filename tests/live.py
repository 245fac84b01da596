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
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def output(self) -> str:
        """Everything the service printed (read from its log file, never a pipe that fills)."""
        return self.log.read_text(errors="replace")


@contextmanager
def live_server(
    cwd: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[LiveServer]:
    """Start the service with only `env` as its configuration; stop it afterwards."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    log = cwd / f"tenantry-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "tenantry", "serve", "--port", str(port), *args],
            cwd=cwd,
            env={**clean, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_serving(server: LiveServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{server.base_url}/health", timeout=1)
            return
        except httpx.TransportError:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"the service exited during start-up:\n{server.output}"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start in {timeout} s") from None
            time.sleep(0.2)
