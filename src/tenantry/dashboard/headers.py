"""Security headers on every dashboard response: a strict CSP and no framing.

The dashboard serves only its own assets and has no inline script or style (charts
colour by class, htmx's injected indicator style is switched off in base.html), so
the policy allows nothing but the same origin, and no page may be framed. Pages
(not the static assets) are never stored by a browser or proxy cache: they show
companies, keys and plans to whoever holds the session.

Under a mount (`Tenantry.mount(app, prefix="/ops")`) the dashboard's code still names
its paths as the app sees them (`/admin/...`): templates put `root` in front of every
link, and this middleware puts the root path in front of every redirect target.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantry.deps import route_path

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
NOT_STORED = (b"cache-control", b"no-store")
REDIRECTS = (b"location", b"hx-redirect")


class DashboardHeaders:
    """ASGI middleware: adds HEADERS to every response under `prefix` (pages, assets,
    redirects, errors alike)."""

    def __init__(self, app: ASGIApp, prefix: str = "/admin") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            await self.app(scope, receive, send)
            return

        static = path.startswith(self.prefix + "/static/")
        added = HEADERS if static else [*HEADERS, NOT_STORED]
        names = {name for name, _ in added}
        root = scope.get("root_path", "").encode("latin-1")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, rooted(k, v, root))
                    for k, v in message.get("headers", [])
                    if k.lower() not in names
                ]
                message = {**message, "headers": kept + added}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def rooted(name: bytes, value: bytes, root: bytes) -> bytes:
    """A redirect to one of the app's own paths, under the root path it is mounted at."""
    if (
        root
        and name.lower() in REDIRECTS
        and value.startswith(b"/")
        and not value.startswith(root + b"/")
    ):
        return root + value
    return value
