"""Statement shapes: the same statement with its literals and parameter lists taken out.

PostgreSQL statements go through PostgreSQL's own parser (libpg_query via `pglast`):
the fingerprint ignores constants, parameters and the length of `IN (...)` lists, and
`normalize` gives the text shown to people. Everything else (SQLite, or a statement
pglast cannot parse) goes through a small tokenizer: a regular expression cannot tell
a quote inside a string from one that ends it, a tokenizer can.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pglast import parser as pg

# Driver placeholders pglast does not know: psycopg's %(name)s / %s ("%%" is a literal %).
_DRIVER_PLACEHOLDER = re.compile(r"%%|%\(\w+\)s|%s")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>[xXbBeEnN]?'(?:[^']|'')*')
  | (?P<dollar>\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
  | (?P<ident>"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\])
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<param>\?\d*|[:@$]\w+|%\(\w+\)s|%s)
  | (?P<word>[A-Za-z_][\w$]*)
  | (?P<op>::|<>|!=|<=|>=|\|\||.)
    """,
    re.VERBOSE | re.DOTALL,
)
_IN_LIST = re.compile(r"\bin \( \?(?: , \?)* \)")
_VALUES_ROWS = re.compile(r"(\( \?(?: , \?)* \))(?: , \( \?(?: , \?)* \))+")
_TIGHTEN = re.compile(r"(?<=[(.]) | (?=[),.])")


@dataclass(frozen=True, slots=True)
class Shape:
    id: str
    text: str
    dialect: str


def to_dollar_params(statement: str) -> str:
    """psycopg's %(name)s / %s placeholders as PostgreSQL's $1, $2 … (pglast parses those)."""
    counter = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal counter
        if match.group() == "%%":
            return "%"
        counter += 1
        return f"${counter}"

    return _DRIVER_PLACEHOLDER.sub(replace, statement)


def tokenize_normalize(statement: str) -> str:
    """Literals and parameters become `?`, keywords lower case, lists of `?` one item."""
    out: list[str] = []
    for match in _TOKEN.finditer(statement):
        kind = match.lastgroup
        if kind in ("ws", "comment"):
            continue
        if kind in ("string", "dollar", "number", "param"):
            out.append("?")
        elif kind == "word":
            out.append(match.group().lower())
        elif kind == "tag":  # only inside `dollar`; never the last group
            continue
        else:
            out.append(match.group())
    text = " ".join(out)
    text = _VALUES_ROWS.sub(r"\1", _IN_LIST.sub("in ( ? )", text))
    return _TIGHTEN.sub("", text)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def shape_of(statement: str, dialect: str) -> Shape:
    if dialect == "postgresql":
        sql = to_dollar_params(statement)
        try:
            return Shape(pg.fingerprint(sql), pg.normalize(sql), dialect)
        except pg.ParseError:
            pass  # e.g. a driver-specific placeholder; the tokenizer still groups it
    text = tokenize_normalize(statement)
    return Shape(_digest(f"{dialect}:{text}"), text, dialect)
