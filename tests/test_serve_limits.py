"""A real `tenantry serve` against hostile clients, over raw sockets.

One server for the module, with its timeouts at 1 s so the tests stay fast:
- unauthenticated 50 MiB bodies are answered at once and cost no memory;
- partial headers, and silence after connecting, are cut off (header timeout);
- a stalled upload is answered 408 and leaves no record and no file (body timeout);
- past the concurrency limit, requests get 503;
- X-Forwarded-For is ignored unless FORWARDED_ALLOW_IPS lists the proxy.
"""

from __future__ import annotations

import json
import re
import select
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.live import LiveServer, live_server
from tests.storage.conftest import stored_files

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

TIMEOUT = 1.0  # the header and body timeouts of the server under test
CONCURRENCY = 12
MIB = 1024 * 1024
BOUNDARY = "serve-limits-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("serve-limits")
    env = {
        "TENANTRY_DATA_DIR": str(folder / "data"),
        "UPLOAD_DIR": str(folder / "uploads"),
        "TENANTRY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTRY_SECRET_KEY": "serve-limits",
        "ENABLE_JOB_QUEUES": "false",
        "TENANTRY_AUTH_FAILURES_PER_MINUTE": "0",  # every refusal here is a 401, never a 429
        "TENANTRY_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
        "TENANTRY_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
        "TENANTRY_LIMIT_CONCURRENCY": str(CONCURRENCY),
    }
    with live_server(folder, env) as running:
        yield running


