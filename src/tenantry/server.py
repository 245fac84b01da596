"""How `tenantry serve` runs uvicorn: connection limits, proxy trust, a header timeout.

uvicorn bounds idle keep-alive connections, but not a client that connects and never
finishes its headers: such a connection stays open for good. `HeaderTimeoutProtocol`
is uvicorn's httptools protocol with one timer added: armed when a connection opens
and when a request's first bytes arrive, cancelled once its headers are complete,
closing the connection when it fires. (Body reads are bounded in http_limits.py, at
the ASGI level.) It builds on uvicorn's internals: pyproject.toml pins the range.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tenantry.logs import configure_logging
from tenantry.settings import Settings


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout = 10.0  # seconds; `with_header_timeout` makes a subclass with another
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a new request on a kept-alive connection (the first has one already)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined request: finish the one in flight
        elif not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


def serve(app: Any, settings: Settings, host: str, port: int) -> None:
    """Run `app` with every connection bound from the settings."""
    forwarded = settings.forwarded_allow_ips.strip()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=configure_logging(settings.log_level, settings.log_format),
        http=with_header_timeout(settings.header_timeout_seconds),
        limit_concurrency=settings.limit_concurrency,
        # Proxy headers only from the proxies listed: trusted from anyone else, a client
        # could name any address it likes (and so step past the failed-auth limiter).
        proxy_headers=bool(forwarded),
        forwarded_allow_ips=forwarded or None,
    )
