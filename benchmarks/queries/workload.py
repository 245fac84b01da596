"""A multi-tenant SaaS workload: schema, data generator, and query mixes.

Companies differ in size the way real tenants do (a few large, a long tail: Zipf
with s = 1.1). The fixed mix below is the kind of statement a project-management
product runs; `random_mix` draws statements the advisor has never seen (random
tables, equality / range / join / ORDER BY … LIMIT combinations, random call
counts) to check that the method, not a tuned workload, does the work.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

COMPANIES = 200

SCHEMA = [
    "CREATE TABLE companies (id int PRIMARY KEY, name text NOT NULL, plan text NOT NULL)",
    "CREATE TABLE users (id int PRIMARY KEY, company_id int NOT NULL, email text NOT NULL,"
    " role text NOT NULL, created_at timestamptz NOT NULL, last_login timestamptz)",
    "CREATE TABLE projects (id int PRIMARY KEY, company_id int NOT NULL, owner_id int NOT NULL,"
    " status text NOT NULL, created_at timestamptz NOT NULL)",
    "CREATE TABLE tasks (id int PRIMARY KEY, company_id int NOT NULL, project_id int NOT NULL,"
    " assignee_id int, status text NOT NULL, priority int NOT NULL, due_date date,"
    " created_at timestamptz NOT NULL)",
    "CREATE TABLE events (id bigserial PRIMARY KEY, company_id int NOT NULL, user_id int NOT NULL,"
    " kind text NOT NULL, created_at timestamptz NOT NULL, payload text)",
    "CREATE TABLE invoices (id int PRIMARY KEY, company_id int NOT NULL, status text NOT NULL,"
    " amount numeric NOT NULL, issued_at date NOT NULL, paid_at date)",
]

# Tenant sizes: company k gets a share ~ 1/k^1.1 of every table (skewed, like real SaaS).
_TENANT = "(floor(power(random(), 2.2) * 200))::int"


def data_sql(scale: float) -> list[str]:
    """INSERTs that fill the schema; `scale` 1.0 is ~600k rows in all."""
    users, projects = int(40_000 * scale), int(15_000 * scale)
    tasks, events, invoices = int(250_000 * scale), int(250_000 * scale), int(40_000 * scale)
    return [
        "SELECT setseed(0.42)",
        f"INSERT INTO companies SELECT g, 'company ' || g, (ARRAY['free','team','enterprise'])"
        f"[1 + g %% 3] FROM generate_series(0, {COMPANIES - 1}) g",
        f"INSERT INTO users SELECT g, {_TENANT}, 'user' || g || '@example.com',"
        " (ARRAY['admin','member','member','guest'])[1 + (random() * 3)::int],"
        " now() - random() * interval '3 years', now() - random() * interval '90 days'"
        f" FROM generate_series(1, {users}) g",
        f"INSERT INTO projects SELECT g, {_TENANT}, 1 + (random() * {users - 1})::int,"
        " (ARRAY['active','active','archived','draft'])[1 + (random() * 3)::int],"
        f" now() - random() * interval '2 years' FROM generate_series(1, {projects}) g",
        # tasks belong to their project's company
        "INSERT INTO tasks SELECT g, p.company_id, p.id,"
        f" CASE WHEN random() < 0.9 THEN 1 + (random() * {users - 1})::int END,"
        " (ARRAY['todo','doing','done','done','done'])[1 + (random() * 4)::int],"
        " (random() * 4)::int, (now() + (random() * 120 - 60) * interval '1 day')::date,"
        " now() - random() * interval '2 years'"
        f" FROM generate_series(1, {tasks}) g"
        f" JOIN projects p ON p.id = 1 + (g * 7919) %% {projects}",
        f"INSERT INTO events (company_id, user_id, kind, created_at, payload) SELECT {_TENANT},"
        f" 1 + (random() * {users - 1})::int,"
        " (ARRAY['login','view','edit','comment','export'])[1 + (random() * 4)::int],"
        " now() - random() * interval '365 days', md5(g::text)"
        f" FROM generate_series(1, {events}) g",
        f"INSERT INTO invoices SELECT g, {_TENANT},"
        " (ARRAY['paid','paid','paid','open','void'])[1 + (random() * 4)::int],"
        " round((random() * 5000)::numeric, 2), (now() - random() * interval '3 years')::date,"
        " CASE WHEN random() < 0.7 THEN (now() - random() * interval '3 years')::date END"
        f" FROM generate_series(1, {invoices}) g",
        "ANALYZE",
    ]


@dataclass(frozen=True)
class Query:
    sql: str  # SQLAlchemy text() with :named parameters
    params: Callable[[random.Random, dict[str, int]], dict[str, Any]]
    calls: int


def _company(rng: random.Random) -> int:
    """A company drawn by traffic: large tenants make more requests."""
    return min(int(rng.paretovariate(1.1)) - 1, COMPANIES - 1)


FIXED_MIX = [
    Query(
        "SELECT id, status, priority FROM tasks WHERE company_id = :c AND project_id = :p"
        " AND status <> 'done' ORDER BY priority DESC, due_date LIMIT 50",
        lambda r, n: {"c": _company(r), "p": r.randrange(1, n["projects"])},
        30,
    ),
    Query(
        "SELECT id, due_date FROM tasks WHERE company_id = :c AND assignee_id = :u"
        " AND status = 'todo' ORDER BY due_date LIMIT 20",
        lambda r, n: {"c": _company(r), "u": r.randrange(1, n["users"])},
        40,
    ),
    Query(
        "SELECT status, count(*) FROM tasks WHERE company_id = :c GROUP BY status",
        lambda r, n: {"c": _company(r)},
        10,
    ),
    Query(
        "SELECT id, user_id, created_at FROM events WHERE company_id = :c AND kind = :k"
        " ORDER BY created_at DESC LIMIT 100",
        lambda r, n: {"c": _company(r), "k": r.choice(["login", "edit", "export"])},
        20,
    ),
    Query(
        "SELECT count(*) FROM events WHERE user_id = :u"
        " AND created_at > now() - interval '30 days'",
        lambda r, n: {"u": r.randrange(1, n["users"])},
        15,
    ),
    Query(
        "SELECT id, role FROM users WHERE company_id = :c AND email = :e",
        lambda r, n: {"c": _company(r), "e": f"user{r.randrange(1, n['users'])}@example.com"},
        25,
    ),
    Query(
        "SELECT id, amount FROM invoices WHERE company_id = :c AND status = 'open'"
        " AND issued_at < now() - interval '30 days'",
        lambda r, n: {"c": _company(r)},
        5,
    ),
    Query(
        "SELECT p.id, p.status, u.email FROM projects p JOIN users u ON u.id = p.owner_id"
        " WHERE p.company_id = :c AND p.status = 'active'",
        lambda r, n: {"c": _company(r)},
        10,
    ),
    Query(
        "SELECT t.id FROM tasks t JOIN projects p ON p.id = t.project_id"
        " WHERE p.company_id = :c AND p.status = 'active'"
        " AND t.due_date BETWEEN current_date AND current_date + 7",
        lambda r, n: {"c": _company(r)},
        8,
    ),
    Query(
        "UPDATE tasks SET status = 'done' WHERE id = :t",
        lambda r, n: {"t": r.randrange(1, n["tasks"])},
        20,
    ),
    Query(
        "INSERT INTO events (company_id, user_id, kind, created_at) VALUES (:c, :u, 'view', now())",
        lambda r, n: {"c": _company(r), "u": r.randrange(1, n["users"])},
        50,
    ),
    Query(
        "SELECT sum(amount) FROM invoices WHERE company_id = :c"
        " AND paid_at BETWEEN current_date - 90 AND current_date",
        lambda r, n: {"c": _company(r)},
        5,
    ),
]

# Columns random statements may filter on: (column, kind of value).
_FILTERABLE: dict[str, list[tuple[str, str]]] = {
    "users": [("company_id", "tenant"), ("role", "role"), ("created_at", "time"),
              ("last_login", "time"), ("email", "email")],
    "projects": [("company_id", "tenant"), ("owner_id", "user"), ("status", "pstatus"),
                 ("created_at", "time")],
    "tasks": [("company_id", "tenant"), ("project_id", "project"), ("assignee_id", "user"),
              ("status", "tstatus"), ("priority", "priority"), ("due_date", "date"),
              ("created_at", "time")],
    "events": [("company_id", "tenant"), ("user_id", "user"), ("kind", "kind"),
               ("created_at", "time")],
    "invoices": [("company_id", "tenant"), ("status", "istatus"), ("amount", "amount"),
                 ("issued_at", "date"), ("paid_at", "date")],
}  # fmt: skip

_VALUES: dict[str, Callable[[random.Random, dict[str, int]], Any]] = {
    "tenant": lambda r, n: _company(r),
    "user": lambda r, n: r.randrange(1, n["users"]),
    "project": lambda r, n: r.randrange(1, n["projects"]),
    "role": lambda r, n: r.choice(["admin", "member", "guest"]),
    "pstatus": lambda r, n: r.choice(["active", "archived", "draft"]),
    "tstatus": lambda r, n: r.choice(["todo", "doing", "done"]),
    "istatus": lambda r, n: r.choice(["paid", "open", "void"]),
    "kind": lambda r, n: r.choice(["login", "view", "edit", "comment", "export"]),
    "priority": lambda r, n: r.randrange(0, 5),
    "email": lambda r, n: f"user{r.randrange(1, n['users'])}@example.com",
    "amount": lambda r, n: r.randrange(100, 4900),
}
_RANGES = {
    "time": "now() - interval '{d} days'",
    "date": "current_date - {d}",
}


# Joins random statements may use: table -> (joined table, alias, join condition).
_JOINS = {
    "tasks": ("projects", "p", "p.id = t.project_id"),
    "events": ("users", "u", "u.id = t.user_id"),
    "projects": ("users", "u", "u.id = t.owner_id"),
}
_GROUPABLE = {"status", "kind", "role", "priority"}


def _filters(
    rng: random.Random, table: str, alias: str, at_most: int, binders: dict[str, Any]
) -> list[str]:
    columns = _FILTERABLE[table]
    where = []
    for column, kind in rng.sample(columns, k=rng.randint(1, min(at_most, len(columns)))):
        name = f"v{len(binders)}"
        target = f"{alias}.{column}"
        if kind in _RANGES:
            op = ">" if rng.random() < 0.7 else "<"
            where.append(f"{target} {op} {_RANGES[kind].format(d=rng.choice([1, 7, 30, 180]))}")
        elif kind == "amount":
            where.append(f"{target} > :{name}")
            binders[name] = _VALUES[kind]
        elif kind.endswith("status") and rng.random() < 0.3:
            where.append(f"{target} IN (:{name}, :{name}b)")
            binders[name] = binders[f"{name}b"] = _VALUES[kind]
        else:
            where.append(f"{target} = :{name}")
            binders[name] = _VALUES[kind]
    return where


def random_mix(seed: int, statements: int = 14) -> list[Query]:
    """Statements of a workload nobody tuned for: random filters (equality, IN, ranges),
    projections or *, aggregates with GROUP BY, joins, ORDER BY … LIMIT, call counts."""
    rng = random.Random(seed)
    mix = []
    for _ in range(statements):
        table = rng.choice(list(_FILTERABLE))
        columns = [c for c, _ in _FILTERABLE[table]]
        binders: dict[str, Any] = {}
        where = _filters(rng, table, "t", 3, binders)
        source = f"{table} t"
        if table in _JOINS and rng.random() < 0.3:
            other, alias, condition = _JOINS[table]
            source += f" JOIN {other} {alias} ON {condition}"
            where += _filters(rng, other, alias, 1, binders)
        groupable = [c for c in columns if c in _GROUPABLE]
        if groupable and rng.random() < 0.25:
            group = rng.choice(groupable)
            sql = f"SELECT t.{group}, count(*) FROM {source} WHERE {' AND '.join(where)}"
            sql += f" GROUP BY t.{group}"
        else:
            picked = rng.sample(columns, k=rng.randint(1, 3))
            projection = "t.*" if rng.random() < 0.5 else ", ".join(f"t.{c}" for c in picked)
            sql = f"SELECT {projection} FROM {source} WHERE {' AND '.join(where)}"
            if rng.random() < 0.4:
                order = rng.choice(
                    [c for c, k in _FILTERABLE[table] if k in ("time", "date", "priority")]
                )
                sql += f" ORDER BY t.{order} DESC LIMIT {rng.choice([10, 50])}"
        mix.append(
            Query(
                sql,
                (lambda b: lambda r, n: {name: make(r, n) for name, make in b.items()})(binders),
                rng.choice([1, 3, 10, 30, 60]),
            )
        )
    return mix
