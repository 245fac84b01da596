"""MkDocs hook: the configuration reference, generated from `tenantry.settings.Settings`.

`docs/reference/configuration.md` holds the marker below; at build time it becomes one
table per section of `settings.py` (the `# --- name ---` comments), a row per field:
its environment variable (the field's `validation_alias`), type, default, constraints
and description. Nothing is written by hand, so the page cannot drift from the code;
a field without a description, or without a variable, fails the build.
"""

from __future__ import annotations

import ast
import html
import json
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from mkdocs.exceptions import PluginError
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

MARKER = "<!-- settings-reference -->"
PAGE = "reference/configuration.md"
_SECTION = re.compile(r"^\s*# --- (.+?) -+\s*$")
_CODE = re.compile(r"`([^`]+)`")
_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


class ReferenceError_(PluginError):
    """A settings field the reference cannot describe (no variable, no description)."""


def settings_fields() -> dict[str, FieldInfo]:
    from tenantry.settings import Settings

    return dict(Settings.model_fields)


def sections() -> list[tuple[str, list[str]]]:
    """(section title, field names) in source order, from settings.py's section comments."""
    import tenantry.settings as module

    source = Path(str(module.__file__)).read_text(encoding="utf-8")
    lines = source.splitlines()
    titles = {n: m.group(1) for n, line in enumerate(lines, 1) if (m := _SECTION.match(line))}
    cls = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == "Settings"
    )
    grouped: list[tuple[str, list[str]]] = []
    current = "General"
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above = [n for n in titles if n < node.lineno]
        title = titles[max(above)] if above else current
        if not grouped or grouped[-1][0] != title:
            grouped.append((title, []))
        grouped[-1][1].append(node.target.id)
        current = title
    fields = settings_fields()
    listed = {name for _, names in grouped for name in names}
    missing = [name for name in fields if name not in listed]
    if missing:  # declared some other way: still listed, never skipped
        grouped.append(("Other", missing))
    return [(title, [n for n in names if n in fields]) for title, names in grouped]


def variable(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    if not isinstance(alias, str):
        raise ReferenceError_(f"Settings.{name} has no environment variable (validation_alias)")
    return alias


def type_text(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        inner = " or ".join(type_text(a) for a in args)
        return inner + " (optional)" if len(args) < len(get_args(annotation)) else inner
    if origin is dict:
        return "JSON object"
    if annotation is SecretStr:
        return "secret string"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _number(value: float) -> str:
    """As it would be written in the environment: 1000, not 1000.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def default_text(name: str, field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`"
    if isinstance(value, int | float):
        shown = f"`{_number(value)}`"
        if name.endswith("_bytes") and value >= 1024:
            size, units = value / 1024, ["KiB", "MiB", "GiB"]
            while size >= 1024 and len(units) > 1:
                size, units = size / 1024, units[1:]
            shown += f" ({_number(round(size, 1))} {units[0]})"
        return shown
    if value == "":
        return "empty"
    if isinstance(value, Path) and not value.is_absolute():
        return f"`./{value.as_posix()}`"
    return f"`{value}`"


def constraints_text(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for attr, sign in _BOUNDS:
            bound = getattr(item, attr, None)
            if bound is not None:
                parts.append(f"{sign} {_number(bound)}")
        for attr, label in (("min_length", "length ≥"), ("max_length", "length ≤")):
            length = getattr(item, attr, None)
            if length is not None:
                parts.append(f"{label} {length}")
        pattern = getattr(item, "pattern", None)
        if pattern is not None:
            parts.append(f"matches `{pattern}`")
    return "; ".join(parts)


def inline(text: str) -> str:
    """Markdown-ish text to HTML: escaped, with `code` spans kept."""
    pieces = _CODE.split(text)
    return "".join(
        f"<code>{html.escape(piece)}</code>" if odd else html.escape(piece)
        for odd, piece in ((i % 2 == 1, p) for i, p in enumerate(pieces))
    )


def row(name: str, field: FieldInfo) -> str:
    env = variable(name, field)
    if not field.description:
        raise ReferenceError_(f"Settings.{name} ({env}) has no description: add description=")
    cells = [
        f'<code id="{env}">{env}</code><br><small><code>{name}</code></small>',
        inline(type_text(field.annotation)),
        inline(default_text(name, field)),
        inline(constraints_text(field)),
        inline(field.description),
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def render() -> str:
    fields = settings_fields()
    head = "".join(
        f"<th>{label}</th>"
        for label in ("Variable", "Type", "Default", "Constraints", "Description")
    )
    out = [f"{len(fields)} settings, in the order and sections of `src/tenantry/settings.py`.", ""]
    for title, names in sections():
        out += [f"## {title[:1].upper()}{title[1:]}", ""]
        body = "".join(row(name, fields[name]) for name in names)
        out += [f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>", ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ReferenceError_(f"{PAGE} lost its marker {MARKER}")
    return markdown.replace(MARKER, render())
