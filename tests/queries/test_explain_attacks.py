"""EXPLAIN under attack: every spelling of a dangerous call is refused or harmless.

Each row of ATTACKS is a statement the attack review ran (or a sibling of one), with
a probe that proves nothing happened: the other backend is alive, no row was
written, no lock is held, no file's content or secret is in the answer. The last
tests switch the checks off on purpose and show that PostgreSQL itself still
refuses, because EXPLAIN runs as a role that may only read the application's tables.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry import db as database
from tenantry.errors import InvalidInput, ServiceUnavailable
from tenantry.queries import explain
from tenantry.queries.explain import CheckedQuery, ExplainAccess, explain_query
from tenantry.queries.explain_role import ensure_explain_role
from tests.conftest import ADMIN

pytestmark = pytest.mark.postgres_only

SECRET = "s3cr3t-" + uuid.uuid4().hex
KEY_HASH = "f" * 64
LOCKS = {"shadow": 4201, "alias": 4202, "srf": 4203, "cast": 4204, "operator": 4205,
         "domain": 4206, "view": 4207, "policy": 4208, "qualified": 4209}  # fmt: skip


def _locking(name: str, lock: int, args: str = "", returns: str = "int") -> str:
    """A user function whose call is visible afterwards: it takes a session advisory lock
    (which outlives the rollback) and writes a row (which the read-only transaction
    would refuse, so the lock is the probe that counts)."""
    body = f"PERFORM pg_advisory_lock({lock}); INSERT INTO written VALUES ('{name}');"
    result = {"int": "1", "text": "'x'", "bool": "true", "SETOF int": None}[returns]
    ret = "RETURN NEXT 1; RETURN;" if result is None else f"RETURN {result};"
    return (
        f"CREATE FUNCTION {name}({args}) RETURNS {returns} LANGUAGE plpgsql "
        f"AS $$ BEGIN {body} {ret} END $$"
    )


SETUP = [
    "CREATE EXTENSION IF NOT EXISTS dblink",
    "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)",
    "INSERT INTO accounts SELECT g, g FROM generate_series(1, 10) g",
    "CREATE TABLE secrets (secret text)",
    f"INSERT INTO secrets VALUES ('{SECRET}')",
    "CREATE TABLE written (what text)",
    "CREATE SEQUENCE ticket",
    _locking("public.lower", LOCKS["shadow"], "integer", "text"),
    _locking("public.evil", LOCKS["alias"], "accounts"),
    _locking("public.evil_rows", LOCKS["srf"], returns="SETOF int"),
    _locking("public.evil_text", LOCKS["cast"], "int4", "text"),
    "CREATE CAST (int4 AS text) WITH FUNCTION public.evil_text(int4)",
    _locking("public.evil_eq", LOCKS["operator"], "int, int", "bool"),
    "CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.evil_eq)",
    _locking("public.evil_check", LOCKS["domain"], "int", "bool"),
    "CREATE DOMAIN checked_int AS int CHECK (public.evil_check(VALUE))",
    _locking("public.evil_view", LOCKS["view"]),
    "CREATE VIEW innocent AS SELECT public.evil_view() AS n",
    "CREATE VIEW more_innocent AS SELECT * FROM innocent",
    _locking("public.evil_policy", LOCKS["policy"], "int", "bool"),
    "CREATE TABLE guarded (id int)",
    "INSERT INTO guarded VALUES (1)",
    "ALTER TABLE guarded ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY everyone ON guarded USING (public.evil_policy(id))",
    _locking("public.add_one", LOCKS["qualified"], "int"),
]


@dataclass
class Target:
    """A prepared database, a second backend to attack, and the probes."""

    engine: AsyncEngine
    url: str
    victim: psycopg.Connection[Any]
    victim_pid: int
    directory: Path

    def state(self) -> tuple[Any, ...]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            free = [
                conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone()[0]  # type: ignore[index]
                for lock in (42, *LOCKS.values())
            ]
            # Released now, not when the backend exits: a loaded server may still hold a
            # closed session's locks when the next check asks for them.
            conn.execute("SELECT pg_advisory_unlock_all()")
            written = conn.execute("SELECT count(*) FROM written").fetchone()
            objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
            sequence = conn.execute("SELECT last_value, is_called FROM ticket").fetchone()
        return tuple(free), written, objects, sequence

    def victim_alive(self) -> bool:
        try:
            return self.victim.execute("SELECT 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False


@pytest.fixture
async def target(pg_engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Target]:
    url = pg_engine.url.render_as_string(hide_password=False)
    plain = url.replace("+psycopg", "")
    await asyncio.to_thread(database.upgrade, url)  # Tenantry's tables, the API keys among them
    async with pg_engine.begin() as conn:
        for sql in SETUP:
            await conn.exec_driver_sql(sql)
        await conn.exec_driver_sql(
            "INSERT INTO tenantry_api_keys (id, company_id, name, secret_hash, created_at) "
            f"VALUES ('k1', 'acme', '', '{KEY_HASH}', now())"
        )
    assert await asyncio.to_thread(ensure_explain_role, url) is None
    (tmp_path / f"listing-{SECRET}").write_text("")
    victim = psycopg.connect(plain, autocommit=True)
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    try:
        yield Target(pg_engine, plain, victim, pid, tmp_path)
    finally:
        victim.close()


# name -> (statement, what must hold afterwards besides "nothing changed")
ATTACKS: dict[str, Callable[[Target], str]] = {
    "terminate_attribute": lambda t: f"SELECT ({t.victim_pid}).pg_terminate_backend",
    "terminate_cancel": lambda t: f"SELECT ({t.victim_pid}).pg_cancel_backend",
    "read_file_attribute": lambda t: (
        "SELECT replace(('/etc/passwd').pg_read_file, chr(10), ' | ')::int"
    ),
    "read_file_in_from": lambda t: "SELECT * FROM (SELECT ('/etc/passwd').pg_read_file) f",
    "sleep_attribute": lambda t: "SELECT (60).pg_sleep",
    "ls_dir_attribute": lambda t: f"SELECT ('{t.directory}').pg_ls_dir",
    "advisory_lock_attribute": lambda t: "SELECT (42).pg_advisory_lock",
    "lo_import_attribute": lambda t: "SELECT ('/etc/hostname').lo_import",
    "nextval_attribute": lambda t: "SELECT ('ticket').nextval",
    "dblink_attribute": lambda t: (
        f"SELECT ('{t.url}').dblink_connect, "
        "('INSERT INTO written VALUES (''dblink'')').dblink_exec"
    ),
    "dblink_range_function": lambda t: "SELECT * FROM dblink('dbname=x', 'SELECT 1') AS r(x int)",
    "shadowed_catalog_name": lambda t: "SELECT lower(5)",
    "alias_dot_function": lambda t: "SELECT a.evil FROM accounts a LIMIT 1",
    "range_function": lambda t: "SELECT * FROM evil_rows()",
    "range_function_shadowed": lambda t: "SELECT * FROM lower(5)",
    "cast_backed_by_function": lambda t: "SELECT 5::text",
    "cast_in_where": lambda t: "SELECT id FROM accounts WHERE id::text = '3'",
    "operator_backed_by_function": lambda t: "SELECT 1 === 2",
    "operator_in_where": lambda t: "SELECT * FROM accounts WHERE id OPERATOR(public.===) 3",
    "domain_check": lambda t: "SELECT 5::checked_int",
    "function_behind_views": lambda t: "SELECT * FROM more_innocent",
    "function_in_policy": lambda t: "SELECT * FROM guarded",
    "schema_qualified": lambda t: "SELECT public.add_one(1)",
    "unqualified_user_function": lambda t: "SELECT add_one(1)",
    "secret_in_error": lambda t: "SELECT (SELECT secret FROM secrets)::int",
    "api_key_in_error": lambda t: "SELECT (SELECT secret_hash FROM tenantry_api_keys)::int",
    "api_keys_read": lambda t: "SELECT count(*) FROM tenantry_api_keys",
}


async def test_every_spelling_is_refused_and_nothing_happens(
    target: Target, subtests: pytest.Subtests
) -> None:
    for name in sorted(ATTACKS):  # one prepared database (it takes seconds), a subtest each
        with subtests.test(name):
            query = ATTACKS[name](target)
            before = target.state()
            started = time.monotonic()
            with pytest.raises(InvalidInput) as refused:
                await explain_query(target.engine, query, timeout_ms=120_000)
            elapsed = time.monotonic() - started
            answer = f"{refused.value.message} {refused.value.details}"
            assert target.state() == before, "a lock, a row, a large object or the sequence changed"
            assert target.victim_alive()
            # pg_sleep(60) did not run (the deadline is half its sleep, for a loaded machine).
            assert elapsed < 30, f"the statement ran ({elapsed:.1f} s)"
            for leaked in ("root:", SECRET, KEY_HASH):
                assert leaked not in answer
            assert refused.value.status_code == 422


async def test_the_refusal_names_the_function_postgresql_resolved(target: Target) -> None:
    expected = {
        "SELECT lower(5)": "public.lower(integer)",
        f"SELECT ({target.victim_pid}).pg_terminate_backend": "pg_terminate_backend",
        "SELECT 1 === 2": "public.evil_eq(integer, integer)",
        "SELECT 5::checked_int": "public.evil_check(integer)",
        "SELECT * FROM more_innocent": "public.evil_view()",
    }
    for query, function in expected.items():
        with pytest.raises(InvalidInput, match=r"query refused") as refused:
            await explain_query(target.engine, query, timeout_ms=5000)
        assert function in refused.value.message, query


async def test_errors_carry_the_sqlstate_not_the_data(target: Target) -> None:
    with pytest.raises(InvalidInput) as failed:
        await explain_query(target.engine, "SELECT (SELECT secret FROM secrets)::int", 5000)
    assert failed.value.details["sqlstate"] == "22P02"
    assert SECRET not in failed.value.message and "22P02" in failed.value.message
    with pytest.raises(InvalidInput) as denied:
        await explain_query(target.engine, "SELECT * FROM tenantry_api_keys", 5000)
    assert denied.value.details["sqlstate"] == "42501"


async def test_harmless_statements_still_explain(target: Target) -> None:
    for query in (
        "SELECT * FROM accounts WHERE balance > 3 ORDER BY id",
        "SELECT lower('A'), random(), now(), 1 + 1, '5'::int, 5::bigint",
        "SELECT count(*) FROM secrets",  # the application's own tables are readable
        "SELECT 1 AS a, 2 AS a",  # duplicate column names, which a view would refuse
        "SELECT (1, 2) < (3, 4)",  # a row comparison: a list of operators
    ):
        result = await explain_query(target.engine, query, timeout_ms=5000)
        assert result.plan["Node Type"], query


async def test_an_allowed_extension_function_passes(target: Target) -> None:
    async with target.engine.begin() as conn:
        await conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS unaccent")
    query = "SELECT unaccent('Crème')"
    with pytest.raises(InvalidInput, match="EXPLAIN_ALLOWED_FUNCTIONS"):
        await explain_query(target.engine, query, timeout_ms=5000)
    access = ExplainAccess(allowed_functions=frozenset({"public.unaccent"}))
    result = await explain_query(target.engine, query, 5000, access)
    assert result.plan["Node Type"] == "Result"


# --- the role alone: the checks switched off on purpose ---------------------------
@pytest.fixture
def unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both checks disabled, so only PostgreSQL's privileges stand in the way."""
    monkeypatch.setattr(explain, "check_read_only", lambda query: CheckedQuery(query))

    async def no_check(*_: Any) -> None:
        return None

    monkeypatch.setattr(explain, "_check_calls", no_check)


