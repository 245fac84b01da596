"""EXPLAIN ANALYZE for one read-only statement, in three layers of defence.

1. `check_read_only` parses the text with libpg_query (pglast) and walks the whole
   tree against an allow-list: exactly one SELECT (or VALUES, set operation,
   WITH … SELECT) made only of constructs known to only read. It needs no database,
   so its refusals name the construct on any backend.
2. `explain_calls.called_functions` lets PostgreSQL resolve every function the
   statement would call (attribute notation, operators, casts, views, policies,
   domains, search_path included), and each must be a built-in known not to act.
3. The statement runs as the EXPLAIN role (explain_role.py), which cannot read
   server files, signal backends, connect with dblink or read Tenantry's tables, in
   a `READ ONLY` transaction with a statement and lock timeout, and is rolled back.

A database error answers with its SQLSTATE and a fixed message, never PostgreSQL's
own text: that text can carry the value that failed (`'secret'::int`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pglast import ast
from pglast import parser as pg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry.errors import InvalidInput, ServiceUnavailable
from tenantry.queries import explain_calls, explain_role
from tenantry.queries.explain_calls import DENIED_PREFIXES, escape_percent
from tenantry.queries.results import ExplainResult, Finding

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


@dataclass(frozen=True, slots=True)
class CheckedQuery:
    sql: str  # the one statement, without a trailing semicolon


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
    for node in walk(raw.stmt):
        name = type(node).__name__
        if name in _REFUSED_NODES:
            raise refuse(_REFUSED_NODES[name])
        if name not in _ALLOWED_NODES:
            raise refuse(f"the construct {name} is not on the read-only allow-list")
        if isinstance(node, ast.FuncCall):
            _check_function_name(node)
    return CheckedQuery(_statement_text(query, raw))


def _statement_text(query: str, raw: ast.RawStmt) -> str:
    # pglast reports stmt_location / stmt_len in characters of the Python string.
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(query)
    return query[start:end].strip().rstrip(";").strip()


def _check_function_name(call: ast.FuncCall) -> None:
    """An early, database-free refusal of calls spelled out by name; PostgreSQL's own
    resolution (layer 2) is what decides, for every other spelling too."""
    schema, name = function_name(call)
    if name.startswith(DENIED_PREFIXES):
        raise refuse(f"the function {name}() can change state or signal other sessions")
    if schema not in (None, "pg_catalog"):
        raise refuse(f"the function {schema}.{name}() is not known to be read-only")


# --- running it ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExplainAccess:
    """Who the statement runs as, and which functions outside pg_catalog it may call."""

    # The role entered with SET LOCAL ROLE; None when the connection's own user is
    # already the restricted one (EXPLAIN_DATABASE_URL names a login role).
    role: str | None = explain_role.DEFAULT_ROLE
    allowed_functions: frozenset[str] = frozenset()  # schema.name


DEFAULT_ACCESS = ExplainAccess()


async def explain_query(
    engine: AsyncEngine, query: str, timeout_ms: int, access: ExplainAccess = DEFAULT_ACCESS
) -> ExplainResult:
    checked = check_read_only(query)  # refusals say why, whatever the database
    if engine.dialect.name != "postgresql":
        raise InvalidInput(
            f"EXPLAIN ANALYZE needs PostgreSQL; this server's database is {engine.dialect.name}",
            code="UNSUPPORTED_DATABASE",
            details={"field": "query", "rule": "postgresql-only"},
        )
    async with engine.connect() as connection:
        try:
            await _enter_role(connection, access.role)
            # The server must read the text as libpg_query did: with standard strings off,
            # '\' would open a string where the parser saw one closed.
            await connection.exec_driver_sql("SET LOCAL standard_conforming_strings = on")
            await connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            await connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(timeout_ms)}")
            await _check_calls(connection, checked.sql, access.allowed_functions)
            # Read-only from here: the probe view above was the transaction's only write.
            await connection.exec_driver_sql("SET TRANSACTION READ ONLY")
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


async def _enter_role(connection: Any, role: str | None) -> None:
    """Become the EXPLAIN role, and refuse to run as one that may do too much."""
    if role is not None:
        try:
            await connection.exec_driver_sql(f'SET LOCAL ROLE "{_role_name(role)}"')
        except DBAPIError as exc:
            raise ServiceUnavailable(
                f"EXPLAIN is disabled: its role {role!r} does not exist or this service's "
                "user may not enter it; run `tenantry db upgrade` as a user with CREATEROLE "
                "(docs/security.md)",
                code="EXPLAIN_ROLE_MISSING",
                details={"role": role, "sqlstate": getattr(exc.orig, "sqlstate", None)},
            ) from None
    unsafe = await explain_role.unsafe_privileges(connection)
    if unsafe:
        raise ServiceUnavailable(
            f"EXPLAIN is disabled: the role it runs as {', '.join(unsafe)}; it must be able "
            "to read the application's tables and nothing else (docs/security.md)",
            code="EXPLAIN_ROLE_UNSAFE",
            details={"role": role, "unsafe": unsafe},
        )


def _role_name(role: str) -> str:
    if not explain_role.ROLE_PATTERN.fullmatch(role):
        raise ValueError(f"EXPLAIN role {role!r} is not a plain lower-case identifier")
    return role


async def _check_calls(connection: Any, sql: str, allowed: frozenset[str]) -> None:
    try:
        functions = await explain_calls.called_functions(connection, sql)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    for function in functions:
        reason = explain_calls.refusal(function, allowed)
        if reason:
            raise refuse(reason)


# Fixed texts by SQLSTATE (and class): PostgreSQL's messages may quote the data.
_ERRORS = {
    "42P01": "a table or view it names does not exist",
    "42703": "a column it names does not exist",
    "42883": "a function or operator it names does not exist for these argument types",
    "42501": "permission denied: EXPLAIN may read the application's tables and nothing else",
    "42601": "a syntax error",
    "42804": "a type mismatch",
    "42725": "an ambiguous function call",
    "42702": "an ambiguous column reference",
    "25006": "it tries to write, in the read-only transaction EXPLAIN runs in",
    "22012": "division by zero",
    "21000": "a subquery used as an expression returned more than one row",
    "2F003": "a function it calls is not permitted here",
}
_CLASSES = {
    "0A": "a feature not supported",
    "21": "a cardinality violation",
    "22": "a data exception (a value could not be converted or computed)",
    "23": "an integrity constraint violation",
    "25": "an invalid transaction state",
    "2F": "an SQL routine exception",
    "38": "an external routine exception",
    "39": "an external routine invocation exception",
    "42": "a syntax error or access rule violation",
    "53": "insufficient resources",
    "54": "a program limit exceeded",
    "55": "an object not in the required state",
    "57": "operator intervention",
    "P0": "a PL/pgSQL error",
    "XX": "an internal error",
}


def _query_failed(exc: DBAPIError, timeout_ms: int) -> InvalidInput:
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    if sqlstate in ("57014", "55P03"):
        return InvalidInput(
            f"the query ran longer than the {timeout_ms} ms statement timeout",
            code="STATEMENT_TIMEOUT",
            details={"field": "query", "rule": "statement-timeout", "timeoutMs": timeout_ms},
        )
    what = _ERRORS.get(sqlstate) or _CLASSES.get(sqlstate[:2], "a database error")
    return InvalidInput(
        f"the query failed: {what} (SQLSTATE {sqlstate or 'unknown'})",
        details={"field": "query", "rule": "executes", "sqlstate": sqlstate or None},
    )


# --- reading the plan ---------------------------------------------------------
LARGE_SCAN_ROWS = 10_000
NESTED_LOOP_ROWS = 1_000
MISESTIMATE_FACTOR = 10


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def summarize(document: dict[str, Any]) -> ExplainResult:
    plan = document["Plan"]
    return ExplainResult(
        total_cost=plan.get("Total Cost"),
        actual_time_ms=plan.get("Actual Total Time"),
        planning_time_ms=document.get("Planning Time"),
        execution_time_ms=document.get("Execution Time"),
        findings=findings(plan),
        plan=plan,
    )


def findings(plan: dict[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    for node in nodes(plan):
        for check in (_seq_scan, _misestimate, _spill, _nested_loop):
            finding = check(node)
            if finding:
                found.append(finding)
    return found


def _seq_scan(node: dict[str, Any]) -> Finding | None:
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
    return Finding("seq_scan", message, table=table, suggested_index=suggestion)


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


def _misestimate(node: dict[str, Any]) -> Finding | None:
    estimated, actual = node.get("Plan Rows"), node.get("Actual Rows")
    if estimated is None or actual is None or node.get("Actual Loops", 1) == 0:
        return None
    high, low = max(estimated, actual), max(min(estimated, actual), 1)
    if high < 100 or high / low < MISESTIMATE_FACTOR:
        return None
    where = node.get("Relation Name") or node.get("Node Type")
    return Finding(
        "misestimate",
        (
            f"{node['Node Type']} on {where}: the planner expected {estimated:,} rows and got "
            f"{actual:,} ({high / low:.0f}x off); run ANALYZE, or raise the statistics target "
            "of the columns in its condition"
        ),
        table=node.get("Relation Name"),
    )


def _spill(node: dict[str, Any]) -> Finding | None:
    if node.get("Sort Space Type") == "Disk":
        return Finding(
            "sort_spill",
            f"Sort spilled {node.get('Sort Space Used', 0):,} kB to disk "
            f"({node.get('Sort Method')}); raise work_mem, or serve the ORDER BY "
            "from an index",
        )
    batches = node.get("Hash Batches", 1) or 1
    if node.get("Node Type") == "Hash" and batches > 1:
        return Finding(
            "hash_spill",
            f"Hash spilled to disk in {batches} batches "
            f"(peak {node.get('Peak Memory Usage', 0):,} kB); raise work_mem",
        )
    return None


def _nested_loop(node: dict[str, Any]) -> Finding | None:
    if node.get("Node Type") != "Nested Loop" or not node.get("Plans"):
        return None
    outer = node["Plans"][0]
    rows = outer.get("Actual Rows", 0) * (outer.get("Actual Loops", 1) or 1)
    if rows < NESTED_LOOP_ROWS:
        return None
    inner = node["Plans"][-1]
    return Finding(
        "nested_loop",
        f"Nested loop ran its inner side ({inner.get('Node Type')}"
        f"{' on ' + inner['Relation Name'] if 'Relation Name' in inner else ''}) "
        f"{rows:,} times; an index on the join key, or a hash join, may be cheaper",
    )
