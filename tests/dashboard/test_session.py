"""Dashboard access: login with the admin key, signed cookie, CSRF on actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy import select

from tenantry.app import create_app
from tenantry.db import utcnow
from tenantry.sessions import COOKIE_NAME, SessionRow
from tenantry.settings import Settings
from tests.conftest import ADMIN_TOKEN, bearer
from tests.dashboard.conftest import log_in

BASE = "http://tenantry.test"
HOUR = timedelta(hours=1)

PAGES = [
    "/admin",
    "/admin/queues",
    "/admin/queries",
    "/admin/circuits",
    "/admin/flags",
    "/admin/storage",
]


async def test_pages_redirect_to_login_without_a_session(
    client: AsyncClient, subtests: pytest.Subtests
) -> None:
    for page in PAGES:  # one app, a subtest a page
        with subtests.test(page):
            response = await client.get(page)
            assert response.status_code == 303
            assert response.headers["location"] == f"/admin/login?next={quote(page, safe='')}"
    # The page's query comes back too, after the login.
    response = await client.get("/admin/queues?state=failed")
    assert response.headers["location"] == "/admin/login?next=%2Fadmin%2Fqueues%3Fstate%3Dfailed"


async def test_htmx_refresh_without_a_session_redirects_the_page(client: AsyncClient) -> None:
    response = await client.get("/admin", headers={"HX-Request": "true", "HX-Target": "live"})
    assert response.headers["hx-redirect"].startswith("/admin/login")


async def test_login_with_the_admin_key_sets_a_signed_http_only_cookie(
    client: AsyncClient,
) -> None:
    response = await client.post("/admin/login", data={"key": ADMIN_TOKEN, "next": "/admin"})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert ADMIN_TOKEN not in cookie
    assert (await client.get("/admin")).status_code == 200


async def test_a_company_key_cannot_log_in(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    key = company_keys["acme"]["Authorization"].removeprefix("Bearer ")
    response = await client.post("/admin/login", data={"key": key})
    assert response.status_code == 401
    assert "not the admin key" in response.text
    assert "set-cookie" not in response.headers


async def test_a_forged_cookie_is_refused(client: AsyncClient) -> None:
    client.cookies.set("tenantry_admin", "eyJjc3JmIjoieCJ9.forged.sig", path="/admin")
    assert (await client.get("/admin")).status_code == 303


async def test_a_cookie_signed_with_the_key_for_another_purpose_is_refused(
    client: AsyncClient, settings: Settings
) -> None:
    """The secret key signs other things too: only a dashboard cookie opens a session."""
    from itsdangerous import URLSafeTimedSerializer

    await log_in(client)
    _, data = URLSafeTimedSerializer("any").loads_unsafe(client.cookies[COOKIE_NAME])
    assert settings.secret_key is not None and isinstance(data, dict)
    other = URLSafeTimedSerializer(settings.secret_key.get_secret_value())  # its default salt
    client.cookies.set(COOKIE_NAME, other.dumps(data), path="/admin")
    assert (await client.get("/admin")).status_code == 303


async def test_login_never_redirects_off_site(client: AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/admin", "/api/keys"):
        response = await client.post("/admin/login", data={"key": ADMIN_TOKEN, "next": target})
        assert response.headers["location"] == "/admin"


async def test_actions_need_the_csrf_token(client: AsyncClient, csrf: str) -> None:
    refused = await client.post("/admin/logout")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "FORBIDDEN"
    wrong = await client.post("/admin/logout", data={"csrf": "not-the-token"})
    assert wrong.status_code == 403
    # The token sent as a file upload is no token (not a 500).
    uploaded = await client.post("/admin/logout", files={"csrf": ("csrf", csrf.encode())})
    assert uploaded.status_code == 403
    accepted = await client.post("/admin/logout", headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 303
    assert (await client.get("/admin")).status_code == 303


async def test_overview_shows_every_dependency(client: AsyncClient, csrf: str) -> None:
    page = await client.get("/admin")
    assert page.status_code == 200
    assert "database" in page.text
    assert 'class="badge ok">ready' in page.text


async def test_assets_are_served_locally(client: AsyncClient) -> None:
    page = await client.post("/admin/login", data={"key": ADMIN_TOKEN})
    html = (await client.get("/admin")).text
    assert "http://" not in html and "https://" not in html
    assert (await client.get("/admin/static/htmx.min.js")).status_code == 200
    assert (await client.get("/admin/static/dashboard.css")).status_code == 200
    assert page.status_code == 303


async def test_bearer_admin_key_is_not_a_dashboard_session(client: AsyncClient) -> None:
    response = await client.get("/admin", headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 303


async def test_failed_logins_do_not_lock_the_admin_out(client: AsyncClient) -> None:
    for _ in range(20):
        wrong = await client.post("/admin/login", data={"key": "not the key"})
        assert wrong.status_code == 401
    assert (await client.post("/admin/login", data={"key": "still not"})).status_code == 429
    response = await client.post("/admin/login", data={"key": ADMIN_TOKEN, "next": "/admin"})
    assert response.status_code == 303
    assert (await client.get("/admin")).status_code == 200


async def test_logout_ends_the_session_in_every_instance(
    client: AsyncClient, app: Any, settings: Settings
) -> None:
    csrf = await log_in(client)
    replay = {"Cookie": f"{COOKIE_NAME}={client.cookies[COOKIE_NAME]}"}
    second = create_app(settings)  # another process of the deployment: same database
    transport = ASGITransport(app=second)
    async with LifespanManager(second), AsyncClient(transport=transport, base_url=BASE) as other:
        assert (await other.get("/admin", headers=replay)).status_code == 200
        logout = await client.post("/admin/logout", data={"csrf": csrf})
        assert logout.status_code == 303
        client.cookies.clear()  # only the saved cookie is sent from here on
        for http in (client, other):
            page = await http.get("/admin", headers=replay)
            assert page.status_code == 303
            assert page.headers["location"].startswith("/admin/login")
            action = await http.post(
                "/admin/queues/email/pause", headers={**replay, "X-CSRF-Token": csrf}
            )
            assert action.status_code == 303
            assert action.headers["location"].startswith("/admin/login")
    assert (await app.state.services.jobs.queue_stats("email")).is_paused is False


async def test_rotating_the_admin_key_ends_every_session(
    client: AsyncClient, settings: Settings
) -> None:
    """A leaked key is rotated to lock its holder out: their dashboard sessions too."""
    await log_in(client)
    replay = {"Cookie": f"{COOKIE_NAME}={client.cookies[COOKIE_NAME]}"}
    client.cookies.clear()
    for token, status in ((ADMIN_TOKEN, 200), ("rotated-admin-token-0123456789abcdef", 303)):
        rotated = settings.model_copy(update={"admin_token": SecretStr(token)})
        restarted = create_app(rotated)  # same database and secret key, maybe a new admin key
        transport = ASGITransport(app=restarted)
        async with (
            LifespanManager(restarted),
            AsyncClient(transport=transport, base_url=BASE) as http,
        ):
            assert (await http.get("/admin", headers=replay)).status_code == status, token


async def test_expired_sessions_are_swept_at_login(client: AsyncClient, app: Any) -> None:
    db = app.state.services.db
    async with db.session() as session:
        session.add(SessionRow(id_digest="0" * 64, created_at=utcnow(), expires_at=utcnow() - HOUR))
    await log_in(client)
    async with db.session() as session:
        rows = (await session.scalars(select(SessionRow))).all()
    assert len(rows) == 1 and rows[0].id_digest != "0" * 64  # only the new login's row


async def test_a_cookie_older_than_its_age_is_refused_even_while_its_row_lives(
    client: AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from itsdangerous.timed import TimestampSigner
    from sqlalchemy import update

    await log_in(client)
    async with app.state.services.db.session() as session:
        await session.execute(update(SessionRow).values(expires_at=utcnow() + 48 * HOUR))
    signed_at = TimestampSigner.get_timestamp(None)  # type: ignore[arg-type]
    # The cookie's own signed time is checked: 13 hours on, it has expired.
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda _: signed_at + 13 * 3600)
    assert (await client.get("/admin")).status_code == 303


# --- behind an embedding application's admin check (`Tenantry.mount(app, admin=...)`) ---


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_behind_the_applications_admin_check_its_answer_decides(
    settings_factory: Any,
) -> None:
    from fastapi import FastAPI, Request

    from tenantry import Tenantry

    approves = {"answer": True}

    def is_admin(request: Request) -> bool:
        return approves["answer"]

    tenantry = Tenantry(settings_factory())
    app = FastAPI()
    tenantry.mount(app, prefix="/ops", admin=is_admin)
    async with tenantry.run():
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url=BASE) as http:
            # Approved: the login page asks for no key; it signs in and goes on.
            signed_in = await http.get("/ops/admin/login", params={"next": "/admin/flags"})
            assert signed_in.status_code == 303
            assert signed_in.headers["location"] == "/ops/admin/flags"  # under the mount
            assert COOKIE_NAME in signed_in.cookies
            assert (await http.get("/ops/admin/flags")).status_code == 200
            # A POSTed key is not asked for either: the application's check decides.
            posted = await http.post("/ops/admin/login", data={"key": "not-the-key"})
            assert posted.status_code == 303
            # Refused: no page, even with the session still alive; no login either.
            approves["answer"] = False
            for path in ("/ops/admin", "/ops/admin/flags", "/ops/admin/login"):
                refused = await http.get(path)
                assert refused.status_code == 403, path
                assert "<title>FORBIDDEN" in refused.text  # the dashboard's own error page
            keyed = await http.post("/ops/admin/login", data={"key": ADMIN_TOKEN})
            assert keyed.status_code == 403
            # Approved again: the living session is a pass once more.
            approves["answer"] = True
            assert (await http.get("/ops/admin/flags")).status_code == 200


@pytest.mark.parametrize(
    ("state", "answer"),
    [
        (None, None),  # no state at all: `tenantry serve`, no lifespan state
        ({}, None),
        ({"tenantry.app_admin": True}, True),
        ({"tenantry.app_admin": False}, False),
        ({"tenantry.app_admin": "yes"}, None),  # only a bool is an answer
        ({"tenantry.app_admin": 1}, None),
    ],
)
def test_the_admin_answer_is_read_only_from_the_middlewares_bool(
    state: dict[str, Any] | None, answer: bool | None
) -> None:
    from starlette.requests import Request

    from tenantry.dashboard.auth import app_admin

    scope: dict[str, Any] = {"type": "http", "headers": []}
    if state is not None:
        scope["state"] = state
    assert app_admin(Request(scope)) is answer
