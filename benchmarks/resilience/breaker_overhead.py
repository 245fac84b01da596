"""What a closed circuit breaker adds to a sync call: Tenantry vs pybreaker vs purgatory.

    python -m benchmarks.resilience.breaker_overhead

Each contestant wraps the same trivial function as a decorator (how people use them)
and is timed with timeit, best of several repeats; overhead = wrapped - bare call.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import pybreaker
from purgatory import SyncCircuitBreakerFactory

from tenantry.resilience.breaker import Breaker, BreakerConfig

REPEATS = 7
TARGET_SECONDS = 0.15  # per repeat


def work() -> int:
    return 1


def per_call_ns(fn: Callable[[], Any]) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1000, int(number * TARGET_SECONDS / 0.2))
    return min(timer.repeat(REPEATS, number)) / number * 1e9


def contestants() -> dict[str, Callable[[], Any]]:
    tenantry = Breaker("bench", BreakerConfig())
    tenantry_window = Breaker(
        "bench-window", BreakerConfig(sliding_window_size=100, failure_threshold=None)
    )
    purgatory = SyncCircuitBreakerFactory(default_threshold=5, default_ttl=60)
    return {
        "tenantry (decorator)": tenantry(work),
        "tenantry (breaker.call)": lambda: tenantry.call(work),
        "tenantry (sliding window)": tenantry_window(work),
        "pybreaker": pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)(work),
        "purgatory": purgatory("bench", threshold=5, ttl=60)(work),
    }


def main() -> None:
    bare = per_call_ns(work)
    print(f"bare call: {bare:.0f} ns")
    print(f"{'breaker (closed circuit)':<28}{'per call':>10}{'overhead':>10}{'vs tenantry':>13}")
    results = {name: per_call_ns(fn) - bare for name, fn in contestants().items()}
    ours = results["tenantry (decorator)"]
    for name, overhead in results.items():
        print(f"{name:<28}{overhead + bare:>8.0f}ns{overhead:>8.0f}ns{overhead / ours:>12.1f}x")


if __name__ == "__main__":
    main()
