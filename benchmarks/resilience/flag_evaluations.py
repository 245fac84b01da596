"""Flag evaluations per second in one process: Tenantry vs UnleashClient vs GrowthBook.

    python -m benchmarks.resilience.flag_evaluations

The same ten flags (Tenantry's defaults: on/off switches, a 10 % and a 5 %
rollout) are evaluated for 10,000 user ids, round robin over (flag, user). Every
contestant evaluates locally from memory: UnleashClient bootstrapped from a dict
(offline: no server, no metrics, never initialised against a URL), GrowthBook with
its features given inline (local evaluation), Tenantry from its snapshot.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from typing import Any

from growthbook import GrowthBook
from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache

from tenantry.resilience.flags import DEFAULT_FLAGS, Flag
from tenantry.resilience.service import FlagService
from tenantry.resilience.stores.memoized import MemoizedStore
from tenantry.resilience.stores.memory import MemoryFlagStore

USERS = [f"user-{n}" for n in range(10_000)]
KEYS = [flag.key for flag in DEFAULT_FLAGS]
PAIRS = [(KEYS[n % len(KEYS)], USERS[n % len(USERS)]) for n in range(100_000)]
SECONDS = 1.0


def rate(evaluate: Callable[[str, str], Any]) -> float:
    """Evaluations per second over ~SECONDS of repeated passes, best pass."""
    best = 0.0
    deadline = time.perf_counter() + SECONDS
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for key, user in PAIRS:
            evaluate(key, user)
        best = max(best, len(PAIRS) / (time.perf_counter() - started))
    return best


def tenantry() -> FlagService:
    async def build() -> FlagService:
        flags = FlagService(MemoizedStore(MemoryFlagStore()))
        await flags.seed()
        return flags

    return asyncio.run(build())


def unleash_feature(flag: Flag) -> dict[str, Any]:
    return {
        "name": flag.key,
        "enabled": flag.enabled,
        "strategies": [
            {
                "name": "flexibleRollout",
                "parameters": {
                    "rollout": str(flag.rollout),
                    "stickiness": "userId",
                    "groupId": flag.key,
                },
            }
        ],
    }


def unleash(directory: str) -> UnleashClient:
    cache = FileCache("tenantry-bench", directory=directory)
    cache.bootstrap_from_dict(
        {"version": 1, "features": [unleash_feature(flag) for flag in DEFAULT_FLAGS]}
    )
    return UnleashClient(
        url="http://127.0.0.1:9/unleash",  # never contacted: not initialised
        app_name="tenantry-bench",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
    )


def growthbook() -> GrowthBook:
    features = {
        flag.key: {
            "defaultValue": False,
            "rules": [
                {"force": flag.enabled, "coverage": flag.rollout / 100, "hashAttribute": "id"}
            ],
        }
        for flag in DEFAULT_FLAGS
    }
    return GrowthBook(features=features)


def main() -> None:
    flags = tenantry()
    with tempfile.TemporaryDirectory() as directory:
        client = unleash(directory)
        book = growthbook()

        def growthbook_is_on(key: str, user: str) -> bool:
            book.set_attributes({"id": user})
            return book.is_on(key)

        contestants: dict[str, Callable[[str, str], Any]] = {
            "tenantry is_enabled": flags.is_enabled,
            "tenantry evaluate (reason)": flags.evaluate,
            "UnleashClient is_enabled": lambda key, user: client.is_enabled(key, {"userId": user}),
            "GrowthBook is_on": growthbook_is_on,
        }
        agree = sum(
            flags.is_enabled(key, user) == client.is_enabled(key, {"userId": user})
            for key, user in PAIRS[:5000]
        )
        results = {name: rate(fn) for name, fn in contestants.items()}
    ours = results["tenantry is_enabled"]
    print(f"{'evaluator':<30}{'evaluations/s':>16}{'tenantry is':>14}")
    for name, per_second in results.items():
        print(f"{name:<30}{per_second:>16,.0f}{ours / per_second:>13.1f}x")
    print(f"Tenantry and Unleash agree on {agree} of 5000 (flag, user) decisions.")


if __name__ == "__main__":
    main()
