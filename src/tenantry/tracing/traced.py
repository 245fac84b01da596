"""`traced`: a span around a service method, when the service has tracing.

Light on purpose (no opentelemetry import): the storage service uses it whether or
not tracing is on, and off it costs one attribute read per call.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from tenantry.tracing.tracer import Tracing

P = ParamSpec("P")
R = TypeVar("R")


class HasTracing(Protocol):
    tracing: Tracing | None


S = TypeVar("S", bound=HasTracing)


def traced(
    name: str, key_attribute: str | None = None
) -> Callable[
    [Callable[Concatenate[S, P], Awaitable[R]]], Callable[Concatenate[S, P], Awaitable[R]]
]:
    """A span `name` around each call of an async method; with `key_attribute`, the
    method's first positional argument (when it is a string: a file key) under that name."""

    def decorate(
        method: Callable[Concatenate[S, P], Awaitable[R]],
    ) -> Callable[Concatenate[S, P], Awaitable[R]]:
        @functools.wraps(method)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            tracing = self.tracing
            if tracing is None:
                return await method(self, *args, **kwargs)
            attributes = {}
            if key_attribute is not None and args and isinstance(args[0], str):
                attributes[key_attribute] = args[0]
            with tracing.span(name, attributes):
                return await method(self, *args, **kwargs)

        return wrapper

    return decorate
