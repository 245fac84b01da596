"""Tenantry: scaling infrastructure for multi-tenant Python backends.

`import tenantry` is light: the service (`create_app`) and the settings load on first
use, so a program that uses only the pure parts (`tenantry.resilience`, say) pulls in
no web framework, ORM or client library.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from tenantry.version import __version__

if TYPE_CHECKING:
    from tenantry.app import create_app
    from tenantry.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "__version__", "create_app", "load_settings"]

_HOMES = {
    "create_app": "tenantry.app",
    "ConfigError": "tenantry.settings",
    "Settings": "tenantry.settings",
    "load_settings": "tenantry.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tenantry' has no attribute {name!r}")
    return getattr(import_module(home), name)
