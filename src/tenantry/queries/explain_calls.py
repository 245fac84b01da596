"""Every function a statement would call, as PostgreSQL itself resolves it.

Names in the text are not enough. PostgreSQL calls a function for `fn(x)`, for
attribute notation `(x).fn` and `alias.fn`, for an operator, a cast, a domain's
CHECK, a row-level security policy and every view the statement reads; and it
resolves unqualified names through search_path, where a `public.lower(integer)`
beats `pg_catalog.lower(text)` for an integer argument. Rather than re-implement
that resolution, the statement is analysed by PostgreSQL into a temporary view
inside the EXPLAIN's own transaction (which is rolled back). Analysis runs
nothing: the view is parsed and stored, never planned or executed. Its stored
query tree (`pg_rewrite.ev_action`, PostgreSQL's node text) names every function,
operator and type by OID; those are followed into views, policies and domains,
and each function is checked in pg_proc.

A function passes when it is listed in EXPLAIN_ALLOWED_FUNCTIONS (extension
functions such as `public.unaccent`), or when it is a pg_catalog built-in that is
not on the deny list and that PostgreSQL marks immutable or stable (volatile
built-ins pass only if known to compute and nothing more, like `random()`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PROBE_VIEW = "pg_temp.tenantry_explain_probe"
MAX_RELATIONS = 500  # views and policies followed before the statement is refused

# Node fields holding the OID of a function, an operator, a type or a relation.
_FUNCTIONS = re.compile(r":(?:funcid|aggfnoid|winfnoid|tsmhandler|opfuncid) (\d+)")
_OPERATORS = re.compile(r":(?:opno|eqop|sortop) (\d+)")
_OPERATOR_LISTS = re.compile(r":opnos \(o ([\d ]+)\)")
_TYPES = re.compile(r":(?:\w+type|\w+typeid|typeId) (\d+)")
_TYPE_LISTS = re.compile(r":funccoltypes \(o ([\d ]+)\)")
_RELATIONS = re.compile(r":relid (\d+)")

# Built-ins that are volatile only because their result changes, not because they act.
COMPUTE_ONLY_VOLATILE = frozenset(
    """
    random random_normal clock_timestamp timeofday gen_random_uuid
    pg_relation_size pg_total_relation_size pg_table_size pg_indexes_size pg_database_size
    """.split()  # noqa: SIM905  (a word list reads better than quoted strings)
)

# Never, whatever pg_proc says: they signal, lock, read files, assign ids or run SQL.
DENIED_PREFIXES = (
    "nextval", "setval", "currval", "lastval", "pg_advisory", "pg_try_advisory",
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_read_", "pg_ls_", "pg_stat_file", "pg_file", "lo_", "dblink", "set_config",
    "pg_notify", "pg_sleep", "txid_current", "pg_current_xact_id", "pg_logical_",
    "pg_replication_", "pg_create_", "pg_drop_", "pg_switch_wal", "pg_promote",
    "pg_backup", "pg_start_backup", "pg_stop_backup", "pg_stat_reset", "pg_import_",
    "query_to_xml", "cursor_to_xml", "table_to_xml", "schema_to_xml", "database_to_xml",
    "ts_stat", "pg_wal_replay", "pg_log_backend", "pg_export_snapshot", "pg_config",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Function:
    signature: str  # regprocedure text, e.g. pg_sleep(double precision)
    schema: str
    name: str
    volatility: str  # i, s or v
    security_definer: bool

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def refusal(function: Function, allowed: frozenset[str]) -> str | None:
    """Why `function` may not run inside EXPLAIN ANALYZE, or None if it may."""
    described = f"{function.schema}.{function.signature}"
    if function.qualified in allowed:
        return None
    if function.schema != "pg_catalog":
        return (
            f"the function {described} is not a PostgreSQL built-in "
            "(list it in EXPLAIN_ALLOWED_FUNCTIONS if it only reads)"
        )
    if function.name.startswith(DENIED_PREFIXES):
        return f"the function {described} can change state, read files or signal sessions"
    if function.volatility == "v" and function.name not in COMPUTE_ONLY_VOLATILE:
        return f"the function {described} is volatile and may change state"
    if function.security_definer:
        return f"the function {described} runs with its owner's rights"
    return None


@dataclass(slots=True)
class _Found:
    functions: set[int]
    operators: set[int]
    types: set[int]
    relations: set[int]


def _ints(pattern: re.Pattern[str], text: str) -> set[int]:
    return {int(value) for value in pattern.findall(text) if value != "0"}


def _lists(pattern: re.Pattern[str], text: str) -> set[int]:
    return {int(v) for group in pattern.findall(text) for v in group.split() if v != "0"}


def scan(tree: str) -> _Found:
    """The OIDs one node tree refers to."""
    return _Found(
        functions=_ints(_FUNCTIONS, tree),
        operators=_ints(_OPERATORS, tree) | _lists(_OPERATOR_LISTS, tree),
        types=_ints(_TYPES, tree) | _lists(_TYPE_LISTS, tree),
        relations=_ints(_RELATIONS, tree),
    )


async def called_functions(connection: Any, sql: str) -> list[Function]:
    """Every function running `sql` may call, resolved by PostgreSQL (see the module doc).

    Creates a temporary view: call it inside a transaction that is rolled back, before
    the transaction is made read-only.
    """
    # A subquery accepts what a view's own column list would not (duplicate names). The
    # text is the one statement check_read_only parsed, run as the EXPLAIN role.
    probe = f"CREATE TEMPORARY VIEW {PROBE_VIEW} AS SELECT 1 FROM ({sql}\n) AS tenantry_q"  # noqa: S608
    await connection.exec_driver_sql(escape_percent(probe), {})
    trees = await _scalars(
        connection,
        "SELECT ev_action::text FROM pg_rewrite WHERE ev_class = %(view)s::regclass",
        {"view": PROBE_VIEW},
    )
    functions: set[int] = set()
    seen_relations: set[int] = set()
    seen_types: set[int] = set()
    while trees:
        found = [scan(tree) for tree in trees]
        functions |= set().union(*(f.functions for f in found))
        operators = set().union(*(f.operators for f in found))
        functions |= await _operator_functions(connection, operators)
        relations = set().union(*(f.relations for f in found)) - seen_relations
        types = set().union(*(f.types for f in found)) - seen_types
        seen_relations |= relations
        seen_types |= types
        if len(seen_relations) > MAX_RELATIONS:
            raise ValueError(f"the statement reaches more than {MAX_RELATIONS} views")
        trees = [
            *await _relation_trees(connection, relations),
            *await _domain_trees(connection, types),
        ]
    return await _describe(connection, functions)


async def _operator_functions(connection: Any, operators: set[int]) -> set[int]:
    """The code of each operator, and the selectivity estimators the planner calls."""
    if not operators:
        return set()
    rows = await connection.exec_driver_sql(
        "SELECT oprcode::oid, oprrest::oid, oprjoin::oid FROM pg_operator "
        "WHERE oid = ANY(%(oids)s::oid[])",
        {"oids": sorted(operators)},
    )
    return {int(oid) for row in rows for oid in row if oid}


async def _relation_trees(connection: Any, relations: set[int]) -> list[str]:
    """The queries of the views read, and the row-level security policies of the tables."""
    if not relations:
        return []
    return await _scalars(
        connection,
        "SELECT r.ev_action::text FROM pg_rewrite r WHERE r.ev_class = ANY(%(oids)s::oid[]) "
        "UNION ALL SELECT coalesce(p.polqual::text, '') || coalesce(p.polwithcheck::text, '') "
        "FROM pg_policy p WHERE p.polrelid = ANY(%(oids)s::oid[])",
        {"oids": sorted(relations)},
    )


async def _domain_trees(connection: Any, types: set[int]) -> list[str]:
    """The CHECK expressions of the domains used, and of the domains they are based on."""
    if not types:
        return []
    return await _scalars(
        connection,
        "WITH RECURSIVE chain(oid) AS ("
        " SELECT oid FROM pg_type WHERE oid = ANY(%(oids)s::oid[]) AND typtype = 'd'"
        " UNION SELECT t.typbasetype FROM pg_type t JOIN chain ON t.oid = chain.oid"
        " WHERE t.typtype = 'd') "
        "SELECT c.conbin::text FROM pg_constraint c JOIN chain ON c.contypid = chain.oid "
        "WHERE c.conbin IS NOT NULL",
        {"oids": sorted(types)},
    )


async def _describe(connection: Any, functions: Iterable[int]) -> list[Function]:
    oids = sorted(functions)
    if not oids:
        return []
    rows = await connection.exec_driver_sql(
        "SELECT format('%%s(%%s)', p.proname, pg_get_function_identity_arguments(p.oid)), "
        "n.nspname, p.proname, p.provolatile, p.prosecdef "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE p.oid = ANY(%(oids)s::oid[]) ORDER BY p.oid",
        {"oids": oids},
    )
    return [Function(*row) for row in rows]


async def _scalars(connection: Any, sql: str, parameters: dict[str, Any]) -> list[str]:
    result = await connection.exec_driver_sql(sql, parameters)
    return [value for value in result.scalars() if value]


def escape_percent(sql: str) -> str:
    """psycopg reads % as a placeholder whenever SQLAlchemy passes parameters (it always
    does, if only an empty dict), so a literal % in the text must be doubled."""
    return sql.replace("%", "%%")