ROLE_REFUSES = {
    "SELECT pg_read_file('/etc/passwd')": "42501",
    "SELECT pg_ls_dir('/')": "42501",
    "SELECT lo_import('/etc/hostname')": "42501",
    "SELECT count(*) FROM tenantry_api_keys": "42501",
    "SELECT pg_read_binary_file('/etc/passwd')": "42501",
}


async def test_the_role_refuses_what_the_checks_would(target: Target, unchecked: None) -> None:
    before = target.state()
    for query, sqlstate in ROLE_REFUSES.items():
        with pytest.raises(InvalidInput) as refused:
            await explain_query(target.engine, query, timeout_ms=5000)
        assert refused.value.details["sqlstate"] == sqlstate, query
        assert "root:" not in refused.value.message
    with pytest.raises(InvalidInput) as signalled:
        await explain_query(
            target.engine, f"SELECT pg_terminate_backend({target.victim_pid})", 5000
        )
    assert signalled.value.details["sqlstate"] == "42501"
    assert target.victim_alive()
    # dblink refuses a role that has no password to connect with
    connect = f"SELECT dblink_exec('{target.url}', 'INSERT INTO written VALUES (1)')"
    with pytest.raises(InvalidInput) as linked:
        await explain_query(target.engine, connect, timeout_ms=5000)
    assert linked.value.details["sqlstate"] == "2F003"
    # a write still meets the read-only transaction (and the role may not INSERT either)
    with pytest.raises(InvalidInput, match="read-only transaction"):
        await explain_query(target.engine, "INSERT INTO written VALUES ('x')", 5000)
    assert target.state() == before


