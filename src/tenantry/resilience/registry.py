"""Named circuit breakers: the pre-configured ones, logging, and Prometheus metrics."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tenantry.errors import NotFound, TenantryError
from tenantry.resilience.breaker import (
    _MISSING,
    Breaker,
    BreakerConfig,
    CircuitOpenError,
    Listener,
    State,
    Transition,
    fallback_value,
)

log = logging.getLogger("tenantry.resilience")
T = TypeVar("T")

# The original's four circuits, plus `redis` for Tenantry's own Redis calls (kept apart
# from `database` so a Redis outage never fails database work). Calls that wait on a
# network get a call timeout, so a hung dependency counts as a failure instead of hanging.
_ANSWERS = (TenantryError,)  # a 404 or 409 is the dependency answering, not failing
DEFAULT_BREAKERS: dict[str, BreakerConfig] = {
    "database": BreakerConfig(
        failure_threshold=5, timeout=30_000, call_timeout=5_000, ignore_exceptions=_ANSWERS
    ),
    "redis": BreakerConfig(
        failure_threshold=5, timeout=15_000, call_timeout=2_000, ignore_exceptions=_ANSWERS
    ),
    "external-api": BreakerConfig(
        failure_threshold=5, timeout=60_000, call_timeout=10_000, ignore_exceptions=_ANSWERS
    ),
    "ai-service": BreakerConfig(
        failure_threshold=3, timeout=120_000, call_timeout=30_000, ignore_exceptions=_ANSWERS
    ),
    # No call timeout: an upload lasts as long as the client takes to send it.
    "storage": BreakerConfig(failure_threshold=5, timeout=60_000, ignore_exceptions=_ANSWERS),
}


def config_with(base: BreakerConfig, options: Mapping[str, Any]) -> BreakerConfig:
    """`base` with `options` applied; unknown names and bad values raise ValueError."""
    unknown = set(options) - {f.name for f in fields(BreakerConfig)}
    if unknown:
        raise ValueError(f"unknown breaker option(s): {', '.join(sorted(unknown))}")
    values = {f.name: getattr(base, f.name) for f in fields(BreakerConfig)}
    values.update(options)
    return BreakerConfig(**values)


class BreakerRegistry:
    """Every breaker of the process by name; `execute(name, fn)` is the one-line use."""

    def __init__(
        self,
        metrics: CollectorRegistry | None = None,
        defaults: Mapping[str, BreakerConfig] | None = None,
    ) -> None:
        self._breakers: dict[str, Breaker] = {}
        self._listeners: list[Listener] = [self._log]
        self._transitions: Counter | None = None
        if metrics is not None:
            self._transitions = Counter(
                "tenantry_circuit_breaker_transitions_total",
                "Circuit breaker state transitions.",
                ["circuit", "from_state", "to_state"],
                registry=metrics,
            )
            metrics.register(_BreakerCollector(self))
        for name, config in (DEFAULT_BREAKERS if defaults is None else defaults).items():
            self.create(name, config)

    # --- lookup ------------------------------------------------------------------
    def create(
        self, name: str, config: BreakerConfig | None = None, *, fallback: Any = _MISSING
    ) -> Breaker:
        """A new breaker, or the existing one of that name with `config` and `fallback` applied."""
        existing = self._breakers.get(name)
        if existing is not None:
            if config is not None:
                existing.reconfigure(config)
            if fallback is not _MISSING:
                existing.fallback = fallback
            return existing
        breaker = Breaker(name, config, fallback=fallback, listeners=list(self._listeners))
        self._breakers[name] = breaker
        return breaker

    def get(self, name: str) -> Breaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            raise NotFound(
                f"no circuit named {name!r}",
                details={"circuit": name, "known": sorted(self._breakers)},
            )
        return breaker

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[Breaker]:
        return iter(list(self._breakers.values()))

    @property
    def names(self) -> list[str]:
        return sorted(self._breakers)

    def add_listener(self, listener: Listener) -> None:
        """Hear every transition of every breaker, present and future."""
        self._listeners.append(listener)
        for breaker in self._breakers.values():
            breaker.add_listener(listener)

    # --- calling -----------------------------------------------------------------
    def execute(self, name: str, fn: Callable[[], Any], /, **options: Any) -> Any:
        """Run `fn()` through the breaker `name`; returns an awaitable when `fn` is async.

        `options` are `BreakerConfig` fields used when the breaker does not exist yet,
        plus `fallback` (a value, or a callable given the exception) for this call.
        A lambda that returns a coroutine is not detected as async: use `execute_async`.
        """
        if inspect.iscoroutinefunction(fn):
            return self.execute_async(name, fn, **options)
        fallback = options.pop("fallback", _MISSING)
        breaker = self._for_execute(name, options)
        if fallback is _MISSING:
            return breaker.call(fn)
        try:
            return breaker.call(fn)
        except BaseException as exc:
            if isinstance(exc, CircuitOpenError) or breaker._is_failure(exc):
                return fallback_value(fallback, exc)
            raise

    async def execute_async(
        self, name: str, fn: Callable[[], Awaitable[T]], /, **options: Any
    ) -> T:
        fallback = options.pop("fallback", _MISSING)
        breaker = self._for_execute(name, options)
        if fallback is _MISSING:
            return await breaker.call_async(fn)
        try:
            return await breaker.call_async(fn)
        except Exception as exc:
            if isinstance(exc, CircuitOpenError) or breaker._is_failure(exc):
                value = fallback_value(fallback, exc)
                return await value if inspect.isawaitable(value) else value  # type: ignore[no-any-return]
            raise

    def _for_execute(self, name: str, options: Mapping[str, Any]) -> Breaker:
        if name in self._breakers:
            return self._breakers[name]
        return self.create(name, config_with(BreakerConfig(), options))

    # --- events ------------------------------------------------------------------
    def _log(self, event: Transition) -> None:
        level = (
            logging.WARNING if event.to_state in (State.OPEN, State.FORCED_OPEN) else logging.INFO
        )
        log.log(
            level,
            "circuit %s: %s -> %s (%s%s)",
            event.breaker,
            event.from_state.value,
            event.to_state.value,
            event.reason,
            ", from another process" if event.remote else "",
        )
        if self._transitions is not None:
            self._transitions.labels(
                event.breaker, event.from_state.value, event.to_state.value
            ).inc()


class _BreakerCollector(Collector):
    """State and counters read at scrape time, so the call path never touches Prometheus."""

    def __init__(self, registry: BreakerRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        state = GaugeMetricFamily(
            "tenantry_circuit_breaker_state",
            "1 for the state each circuit is in.",
            labels=["circuit", "state"],
        )
        failures = CounterMetricFamily(
            "tenantry_circuit_breaker_failed_calls",
            "Calls recorded as failures.",
            labels=["circuit"],
        )
        rejected = CounterMetricFamily(
            "tenantry_circuit_breaker_not_permitted_calls",
            "Calls rejected because the circuit was open.",
            labels=["circuit"],
        )
        slow = CounterMetricFamily(
            "tenantry_circuit_breaker_slow_calls",
            "Calls slower than the slow-call threshold.",
            labels=["circuit"],
        )
        for breaker in self._registry:
            for candidate in State:
                state.add_metric([breaker.name, candidate.value], float(breaker.state is candidate))
            failures.add_metric([breaker.name], breaker.failures_total)
            rejected.add_metric([breaker.name], breaker.rejected_total)
            slow.add_metric([breaker.name], breaker.slow_total)
        yield from (state, failures, rejected, slow)

    def describe(self) -> Iterator[Any]:
        return iter(())
