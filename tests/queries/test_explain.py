"""Safe EXPLAIN: only one read-only SELECT gets through, and nothing it runs changes a row."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry.errors import InvalidInput
from tenantry.queries.explain import check_read_only, explain_query, findings
from tenantry.queries.explain_role import ensure_explain_role

REFUSED = {
    "delete": "DELETE FROM accounts",
    "update": "UPDATE accounts SET balance = 0",
    "insert": "INSERT INTO accounts (id, balance) VALUES (99, 1)",
    "ddl_drop": "DROP TABLE accounts",
    "ddl_create": "CREATE TABLE evil (id int)",
    "ddl_alter": "ALTER TABLE accounts ADD COLUMN x int",
    "truncate": "TRUNCATE accounts",
    "copy": "COPY accounts TO STDOUT",
    "copy_program": "COPY accounts FROM PROGRAM 'true'",
    "several": "SELECT 1; DELETE FROM accounts",
    "several_selects": "SELECT 1; SELECT 2",
    "update_in_cte": "WITH x AS (UPDATE accounts SET balance = 0 RETURNING *) SELECT * FROM x",
    "delete_in_cte": "WITH x AS (DELETE FROM accounts RETURNING *) SELECT count(*) FROM x",
    "insert_in_nested_cte": (
        "SELECT * FROM (WITH y AS (INSERT INTO accounts VALUES (7, 7) RETURNING id) "
        "SELECT id FROM y) s"
    ),
    "for_update": "SELECT * FROM accounts FOR UPDATE",
    "for_share_in_subquery": "SELECT * FROM (SELECT * FROM accounts FOR SHARE) s",
    "select_into": "SELECT * INTO stolen FROM accounts",
    "nextval": "SELECT nextval('ticket')",
    "setval": "SELECT setval('ticket', 1000)",
    "nextval_in_where": "SELECT * FROM accounts WHERE id = nextval('ticket')",
    "terminate": "SELECT pg_terminate_backend(pg_backend_pid())",
    "cancel": "SELECT pg_cancel_backend(1)",
    "advisory_lock": "SELECT pg_advisory_lock(42)",
    "large_object": "SELECT lo_import('/etc/hostname')",
    "dblink": "SELECT * FROM dblink('dbname=x', 'DELETE FROM accounts') AS t(x int)",
    "set_config": "SELECT set_config('statement_timeout', '0', false)",
    "sleep": "SELECT pg_sleep(10)",
    "read_file": "SELECT pg_read_file('/etc/passwd')",
    "query_to_xml": "SELECT query_to_xml('DELETE FROM accounts RETURNING 1', true, true, '')",
    "user_function_qualified": "SELECT public.add_account()",
    "explain": "EXPLAIN ANALYZE DELETE FROM accounts",
    "set": "SET statement_timeout = 0",
    "transaction": "COMMIT",
    "lock": "LOCK TABLE accounts",
    "call": "CALL something()",
    "do": "DO $$ BEGIN DELETE FROM accounts; END $$",
    "vacuum": "VACUUM accounts",
    "param": "SELECT * FROM accounts WHERE id = $1",
    "empty": "   ",
    "garbage": "SELEKT * FROM accounts",
}

# Not known by name: refused once pg_proc shows it is not a read-only built-in.
REFUSED_AFTER_LOOKUP = {
    "user_function": "SELECT add_account()",
    "user_function_in_where": "SELECT * FROM accounts WHERE id = add_account()",
}


async def _setup(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for sql in (
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)",
            "INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 20000) g",
            "CREATE SEQUENCE ticket",
            "SELECT nextval('ticket')",
            "CREATE FUNCTION add_account() RETURNS int LANGUAGE sql AS "
            "'INSERT INTO accounts VALUES (100001, 1) RETURNING id'",
            # a view hides a write-ish call from the parser: READ ONLY must stop it
            "CREATE VIEW sneaky AS SELECT nextval('ticket') AS n",
            "CREATE FUNCTION stable_writer() RETURNS int LANGUAGE plpgsql VOLATILE AS "
            "$$ BEGIN INSERT INTO accounts VALUES (100002, 1); RETURN 1; END $$",
            "CREATE VIEW sneaky_writer AS SELECT stable_writer() AS n",
            "ANALYZE accounts",
        ):
            await conn.exec_driver_sql(sql)
    await prepare_role(engine)


async def prepare_role(engine: AsyncEngine) -> None:
    """What `tenantry db upgrade` does: the EXPLAIN role, able to read these tables."""
    url = engine.url.render_as_string(hide_password=False)
    assert await asyncio.to_thread(ensure_explain_role, url) is None


async def _state(engine: AsyncEngine) -> tuple[Any, ...]:
    async with engine.connect() as conn:
        count, total = (
            await conn.exec_driver_sql("SELECT count(*), sum(balance) FROM accounts")
        ).one()
        sequence = (await conn.exec_driver_sql("SELECT last_value FROM ticket")).scalar_one()
        tables = (
            await conn.exec_driver_sql(
                "SELECT count(*) FROM pg_class WHERE relname IN ('evil', 'stolen')"
            )
        ).scalar_one()
    return count, total, sequence, tables


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_each_refused_kind_is_refused_with_a_reason(kind: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_read_only(REFUSED[kind])
    error = refused.value
    assert error.status_code == 422
    assert error.details["field"] == "query"
    assert error.details["reason"]
    assert "query refused" in error.message


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM accounts WHERE id = 5",
        "SELECT 1 UNION ALL SELECT 2",
        "VALUES (1), (2)",
        "WITH rich AS (SELECT * FROM accounts WHERE balance > 10) SELECT count(*) FROM rich",
        "SELECT lower('A'), now(), count(*) FROM accounts GROUP BY 1, 2",
        "SELECT * FROM generate_series(1, 3) g JOIN accounts a ON a.id = g",
        "SELECT (SELECT max(balance) FROM accounts), EXISTS (SELECT 1 FROM accounts)",
        "SELECT id, row_number() OVER (ORDER BY balance DESC) FROM accounts LIMIT 3;",
        "SELECT count(*) FILTER (WHERE balance > 1), grouping(id) FROM accounts"
        " GROUP BY GROUPING SETS ((id), ())",
        "SELECT DISTINCT ON (a.id) a.id FROM accounts a, LATERAL (SELECT 1) s ORDER BY a.id",
        "SELECT * FROM json_to_record('{\"a\": 1}') AS x(a int)",
        "SELECT xmlelement(name foo), (SELECT 1) IS DISTINCT FROM 2",
        "SELECT pg_catalog.now(), pg_catalog.lower('A')",  # the catalog, spelled out
    ],
)
def test_read_only_statements_are_accepted(query: str) -> None:
    assert check_read_only(query).sql.startswith(query.split()[0])


def test_the_statement_text_survives_comments_and_non_ascii() -> None:
    assert check_read_only("/* é */ SELECT 'ü' ; ").sql == "SELECT 'ü'"
    assert check_read_only("SELECT 'ü' AS x -- é").sql == "SELECT 'ü' AS x -- é"
    # After the semicolon: not part of the statement (it would end inside the probe view).
    assert check_read_only("SELECT 1; -- done").sql == "SELECT 1"


async def test_no_explain_request_can_change_a_row(pg_engine: AsyncEngine) -> None:
    await _setup(pg_engine)
    before = await _state(pg_engine)
    attempts = [
        *REFUSED.values(),
        *REFUSED_AFTER_LOOKUP.values(),
        "SELECT * FROM sneaky",  # nextval behind a view: refused once the view is followed
        "SELECT * FROM sneaky_writer",  # a user function behind a view: the same
        "SELECT count(*) FROM accounts",
    ]
    outcomes = {}
    for query in attempts:
        try:
            await explain_query(pg_engine, query, timeout_ms=5000)
            outcomes[query] = "explained"
        except InvalidInput as exc:
            outcomes[query] = exc.message
    assert await _state(pg_engine) == before
    assert outcomes["SELECT count(*) FROM accounts"] == "explained"
    for query in (*REFUSED.values(), *REFUSED_AFTER_LOOKUP.values()):
        assert outcomes[query] != "explained", query
    assert "not a PostgreSQL built-in" in outcomes[REFUSED_AFTER_LOOKUP["user_function"]]
    assert "nextval" in outcomes["SELECT * FROM sneaky"]
    assert "public.stable_writer()" in outcomes["SELECT * FROM sneaky_writer"]


async def test_unknown_functions_are_checked_in_pg_proc(pg_engine: AsyncEngine) -> None:
    await _setup(pg_engine)
    # abs() is on the allow-list, but gcd() is not: PostgreSQL says it is immutable
    result = await explain_query(pg_engine, "SELECT gcd(12, 18)", timeout_ms=5000)
    assert result.total_cost is not None
    # clock_timestamp-like volatile built-ins off the list are refused
    with pytest.raises(InvalidInput, match="volatile"):
        await explain_query(pg_engine, "SELECT pg_current_wal_lsn(), txid_status(1)", 5000)


async def test_explain_reports_cost_time_plan_and_findings(pg_engine: AsyncEngine) -> None:
    await _setup(pg_engine)
    result = await explain_query(
        pg_engine, "SELECT * FROM accounts WHERE balance = 5000", timeout_ms=5000
    )
    assert result.total_cost > 0
    assert result.actual_time_ms >= 0 and result.execution_time_ms >= 0
    assert result.plan["Node Type"] in ("Seq Scan", "Gather")
    scans = [f for f in result.findings if f.kind == "seq_scan"]
    assert scans and scans[0].table == "accounts"
    assert scans[0].suggested_index == "CREATE INDEX CONCURRENTLY ON accounts (balance)"
    # a query with a literal % goes through untouched
    result = await explain_query(pg_engine, "SELECT 'a%b' LIKE 'a%'", timeout_ms=5000)
    assert result.plan["Node Type"] == "Result"


async def test_statement_timeout_is_a_clear_422(pg_engine: AsyncEngine) -> None:
    await prepare_role(pg_engine)
    with pytest.raises(InvalidInput) as timed_out:
        await explain_query(
            pg_engine, "SELECT count(*) FROM generate_series(1, 200000000)", timeout_ms=100
        )
    assert timed_out.value.code == "STATEMENT_TIMEOUT"


async def test_a_failing_query_is_a_422_naming_the_problem(pg_engine: AsyncEngine) -> None:
    await prepare_role(pg_engine)
    with pytest.raises(InvalidInput, match="a table or view it names does not exist") as failed:
        await explain_query(pg_engine, "SELECT * FROM no_such_table", timeout_ms=5000)
    assert failed.value.details["sqlstate"] == "42P01"


def test_findings_read_misestimates_spills_and_nested_loops() -> None:
    plan = {
        "Node Type": "Nested Loop",
        "Plan Rows": 10,
        "Actual Rows": 5000,
        "Actual Loops": 1,
        "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "a", "Plan Rows": 5000,
             "Actual Rows": 5000, "Actual Loops": 1},
            {"Node Type": "Sort", "Sort Space Type": "Disk", "Sort Space Used": 2048,
             "Sort Method": "external merge", "Plan Rows": 1, "Actual Rows": 1,
             "Actual Loops": 5000},
            {"Node Type": "Hash", "Hash Batches": 8, "Peak Memory Usage": 4096,
             "Plan Rows": 1, "Actual Rows": 1, "Actual Loops": 1},
        ],
    }  # fmt: skip
    kinds = [f.kind for f in findings(plan)]
    assert kinds.count("misestimate") == 1  # 10 expected vs 5000 on the loop
    assert "sort_spill" in kinds and "hash_spill" in kinds and "nested_loop" in kinds
