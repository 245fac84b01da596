"""EXPLAIN ANALYZE for one read-only statement, proved read-only by PostgreSQL's parser.

`check_read_only` parses the text with libpg_query (pglast) and walks the whole
tree against an allow-list: the statement must be exactly one SELECT (or
VALUES, set operation, WITH … SELECT); every node must be a construct known to
only read; every function must be on a list of functions known not to write or
signal (or, failing that, be a pg_catalog function PostgreSQL marks immutable or
stable and not on the deny list). Anything else is refused with the reason.

Even an accepted statement runs inside `SET TRANSACTION READ ONLY`, with a
statement timeout, and is rolled back: the parser check keeps side effects that
a read-only transaction allows (signalling backends, advisory locks) out, the
read-only transaction catches writes hidden in views, and the rollback leaves
nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pglast import ast
from pglast import parser as pg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry.errors import InvalidInput

MAX_QUERY_LENGTH = 100_000

_ALLOWED_NODES = frozenset(
    {
        "A_ArrayExpr", "A_Const", "A_Expr", "A_Indices", "A_Indirection", "A_Star", "Alias",
        "BitString", "BoolExpr", "Boolean", "BooleanTest", "CTECycleClause", "CTESearchClause",
        "CaseExpr", "CaseWhen", "CoalesceExpr", "CollateClause", "ColumnDef", "ColumnRef",
        "CommonTableExpr", "Float", "FuncCall", "GroupingFunc", "GroupingSet", "Integer",
        "JoinExpr",
        "MinMaxExpr", "NamedArgExpr", "NullTest", "RangeFunction", "RangeSubselect",
        "RangeTableSample", "RangeVar", "ResTarget", "RowExpr", "SQLValueFunction",
        "SelectStmt", "SortBy", "String", "SubLink", "TypeCast", "TypeName", "WindowDef",
        "WithClause", "XmlExpr", "XmlSerialize",
    }
)  # fmt: skip

_REFUSED_NODES = {
    "IntoClause": "SELECT INTO creates a table",
    "LockingClause": "FOR UPDATE / FOR SHARE takes row locks",
    "InsertStmt": "a data-modifying statement (INSERT) inside a CTE",
    "UpdateStmt": "a data-modifying statement (UPDATE) inside a CTE",
    "DeleteStmt": "a data-modifying statement (DELETE) inside a CTE",
    "MergeStmt": "a data-modifying statement (MERGE) inside a CTE",
    "ParamRef": "parameters ($1) cannot be bound here; write the values in the query",
}

_TOP_LEVEL_REASONS = {
    "InsertStmt": "INSERT changes rows",
    "UpdateStmt": "UPDATE changes rows",
    "DeleteStmt": "DELETE changes rows",
    "MergeStmt": "MERGE changes rows",
    "CopyStmt": "COPY reads or writes files and tables",
    "ExplainStmt": "send the statement itself: EXPLAIN is added here",
    "TransactionStmt": "transaction control is not a query",
    "VariableSetStmt": "SET changes session settings",
    "LockStmt": "LOCK takes table locks",
    "CallStmt": "CALL runs a procedure",
    "DoStmt": "DO runs code",
    "TruncateStmt": "TRUNCATE deletes rows",
    "VacuumStmt": "VACUUM / ANALYZE is maintenance, not a query",
}

# Functions known to only compute (aggregates, window functions, scalar functions).
SAFE_FUNCTIONS = frozenset(
    """
    count sum avg min max every bool_and bool_or bit_and bit_or string_agg array_agg
    json_agg jsonb_agg json_object_agg jsonb_object_agg stddev stddev_pop stddev_samp
    variance var_pop var_samp corr covar_pop covar_samp regr_slope regr_intercept mode
    percentile_cont percentile_disc rank dense_rank percent_rank cume_dist row_number ntile
    lag lead first_value last_value nth_value grouping
    abs ceil ceiling floor round trunc sign sqrt cbrt exp ln log log10 power mod div pi
    random greatest least width_bucket degrees radians sin cos tan asin acos atan atan2
    lower upper initcap length char_length octet_length bit_length substr substring
    position strpos left right lpad rpad ltrim rtrim btrim trim replace translate
    concat concat_ws format repeat reverse split_part starts_with md5 sha256 encode decode
    to_char to_number to_date to_timestamp regexp_replace regexp_match regexp_matches
    regexp_split_to_array regexp_split_to_table string_to_array array_to_string quote_ident
    quote_literal quote_nullable ascii chr unaccent
    now current_date current_time current_timestamp localtime localtimestamp
    statement_timestamp transaction_timestamp clock_timestamp date_trunc date_part
    extract age make_date make_time make_timestamp make_timestamptz make_interval
    justify_days justify_hours justify_interval isfinite timezone date_bin
    coalesce nullif generate_series generate_subscripts unnest array_length array_lower
    array_upper array_position array_positions array_remove array_replace array_append
    array_prepend array_cat cardinality array_dims array_ndims
    to_json to_jsonb row_to_json array_to_json json_build_object jsonb_build_object
    json_build_array jsonb_build_array json_extract_path jsonb_extract_path
    json_extract_path_text jsonb_extract_path_text jsonb_set jsonb_insert jsonb_strip_nulls
    jsonb_pretty json_typeof jsonb_typeof json_array_length jsonb_array_length
    json_each jsonb_each json_each_text jsonb_each_text json_array_elements
    jsonb_array_elements json_array_elements_text jsonb_array_elements_text json_object_keys
    jsonb_object_keys jsonb_path_query jsonb_path_exists jsonb_path_match
    to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank
    ts_rank_cd ts_headline setweight
    gen_random_uuid uuid_generate_v4 version current_schema current_database current_user
    session_user pg_typeof pg_column_size pg_relation_size pg_total_relation_size
    pg_table_size pg_indexes_size pg_size_pretty pg_database_size
    """.split()  # noqa: SIM905  (a word list reads better than 200 quoted strings)
)

# Never, whatever pg_proc says: they signal, lock, read files, or run other SQL.
_DENIED_PREFIXES = (
    "nextval", "setval", "currval", "lastval", "pg_advisory", "pg_try_advisory",
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_read_", "pg_ls_", "pg_stat_file", "pg_file", "lo_", "dblink", "set_config",
    "pg_notify", "pg_sleep", "txid_current", "pg_current_xact_id", "pg_logical_",
    "pg_replication_", "pg_create_", "pg_drop_", "pg_switch_wal", "pg_promote",
    "pg_backup", "pg_start_backup", "pg_stop_backup", "pg_stat_reset", "pg_import_",
    "query_to_xml", "cursor_to_xml", "table_to_xml", "schema_to_xml", "database_to_xml",
    "ts_stat", "pg_wal_replay", "pg_log_backend", "pg_export_snapshot",
)  # fmt: skip


def refuse(reason: str) -> InvalidInput:
    return InvalidInput(
        f"query refused: {reason}; only one read-only SELECT can be explained",
        details={"field": "query", "rule": "read-only-select", "reason": reason},
    )


def walk(node: Any) -> Iterator[ast.Node]:
    """Every node of a pglast tree, depth first."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            for name in getattr(type(item), "__slots__", ()):
                value = getattr(item, name, None)
                if isinstance(value, ast.Node | tuple | list):
                    stack.append(value)
        elif isinstance(item, tuple | list):
            stack.extend(item)


