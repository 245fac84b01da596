"""The read-cache backends' former home, kept so existing imports work: they now live
in `tenantry.queries.cache_backends`, one module per engine."""

from tenantry.queries.cache_backends import CacheBackend, MemoryCache, RedisCache, matches

__all__ = ["CacheBackend", "MemoryCache", "RedisCache", "matches"]
