"""A circuit breaker: closed → open → half-open → closed, plus forced-open and disabled.

Names follow resilience4j (sliding window, failure rate, minimum calls, slow calls,
permitted calls in half-open, wait duration, forced states, events) because that is
the vocabulary practitioners know. The options of Tenantry's original API keep their
names: `failure_threshold` (consecutive failures), `success_threshold`, `timeout`
(ms open before half-open) and `fallback`.

Why our own and not pybreaker/purgatory: the closed-circuit call path must stay
within ~250 ns of a bare call (see benchmarks/resilience), half-open must reject
extra callers at once instead of queueing them behind a lock, and the state must
be shareable between processes. The hot path therefore takes no lock (the GIL
makes the single attribute reads and writes safe; a counter that loses an
increment under a thread race only delays opening by one call) and reads no
clock unless a slow-call threshold or call timeout needs one. Transitions, which
are rare, take a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import math
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar, cast

from tenantry.errors import ServiceUnavailable

P = ParamSpec("P")
T = TypeVar("T")


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


# Module-level aliases: reading an Enum member through its class costs ~80 ns in 3.11.
_CLOSED, _OPEN, _HALF_OPEN = State.CLOSED, State.OPEN, State.HALF_OPEN
_FORCED_OPEN, _DISABLED = State.FORCED_OPEN, State.DISABLED


class CircuitOpenError(ServiceUnavailable):
    """The circuit does not permit the call (open, forced open, or half-open and full)."""

    code = "CIRCUIT_OPEN"

    def __init__(self, name: str, state: State, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            f"the {name!r} circuit is {state.value.replace('_', '-')}; retry in {seconds} s",
            details={"circuit": name, "state": state.value, "retryAfterSeconds": seconds},
            headers={"Retry-After": str(seconds)},
        )
        self.circuit = name
        self.state = state
        self.retry_after = seconds


class CallTimeoutError(TimeoutError):
    """The protected call took longer than the breaker's `call_timeout`."""