def function_name(call: ast.FuncCall) -> tuple[str | None, str]:
    parts = [(p.sval or "").lower() for p in call.funcname or () if isinstance(p, ast.String)]
    return (parts[0] if len(parts) > 1 else None), parts[-1]


@dataclass(slots=True)
class CheckedQuery:
    sql: str  # the one statement, without a trailing semicolon
    unknown_functions: set[str] = field(default_factory=set)  # to verify in pg_proc


def check_read_only(query: str) -> CheckedQuery:
    """The statement if it is one read-only SELECT; `InvalidInput` saying why otherwise."""
    if not query.strip():
        raise refuse("the query is empty")
    if len(query) > MAX_QUERY_LENGTH:
        raise refuse(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    try:
        statements = pg.parse_sql(query)
    except pg.ParseError as exc:
        raise refuse(f"it does not parse: {exc}") from None
    if len(statements) != 1:
        raise refuse(f"it holds {len(statements)} statements, not exactly one")
    raw = statements[0]
    kind = type(raw.stmt).__name__
    if kind != "SelectStmt":
        reason = _TOP_LEVEL_REASONS.get(kind)
        if reason is None and kind.endswith("Stmt"):
            reason = f"{kind.removesuffix('Stmt')} is DDL or a command, not a query"
        raise refuse(reason or f"{kind} is not a query")
    checked = CheckedQuery(_statement_text(query, raw))
    for node in walk(raw.stmt):
        name = type(node).__name__
        if name in _REFUSED_NODES:
            raise refuse(_REFUSED_NODES[name])
        if name not in _ALLOWED_NODES:
            raise refuse(f"the construct {name} is not on the read-only allow-list")
        if isinstance(node, ast.FuncCall):
            _check_function(node, checked)
    return checked


def _statement_text(query: str, raw: ast.RawStmt) -> str:
    # pglast reports stmt_location / stmt_len in characters of the Python string.
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(query)
    return query[start:end].strip().rstrip(";").strip()


def _check_function(call: ast.FuncCall, checked: CheckedQuery) -> None:
    schema, name = function_name(call)
    if name.startswith(_DENIED_PREFIXES):
        raise refuse(f"the function {name}() can change state or signal other sessions")
    if schema not in (None, "pg_catalog"):
        raise refuse(f"the function {schema}.{name}() is not known to be read-only")
    if name not in SAFE_FUNCTIONS:
        checked.unknown_functions.add(name)


async def verify_functions(connection: Any, names: set[str]) -> None:
    """Functions off the allow-list pass only if every pg_catalog overload is non-volatile."""
    for name in sorted(names):
        result = await connection.exec_driver_sql(
            "SELECT count(*), count(*) FILTER (WHERE p.provolatile = 'v') FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'pg_catalog' AND p.proname = %(name)s",
            {"name": name},
        )
        total, volatile = result.one()
        if total == 0:
            raise refuse(f"the function {name}() is not a known read-only built-in")
        if volatile:
            raise refuse(f"the function {name}() is volatile and may change state")


# --- running it ------------------------------------------------------------
def escape_percent(sql: str) -> str:
    """psycopg reads % as a placeholder whenever SQLAlchemy passes parameters (it always
    does, if only an empty dict), so a literal % in the text must be doubled."""
    return sql.replace("%", "%%")


async def explain_query(engine: AsyncEngine, query: str, timeout_ms: int) -> dict[str, Any]:
    checked = check_read_only(query)  # refusals say why, whatever the database
    if engine.dialect.name != "postgresql":
        raise InvalidInput(
            f"EXPLAIN ANALYZE needs PostgreSQL; this server's database is {engine.dialect.name}",
            code="UNSUPPORTED_DATABASE",
            details={"field": "query", "rule": "postgresql-only"},
        )
    async with engine.connect() as connection:
        try:
            await connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            await connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            await connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(timeout_ms)}")
            await verify_functions(connection, checked.unknown_functions)
            result = await connection.exec_driver_sql(
                escape_percent("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + checked.sql), {}
            )
            raw = result.scalar_one()
        except DBAPIError as exc:
            raise _query_failed(exc, timeout_ms) from None
        finally:
            await connection.rollback()
    document = json.loads(raw) if isinstance(raw, str) else raw
    return summarize(document[0])


def _query_failed(exc: DBAPIError, timeout_ms: int) -> InvalidInput:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate == "57014":
        return InvalidInput(
            f"the query ran longer than the {timeout_ms} ms statement timeout",
            code="STATEMENT_TIMEOUT",
            details={"field": "query", "rule": "statement-timeout", "timeoutMs": timeout_ms},
        )
    message = str(getattr(exc.orig, "args", [exc])[0]).strip().splitlines()[0]
    return InvalidInput(
        f"the query failed: {message}",
        details={"field": "query", "rule": "executes", "sqlstate": sqlstate},
    )


# --- reading the plan ---------------------------------------------------------
LARGE_SCAN_ROWS = 10_000
NESTED_LOOP_ROWS = 1_000
MISESTIMATE_FACTOR = 10


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def summarize(document: dict[str, Any]) -> dict[str, Any]:
    plan = document["Plan"]
    return {
        "totalCost": plan.get("Total Cost"),
        "actualTimeMs": plan.get("Actual Total Time"),
        "planningTimeMs": document.get("Planning Time"),
        "executionTimeMs": document.get("Execution Time"),
        "findings": findings(plan),
        "plan": plan,
    }


def findings(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for node in nodes(plan):
        for check in (_seq_scan, _misestimate, _spill, _nested_loop):
            finding = check(node)
            if finding:
                found.append(finding)
    return found


def _seq_scan(node: dict[str, Any]) -> dict[str, Any] | None:
    if node.get("Node Type") != "Seq Scan" or "Filter" not in node:
        return None
    loops = node.get("Actual Loops", 1) or 1
    scanned = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops
    if scanned < LARGE_SCAN_ROWS:
        return None
    table = node.get("Relation Name", "?")
    columns = filter_columns(node["Filter"])
    suggestion = f"CREATE INDEX CONCURRENTLY ON {table} ({', '.join(columns)})" if columns else None
    message = (
        f"Sequential scan of {table} read {scanned:,} rows to keep "
        f"{node.get('Actual Rows', 0) * loops:,} (filter {node['Filter']})"
    )
    if suggestion:
        message += f"; an index on ({', '.join(columns)}) would serve it"
    return {"kind": "seq_scan", "table": table, "message": message, "suggestedIndex": suggestion}


def filter_columns(condition: str) -> list[str]:
    """Columns compared in a plan's Filter text: equality ones first, then ranges."""
    import re

    equality: list[str] = []
    ranges: list[str] = []
    pattern = r"\(?\"?([a-z_][a-z0-9_]*)\"?\)?(?:::\w+)?\s*(=|<>|<=|>=|<|>|~~|IS)\s"
    for column, op in re.findall(pattern, condition, flags=re.IGNORECASE):
        target = equality if op in ("=", "IS") else ranges
        if op != "<>" and column not in equality and column not in ranges:
            target.append(column)
    return equality + ranges[:1]


def _misestimate(node: dict[str, Any]) -> dict[str, Any] | None:
    estimated, actual = node.get("Plan Rows"), node.get("Actual Rows")
    if estimated is None or actual is None or node.get("Actual Loops", 1) == 0:
        return None
    high, low = max(estimated, actual), max(min(estimated, actual), 1)
    if high < 100 or high / low < MISESTIMATE_FACTOR:
        return None
    where = node.get("Relation Name") or node.get("Node Type")
    return {
        "kind": "misestimate",
        "table": node.get("Relation Name"),
        "message": (
            f"{node['Node Type']} on {where}: the planner expected {estimated:,} rows and got "
            f"{actual:,} ({high / low:.0f}x off); run ANALYZE, or raise the statistics target "
            "of the columns in its condition"
        ),
    }


def _spill(node: dict[str, Any]) -> dict[str, Any] | None:
    if node.get("Sort Space Type") == "Disk":
        return {
            "kind": "sort_spill",
            "message": (
                f"Sort spilled {node.get('Sort Space Used', 0):,} kB to disk "
                f"({node.get('Sort Method')}); raise work_mem, or serve the ORDER BY "
                "from an index"
            ),
        }
    batches = node.get("Hash Batches", 1) or 1
    if node.get("Node Type") == "Hash" and batches > 1:
        return {
            "kind": "hash_spill",
            "message": (
                f"Hash spilled to disk in {batches} batches "
                f"(peak {node.get('Peak Memory Usage', 0):,} kB); raise work_mem"
            ),
        }
    return None


def _nested_loop(node: dict[str, Any]) -> dict[str, Any] | None:
    if node.get("Node Type") != "Nested Loop" or not node.get("Plans"):
        return None
    outer = node["Plans"][0]
    rows = outer.get("Actual Rows", 0) * (outer.get("Actual Loops", 1) or 1)
    if rows < NESTED_LOOP_ROWS:
        return None
    inner = node["Plans"][-1]
    return {
        "kind": "nested_loop",
        "message": (
            f"Nested loop ran its inner side ({inner.get('Node Type')}"
            f"{' on ' + inner['Relation Name'] if 'Relation Name' in inner else ''}) "
            f"{rows:,} times; an index on the join key, or a hash join, may be cheaper"
        ),
    }
