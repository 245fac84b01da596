"""Tenantry: scaling infrastructure for multi-tenant Python backends.

`import tenantry` is light: the service (`create_app`), the embedding (`Tenantry`) and
the settings load on first use, so a program that uses only the pure parts
(`tenantry.resilience`, say) pulls in no web framework, ORM or client library.

The public contract is `__all__` here and in the public submodules listed in
`tests/public_api.txt` (`tenantry.jobs`). Every other name, in any module, is private
whatever it is called, and may change in any release. A public name leaves only after
it has been listed in `DEPRECATED`, where it keeps working with a `DeprecationWarning`.
"""

from __future__ import annotations

import warnings
from importlib import import_module
from typing import TYPE_CHECKING, Any

from tenantry.version import __version__

if TYPE_CHECKING:
    from tenantry.app import create_app
    from tenantry.container import Services
    from tenantry.embedding import Tenantry
    from tenantry.errors import TenantryError
    from tenantry.jobs.backends import PermanentJobError
    from tenantry.jobs.registry import JobContext
    from tenantry.resilience.breaker import Breaker
    from tenantry.settings import ConfigError, Settings, load_settings

__all__ = [
    "Breaker",
    "ConfigError",
    "JobContext",
    "PermanentJobError",
    "Services",
    "Settings",
    "Tenantry",
    "TenantryError",
    "__version__",
    "create_app",
    "load_settings",
]

_HOMES = {
    "Breaker": "tenantry.resilience.breaker",
    "ConfigError": "tenantry.settings",
    "JobContext": "tenantry.jobs.registry",
    "PermanentJobError": "tenantry.jobs.backends",
    "Services": "tenantry.container",
    "Settings": "tenantry.settings",
    "Tenantry": "tenantry.embedding",
    "TenantryError": "tenantry.errors",
    "create_app": "tenantry.app",
    "load_settings": "tenantry.settings",
}

# Public names on their way out: name -> (its home, what to use instead). Served with a
# DeprecationWarning for at least one minor release, then removed (and from this map).
DEPRECATED: dict[str, tuple[str, str]] = {}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        return getattr(import_module(home), name)
    if name in DEPRECATED:
        home, instead = DEPRECATED[name]
        warnings.warn(f"tenantry.{name} is deprecated: {instead}", DeprecationWarning, stacklevel=2)
        return getattr(import_module(home), name)
    raise AttributeError(f"module 'tenantry' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