@pytest.fixture
def throwaway_role(target: Target) -> Iterator[str]:
    name = f"tenantry_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(target.url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} NOLOGIN IN ROLE pg_read_server_files")
    try:
        yield name
    finally:
        with psycopg.connect(target.url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {name}")


async def test_a_role_with_too_many_rights_is_not_used(target: Target, throwaway_role: str) -> None:
    access = ExplainAccess(role=throwaway_role)
    with pytest.raises(ServiceUnavailable) as refused:
        await explain_query(target.engine, "SELECT 1", 5000, access)
    assert refused.value.code == "EXPLAIN_ROLE_UNSAFE"
    assert "pg_read_server_files" in refused.value.message
    # and running as the connection's own (superuser) user is refused the same way
    with pytest.raises(ServiceUnavailable, match="superuser"):
        await explain_query(target.engine, "SELECT 1", 5000, ExplainAccess(role=None))


async def test_a_missing_role_is_a_clear_503(pg_engine: AsyncEngine) -> None:
    access = ExplainAccess(role="tenantry_no_such_role")
    with pytest.raises(ServiceUnavailable) as missing:
        await explain_query(pg_engine, "SELECT 1", 5000, access)
    assert missing.value.code == "EXPLAIN_ROLE_MISSING"
    assert "tenantry db upgrade" in missing.value.message


def test_creating_the_role_is_safe_in_parallel(postgres_url: str) -> None:
    """Roles are cluster-wide: many databases preparing it at once must all succeed."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ensure_explain_role(postgres_url), range(8)))
    assert results == [None] * 8


# --- through the routes -------------------------------------------------------------
@pytest.fixture
def database_url(postgres_url: str) -> str:
    """The app below on PostgreSQL only: EXPLAIN ANALYZE exists there alone."""
    return postgres_url


async def test_the_api_refuses_attribute_notation(
    settings_factory: Any, client_factory: Any
) -> None:
    async with client_factory(settings_factory()) as (_, client):
        for query in ("SELECT (1).pg_sleep", "SELECT ('/etc/passwd').pg_read_file"):
            response = await client.post(
                "/api/query-optimizer/explain", json={"query": query}, headers=ADMIN
            )
            assert response.status_code == 422
            assert "root:" not in response.text
        fine = await client.post(
            "/api/query-optimizer/explain", json={"query": "SELECT 1"}, headers=ADMIN
        )
        assert fine.status_code == 200, fine.text


async def test_explain_can_run_as_a_login_role_of_its_own(
    settings_factory: Any, client_factory: Any, postgres_url: str
) -> None:
    """EXPLAIN_DATABASE_URL: a login role that is a member of the EXPLAIN role."""
    login = f"tenantry_test_login_{uuid.uuid4().hex[:10]}"
    own_url = postgres_url.replace("postgresql://postgres@", f"postgresql://{login}@")
    settings = settings_factory(explain_database_url=own_url)
    try:
        async with client_factory(settings) as (_, client):
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f"CREATE ROLE {login} LOGIN IN ROLE tenantry_explain")
                conn.execute("CREATE TABLE products (id int)")

            async def explain_status(query: str) -> tuple[int, Any]:
                response = await client.post(
                    "/api/query-optimizer/explain", json={"query": query}, headers=ADMIN
                )
                return response.status_code, response.json()

            assert (await explain_status("SELECT * FROM products"))[0] == 200
            status, body = await explain_status("SELECT * FROM tenantry_api_keys")
            assert (status, body["error"]["details"]["sqlstate"]) == (422, "42501")
        # pointed at a superuser instead, EXPLAIN refuses to run at all
        async with client_factory(settings_factory(explain_database_url=postgres_url)) as (
            _,
            client,
        ):
            refused = await client.post(
                "/api/query-optimizer/explain", json={"query": "SELECT 1"}, headers=ADMIN
            )
            assert (refused.status_code, refused.json()["error"]["code"]) == (
                503,
                "EXPLAIN_ROLE_UNSAFE",
            )
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {login}")


async def test_the_server_reads_strings_as_the_parser_did(target: Target) -> None:
    """With standard_conforming_strings off, the server would end this literal later than
    libpg_query did, and read the rest as SQL of its own."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    database = target.url.rsplit("/", 1)[1]
    async with target.engine.begin() as conn:
        await conn.exec_driver_sql(
            f'ALTER DATABASE "{database}" SET standard_conforming_strings = off'
        )
    legacy = create_async_engine(target.engine.url, poolclass=NullPool)  # new sessions: off
    try:
        query = "SELECT '\\' , $$' ) ; DROP TABLE written; --$$"
        result = await explain_query(legacy, query, timeout_ms=5000)
        assert result.plan["Node Type"] == "Result"  # two harmless literals, as parsed
    finally:
        await legacy.dispose()
    with psycopg.connect(target.url) as conn:
        assert conn.execute("SELECT to_regclass('written') IS NOT NULL").fetchone() == (True,)


def test_an_upgrade_without_rights_to_create_roles_says_what_to_do(postgres_url: str) -> None:
    """The service's user may lack CREATEROLE: the upgrade reports it, and goes on."""
    user = f"tenantry_test_plain_{uuid.uuid4().hex[:10]}"
    role = f"tenantry_test_explain_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {user} LOGIN")
    try:
        url = postgres_url.replace("postgresql://postgres@", f"postgresql://{user}@")
        problem = ensure_explain_role(url, role)
        assert problem is not None
        assert "CREATEROLE" in problem and f"CREATE ROLE {role} NOLOGIN" in problem
        with psycopg.connect(postgres_url) as conn:
            created = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,))
            assert created.fetchone() == (0,)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {user}")
