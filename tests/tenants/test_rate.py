"""API requests per minute per company: every key of the company together, shared by
every process through Redis (and in-process without it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tenantry.tenants.rate import RequestRate, TooManyRequests


@pytest.fixture(params=["redis", "in-process"])
async def rates(request: pytest.FixtureRequest) -> AsyncIterator[list[RequestRate]]:
    if request.param == "in-process":
        yield [RequestRate()]
        return
    url = request.getfixturevalue("redis_url")
    # Two limiters on two clients of one Redis: two processes sharing the count.
    clients = [Redis.from_url(url), Redis.from_url(url)]
    yield [RequestRate(client) for client in clients]
    for client in clients:
        await client.aclose()


async def test_a_company_over_its_rate_gets_429_with_retry_after(
    rates: list[RequestRate],
) -> None:
    for index in range(10):
        await rates[index % len(rates)].hit("acme", 10)
    with pytest.raises(TooManyRequests) as refused:
        await rates[-1].hit("acme", 10)
    assert refused.value.status_code == 429
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    assert refused.value.details == {"limit": "apiRequestsPerMinute", "allowed": 10}
    await rates[0].hit("globex", 10)  # another company is not held back
    await rates[0].hit("acme", None)  # unlimited: never refused


class Clock:
    """The limiter's clock, set by the test: `time.time()` of tenantry.tenants.rate."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


MINUTE = 60 * 29_000_000  # the start of a minute, far from the real clock


async def test_the_previous_minute_counts_for_the_share_of_it_still_in_the_window(
    rates: list[RequestRate], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(MINUTE)
    monkeypatch.setattr("tenantry.tenants.rate.time", clock)
    for _ in range(8):
        await rates[0].hit("acme", 10)
    clock.now = MINUTE + 60 + 45  # a quarter of the last minute is still in: 8 * 1/4 = 2
    for index in range(8):
        await rates[index % len(rates)].hit("acme", 10)
    with pytest.raises(TooManyRequests) as refused:  # 2 + 8 + this one > 10
        await rates[-1].hit("acme", 10)
    assert refused.value.headers == {"Retry-After": "15"}  # when the minute turns
    clock.now = MINUTE + 60 + 59.5  # 8 * 1/120 is nearly nothing: one more gets through
    await rates[0].hit("acme", 10)
    with pytest.raises(TooManyRequests) as refused:
        await rates[0].hit("acme", 10)
    assert refused.value.headers == {"Retry-After": "1"}
    clock.now = MINUTE + 180  # two minutes on: the old counts are gone
    for _ in range(10):
        await rates[0].hit("acme", 10)


async def test_in_process_counts_stay_bounded_and_keep_the_last_two_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(MINUTE)
    monkeypatch.setattr("tenantry.tenants.rate.time", clock)
    rate = RequestRate()
    for _ in range(10):
        await rate.hit("acme", 20)
    clock.now = MINUTE + 60
    for _ in range(10):
        await rate.hit("acme", 20)  # 10 of the previous minute (all of it) + 10
    for number in range(200_001):  # a spray of companies: the table is trimmed
        await rate.hit(f"c{number}", 1)
    with pytest.raises(TooManyRequests):
        await rate.hit("acme", 20)  # its counts survived the trim
