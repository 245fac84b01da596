"""The read-cache contract: what Tenantry's `ReadCache` needs of a `CacheBackend`.

Each check is a plain `async def check_*(backend) -> None` that drives the backend
through a `ReadCache` (as Tenantry uses it) and raises `AssertionError` on a breach;
`CACHE_BACKEND_CHECKS` lists them all. The backend must be new and empty (a Redis
database of its own, say); closing it is the caller's. Two `ReadCache`s on one
backend stand for two processes sharing it. Checks wait on real time (a claim
expiring, an entry's TTL), so the suite takes a few seconds.

Run it against your own backend from your pytest file (with pytest-asyncio in auto
mode, or mark the test `@pytest.mark.asyncio`)::

    import pytest
    from tenantry.testing.cache import CACHE_BACKEND_CHECKS, CacheBackendCheck

    @pytest.mark.parametrize("check", CACHE_BACKEND_CHECKS, ids=lambda c: c.__name__)
    async def test_my_backend_keeps_the_contract(check: CacheBackendCheck) -> None:
        await check(MyCacheBackend())

For pytest's full explanation of a failed check, call
`pytest.register_assert_rewrite("tenantry.testing")` in your conftest.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tenantry.errors import InvalidInput
from tenantry.queries.cache import ReadCache
from tenantry.queries.cache_backends.base import CacheBackend

CacheBackendCheck = Callable[[CacheBackend], Awaitable[None]]


class Loader:
    """A loader that counts its runs and can be slowed down."""

    def __init__(self, value: Any, delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0
        self.started = asyncio.Event()  # set once it runs: its caller has missed and claimed

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        await asyncio.sleep(self.delay)
        return self.value


async def check_a_company_never_sees_another_companys_value(backend: CacheBackend) -> None:
    cache = ReadCache(backend)
    acme, globex = Loader({"owner": "acme"}), Loader({"owner": "globex"})
    assert await cache.read("acme", "orders:list", acme, 60) == {"owner": "acme"}
    assert await cache.read("globex", "orders:list", globex, 60) == {"owner": "globex"}
    for _ in range(3):
        assert await cache.read("acme", "orders:list", globex, 60) == {"owner": "acme"}
        assert await cache.read("globex", "orders:list", acme, 60) == {"owner": "globex"}
    assert acme.calls == globex.calls == 1


async def check_names_cannot_forge_another_namespace(backend: CacheBackend) -> None:
    cache = ReadCache(backend)
    await cache.read("acme", "x", Loader("acme secret"), 60)
    # a name shaped like another company's key still lands in the caller's namespace
    forged = Loader("globex own")
    assert await cache.read("globex", "}:v:x", forged, 60) == "globex own"
    assert await cache.read("globex", "{acme}:v:x", forged, 60) == "globex own"
    with _raises(InvalidInput):
        await cache.read("acme}:v:x", "y", forged, 60)


async def check_concurrent_misses_run_the_loader_once(backend: CacheBackend) -> None:
    cache = ReadCache(backend)
    loader = Loader([1, 2, 3], delay=0.05)
    results = await asyncio.gather(*(cache.read("acme", "report", loader, 60) for _ in range(25)))
    assert loader.calls == 1
    assert all(result == [1, 2, 3] for result in results)
    # another company's concurrent miss of the same name is its own flight
    other = Loader([9], delay=0.05)
    flights = await asyncio.gather(
        cache.read("globex", "report", other, 60), cache.read("globex", "report", other, 60)
    )
    assert other.calls == 1 and list(flights) == [[9], [9]]


async def check_a_failing_loader_fails_every_waiter_and_caches_nothing(
    backend: CacheBackend,
) -> None:
    cache = ReadCache(backend)
    calls = 0

    async def broken() -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("database said no")

    results = await asyncio.gather(
        *(cache.read("acme", "k", broken, 60) for _ in range(5)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await cache.read("acme", "k", Loader("fine"), 60) == "fine"


class ClaimsLate:
    """A backend whose first claim waits until `before` has run: another process's whole
    load (miss, claim, store, release) slips in between this process's miss and claim."""

    def __init__(self, inner: CacheBackend, before: Any) -> None:
        self.inner, self.before = inner, before

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim(self, *args: Any) -> str | None:
        if self.before is not None:
            before, self.before = self.before, None
            await before()
        return await self.inner.claim(*args)


