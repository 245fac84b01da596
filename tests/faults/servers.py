"""Throwaway servers the fault-injection tests own: they may stop and restart them.

Each runs on a free loopback port with its data in a temporary folder, never
touching the machine's shared PostgreSQL, Redis or S3 server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.live import free_port


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)


def _answers(command: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        return subprocess.run(command, capture_output=True, timeout=10).returncode == 0

    return check


@dataclass
class OwnRedis:
    """A redis-server of the test's own, that keeps its data across a restart (AOF)."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ping = ["redis-cli", "-p", str(self.port), "ping"]
        wait_until(_answers(ping), 30, f"redis on {self.port} answering")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


@dataclass
class OwnPostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder).

    The folder is made under the system temp dir, not pytest's (which is private to
    root), because PostgreSQL refuses to run as root and runs as `postgres` here.
    """

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tenantry-pg-")))
    port: int = field(default_factory=free_port)
    started: bool = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def bin(name: str) -> str:
        versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: int(p.name))
        return str(versions[-1] / "bin" / name)

    def _as_postgres(self, *command: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run(
            self._as_postgres(
                self.bin("initdb"),
                "-D",
                str(self.folder / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            self._as_postgres(
                self.bin("pg_ctl"),
                "-D",
                str(self.folder / "data"),
                "-o",
                options,
                "-l",
                str(self.folder / "log"),
                "-w",
                "start",
            ),
            check=True,
            capture_output=True,
        )
        self.started = True
        ready = [self.bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        wait_until(_answers(ready), 30, f"postgres on {self.port} answering")

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            subprocess.run(
                self._as_postgres(
                    self.bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", mode, "-w", "stop"
                ),
                capture_output=True,
            )
            self.started = False

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
