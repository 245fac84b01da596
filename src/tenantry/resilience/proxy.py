"""Put an object's async methods behind a circuit breaker without touching its class.

```python
storage.wrap_backends(
    lambda backend: guard_async_methods(backend, breakers["storage"], ("put", "delete", "size"))
)
```
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, cast

from tenantry.resilience.breaker import Breaker

T = TypeVar("T")


class _Guarded:
    """Listed coroutine methods go through the breaker; everything else passes through."""

    def __init__(self, target: Any, breaker: Breaker, methods: frozenset[str]) -> None:
        self._target = target
        self._breaker = breaker
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name not in self._methods:
            return attribute
        breaker = self._breaker

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            return await breaker.call_async(attribute, *args, **kwargs)

        return guarded

    def __repr__(self) -> str:
        return f"<guarded by {self._breaker.name!r}: {self._target!r}>"


def guard_async_methods(target: T, breaker: Breaker, methods: Iterable[str]) -> T:
    """`target` with `methods` (coroutine methods) called through `breaker`."""
    names = frozenset(methods)
    missing = [name for name in names if not callable(getattr(target, name, None))]
    if missing:
        raise AttributeError(f"{type(target).__name__} has no method(s) {', '.join(missing)}")
    return cast(T, _Guarded(target, breaker, names))