def connect(server: LiveServer) -> socket.socket:
    address = urlsplit(server.base_url)
    sock = socket.create_connection((address.hostname, address.port), timeout=5)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of one response (the server may close or reset right after)."""
    data = b""
    with _tolerating_reset():
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        while length and len(body) < int(length[1]) and (chunk := sock.recv(65536)):
            body += chunk
    match = re.match(rb"HTTP/1\.1 (\d{3})", data)
    assert match, f"no HTTP response: {data[:200]!r}"
    return int(match[1]), body


class _tolerating_reset:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, ConnectionResetError)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock`, or None if it stayed open that long."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def post_big(
    server: LiveServer, size: int, *, chunked: bool, key: str = ""
) -> tuple[int, float, int]:
    """POST a JSON body of `size` bytes to /api/keys (no key by default), as fast as it goes.

    Returns the status, the seconds until the answer, and how many bytes were sent by then.
    """
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = f"POST /api/keys HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n"
    head += f"Authorization: Bearer {key}\r\n" if key else ""
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(head.encode() + b"\r\n")
    prefix, filler, suffix = b'{"companyId": "', b"a" * 65536, b'"}'
    sent = 0
    with sock:
        try:
            while sent < size and not select.select([sock], [], [], 0)[0]:
                piece = filler[: min(len(filler), size - sent)]
                if sent == 0:
                    piece = prefix + piece[len(prefix) :]
                elif sent + len(piece) == size:
                    piece = piece[: -len(suffix)] + suffix
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked and sent == size:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: it never reads the rest
        status, _ = read_response(sock)
    return status, time.monotonic() - started, sent


def test_unauthenticated_50_mib_bodies_cost_the_server_no_memory(server: LiveServer) -> None:
    pid = server.process.pid
    # The last one has the admin key: its body is read, and stopped at 1 MiB.
    for chunked, key in ((False, ""), (True, ""), (True, ADMIN_TOKEN)):
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart the peak (VmHWM) from now
        before = memory_kib(pid, "VmRSS")
        status, seconds, sent = post_big(server, 50 * MIB, chunked=chunked, key=key)
        growth_mb = (memory_kib(pid, "VmHWM") - before) / 1024
        print(
            f"{'chunked' if chunked else 'Content-Length'}{' admin key' if key else ''}: {status}"
            f" after {seconds * 1000:.0f} ms and {sent / MIB:.2f} MiB sent;"
            f" server peak RSS growth {growth_mb:.2f} MB"
        )
        assert status in (401, 413)
        assert sent < 50 * MIB  # answered before the body was all sent: never read whole
        assert growth_mb < 10


def test_partial_headers_are_cut_off_after_the_header_timeout(server: LiveServer) -> None:
    silent = connect(server)  # connects and never sends a byte
    partial = connect(server)
    partial.sendall(b"POST /api/keys HTTP/1.1\r\nHost: t\r\nContent-Le")
    dribbling = connect(server)  # a byte at a time: that must not keep its headers open
    kept_alive = connect(server)  # a second request's headers on a kept-alive connection
    kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(kept_alive)[0] == 200
    kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost")
    started = time.monotonic()
    with silent, partial, dribbling, kept_alive:
        line, sent = b"GET /health HTTP/1.1\r\n" + b"X-Slow: y\r\n" * 100, 0
        with _tolerating_reset():
            while time.monotonic() - started < 3 * TIMEOUT:
                dribbling.send(line[sent : sent + 1])
                sent += 1
                if select.select([dribbling], [], [], 0.1)[0] and not dribbling.recv(4096):
                    break
        open_for = time.monotonic() - started
        assert open_for < 2 * TIMEOUT, "the dribbling client's headers were never cut off"
        for sock in (silent, partial, kept_alive):  # (uvicorn's keep-alive timeout is 5 s)
            assert closed_within(sock, 2 * TIMEOUT) is not None
    print(f"a client dribbling its headers was cut off after {open_for:.2f} s")
    assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200


def upload_head(length: int) -> bytes:
    return (
        "POST /api/storage/files?companyId=acme HTTP/1.1\r\nHost: t\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


PARTS = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="category"\r\n\r\nvideos\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
    "Content-Type: video/mp4\r\n\r\n"
).encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def test_a_stalled_upload_is_cut_off_and_leaves_nothing_behind(server: LiveServer) -> None:
    """Stalled mid-body: 408 and nothing kept. Slow but steady (a piece every 0.6 s, longer
    in all than either timeout, each pause shorter than the body timeout): stored."""
    upload_dir = server.log.parent / "uploads"
    stalled = [connect(server) for _ in range(5)]
    for sock in stalled:
        sock.sendall(upload_head(10 * MIB) + PARTS + b"v" * 256 * 1024)  # then nothing more
    started = time.monotonic()
    # The stalled uploads' half-written files, before the cut-off (each upload reserves
    # its quota first, so on a loaded machine they appear over a few hundred ms).
    deadline = started + 0.9 * TIMEOUT
    while len(stored_files(upload_dir)) < 5:
        assert time.monotonic() < deadline, stored_files(upload_dir)
        time.sleep(0.02)
    with connect(server) as steady:
        steady.sendall(upload_head(len(PARTS) + 3000 + len(TAIL)) + PARTS)
        for _ in range(3):
            time.sleep(0.6 * TIMEOUT)
            steady.sendall(b"s" * 1000)
        steady.sendall(TAIL)
        status, body = read_response(steady)
    assert status == 201, body
    steady_key = json.loads(body)["key"]
    for sock in stalled:
        with sock:
            status, body = read_response(sock)
            assert status == 408, body
            assert json.loads(body)["error"]["code"] == "REQUEST_TIMEOUT"
            assert closed_within(sock, TIMEOUT) is not None
    # Each answer came within the sockets' 5 s timeout (else read_response raised).
    waited = time.monotonic() - started
    print(f"5 stalled uploads answered 408, a steady one stored, in {waited:.2f} s")

    listing = httpx.get(f"{server.base_url}/api/storage/files?companyId=acme", headers=ADMIN)
    assert [file["key"] for file in listing.json()["files"]] == [steady_key]
    deadline = time.monotonic() + 2
    while stored_files(upload_dir) != [steady_key] and time.monotonic() < deadline:
        time.sleep(0.05)  # the half-written files are removed as the uploads unwind
    assert stored_files(upload_dir) == [steady_key]


def test_requests_past_the_concurrency_limit_get_503(server: LiveServer) -> None:
    base = urlsplit(server.base_url)
    idle = [connect(server) for _ in range(CONCURRENCY - 2)]
    try:
        below = httpx.get(f"{server.base_url}/health", timeout=5)
        assert below.status_code == 200  # CONCURRENCY - 1 connections with its own
        idle.append(connect(server))
        with socket.create_connection((base.hostname, base.port), timeout=5) as probe:
            probe.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _ = read_response(probe)
        assert status == 503
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 2
    while httpx.get(f"{server.base_url}/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_x_forwarded_for_is_ignored_by_default(server: LiveServer) -> None:
    """Trusted, it would let one client name a new address per request (past the
    failed-auth limiter); FORWARDED_ALLOW_IPS is empty, so the socket's address counts."""
    marker = f"xff-{time.monotonic_ns()}"
    response = httpx.get(
        f"{server.base_url}/health?probe={marker}",
        headers={"X-Forwarded-For": "203.0.113.7"},
        timeout=5,
    )
    assert response.status_code == 200
    deadline = time.monotonic() + 2
    while not (lines := [line for line in server.output.splitlines() if marker in line]):
        assert time.monotonic() < deadline, "no access log line for the probe"
        time.sleep(0.05)
    assert "127.0.0.1" in lines[0] and "203.0.113.7" not in lines[0], lines[0]