async def check_a_claim_won_after_the_value_was_stored_loads_nothing(
    backend: CacheBackend,
) -> None:
    loads = Loader({"rows": 3})
    other = ReadCache(backend)

    async def other_process_loads() -> None:
        assert await other.read("acme", "hot", loads, 60) == {"rows": 3}

    late = ReadCache(ClaimsLate(backend, other_process_loads))
    assert await late.read("acme", "hot", loads, 60) == {"rows": 3}
    assert loads.calls == 1
    assert late.hit_rate("acme") == 1.0


async def check_a_cancelled_leader_does_not_strand_its_waiters(backend: CacheBackend) -> None:
    """The cancelled leader releases its claim at once: its waiter does not sit out the
    claim's 30 s (the deadline is a third of that, for a loaded machine)."""
    cache = ReadCache(backend, claim_seconds=30)
    slow = Loader("slow", delay=0.2)
    leader = asyncio.create_task(cache.read("acme", "k", slow, 60))
    await slow.started.wait()  # it holds the claim
    waiter = asyncio.create_task(cache.read("acme", "k", Loader("second"), 60))
    await asyncio.sleep(0.01)
    leader.cancel()
    try:
        assert await asyncio.wait_for(waiter, timeout=10) == "second"
    except TimeoutError:
        raise AssertionError("the waiter was left waiting for a cancelled leader's claim") from None


async def check_processes_sharing_a_backend_run_the_loader_once(backend: CacheBackend) -> None:
    """Two caches on one backend stand for two processes on one Redis."""
    first, second = ReadCache(backend), ReadCache(backend)
    loads = Loader({"rows": 3}, delay=0.1)
    reads = [cache.read("acme", "hot", loads, 60) for cache in (first, second) for _ in range(5)]
    assert await asyncio.gather(*reads) == [{"rows": 3}] * 10
    assert loads.calls == 1
    # One process's leader missed (its four others waited for it); the other process's
    # leader got that value from the backend: no miss there at all.
    assert {first.hit_rate("acme"), second.hit_rate("acme")} == {0.8, 1.0}


async def check_a_failed_load_frees_the_key_for_the_other_process(backend: CacheBackend) -> None:
    first, second = ReadCache(backend), ReadCache(backend)
    loading = asyncio.Event()

    async def broken() -> Any:
        loading.set()  # the first process holds the claim now
        await asyncio.sleep(0.1)
        raise RuntimeError("database said no")

    failing = asyncio.create_task(first.read("acme", "k", broken, 60))
    await loading.wait()
    started = time.monotonic()
    assert await second.read("acme", "k", Loader("loaded here"), 60) == "loaded here"
    assert time.monotonic() - started < 1  # not left waiting for the claim to expire
    with _raises(RuntimeError):
        await failing


async def check_a_claim_whose_holder_died_expires(backend: CacheBackend) -> None:
    assert await backend.claim("acme", "k", 0.3) is not None  # never released
    assert await backend.claim("acme", "k", 0.3) is None
    assert await backend.claim("globex", "k", 0.3) is not None  # claims are per company
    cache = ReadCache(backend, claim_seconds=5)
    started = time.monotonic()
    assert await cache.read("acme", "k", Loader("mine"), 60) == "mine"
    assert 0.25 < time.monotonic() - started < 2


async def check_a_claim_is_released_only_by_its_holder(backend: CacheBackend) -> None:
    token = await backend.claim("acme", "k", 60)
    assert token is not None
    await backend.release("acme", "k", "someone-else")
    assert await backend.claim("acme", "k", 60) is None
    await backend.release("acme", "k", token)
    assert await backend.claim("acme", "k", 60) is not None


