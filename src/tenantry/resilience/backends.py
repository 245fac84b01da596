"""The flag stores' former home, kept so existing imports work: each store now has its
own module in `tenantry.resilience.stores`; import from there."""

from tenantry.resilience.stores.base import (
    AuditEntry,
    Change,
    FlagStore,
    flag_not_found,
)
from tenantry.resilience.stores.database import DatabaseFlagStore
from tenantry.resilience.stores.failsafe import FailsafeStore
from tenantry.resilience.stores.memoized import MemoizedStore, SnapshotListener
from tenantry.resilience.stores.memory import MemoryFlagStore

__all__ = [
    "AuditEntry",
    "Change",
    "DatabaseFlagStore",
    "FailsafeStore",
    "FlagStore",
    "MemoizedStore",
    "MemoryFlagStore",
    "SnapshotListener",
    "flag_not_found",
]
