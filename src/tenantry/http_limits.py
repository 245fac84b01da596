"""Request bodies bounded before the app reads them: size, the key first, idle time.

FastAPI reads and parses a request body before it solves a route's dependencies, so
the auth dependency runs only once the whole body is in memory. This pure ASGI
middleware runs before any of that:

- a body longer than its route's limit is refused (413) on its Content-Length before
  a byte is read, and counted as it arrives (chunked bodies, a lying Content-Length);
- a body sent to a key-authenticated route (`/api/…`) waits until the key is valid:
  `deps.authenticate` runs here, before the body is read (401 or 429 otherwise), and
  the route reuses the Principal it found (`deps.AUTHENTICATED`) instead of
  authenticating again;
- a body that stops arriving for `body_timeout` seconds is answered 408.

Refusals carry `Connection: close`: the unread rest of the body is never read. Once
the middleware has answered, the app sees the client as gone (`http.disconnect`),
which every route already cleans up after: a cut-off upload leaves no file or record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantry.deps import authenticate, bearer_token, route_path
from tenantry.errors import PayloadTooLarge, TenantryError
from tenantry.http_errors import error_response

log = logging.getLogger("tenantry")

KEY_ROUTES_PREFIX = "/api/"  # every route below it takes a key (deps.authenticate)
_DISCONNECT: Message = {"type": "http.disconnect"}


class BodyTimeout(TenantryError):
    status_code, code = 408, "REQUEST_TIMEOUT"


class RequestLimits:
    """Bounds every request body; `route_limits` raise the limit of (method, path) pairs."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout: float,
        route_limits: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.route_limits = dict(route_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, chunked = _body_headers(scope)
        if not chunked and length in ("", "0"):
            await self.app(scope, receive, send)  # no body: nothing to bound or wait for
            return
        path = route_path(scope)
        limit = self.route_limits.get((scope["method"], path), self.max_body_bytes)
        if length.isdigit() and int(length) > limit:
            await _answer(_too_large(limit), scope, receive, send)
            return
        if path.startswith(KEY_ROUTES_PREFIX) and (refusal := await _authenticate(scope)):
            await _answer(refusal, scope, receive, send)
            return
        guard = _BodyGuard(scope, receive, send, limit, self.body_timeout)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if not guard.refused:
                raise
            # The app met the disconnect it was shown; the client already has its answer.
            log.debug("after a refused body on %s", path, exc_info=True)


def _body_headers(scope: Scope) -> tuple[str, bool]:
    """The first Content-Length (as Starlette's Headers.get reads it), and whether a
    Transfer-Encoding is given: one pass over the raw headers."""
    length: str | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            if length is None:
                length = value.decode("latin-1")
        elif name == b"transfer-encoding":
            chunked = True
    return length or "", chunked


async def _authenticate(scope: Scope) -> TenantryError | None:
    """Run the routes' own authentication now; the route then reuses its Principal."""
    services = getattr(scope["app"].state, "services", None)
    if services is None:  # not started: the route answers as it would
        return None
    try:
        await authenticate(scope, services, bearer_token(scope))
    except TenantryError as refusal:
        return refusal
    return None


class _BodyGuard:
    """The app's side of one request body: counted, timed, and cut off once refused."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int, timeout: float):
        self._scope, self._receive, self._send = scope, receive, send
        self._limit, self._timeout = limit, timeout
        self._received = 0
        self._complete = False  # the whole body has arrived
        self._started = False  # the app's response has begun
        self.refused = False  # this guard answered the client itself

    async def receive(self) -> Message:
        if self.refused:
            return _DISCONNECT
        if self._complete:  # only a disconnect can come now, whenever the client leaves
            return await self._receive()
        try:
            async with asyncio.timeout(self._timeout):
                message = await self._receive()
        except TimeoutError:
            seconds = f"{self._timeout:g}"
            await self._refuse(
                BodyTimeout(
                    f"the request body stopped arriving: nothing came for {seconds} s",
                    details={"field": "body", "timeoutSeconds": self._timeout},
                )
            )
            return _DISCONNECT
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limit:
                await self._refuse(_too_large(self._limit))
                return _DISCONNECT
            self._complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # the client already has its answer; the app's comes too late
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)

    async def _refuse(self, error: TenantryError) -> None:
        self.refused = True
        if not self._started:  # else the connection ends with the app's unfinished response
            await _answer(error, self._scope, self._receive, self._send)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than the limit of {limit} bytes for this route",
        details={"field": "body", "maxBytes": limit},
    )


async def _answer(error: TenantryError, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(error)
    response.headers["Connection"] = "close"  # never read the rest of this body
    await response(scope, receive, send)
