"""Tenantry: scaling infrastructure for multi-tenant Python backends."""

from tenantry.app import create_app
from tenantry.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "create_app", "load_settings"]
__version__ = "0.1.0"
