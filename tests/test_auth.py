"""Auth: no key → 401, another company's data → 403, admin routes → 403, admin → 200."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import ADMIN, bearer


async def test_no_key_is_401(client: AsyncClient) -> None:
    response = await client.get("/api/keys")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_invalid_key_is_401(client: AsyncClient, subtests: pytest.Subtests) -> None:
    for header in ["Bearer nope", "Bearer tnt_000000000000_" + "a" * 43, "Basic YWRtaW46YWRtaW4="]:
        with subtests.test(header):
            response = await client.get("/api/me", headers={"Authorization": header})
            assert response.status_code == 401


async def test_admin_key_reaches_admin_routes(client: AsyncClient) -> None:
    response = await client.get("/api/keys", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == []


async def test_company_key_on_admin_route_is_403(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    response = await client.get("/api/keys", headers=company_keys["acme"])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_company_key_reaches_only_its_own_company(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    own = await client.get("/api/companies/acme/keys", headers=company_keys["acme"])
    assert own.status_code == 200
    assert {key["companyId"] for key in own.json()} == {"acme"}

    other = await client.get("/api/companies/globex/keys", headers=company_keys["acme"])
    assert other.status_code == 403

    admin = await client.get("/api/companies/globex/keys", headers=ADMIN)
    assert admin.status_code == 200
    assert {key["companyId"] for key in admin.json()} == {"globex"}


async def test_key_lifecycle_through_the_api(client: AsyncClient) -> None:
    created = await client.post(
        "/api/keys", json={"companyId": "initech", "name": "ci"}, headers=ADMIN
    )
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith(f"tnt_{body['id']}_")
    assert body["companyId"] == "initech"

    me = await client.get("/api/me", headers=bearer(body["key"]))
    assert me.json() == {"isAdmin": False, "companyId": "initech", "keyId": body["id"]}

    revoked = await client.delete(f"/api/keys/{body['id']}", headers=ADMIN)
    assert revoked.status_code == 200
    assert revoked.json()["revokedAt"] is not None
    assert (await client.get("/api/me", headers=bearer(body["key"]))).status_code == 401


async def test_keys_are_stored_hashed(app: Any, client: AsyncClient) -> None:
    plain, _ = await app.state.services.keys.create("acme")
    from sqlalchemy import text

    async with app.state.services.db.session() as session:
        stored = (await session.execute(text("SELECT secret_hash FROM tenantry_api_keys"))).all()
    secret = plain.split("_", 2)[2]  # tnt_<id>_<secret>; the url-safe secret may itself hold "_"
    assert len(secret) == 43
    assert all(secret not in row[0] for row in stored)
    assert all(len(row[0]) == 64 for row in stored)


async def test_bad_key_requests_are_422_naming_the_field(
    client: AsyncClient, subtests: pytest.Subtests
) -> None:
    for body, field in [  # one app, a subtest a case
        ({"companyId": "../etc", "name": ""}, "companyId"),
        ({"companyId": "", "name": ""}, "companyId"),
        ({"companyId": "a" * 65}, "companyId"),
        ({"companyId": "acme", "name": "x" * 101}, "name"),
        ({}, "companyId"),
    ]:
        with subtests.test(body=body):
            response = await client.post("/api/keys", json=body, headers=ADMIN)
            assert response.status_code == 422
            error = response.json()["error"]
            assert error["code"] == "VALIDATION_ERROR"
            assert field in error["message"]


async def test_malformed_json_is_422_not_500(client: AsyncClient) -> None:
    response = await client.post(
        "/api/keys",
        content=b"{not json",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 422


async def test_revoking_unknown_key_is_404(client: AsyncClient) -> None:
    response = await client.delete("/api/keys/doesnotexist", headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_failed_authentication_is_rate_limited(client: AsyncClient) -> None:
    statuses = [
        (await client.get("/api/me", headers=bearer("wrong"))).status_code for _ in range(21)
    ]
    assert statuses[:20] == [401] * 20
    limited = await client.get("/api/me", headers=bearer("tnt_000000000000_" + "a" * 43))
    assert statuses[20] == limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert (await client.get("/api/me")).status_code == 429  # no key at all: refused too


async def test_guessing_from_an_address_does_not_lock_out_its_valid_keys(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    for _ in range(25):
        await client.get("/api/me", headers=bearer("wrong"))
    assert (await client.get("/api/me", headers=bearer("wrong"))).status_code == 429
    assert (await client.get("/api/me", headers=ADMIN)).status_code == 200
    me = await client.get("/api/me", headers=company_keys["acme"])
    assert me.status_code == 200 and me.json()["companyId"] == "acme"
    # The valid keys did not reset the count: guessing is still refused.
    assert (await client.get("/api/me", headers=bearer("wrong"))).status_code == 429


async def test_failed_authentication_limit_can_be_switched_off(settings_factory: Any) -> None:
    from asgi_lifespan import LifespanManager
    from httpx import ASGITransport

    from tenantry.app import create_app

    app = create_app(settings_factory(auth_failures_per_minute=0))
    transport = ASGITransport(app=app)
    async with LifespanManager(app), AsyncClient(transport=transport, base_url="http://t") as http:
        for _ in range(25):
            wrong = await http.get("/api/me", headers=bearer("wrong"))
            assert wrong.status_code == 401
        assert (await http.get("/api/me", headers=ADMIN)).status_code == 200


async def test_key_timestamps_carry_their_zone(client: AsyncClient) -> None:
    created = await client.post("/api/keys", json={"companyId": "acme"}, headers=ADMIN)
    assert created.json()["createdAt"].endswith(("Z", "+00:00"))
    listed = await client.get("/api/keys", headers=ADMIN)
    assert all(key["createdAt"].endswith(("Z", "+00:00")) for key in listed.json())


async def test_a_known_key_id_with_a_wrong_secret_is_401(
    client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    key = company_keys["acme"]["Authorization"].removeprefix("Bearer ")
    wrong = key[: len("tnt_") + 12] + "_" + "a" * 43  # its id, another secret
    assert wrong != key
    assert (await client.get("/api/me", headers=bearer(wrong))).status_code == 401


async def test_keys_are_listed_in_the_order_they_were_made(client: AsyncClient) -> None:
    made = []
    for number in range(5):
        body = {"companyId": "acme", "name": f"key {number}"}
        made.append((await client.post("/api/keys", json=body, headers=ADMIN)).json()["id"])
    listed = await client.get("/api/keys", headers=ADMIN)
    assert [key["id"] for key in listed.json()] == made


async def test_the_key_store_names_and_finds_keys(app: Any) -> None:
    from tenantry.errors import InvalidInput, NotFound

    keys = app.state.services.keys
    _, unnamed = await keys.create("acme")
    assert unnamed.name == ""
    _, longest = await keys.create("acme", "x" * 100)
    assert await keys.get(longest.id) == longest
    with pytest.raises(InvalidInput):
        await keys.create("acme", "x" * 101)
    with pytest.raises(NotFound):
        await keys.get("000000000000")


def test_without_an_admin_key_no_token_is_the_admins() -> None:
    from tenantry.auth import KeyRecords, KeyStore

    for admin_token in (None, ""):
        store = KeyStore(KeyRecords(db=None), admin_token)  # type: ignore[arg-type]
        assert not store.is_admin_token("")
        assert store.admin_fingerprint == ""
    assert KeyStore(KeyRecords(db=None), "k").is_admin_token("k")  # type: ignore[arg-type]


def test_a_generated_secret_is_kept_private_and_read_back(tmp_path: Any) -> None:
    from tenantry.auth import load_or_create_secret

    path = tmp_path / "data" / "keys" / "admin-token"
    secret, created = load_or_create_secret(path)
    assert created and len(secret) == 43
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == secret + "\n"
    assert load_or_create_secret(path) == (secret, False)
    assert load_or_create_secret(tmp_path / "other") != (secret, True)
