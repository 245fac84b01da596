"""The migration guides (docs/migrate/*.md) cannot drift from Tenantry's API.

Convention: a fenced ```python block is *Tenantry's side* when the line just before its
opening fence is exactly `<!-- tenantry -->` (an HTML comment, invisible once rendered).
Every such block must

- compile (top-level `await` allowed: snippets are read as if in an async function);
- import only names that exist: `from tenantry.x import a` imports `tenantry.x` and
  looks `a` up on it (or imports `tenantry.x.a`, a submodule);
- call only methods the services have: `<...>.services.storage.upload(...)` and the
  like, directly or through a name assigned from such a chain
  (`storage = tenantry.services.storage`), are looked up on the service's class.

The other ```python blocks (the tool being migrated from: pybreaker, Celery, boto3...)
must compile; their imports are not checked, those packages need not be installed.
Relative links in the guides must name files that exist.

A failure names every missing name, with the guide and line of its block. The
embedding API (`from tenantry import Tenantry`) may not be there yet; its names are
reported like any other, with a note saying so.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDES_DIR = ROOT / "docs" / "migrate"
GUIDES = ("django-storages.md", "celery-bullmq.md", "unleash.md", "pybreaker.md")
MARKER = "<!-- tenantry -->"
EMBEDDING_NAMES = frozenset({"Tenantry"})  # being added by the embedding API

_FENCE = re.compile(r"^```(\w*)\s*$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    guide: str
    line: int  # of the opening fence, 1-based
    language: str
    tenantry: bool
    source: str

    @property
    def where(self) -> str:
        return f"docs/migrate/{self.guide}:{self.line}"


def blocks_of(guide: str) -> list[Block]:
    lines = (GUIDES_DIR / guide).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        language = opening.group(1)
        marked = index > 0 and lines[index - 1].strip() == MARKER
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = "\n".join(lines[index + 1 : end])
        found.append(Block(guide, index + 1, language, marked, body))
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    return [
        block for guide in GUIDES if (GUIDES_DIR / guide).exists() for block in blocks_of(guide)
    ]


def _compile(block: Block) -> ast.Module:
    code = compile(
        block.source,
        block.where,
        "exec",
        flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    assert isinstance(code, ast.Module)
    compile(code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    return code


# --- names imported ----------------------------------------------------------------


def _module(name: str) -> tuple[Any, str | None]:
    try:
        return importlib.import_module(name), None
    except ImportError as exc:
        return None, f"module {name} cannot be imported ({exc})"


def _imported_name(module_name: str, name: str) -> str | None:
    """Why `from module_name import name` fails, or None."""
    module, problem = _module(module_name)
    if module is None:
        return problem
    try:
        getattr(module, name)
        return None
    except AttributeError:
        pass
    submodule, _ = _module(f"{module_name}.{name}")
    if submodule is not None:
        return None
    return f"{module_name}.{name}"


def missing_imports(tree: ast.Module) -> list[str]:
    missing: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "tenantry":
                continue
            for alias in node.names:
                problem = _imported_name(node.module, alias.name)
                if problem is not None:
                    missing.append(problem)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tenantry":
                    _, problem = _module(alias.name)
                    if problem is not None:
                        missing.append(problem)
    return missing


# --- methods called on the services ------------------------------------------------


def _service_classes() -> dict[tuple[str, ...], type]:
    """Attribute chains (after `services`) and the class each ends on."""
    from tenantry.jobs.registry import HandlerRegistry
    from tenantry.jobs.service import JobService
    from tenantry.queries.service import QueryOptimizer
    from tenantry.resilience.registry import BreakerRegistry
    from tenantry.resilience.service import FlagService, ResilienceService
    from tenantry.storage.service import StorageService
    from tenantry.tenants.service import TenantService

    return {
        ("storage",): StorageService,
        ("jobs",): JobService,
        ("jobs", "registry"): HandlerRegistry,
        ("queries",): QueryOptimizer,
        ("tenants",): TenantService,
        ("resilience",): ResilienceService,
        ("resilience", "flags"): FlagService,
        ("resilience", "breakers"): BreakerRegistry,
    }


def _members(cls: type) -> set[str]:
    """What an instance of `cls` has: class attributes, dataclass fields and every
    `self.<name> =` of its source (attributes set in `__init__`)."""
    names = set(dir(cls))
    if dataclasses.is_dataclass(cls):
        names |= {field.name for field in dataclasses.fields(cls)}
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        names |= set(re.findall(r"self\.(\w+)\s*(?::[^=\n]+)?=(?!=)", source))
    return names


def _chain(node: ast.expr) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; calls in between are skipped (`f().x` → ["f", "x"])."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Await):
            node = node.value
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return parts[::-1]
        else:
            return None


def _embedding_class() -> type | None:
    try:
        cls = getattr(importlib.import_module("tenantry"), "Tenantry")
    except AttributeError:
        return None
    return cls if isinstance(cls, type) else None


def _resolve(
    chain: list[str], aliases: dict[str, tuple[str, ...]]
) -> tuple[type, list[str]] | None:
    """The service class a chain reaches, and the attributes read on it after that."""
    if "services" in chain:
        rest = chain[chain.index("services") + 1 :]
    elif chain[0] in aliases:
        rest = [*aliases[chain[0]], *chain[1:]]
    else:
        return None
    services = _service_classes()
    for length in (2, 1):
        owner = services.get(tuple(rest[:length]))
        if owner is not None and len(rest) > length:
            return owner, rest[length:]
    return None


def missing_members(tree: ast.Module, embedded: bool) -> list[str]:
    """Service methods and attributes a block uses that the services do not have."""
    aliases: dict[str, tuple[str, ...]] = {}  # `storage = tenantry.services.storage`
    services = _service_classes()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            chain = _chain(node.value) if isinstance(node.value, ast.Attribute) else None
            if isinstance(target, ast.Name) and chain and "services" in chain:
                path = tuple(chain[chain.index("services") + 1 :])
                if path in services:
                    aliases[target.id] = path
    embedding = _embedding_class()
    missing: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _chain(node)
        if chain is None or tuple(chain) in seen:
            continue
        seen.add(tuple(chain))
        embedded_use = embedded and chain[0] == "tenantry" and len(chain) > 1
        if embedded_use and embedding is not None and chain[1] not in _members(embedding):
            missing.append(f"Tenantry.{chain[1]}")
        resolved = _resolve(chain, aliases)
        if resolved is None:
            continue
        owner, rest = resolved
        if rest[0] not in _members(owner):
            missing.append(f"{owner.__name__}.{rest[0]}")
    return missing


def _imports_tenantry_module(tree: ast.Module) -> bool:
    """Whether `tenantry` is the package in this block (else it is the embedding object)."""
    return any(
        isinstance(node, ast.Import) and any(a.name == "tenantry" for a in node.names)
        for node in ast.walk(tree)
    )


# --- the tests ---------------------------------------------------------------------

BLOCKS = all_blocks()
TENANTRY_BLOCKS = [block for block in BLOCKS if block.tenantry]
PYTHON_BLOCKS = [block for block in BLOCKS if block.language == "python"]


@pytest.mark.parametrize("guide", GUIDES)
def test_the_guide_exists_with_tenantry_code(guide: str) -> None:
    path = GUIDES_DIR / guide
    assert path.exists(), f"{path} is missing (the docs site's nav names it)"
    marked = [block for block in blocks_of(guide) if block.tenantry]
    assert marked, f"{guide}: no ```python block marked {MARKER!r}"
    assert all(block.language == "python" for block in marked), (
        f"{guide}: {MARKER} must precede a ```python block: "
        + ", ".join(block.where for block in marked if block.language != "python")
    )


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda block: block.where)
def test_every_python_block_compiles(block: Block) -> None:
    _compile(block)


@pytest.mark.parametrize("block", TENANTRY_BLOCKS, ids=lambda block: block.where)
def test_tenantry_blocks_use_only_names_that_exist(block: Block) -> None:
    tree = _compile(block)
    missing = missing_imports(tree)
    missing += missing_members(tree, embedded=not _imports_tenantry_module(tree))
    assert not missing, _report(block, missing)


def test_every_missing_name_at_once() -> None:
    """One list of everything missing across the guides (the per-block tests say where)."""
    missing: dict[str, list[str]] = {}
    for block in TENANTRY_BLOCKS:
        tree = _compile(block)
        names = missing_imports(tree)
        names += missing_members(tree, embedded=not _imports_tenantry_module(tree))
        for name in names:
            missing.setdefault(name, []).append(block.where)
    assert not missing, "names the migration guides use that Tenantry lacks:\n" + "\n".join(
        f"  {name}{_note(name)}: {', '.join(places)}" for name, places in sorted(missing.items())
    )


def _note(name: str) -> str:
    tail = name.rsplit(".", 1)[-1]
    if tail in EMBEDDING_NAMES or name.startswith("Tenantry."):
        return " (the embedding API, `from tenantry import Tenantry`: not integrated yet?)"
    return ""


def _report(block: Block, missing: list[str]) -> str:
    lines = [f"{block.where}: names that do not exist in Tenantry:"]
    lines += [f"  {name}{_note(name)}" for name in missing]
    return "\n".join(lines)


@pytest.mark.parametrize("guide", GUIDES)
def test_relative_links_name_files_that_exist(guide: str) -> None:
    path = GUIDES_DIR / guide
    assert path.exists(), f"{guide} is missing"
    text = path.read_text(encoding="utf-8")
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # an absolute URL or an anchor in the same page
        file_part = target.split("#", 1)[0]
        if not (path.parent / file_part).resolve().exists():
            broken.append(target)
    assert not broken, f"{guide}: relative links to files that do not exist: {broken}"