_MISSING: Any = object()
_UNRECORDED = -1  # a permit whose outcome is not recorded (the disabled state)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How a breaker decides. Durations are milliseconds, rates are percentages."""

    failure_threshold: int | None = 5
    success_threshold: int = 2
    timeout: int = 60_000
    sliding_window_size: int | None = None
    failure_rate_threshold: float = 50.0
    minimum_calls: int = 10
    slow_call_duration: int | None = None
    slow_call_rate_threshold: float = 100.0
    call_timeout: int | None = None
    permitted_calls_in_half_open: int | None = None
    record_exceptions: tuple[type[BaseException], ...] = (Exception,)
    ignore_exceptions: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        positive = {
            "failure_threshold": self.failure_threshold,
            "success_threshold": self.success_threshold,
            "sliding_window_size": self.sliding_window_size,
            "minimum_calls": self.minimum_calls,
            "slow_call_duration": self.slow_call_duration,
            "call_timeout": self.call_timeout,
            "permitted_calls_in_half_open": self.permitted_calls_in_half_open,
        }
        for name, value in positive.items():
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer (got {value!r})")
        if not isinstance(self.timeout, int) or self.timeout < 0:
            raise ValueError(f"timeout must be a non-negative integer of ms (got {self.timeout!r})")
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            rate = getattr(self, name)
            if not 0 < rate <= 100:
                raise ValueError(f"{name} must be in (0, 100] (got {rate!r})")

    @property
    def half_open_permits(self) -> int:
        return self.permitted_calls_in_half_open or self.success_threshold


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, as given to listeners (logging, metrics, Redis sharing)."""

    breaker: str
    from_state: State
    to_state: State
    reason: str
    remote: bool = False
    open_for_ms: int = 0
    at: float = field(default_factory=time.time)


Listener = Callable[[Transition], None]

# Sync calls with a call_timeout run here so the caller can stop waiting; Python cannot
# kill a thread, so a call that never returns keeps its worker (bounded pool).
_TIMEOUT_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="tenantry-breaker")


class Breaker:
    """One named circuit. Use `call`/`call_async`, as a decorator, or `with b.guard():`."""

    __slots__ = (
        "__weakref__",
        "_consecutive",
        "_fast",
        "_generation",
        "_half_open_successes",
        "_half_open_used",
        "_listeners",
        "_lock",
        "_open_until",
        "_timed",
        "_window",
        "_window_failures",
        "_window_index",
        "_window_recorded",
        "_window_slow",
        "config",
        "failures_total",
        "fallback",
        "name",
        "rejected_total",
        "slow_total",
        "state",
        "state_since",
    )

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        fallback: Any = _MISSING,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self.fallback = fallback
        self._listeners: list[Listener] = listeners if listeners is not None else []
        self._lock = threading.Lock()
        self.state = _CLOSED
        self._timed = False
        self.state_since = time.time()
        self._generation = 0
        self._open_until = 0.0
        self._consecutive = 0
        self.failures_total = 0
        self.rejected_total = 0
        self.slow_total = 0
        self.reconfigure(self.config)

    # --- public calling styles ----------------------------------------------
    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn` through the breaker (sync)."""
        if self._fast:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                return cast(T, self._fast_failure(exc))
            if self._consecutive:
                self._consecutive = 0
            return result
        return self._guarded_call(fn, args, kwargs)

    async def call_async(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await `fn(*args, **kwargs)` through the breaker."""
        if self._fast:
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                return cast(T, await _resolve(self._fast_failure(exc)))
            if self._consecutive:
                self._consecutive = 0
            return result
        try:
            generation = self._acquire()
        except CircuitOpenError as rejected:
            return cast(T, await _resolve(self._rejected(rejected)))
        started = time.monotonic() if self._timed else 0.0
        try:
            if self.config.call_timeout is not None and generation != _UNRECORDED:
                deadline = asyncio.timeout(self.config.call_timeout / 1000)
                try:
                    async with deadline:
                        result = await fn(*args, **kwargs)
                except TimeoutError as exc:
                    if not deadline.expired():  # fn's own TimeoutError, not ours
                        raise
                    raise self._timeout_error() from exc
            else:
                result = await fn(*args, **kwargs)
        except BaseException as exc:
            return cast(T, await _resolve(self._failed(exc, generation, started)))
        self._succeeded(generation, started)
        return result

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a sync or async function."""
        if inspect.iscoroutinefunction(fn):
            call_async = self.call_async

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await call_async(fn, *args, **kwargs)

            return cast(Callable[P, T], async_wrapper)

        breaker = self

        # The fast path is inlined (not `return breaker.call(...)`) to save a frame.
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if breaker._fast:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    return breaker._fast_failure(exc)
                if breaker._consecutive:
                    breaker._consecutive = 0
                return result
            return breaker._guarded_call(fn, args, kwargs)

        return cast(Callable[P, T], wrapper)

    def guard(self) -> Guard:
        """A context manager (sync and async): `with breaker.guard(): ...`.

        An open circuit raises `CircuitOpenError` on entry (no fallback: there is no
        value to substitute); the body's exception is recorded and re-raised.
        """
        return Guard(self)

    # --- state control -------------------------------------------------------
    @property
    def retry_after(self) -> float:
        """Seconds until the circuit will try again (0 when it permits calls now)."""
        if self.state is _OPEN:
            return max(0.0, self._open_until - time.monotonic())
        if self.state is _FORCED_OPEN:
            return self.config.timeout / 1000
        return 0.0

    @property
    def has_fallback(self) -> bool:
        return self.fallback is not _MISSING

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    def window_stats(self) -> dict[str, Any]:
        recorded = self._window_recorded
        return {
            "numberOfCalls": recorded,
            "failedCalls": self._window_failures,
            "slowCalls": self._window_slow,
            "failureRate": (self._window_failures * 100 / recorded) if recorded else None,
            "slowCallRate": (self._window_slow * 100 / recorded) if recorded else None,
        }

    def force_open(self, reason: str = "forced open") -> None:
        self.transition(_FORCED_OPEN, reason)

    def disable(self, reason: str = "disabled") -> None:
        self.transition(_DISABLED, reason)

    def close(self, reason: str = "closed by request") -> None:
        self.transition(_CLOSED, reason)

    def reset(self) -> None:
        """Closed, with every counter (including the totals) back to zero."""
        if not self.transition(_CLOSED, "reset"):
            with self._lock:
                self._reset_counters()
        self.failures_total = self.rejected_total = self.slow_total = 0

    def transition(
        self,
        to: State,
        reason: str,
        *,
        remote: bool = False,
        open_for_ms: int | None = None,
        expected: State | None = None,
    ) -> bool:
        """Move to `to` (if still in `expected`, when given); tells the listeners."""
        with self._lock:
            before = self.state
            if expected is not None and before is not expected:
                return False
            wait_ms = self.config.timeout if open_for_ms is None else open_for_ms
            if before is to:  # already there; an opening elsewhere may extend the wait
                if to is _OPEN:
                    self._open_until = max(self._open_until, time.monotonic() + wait_ms / 1000)
                return False
            self.state = to
            self.state_since = time.time()
            self._generation += 1
            self._open_until = time.monotonic() + wait_ms / 1000 if to is _OPEN else 0.0
            self._reset_counters()
            self._update_fast()
        event = Transition(self.name, before, to, reason, remote, wait_ms if to is _OPEN else 0)
        for listener in self._listeners:
            with contextlib.suppress(Exception):  # a broken listener must not break the caller
                listener(event)
        return True

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def reconfigure(self, config: BreakerConfig) -> None:
        """New options; the counters start afresh (the state is kept)."""
        with self._lock:
            self.config = config
            self._timed = config.slow_call_duration is not None or config.call_timeout is not None
            self._reset_counters()
            self._update_fast()

    # --- internals -----------------------------------------------------------
    def _reset_counters(self) -> None:
        self._consecutive = 0
        self._half_open_used = 0
        self._half_open_successes = 0
        size = self.config.sliding_window_size
        self._window: list[int] = [0] * size if size else []
        self._window_index = 0
        self._window_recorded = 0
        self._window_failures = 0
        self._window_slow = 0

    def _update_fast(self) -> None:
        self._fast = (
            self.state is _CLOSED and not self._timed and not self.config.sliding_window_size
        )

    def _guarded_call(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        try:
            generation = self._acquire()
        except CircuitOpenError as rejected:
            return cast(T, self._rejected(rejected))
        started = time.monotonic() if self._timed else 0.0
        try:
            if self.config.call_timeout is not None and generation != _UNRECORDED:
                result = self._call_with_timeout(fn, args, kwargs)
            else:
                result = fn(*args, **kwargs)
        except BaseException as exc:
            return cast(T, self._failed(exc, generation, started))
        self._succeeded(generation, started)
        return result

    def _call_with_timeout(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        context = contextvars.copy_context()
        future = _TIMEOUT_POOL.submit(context.run, fn, *args, **kwargs)
        try:
            return future.result(timeout=cast(int, self.config.call_timeout) / 1000)
        except TimeoutError as exc:
            if future.done():  # fn itself raised TimeoutError
                raise
            future.cancel()
            raise self._timeout_error() from exc

    def _timeout_error(self) -> CallTimeoutError:
        return CallTimeoutError(
            f"call through the {self.name!r} circuit exceeded {self.config.call_timeout} ms"
        )

    def _acquire(self) -> int:
        """A permit (the current generation) or `CircuitOpenError`."""
        state = self.state
        if state is _CLOSED:
            return self._generation
        if state is _DISABLED:
            return _UNRECORDED
        if state is _OPEN:
            remaining = self._open_until - time.monotonic()
            if remaining > 0:
                raise CircuitOpenError(self.name, state, remaining)
            self.transition(_HALF_OPEN, "wait duration elapsed", expected=_OPEN)
            return self._acquire()
        if state is _HALF_OPEN:
            with self._lock:
                if self.state is _HALF_OPEN:
                    if self._half_open_used < self.config.half_open_permits:
                        self._half_open_used += 1
                        return self._generation
                    raise CircuitOpenError(self.name, _HALF_OPEN, 1)
            return self._acquire()
        raise CircuitOpenError(self.name, state, self.config.timeout / 1000)

    def _rejected(self, error: CircuitOpenError) -> Any:
        self.rejected_total += 1
        if self.fallback is _MISSING:
            raise error
        return self._fallback_value(error)

    def _fallback_value(self, error: BaseException) -> Any:
        return fallback_value(self.fallback, error)

    def _is_failure(self, exc: BaseException) -> bool:
        if isinstance(exc, CircuitOpenError | asyncio.CancelledError):
            return False
        if isinstance(exc, self.config.ignore_exceptions):
            return False
        return isinstance(exc, self.config.record_exceptions)

    def _fast_failure(self, exc: BaseException) -> Any:
        """A failure on the fast (closed, untimed) path: count it, maybe open, then fall back."""
        if not self._is_failure(exc):
            raise exc
        self.failures_total += 1
        self._consecutive += 1
        threshold = self.config.failure_threshold
        if threshold is not None and self._consecutive >= threshold:
            self.transition(_OPEN, f"{self._consecutive} consecutive failures", expected=_CLOSED)
        if self.fallback is _MISSING:
            raise exc
        return self._fallback_value(exc)

    def _failed(self, exc: BaseException, generation: int, started: float) -> Any:
        if not self._is_failure(exc):
            self._release(generation)
            raise exc
        self.failures_total += 1
        slow = self._is_slow(started)
        self._record(generation, failed=True, slow=slow)
        if self.fallback is _MISSING:
            raise exc
        return self._fallback_value(exc)

    def _succeeded(self, generation: int, started: float) -> None:
        slow = self._is_slow(started) if started else False
        self._record(generation, failed=False, slow=slow)

    def _is_slow(self, started: float) -> bool:
        limit = self.config.slow_call_duration
        if limit is None or not started:
            return False
        slow = (time.monotonic() - started) * 1000 >= limit
        if slow:
            self.slow_total += 1
        return slow

    def _release(self, generation: int) -> None:
        """An ignored outcome frees its half-open permit for another trial."""
        with self._lock:
            if generation == self._generation and self.state is _HALF_OPEN:
                self._half_open_used -= 1

    def _record(self, generation: int, *, failed: bool, slow: bool) -> None:
        if generation == _UNRECORDED:
            return
        reason = None
        with self._lock:
            if generation != self._generation:
                return  # the call started in an earlier state; its outcome is stale
            state = self.state
            if state is _HALF_OPEN:
                if failed or slow:
                    reason, target = "trial call failed in half-open", _OPEN
                else:
                    self._half_open_successes += 1
                    if self._half_open_successes >= self.config.success_threshold:
                        reason, target = "trial calls succeeded", _CLOSED
            elif state is _CLOSED:
                reason = self._record_closed(failed=failed, slow=slow)
                target = _OPEN
        if reason is not None:
            self.transition(target, reason, expected=state)

    def _record_closed(self, *, failed: bool, slow: bool) -> str | None:
        config = self.config
        window = self._window
        # Without a window a slow call counts as a failure; with one it counts in the slow rate.
        if failed or (slow and not window):
            self._consecutive += 1
            threshold = config.failure_threshold
            if threshold is not None and self._consecutive >= threshold:
                return f"{self._consecutive} consecutive failures"
        else:
            self._consecutive = 0
        if not window:
            return None
        size, index = len(window), self._window_index
        outcome = int(failed) | (int(slow) << 1)
        if self._window_recorded == size:
            old = window[index]
            if old:
                self._window_failures -= old & 1
                self._window_slow -= old >> 1
        else:
            self._window_recorded += 1
        window[index] = outcome
        self._window_index = index + 1 if index + 1 < size else 0
        recorded = self._window_recorded
        minimum = config.minimum_calls if config.minimum_calls < size else size
        if not outcome:
            # A success cannot raise a rate; it only matters on reaching minimum_calls.
            return None if recorded != minimum else self._rates_exceeded(recorded)
        self._window_failures += outcome & 1
        self._window_slow += outcome >> 1
        return None if recorded < minimum else self._rates_exceeded(recorded)

    def _rates_exceeded(self, recorded: int) -> str | None:
        config = self.config
        failure_rate = self._window_failures * 100 / recorded
        if failure_rate >= config.failure_rate_threshold:
            return f"failure rate {failure_rate:.1f} % >= {config.failure_rate_threshold} %"
        slow_rate = self._window_slow * 100 / recorded
        if config.slow_call_duration is not None and slow_rate >= config.slow_call_rate_threshold:
            return f"slow-call rate {slow_rate:.1f} % >= {config.slow_call_rate_threshold} %"
        return None

    def __repr__(self) -> str:
        return f"<Breaker {self.name!r} {self.state.value}>"


class Guard:
    """One guarded block (`with breaker.guard():` / `async with breaker.guard():`)."""

    __slots__ = ("_breaker", "_generation", "_started")

    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker
        self._generation = _UNRECORDED
        self._started = 0.0

    def __enter__(self) -> Guard:
        try:
            self._generation = self._breaker._acquire()
        except CircuitOpenError:
            self._breaker.rejected_total += 1
            raise
        self._started = time.monotonic() if self._breaker._timed else 0.0
        return self

    def __exit__(self, _type: Any, exc: BaseException | None, _tb: Any) -> None:
        breaker = self._breaker
        if exc is None:
            breaker._succeeded(self._generation, self._started)
        elif breaker._is_failure(exc):
            breaker.failures_total += 1
            slow = breaker._is_slow(self._started)
            breaker._record(self._generation, failed=True, slow=slow)
        else:
            breaker._release(self._generation)

    async def __aenter__(self) -> Guard:
        return self.__enter__()

    async def __aexit__(self, _type: Any, exc: BaseException | None, _tb: Any) -> None:
        self.__exit__(_type, exc, _tb)


async def _resolve(value: Any) -> Any:
    """A fallback's value, awaited when the fallback was an async callable."""
    if inspect.isawaitable(value):
        return await value
    return value


def fallback_value(fallback: Any, error: BaseException) -> Any:
    """A fallback's answer: the value itself, or the callable called with the error if it
    takes one, else with nothing."""
    if not callable(fallback):
        return fallback
    try:
        inspect.signature(fallback).bind(error)
    except TypeError:
        return fallback()
    return fallback(error)
