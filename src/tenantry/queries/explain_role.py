"""The role EXPLAIN ANALYZE runs as: it may read the application's tables and nothing else.

EXPLAIN ANALYZE executes the statement, so whatever the statement calls runs with the
rights of the role that runs it. The parser and resolution checks (explain.py,
explain_calls.py) keep dangerous calls out; this role is the layer beneath them, so a
call that slipped through still meets PostgreSQL's own refusal:

- no superuser, no CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS, no LOGIN (it is entered
  with `SET LOCAL ROLE` inside the EXPLAIN's transaction, or given to a login role of
  the operator's through EXPLAIN_DATABASE_URL);
- no membership in pg_read_server_files, pg_write_server_files,
  pg_execute_server_program, pg_signal_backend, pg_read_all_data, pg_write_all_data;
- SELECT on the application's tables (EXPLAIN_SCHEMAS), none on Tenantry's own
  (`tenantry_*`, the API keys above all).

dblink and the server-side large-object functions refuse a role like this by
themselves (no password to connect with; not a superuser), and without SELECT on
pg_largeobject it reads no large object.

`ensure_explain_role` is run by `tenantry db upgrade` and by the service's automatic
migration. Roles are cluster-wide, so it is safe when many databases of one cluster
(parallel tests, several services) create the role at once. Where the upgrading user
may not create roles it returns what to do, and EXPLAIN answers 503 until it is done.
`unsafe_privileges` is checked before every EXPLAIN, so a role that was given too
much later is refused, not used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("tenantry.queries")

DEFAULT_ROLE = "tenantry_explain"
ROLE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Predefined roles whose rights EXPLAIN must never have.
DANGEROUS_ROLES = (
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
    "pg_read_all_data",
    "pg_write_all_data",
)
_OWN_TABLES = "tenantry\\_%"  # LIKE pattern: Tenantry's own tables and its Alembic version


def _identifier(name: str) -> str:
    if not ROLE_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")
    return f'"{name}"'


def ensure_explain_role(
    url: str, role: str = DEFAULT_ROLE, schemas: Sequence[str] = ()
) -> str | None:
    """Create or repair the EXPLAIN role for the database at `url` (synchronous).

    Returns None when the role is ready, or a message saying what the operator must do.
    """
    if not url.startswith("postgresql"):
        return None
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    from tenantry.settings import sync_database_url

    engine = create_engine(sync_database_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            try:
                _create_role(connection, role)
                with connection.begin():
                    _grant(connection, role, schemas or ("public",))
            except DBAPIError as exc:
                message = _cannot(role, exc)
                log.warning(message)
                return message
    finally:
        engine.dispose()
    return None


def _create_role(connection: Any, role: str) -> None:
    name = _identifier(role)
    with connection.begin():
        # Concurrent creators in other databases race on the cluster-wide pg_authid:
        # the loser sees duplicate_object, or unique_violation while the winner commits.
        connection.exec_driver_sql(
            "DO $$ BEGIN "
            f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {name} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
            "NOREPLICATION NOBYPASSRLS; "
            "END IF; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; "
            "END $$"
        )
    with connection.begin():
        # The application's user enters the role with SET ROLE, so it must be a member
        # (a superuser may enter any role already).
        member = connection.exec_driver_sql(
            "SELECT rolsuper OR pg_has_role(current_user, %(role)s, 'MEMBER') "
            "FROM pg_roles WHERE rolname = current_user",
            {"role": role},
        ).scalar_one()
        if not member:
            connection.exec_driver_sql(
                "DO $$ BEGIN "
                f"GRANT {name} TO CURRENT_USER; "
                "EXCEPTION WHEN unique_violation THEN NULL; "
                "END $$"
            )


def _grant(connection: Any, role: str, schemas: Sequence[str]) -> None:
    name = _identifier(role)
    # Grants of one database, serialised: concurrent GRANTs on one catalog row fail.
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('tenantry_explain_role'))")
    held = connection.exec_driver_sql(
        "SELECT array_agg(r.rolname) FROM pg_auth_members m "
        "JOIN pg_roles r ON r.oid = m.roleid "
        "WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = %(role)s) "
        "AND r.rolname = ANY(%(dangerous)s)",
        {"role": role, "dangerous": list(DANGEROUS_ROLES)},
    ).scalar_one()
    for granted in held or ():
        connection.exec_driver_sql(f"REVOKE {_identifier(granted)} FROM {name}")
    database = connection.exec_driver_sql("SELECT current_database()").scalar_one()
    connection.exec_driver_sql(f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO {name}')
    for schema in schemas:
        exists = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %(schema)s", {"schema": schema}
        ).scalar_one()
        if not exists:
            continue
        quoted = '"' + schema.replace('"', '""') + '"'
        connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA {quoted} TO {name}")
        connection.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA {quoted} TO {name}")
        # Tables the same user creates later are readable too, without another upgrade.
        connection.exec_driver_sql(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT SELECT ON TABLES TO {name}"
        )
    own = connection.exec_driver_sql(
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname LIKE %(own)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        {"own": _OWN_TABLES},
    ).scalars()
    for table in own:
        connection.exec_driver_sql(f"REVOKE ALL ON TABLE {table} FROM {name}")


def _cannot(role: str, exc: Any) -> str:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return (
        f"EXPLAIN is disabled: the database user could not prepare the role {role!r} "
        f"(SQLSTATE {sqlstate}). Run `tenantry db upgrade` as a user with CREATEROLE, or "
        f"create it yourself: CREATE ROLE {role} NOLOGIN; GRANT {role} TO <the service's "
        f"user>; GRANT SELECT ON <the application's tables> TO {role} (docs/security.md)."
    )


# Read before every EXPLAIN, as the role it runs as: one row, each column a reason to refuse.
# Built from the constant role names above, nothing a caller gives.
UNSAFE_PRIVILEGES_SQL = (
    "SELECT r.rolsuper, r.rolbypassrls, r.rolcreaterole, "  # noqa: S608
    + ", ".join(f"pg_has_role(current_user, '{name}', 'USAGE')" for name in DANGEROUS_ROLES)
    + ", EXISTS (SELECT FROM pg_class c WHERE c.relname LIKE %(own)s "
    "AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND has_table_privilege(c.oid, 'SELECT')) "
    "FROM pg_roles r WHERE r.rolname = current_user"
)
_UNSAFE_LABELS = (
    "is a superuser",
    "bypasses row-level security",
    "may create roles",
    *(f"has the rights of {name}" for name in DANGEROUS_ROLES),
    "may read Tenantry's own tables",
)


async def unsafe_privileges(connection: Any) -> list[str]:
    """What the current role may do that EXPLAIN must not (empty when it is safe)."""
    result = await connection.exec_driver_sql(UNSAFE_PRIVILEGES_SQL, {"own": _OWN_TABLES})
    row = result.one()
    return [label for label, held in zip(_UNSAFE_LABELS, row, strict=True) if held]
