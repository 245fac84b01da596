"""Where flags are kept: one small interface, two engines, and stacked decorators.

`FlagStore` (base.py) is the contract; `tenantry.testing.flags` is its suite, run
against every implementation and stack here and shipped for a user's own store.
One implementation per module:

- `database.DatabaseFlagStore` — the flag and audit tables, one transaction per change;
- `memory.MemoryFlagStore` — a dict, for tests and embedded use.

Behaviour is added by wrapping, as Flipper does, rather than by growing one class:

- `tenantry.resilience.guard.guard(store, breaker)` — every call through a circuit
  breaker (the `database` one), so an outage fails fast instead of hanging each request
  (the one breaker guard Tenantry uses for every dependency);
- `failsafe.FailsafeStore` — a failed read answers the last good read; a failed write
  raises `ServiceUnavailable` (a change is never dropped silently);
- `memoized.MemoizedStore` — reads come from an in-memory copy, refreshed on demand (a
  Redis message, a timer); listeners hear every new copy.

The running service uses Memoized(Failsafe(guard(Database))). This package imports
none of its modules, so importing one store loads only what that store needs.
"""
