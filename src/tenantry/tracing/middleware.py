"""A SERVER span per HTTP request: pure ASGI middleware, like metrics.py's.

Added by `create_app` only when tracing is on, so off it costs nothing at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from tenantry.tracing.tracer import Tracing


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracing.server_span(scope) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                self.tracing.end_server_span(span, scope, status)