async def check_invalidation_is_scoped_to_the_company(backend: CacheBackend) -> None:
    cache = ReadCache(backend)
    for company in ("acme", "globex"):
        for name in ("orders:1", "orders:2", "users:1"):
            await cache.read(company, name, Loader(f"{company}-{name}-v1"), 60)
    dropped = await cache.invalidate("acme", ["orders:*"])
    assert dropped == 2
    fresh = Loader("v2")
    assert await cache.read("acme", "orders:1", fresh, 60) == "v2"
    assert await cache.read("acme", "users:1", fresh, 60) == "acme-users:1-v1"
    assert await cache.read("globex", "orders:1", fresh, 60) == "globex-orders:1-v1"
    assert fresh.calls == 1
    assert await cache.invalidate("acme", ["users:1"]) == 1
    assert await cache.read("acme", "users:1", fresh, 60) == "v2"


async def check_a_read_racing_a_write_does_not_recache_the_old_value(
    backend: CacheBackend,
) -> None:
    cache = ReadCache(backend)
    old = Loader("before the write", delay=0.1)
    reading = asyncio.create_task(cache.read("acme", "balance", old, 60))
    await old.started.wait()  # the read has missed and is loading
    await cache.invalidate("acme", ["balance"])  # a write commits meanwhile
    assert await reading == "before the write"  # that caller gets what it read...
    new = Loader("after the write")
    assert await cache.read("acme", "balance", new, 60) == "after the write"  # ...nobody else
    assert new.calls == 1


async def check_entries_expire(backend: CacheBackend) -> None:
    cache = ReadCache(backend)
    loader = Loader("v")
    await cache.read("acme", "k", loader, 0.05)
    await cache.read("acme", "k", loader, 0.05)
    assert loader.calls == 1
    await asyncio.sleep(0.12)
    await cache.read("acme", "k", loader, 0.05)
    assert loader.calls == 2


async def check_hit_rate_per_company(backend: CacheBackend) -> None:
    cache = ReadCache(backend)
    for _ in range(4):
        await cache.read("acme", "k", Loader(1), 60)  # 1 miss, 3 hits
    await cache.read("globex", "k", Loader(1), 60)  # 1 miss
    assert cache.hit_rate("acme") == 0.75
    assert cache.hit_rate("globex") == 0.0
    assert cache.hit_rate("initech") is None
    assert cache.hit_rate() == 0.6


async def check_values_come_back_as_the_same_json_for_every_caller(backend: CacheBackend) -> None:
    cache = ReadCache(backend)
    first = await cache.read("acme", "k", Loader({"ids": (1, 2)}), 60)
    second = await cache.read("acme", "k", Loader(None), 60)
    assert first == second == {"ids": [1, 2]}


@contextmanager
def _raises(error: type[Exception]) -> Iterator[None]:
    # The suite runs outside pytest too, so no pytest.raises.
    try:
        yield
    except error:
        return
    raise AssertionError(f"expected {error.__name__}")


CACHE_BACKEND_CHECKS: tuple[CacheBackendCheck, ...] = (
    check_a_company_never_sees_another_companys_value,
    check_names_cannot_forge_another_namespace,
    check_concurrent_misses_run_the_loader_once,
    check_a_failing_loader_fails_every_waiter_and_caches_nothing,
    check_a_claim_won_after_the_value_was_stored_loads_nothing,
    check_a_cancelled_leader_does_not_strand_its_waiters,
    check_processes_sharing_a_backend_run_the_loader_once,
    check_a_failed_load_frees_the_key_for_the_other_process,
    check_a_claim_whose_holder_died_expires,
    check_a_claim_is_released_only_by_its_holder,
    check_invalidation_is_scoped_to_the_company,
    check_a_read_racing_a_write_does_not_recache_the_old_value,
    check_entries_expire,
    check_hit_rate_per_company,
    check_values_come_back_as_the_same_json_for_every_caller,
)
