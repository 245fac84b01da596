"""The one way Tenantry puts calls behind a circuit breaker: `guard(target, breaker, methods)`.

```python
records = guard(KeyRecords(db), breakers["database"], unavailable="the database")
backend = guard(s3_backend, breakers["storage"], ("put", "open", "delete"))
```

The object keeps its class's interface (a proxy, not a subclass), so whatever takes a
`StorageBackend` or a `FlagStore` takes the guarded one too. Only the listed coroutine
methods (default: every public one) go through the breaker; everything else passes
straight through. The wiring (`tenantry.wiring`) is where these calls are made: it alone
decides what goes behind which circuit.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

from tenantry.errors import ServiceUnavailable, TenantryError
from tenantry.resilience.breaker import Breaker

T = TypeVar("T")


class _Guarded:
    """Listed coroutine methods go through the breaker; everything else passes through."""

    def __init__(
        self, target: Any, breaker: Breaker, methods: frozenset[str], unavailable: str | None
    ) -> None:
        self._target = target
        self._breaker = breaker
        self._methods = methods
        self._unavailable = unavailable
        self._calls: dict[str, Callable[..., Awaitable[Any]]] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in self._methods:
            return getattr(self._target, name)
        call = self._calls.get(name)
        if call is None:
            call = self._calls[name] = self._through_breaker(getattr(self._target, name))
        return call

    def _through_breaker(self, method: Callable[..., Awaitable[Any]]) -> Any:
        breaker, unavailable = self._breaker, self._unavailable

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            if unavailable is None:
                return await breaker.call_async(method, *args, **kwargs)
            try:
                return await breaker.call_async(method, *args, **kwargs)
            except (TenantryError, asyncio.CancelledError):
                raise  # answers (404, 409) and open circuits (503) as they are
            except Exception as exc:
                raise ServiceUnavailable(
                    f"{unavailable} is unavailable; try again shortly",
                    details={"cause": type(exc).__name__},
                    headers={"Retry-After": "1"},
                ) from exc

        return guarded

    def __repr__(self) -> str:
        return f"<guarded by {self._breaker.name!r}: {self._target!r}>"


def public_coroutine_methods(target: object) -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(type(target), inspect.iscoroutinefunction)
        if not name.startswith("_")
    ]


def guard(
    target: T,
    breaker: Breaker,
    methods: Iterable[str] | None = None,
    *,
    unavailable: str | None = None,
) -> T:
    """`target` with `methods` (default: its public coroutine methods) called through
    `breaker`. With `unavailable` ("the database"), any failure that is not already a
    TenantryError becomes a 503 naming it, rather than a 500."""
    names = frozenset(public_coroutine_methods(target) if methods is None else methods)
    missing = [name for name in names if not callable(getattr(target, name, None))]
    if missing:
        raise AttributeError(f"{type(target).__name__} has no method(s) {', '.join(missing)}")
    return cast(T, _Guarded(target, breaker, names, unavailable))
