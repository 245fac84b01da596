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
import gc
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tenantry.logs import configure_logging, lean_records
from tenantry.settings import Settings


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """One deadline per request's headers, and at most one timer per connection.

    Arming and cancelling a timer per request would put two event-loop heap operations
    (and a cancelled handle the loop later sweeps) on every kept-alive request. The
    deadline is a float set when headers start and cleared when they are complete; one
    timer, re-armed only when it fires before the current deadline, enforces it.
    """

    header_timeout = 10.0  # seconds; `with_header_timeout` makes a subclass with another
    _header_timer: asyncio.TimerHandle | None = None
    _header_deadline: float | None = None  # loop time by which the headers must be in

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_deadline = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a new request on a kept-alive connection (the first has one already)

    def on_headers_complete(self) -> None:
        self._header_deadline = None  # the timer, if it fires, finds nothing to enforce
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.time() + self.header_timeout
            if self._header_timer is None:
                self._header_timer = self.loop.call_at(self._header_deadline, self._check)

    def _check(self) -> None:
        self._header_timer = None
        deadline = self._header_deadline
        if deadline is None:
            return  # no headers pending: the next request's arms a timer again
        if self.loop.time() < deadline:  # a later request's deadline
            self._header_timer = self.loop.call_at(deadline, self._check)
            return
        self._header_deadline = None
        self._expire()

    def _expire(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined request: finish the one in flight
        elif not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


def serve(app: Any, settings: Settings, host: str, port: int) -> None:
    """Run `app` with every connection bound from the settings."""
    forwarded = settings.forwarded_allow_ips.strip()
    lean_records()
    # The app, its routes and models are built and live until the process ends: out of
    # the collector's way, so its full collections scan what requests allocate, not them.
    gc.collect()
    gc.freeze()
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
