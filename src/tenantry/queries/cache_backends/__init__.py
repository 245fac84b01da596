"""Read-cache backends: the contract (base.py) and one module per engine.

`tenantry.testing.cache` is the contract's suite, run against both engines here and
shipped for a user's own backend.
"""

from tenantry.queries.cache_backends.base import CacheBackend, matches
from tenantry.queries.cache_backends.memory import MemoryCache
from tenantry.queries.cache_backends.redis_cache import RedisCache

__all__ = ["CacheBackend", "MemoryCache", "RedisCache", "matches"]
