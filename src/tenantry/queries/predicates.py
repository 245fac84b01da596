"""What a statement asks of each table: equality and range columns, join keys, ORDER BY.

Read from PostgreSQL's own parse tree (pglast), one query block at a time, with
each block's FROM list as its scope: a qualified column resolves through its
alias, an unqualified one through the catalog's column lists, and a column of an
outer block (a correlated subquery) counts as a value, as the planner sees it.
Only conjunctions are followed: a predicate under OR cannot drive one index scan
(an OR of equalities on one column is read as IN).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, enums
from pglast import parser as pg

from tenantry.queries.explain import walk

RANGE_OPS = frozenset({"<", ">", "<=", ">="})


@dataclass(slots=True)
class TableUse:
    """One occurrence of a table in one query block."""

    table: str  # schema-qualified when known: "public.orders"
    equality: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    join: list[str] = field(default_factory=list)
    order_by: list[str] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    limited: bool = False
    referenced: set[str] = field(default_factory=set)  # every column the block reads
    star: bool = False  # SELECT * / alias.*: every column

    def add(self, kind: str, column: str) -> None:
        target: list[str] = getattr(self, kind)
        if column not in target:
            target.append(column)

    @property
    def filtered(self) -> list[str]:
        return list(dict.fromkeys([*self.equality, *self.range]))


@dataclass(slots=True)
class StatementUse:
    kind: str  # select | update | delete | insert
    uses: list[TableUse] = field(default_factory=list)
    written_table: str | None = None
    written_columns: list[str] = field(default_factory=list)  # SET columns of an UPDATE

    @property
    def tables(self) -> set[str]:
        tables = {use.table for use in self.uses}
        if self.written_table:
            tables.add(self.written_table)
        return tables


class Catalog:
    """User tables and their columns: {"public.orders": ["id", "company_id", ...]}."""

    def __init__(self, columns: Mapping[str, list[str]]) -> None:
        self.columns = {table: set(cols) for table, cols in columns.items()}
        self._by_name: dict[str, str] = {}
        for table in sorted(columns, key=lambda t: (not t.startswith("public."), t)):
            self._by_name.setdefault(table.split(".", 1)[1], table)

    def resolve(self, schema: str | None, name: str) -> str | None:
        if schema:
            qualified = f"{schema}.{name}"
            return qualified if qualified in self.columns else None
        return self._by_name.get(name)


@dataclass(slots=True)
class _Scope:
    tables: dict[str, TableUse]  # alias (or table name) -> use
    parent: _Scope | None


def analyze(sql: str, catalog: Catalog) -> StatementUse | None:
    """How `sql` (one statement, $n parameters) uses the catalog's tables; None if not DML."""
    try:
        statements = pg.parse_sql(sql)
    except pg.ParseError:
        return None
    if len(statements) != 1:
        return None
    return _Analyzer(catalog).statement(statements[0].stmt)


