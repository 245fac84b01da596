"""Requests whose path reaches the app exactly as sent.

httpx (like browsers) removes `.` and `..` segments before sending, so a traversal sent
through it never reaches a route. An attacker's raw socket sends them as they are, and
uvicorn passes them on; these requests do the same at the ASGI level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote


@dataclass(frozen=True)
class RawResponse:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


async def raw_request(
    app: Any, method: str, path: str, headers: dict[str, str] | None = None, query: str = ""
) -> RawResponse:
    """`path` as it would be on the wire (percent-encoded, dot segments kept)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),  # as uvicorn decodes it
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("t", 80),
    }
    sent = False
    status, response_headers, body = 0, {}, bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update((k.decode(), v.decode()) for k, v in message["headers"])
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return RawResponse(status, response_headers, bytes(body))
