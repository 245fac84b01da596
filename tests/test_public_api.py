"""The public surface: tests/public_api.txt lists it, and nothing leaves it unannounced.

A public name is one in `__all__` of `tenantry` or of a public submodule (the modules
named in the file). A new one is added to the file; one that goes away must first be
in its module's `DEPRECATED` mapping, which keeps serving it with a DeprecationWarning.
Every public name has a docstring of its own (the API reference is built from them).
"""

from __future__ import annotations

import ast
import inspect
import warnings
from importlib import import_module
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import tenantry

HERE = Path(__file__).parent
SOURCE = Path(tenantry.__file__).parent


def recorded() -> list[tuple[str, str]]:
    lines = (HERE / "public_api.txt").read_text().splitlines()
    entries = [line.split(":", 1) for line in lines if line and not line.startswith("#")]
    return [(module, name) for module, name in entries]


def public_modules() -> list[ModuleType]:
    return [import_module(module) for module in sorted({module for module, _ in recorded()})]


def attribute_docstrings() -> set[str]:
    """Names assigned at a module's top level with a string literal right after."""
    documented = set()
    for path in SOURCE.rglob("*.py"):
        body = ast.parse(path.read_text()).body
        for statement, following in pairwise(body):
            target = getattr(statement, "target", None) or next(
                iter(getattr(statement, "targets", [])), None
            )
            if (
                isinstance(target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                documented.add(target.id)
    return documented


def own_docstring(value: Any) -> str | None:
    if inspect.isclass(value):
        doc = vars(value).get("__doc__")
        # A dataclass without one gets its signature as a docstring: that is none.
        return doc if isinstance(doc, str) and not doc.startswith(f"{value.__name__}(") else None
    return inspect.getdoc(value) if callable(value) else None


@pytest.mark.parametrize(("module", "name"), recorded(), ids=":".join)
def test_a_recorded_name_is_public_or_deprecated(module: str, name: str) -> None:
    home = import_module(module)
    if name in home.__all__:
        assert getattr(home, name) is not None
        return
    deprecated = getattr(home, "DEPRECATED", {})
    assert name in deprecated, f"{module}.{name} left __all__ without a deprecation"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(home, name)
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_every_public_name_is_recorded() -> None:
    names = {(module.__name__, name) for module in public_modules() for name in module.__all__}
    assert names - set(recorded()) == set(), "add the new public names to tests/public_api.txt"


def test_every_public_name_has_a_docstring() -> None:
    constants = attribute_docstrings() | {"__version__"}
    missing = []
    for module in public_modules():
        assert module.__doc__, module.__name__
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) or callable(value):
                if not own_docstring(value):
                    missing.append(f"{module.__name__}.{name}")
            elif name not in constants:
                missing.append(f"{module.__name__}.{name} (an attribute docstring)")
    assert missing == []


def test_the_deprecation_path_warns_and_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tenantry.DEPRECATED, "OldSettings", ("tenantry.settings", "use Settings"))
    monkeypatch.setattr(import_module("tenantry.settings"), "OldSettings", object(), raising=False)
    with pytest.warns(DeprecationWarning, match="use Settings"):
        assert tenantry.OldSettings is import_module("tenantry.settings").OldSettings  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        tenantry.NoSuchName  # type: ignore[attr-defined]


def test_the_package_is_typed() -> None:
    assert (SOURCE / "py.typed").exists()