class _Analyzer:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.result: StatementUse | None = None
        self.ctes: set[str] = set()

    def statement(self, stmt: Any) -> StatementUse | None:
        if isinstance(stmt, ast.SelectStmt):
            self.result = StatementUse("select")
            self.select(stmt, None)
        elif isinstance(stmt, ast.UpdateStmt | ast.DeleteStmt):
            self.result = StatementUse("update" if isinstance(stmt, ast.UpdateStmt) else "delete")
            self.modify(stmt)
        elif isinstance(stmt, ast.InsertStmt):
            self.result = StatementUse("insert")
            self.result.written_table = self._table(stmt.relation)
            if stmt.selectStmt is not None:
                self.select(stmt.selectStmt, None)
        return self.result

    # --- query blocks -------------------------------------------------------
    def select(self, stmt: Any, parent: _Scope | None) -> None:
        self._with(stmt.withClause, parent)
        if stmt.larg is not None or stmt.rarg is not None:  # UNION / INTERSECT / EXCEPT
            for branch in (stmt.larg, stmt.rarg):
                if branch is not None:
                    self.select(branch, parent)
            return
        scope = _Scope({}, parent)
        quals: list[Any] = []
        for item in stmt.fromClause or ():
            self._from_item(item, scope, quals)
        if stmt.whereClause is not None:
            quals.append(stmt.whereClause)
        for qual in quals:
            self._predicate(qual, scope)
        self._order_by(stmt, scope)
        for node in (*(stmt.targetList or ()), stmt.havingClause):
            self._sublinks(node, scope)
        self._references(
            (stmt.targetList, quals, stmt.sortClause, stmt.groupClause, stmt.havingClause), scope
        )

    def _references(self, nodes: Any, scope: _Scope) -> None:
        """Which columns of each table the block reads (for index-only scans)."""
        stack = [nodes]
        while stack:
            item = stack.pop()
            if isinstance(item, ast.SubLink):
                continue  # its own block
            if isinstance(item, ast.ColumnRef):
                self._reference(item, scope)
            elif isinstance(item, ast.Node):
                stack.extend(getattr(item, n, None) for n in getattr(type(item), "__slots__", ()))
            elif isinstance(item, tuple | list):
                stack.extend(item)

    def _reference(self, ref: Any, scope: _Scope) -> None:
        fields: Any = ref.fields or ()
        if fields and isinstance(fields[-1], ast.A_Star):
            if len(fields) == 1:
                for use in scope.tables.values():
                    use.star = True
            elif isinstance(fields[-2], ast.String) and fields[-2].sval in scope.tables:
                scope.tables[fields[-2].sval].star = True
            return
        column = self._column(ref, scope)
        if column:
            column[0].referenced.add(column[1])

    def modify(self, stmt: Any) -> None:
        self._with(stmt.withClause, None)
        assert self.result is not None
        scope = _Scope({}, None)
        target = self._bind(stmt.relation, scope)
        self.result.written_table = target.table if target else None
        quals: list[Any] = []
        extra = stmt.fromClause if isinstance(stmt, ast.UpdateStmt) else stmt.usingClause
        for item in extra or ():
            self._from_item(item, scope, quals)
        if stmt.whereClause is not None:
            quals.append(stmt.whereClause)
        for qual in quals:
            self._predicate(qual, scope)
        if isinstance(stmt, ast.UpdateStmt):
            self.result.written_columns = [t.name for t in stmt.targetList or () if t.name]

    def _with(self, clause: Any, parent: _Scope | None) -> None:
        if clause is None:
            return
        for cte in clause.ctes or ():
            self.ctes.add(cte.ctename)
            if isinstance(cte.ctequery, ast.SelectStmt):
                self.select(cte.ctequery, parent)

    def _from_item(self, item: Any, scope: _Scope, quals: list[Any]) -> None:
        if isinstance(item, ast.RangeVar):
            self._bind(item, scope)
        elif isinstance(item, ast.JoinExpr):
            self._from_item(item.larg, scope, quals)
            self._from_item(item.rarg, scope, quals)
            if item.quals is not None:
                quals.append(item.quals)
        elif isinstance(item, ast.RangeSubselect) and isinstance(item.subquery, ast.SelectStmt):
            self.select(item.subquery, scope)

    def _table(self, rv: Any) -> str | None:
        if rv.schemaname is None and rv.relname in self.ctes:
            return None
        return self.catalog.resolve(rv.schemaname, rv.relname)

    def _bind(self, rv: Any, scope: _Scope) -> TableUse | None:
        table = self._table(rv)
        if table is None:
            return None
        use = TableUse(table)
        alias = rv.alias.aliasname if rv.alias is not None else rv.relname
        scope.tables[alias] = use
        assert self.result is not None
        self.result.uses.append(use)
        return use

    # --- predicates ---------------------------------------------------------
    def _predicate(self, node: Any, scope: _Scope) -> None:
        if isinstance(node, ast.BoolExpr):
            if node.boolop == enums.BoolExprType.AND_EXPR:
                for arg in node.args or ():
                    self._predicate(arg, scope)
                return
            if node.boolop == enums.BoolExprType.OR_EXPR:
                self._or_of_equalities(node, scope)
            self._sublinks(node, scope)
        elif isinstance(node, ast.A_Expr):
            self._comparison(node, scope)
        elif isinstance(node, ast.NullTest):
            column = self._column(node.arg, scope)
            if column and node.nulltesttype == enums.NullTestType.IS_NULL:
                column[0].add("equality", column[1])
        elif isinstance(node, ast.SubLink):
            self._sublink(node, scope)

    def _comparison(self, node: Any, scope: _Scope) -> None:
        op = node.name[-1].sval if node.name else ""
        kind = node.kind
        left, right = node.lexpr, node.rexpr
        if kind == enums.A_Expr_Kind.AEXPR_OP and op in ("=", *RANGE_OPS):
            lcol, rcol = self._column(left, scope), self._column(right, scope)
            if lcol and rcol:
                if op == "=" and lcol[0] is not rcol[0]:
                    lcol[0].add("join", lcol[1])
                    rcol[0].add("join", rcol[1])
                return
            column, other = (lcol, right) if lcol else (rcol, left)
            if column and self._is_value(other, scope):
                column[0].add("equality" if op == "=" else "range", column[1])
        elif kind in (enums.A_Expr_Kind.AEXPR_IN, enums.A_Expr_Kind.AEXPR_OP_ANY) and op == "=":
            column = self._column(left, scope)
            if column and self._is_value(right, scope):
                column[0].add("equality", column[1])
        elif kind in (enums.A_Expr_Kind.AEXPR_BETWEEN, enums.A_Expr_Kind.AEXPR_BETWEEN_SYM):
            column = self._column(left, scope)
            if column and self._is_value(right, scope):
                column[0].add("range", column[1])
        for side in (left, right):
            self._sublinks(side, scope)

    def _or_of_equalities(self, node: Any, scope: _Scope) -> None:
        seen: set[tuple[int, str]] = set()
        target = None
        for arg in node.args:
            if not (isinstance(arg, ast.A_Expr) and arg.name and arg.name[-1].sval == "="):
                return
            column = self._column(arg.lexpr, scope) or self._column(arg.rexpr, scope)
            if column is None:
                return
            seen.add((id(column[0]), column[1]))
            target = column
        if len(seen) == 1 and target is not None:
            target[0].add("equality", target[1])

    def _sublinks(self, node: Any, scope: _Scope) -> None:
        for item in shallow_sublinks(node):
            self._sublink(item, scope)

    def _sublink(self, node: Any, scope: _Scope) -> None:
        if node.testexpr is not None and node.subLinkType == enums.SubLinkType.ANY_SUBLINK:
            column = self._column(node.testexpr, scope)
            if column:
                column[0].add("join", column[1])
        if isinstance(node.subselect, ast.SelectStmt):
            self.select(node.subselect, scope)

    def _order_by(self, stmt: Any, scope: _Scope) -> None:
        """ORDER BY / GROUP BY columns, when all of one table (one index can feed them)."""
        for kind, nodes in (
            ("order_by", [s.node for s in stmt.sortClause or ()]),
            ("group_by", list(stmt.groupClause or ())),
        ):
            columns = [self._column(node, scope) for node in nodes]
            if not columns or any(c is None for c in columns):
                continue
            if len({id(c[0]) for c in columns if c}) != 1:
                continue
            for column in columns:
                assert column is not None
                column[0].add(kind, column[1])
                if kind == "order_by":
                    column[0].limited = column[0].limited or stmt.limitCount is not None

    # --- resolving ------------------------------------------------------------
    def _column(self, node: Any, scope: _Scope) -> tuple[TableUse, str] | None:
        """(table use, column) for a plain column reference of *this* block."""
        if not isinstance(node, ast.ColumnRef):
            return None
        fields: Any = node.fields or ()
        names: list[str] = [f.sval or "" for f in fields if isinstance(f, ast.String)]
        if len(names) != len(fields) or not names:
            return None
        if len(names) >= 2:
            use = scope.tables.get(names[-2])
            return (use, names[-1]) if use else None
        column = names[0]
        owners = [u for u in scope.tables.values() if column in self.catalog.columns[u.table]]
        if len(owners) == 1:
            return owners[0], column
        return None

    def _is_value(self, node: Any, scope: _Scope) -> bool:
        """No column of this block in it: a constant, a parameter, or an outer column."""
        return not any(
            isinstance(item, ast.ColumnRef) and self._column(item, scope) is not None
            for item in walk(node)
        ) and not any(isinstance(item, ast.SubLink) for item in walk(node))


def shallow_sublinks(node: Any) -> list[ast.SubLink]:
    """The subqueries directly in `node` (not the ones nested inside those)."""
    found, stack = [], [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.SubLink):
            found.append(item)
        elif isinstance(item, ast.Node):
            stack.extend(getattr(item, n, None) for n in getattr(type(item), "__slots__", ()))
        elif isinstance(item, tuple | list):
            stack.extend(item)
    return found


def tables_of(uses: Iterable[StatementUse]) -> set[str]:
    return {table for use in uses for table in use.tables}
